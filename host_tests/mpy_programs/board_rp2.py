"""boards/rp2.py on the fake Pico W (host_tests/test_board_rp2.py). One run is one boot: the
board is made on the file system at EXOPROV_ROOT (a directory standing for LittleFS), then
SCENARIO runs.

    EXOPROV_ROOT=DIR micropython host_tests/mpy_programs/board_rp2.py SCENARIO [ARG...]

with the fakes first on MICROPYPATH and EXOPROV_FAKE_HW naming the board directory
(host_tests/fakes/hwkit.py `run_program`).
"""

import json
import os

import network
import scenario

import boards.rp2 as R
from boards.rp2 import Board

ROOT = os.getenv("EXOPROV_ROOT")
b = Board({"state_dir": ROOT, "wifi_ssid": "lab", "wifi_password": "pw-lab"})


def _put(data, start=0, stop=None):
    stop = len(data) if stop is None else stop
    mv = memoryview(data)
    for off in range(start, stop, 4096):
        b.slot_write(off, mv[off : min(off + 4096, len(data))])


def _load(name):
    with open(name, "rb") as f:
        return f.read()


def _stage(name):
    data = _load(name)
    b.slot_begin(len(data))
    _put(data)
    b.slot_finish(len(data))
    return data


# -- storage


def load():
    return [b.load()]


def stored():
    return b.load().decode()


def save(*values):
    for v in values:
        b.save(v.encode())


def save_with_cut(at, mode):
    """b.save(b"new") with a power cut at its operation AT (1-based: write, flush, rename):
    MODE `before` dies before it, `torn` lets the first half of a write land first. The real
    board has no hook: the module's `open` and `os` are wrapped."""
    at = int(at)
    n = [0]
    real_open, real_os = open, R.os

    def tick(torn=None):
        n[0] += 1
        if n[0] == at:
            if torn is not None and mode == "torn":
                torn()
            raise SystemExit(137)

    class F:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            tick(lambda: self.f.write(bytes(data)[: len(data) // 2]))
            return self.f.write(data)

        def flush(self):
            tick()
            self.f.flush()

        def close(self):
            self.f.close()

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    class OS:
        def rename(self, a, c):
            tick()
            real_os.rename(a, c)

        def __getattr__(self, name):
            return getattr(real_os, name)

    def cut_open(p, m="r"):
        f = real_open(p, m)
        return F(f) if ("w" in m or "+" in m) else f

    R.open = cut_open
    R.os = OS()
    b.save(b"new")


# -- bundle slot


def stage_apply(path):
    _stage(path)
    b.slot_apply()


def apply():
    b.slot_apply()


def rollback():
    b.slot_rollback()


def confirm_refused_then_rollback():
    res = []
    try:
        b.slot_confirm()
    except OSError as e:
        res.append(e.args[1])
    b.slot_rollback()
    return res


def commit_points():
    # the agent writes 1 KiB pieces (Board.buffer): where does the slot flush?
    d = bytes(range(256)) * 41 + b"xyz"
    b.slot_begin(len(d))

    class F:
        def __init__(s, f):
            s.f, s.pos, s.at = f, 0, []

        def seek(s, o):
            s.pos = o
            return s.f.seek(o)

        def write(s, x):
            s.pos += len(x)
            return s.f.write(x)

        def flush(s):
            s.at.append(s.pos)
            s.f.flush()

    b._f = F(b._file())
    mv = memoryview(d)
    for off in range(0, len(d), 1024):
        b.slot_write(off, mv[off : off + 1024])
    return b._f.at


def write_part(path, start, stop):
    d = _load(path)
    b.slot_begin(len(d))
    _put(d, int(start), int(stop))


def resume(path):
    d = _load(path)
    b.slot_begin(len(d))
    buf = bytearray(8192)
    n = b.slot_read(0, buf)
    ok = n == 8192 and bytes(buf) == d[:8192]
    _put(d, 8192)
    b.slot_finish(len(d))
    b.slot_apply()
    return ok


def corrupt_refused(path):
    res = []
    d = _load(path)
    b.slot_begin(len(d))
    _put(d)
    for call in (lambda: b.slot_finish(len(d)), b.slot_apply):
        try:
            call()
        except ValueError as e:
            res.append(str(e))
    return res


def finish(path):
    d = _load(path)
    b.slot_begin(len(d))
    _put(d)
    try:
        b.slot_finish(len(d))
        return "accepted"
    except ValueError as e:
        return str(e)


def too_big():
    try:
        b.slot_begin(1 << 50)
    except OSError as e:
        return [e.args[0], e.args[1]]


# -- Wi-Fi (CYW43), identity


def wifi_up():
    b.network_up(2000)
    w = network.WLAN(network.STA_IF)
    return [w.isconnected(), w.config("pm") == 0xA11140, w.connects]


def wifi(cfg):
    cfg = json.loads(cfg)
    cfg["state_dir"] = ROOT
    board = Board(cfg)
    try:
        board.network_up(300)
        return "up"
    except OSError as e:
        return [e.args[0], e.args[1]]


def identity():
    return b.unique_id()


scenario.main(globals())
