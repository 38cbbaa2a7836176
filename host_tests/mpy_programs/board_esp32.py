"""boards/esp32.py on the fake ESP32 (host_tests/test_board_esp32.py). One run is one boot:
the board is made as the firmware makes it, then SCENARIO runs.

    micropython host_tests/mpy_programs/board_esp32.py SCENARIO [ARG...]

with the fakes first on MICROPYPATH and EXOPROV_FAKE_HW naming the board directory
(host_tests/fakes/hwkit.py `run_program`). Arguments are strings: paths of image files,
numbers, a JSON board configuration.
"""

import json

import esp32
import network
import scenario

from boards.esp32 import Board

b = Board({"wifi_ssid": "lab", "wifi_password": "pw-lab"})


def _put(img, start=0, stop=None):
    stop = len(img) if stop is None else stop
    mv = memoryview(img)
    for off in range(start, stop, 4096):
        b.slot_write(off, mv[off : min(off + 4096, len(img))])


def _readback(n):
    buf = bytearray(n)
    got = b.slot_read(0, buf)
    return got, bytes(buf)


def _img(name):
    with open(name, "rb") as f:
        return f.read()


# -- storage


def load():
    return [b.load()]


def stored():
    return b.load().decode()


def record():
    """The agent's record as JSON text (null when there is none)."""
    d = b.load()
    print(d.decode() if d else "null")


def save(*values):
    for v in values:
        b.save(v.encode())


def save_size(n):
    b.save(b"x" * int(n))


def two_keys_one_commit():
    b._nvs.set_blob("zz", b"1")
    b._nvs.set_blob("r1", b"XRjunk")
    b._nvs.commit()


# -- slot


def write_twice(path):
    i = _img(path)
    b.slot_begin(len(i))
    _put(i)
    b.slot_finish(len(i))
    first = _readback(len(i))
    b.slot_erase()
    b.slot_begin(len(i))
    _put(i)  # written flash again: must erase first
    second = _readback(len(i))
    return [first[0], first[1] == i, second[1] == i]


def flash_rules():
    p = esp32.Partition("ota_1")
    p.writeblocks(0, b"\x01" * 4096)
    res = []
    for call in (lambda: p.writeblocks(0, b"\x02" * 16, 0), lambda: p.writeblocks(1, b"x" * 100)):
        try:
            call()
            res.append(None)
        except OSError as e:
            res.append(e.args[0])
    return res


def write_part(path, start, stop=None):
    i = _img(path)
    b.slot_begin(len(i))
    _put(i, int(start), None if stop is None else int(stop))


def resume(path):
    i = _img(path)
    b.slot_begin(len(i))
    buf = bytearray(8192)
    b.slot_read(0, buf)
    ok = bytes(buf) == i[:8192]
    _put(i, 8192)  # the torn sector is written again: erased first by writeblocks
    return [ok, _readback(len(i))[1] == i]


def refused(path):
    res = []
    try:
        b.slot_begin(65 * 1024)
    except OSError as e:
        res.append([e.args[0], e.args[1]])
    i = _img(path)
    b.slot_begin(len(i))
    _put(i)
    for call in (lambda: b.slot_finish(len(i)), b.slot_apply):
        try:
            call()
        except (OSError, ValueError) as e:
            res.append(str(e.args[-1]))
    return res


def boot_label():
    return esp32.Partition(0).info()[4]


def no_ota():
    b.save(b"rec")
    try:
        b.slot_begin(1000)
        return "no error"
    except OSError as e:
        return [e.args[0], e.args[1], b.load().decode()]


# -- apply, boot, confirm, rollback


def apply(path, times="1"):
    i = _img(path)
    b.slot_begin(len(i))
    _put(i)
    b.slot_finish(len(i))
    for _ in range(int(times)):
        b.slot_apply()


def start():
    pass


def confirm():
    b.slot_confirm()
    return b._running


def confirm_after_fallback():
    res = [b._running]
    try:
        b.slot_confirm()
    except OSError as e:
        res.append(e.args[1])
    b.slot_rollback()  # nothing left to do: the bootloader went back already
    res.append(esp32.Partition(esp32.Partition.BOOT).info()[4])
    return res


def rollback():
    b.slot_rollback()
    return b._running


def begin_then_rollback():
    b.slot_begin(10)
    b.slot_rollback()


# -- network, identity, clock


def wifi_up():
    b.network_up(2000)
    w = network.WLAN(network.STA_IF)
    b.network_up(2000)
    return [w.isconnected(), w.connects]


def wifi(cfg):
    board = Board(json.loads(cfg))
    try:
        board.network_up(300)
        return "up"
    except OSError as e:
        return [e.args[0], e.args[1]]


def wifi_connect_in_progress():
    w = network.WLAN(network.STA_IF)
    w.active(True)
    w.connect("lab", "pw-lab")
    try:
        w.connect("lab", "pw-lab")
        quirk = None
    except OSError as e:
        quirk = e.args[0]
    b.network_up(2000)
    return [quirk, w.isconnected()]


def identity():
    return [b.unique_id(), type(b.time()).__name__]


scenario.main(globals())
