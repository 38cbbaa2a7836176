"""Power cuts at every write: the agent must never brick the device.

`python -m tools.harness.powercut [--interp cpython|micropython|both] [--sample N] [--size BYTES]`

For each interpreter (CPython with `boards/linux.py`; the MicroPython unix port with
`boards/esp32.py` on the esp32 fakes, or `boards/unix.py` when those are not there) it first
runs the whole flow once without a cut and records every write the agent makes (store saves,
slot erase/write/finish/apply/confirm, see faults/cutlaunch.py). Then, for every one of
those writes k, a fresh device and server: the agent is killed at write k (before it; saves
and apply also right after it), restarted until it reports active and up to date (exit 0),
playing the operator when the interrupted activation needs it (regenerate: `enable=true`,
POST /provision/manage/model/<model>/<sn>). After every start it checks the installed image
is the old or the new one, never a mix, and the stored CIK is absent or exactly one the
server issued; at the end that the new image is installed with the right sha256 and that no
more than one Range request of data (one chunk) was fetched again because of the cut.

With the esp32 fakes it also sweeps the fake hardware's own persistent operations (flash
sector erase and write, NVS set and commit, otadata writes) of every start: the power goes
before each one, and again with it torn (half a flash write lands): cuts inside a store save
and inside a slot write, which the board-level count cannot reach (`--no-flash` skips it).

With `both` (the default) and `littlefs` it also runs tools/harness/lfscut.py: the rp2 board's
record and A/B bundles on MicroPython's real LittleFS2 over a file-backed NOR flash, the power
cut before and torn at every program and sector erase of a whole flow. With `both` the command
also builds the 32-bit unix port with the agent frozen in (tools/harness/firmware.py, from
EXOPROV_MICROPYTHON, about 35 s or cached; `--no-frozen` skips it) and cuts it at every
write, as `--frozen BIN` does.

Prints `N/N cut points survived`; exit 1 otherwise.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host_tests.fakes import hwkit
from tools.harness import procs
from tools.harness.faults.faultserver import FaultServer, image
from tools.harness.mpunix import MICROPYTHON, micropypath

ROOT = Path(__file__).resolve().parents[2]
SN = "sn-cut-1"
CHUNK = 65536
RC_OK, RC_FAIL, RC_RESET, RC_EXPIRED = 0, 1, 3, 4
CUT_RCS = (77, -9, 137)  # os._exit(77) on CPython; SIGKILL under MicroPython
MAX_STARTS = 8
ESP32_APP = 512 * 1024  # each fake OTA partition


class Flavour:
    """One interpreter + board: how to start the agent and how to inspect the device."""

    flash = False  # cut by the fake ESP32 hardware at its own operations, not the board's

    def __init__(self, name, cmd, board, frozen=False):
        self.name, self.cmd, self.board = name, cmd, board
        self.frozen = frozen  # agent/ and boards/ frozen into the binary: not from the tree

    def config(self, d, url):
        cfg = {
            "server": url,
            "vendor": "vend",
            "model": "mod",
            "sn": SN,
            "board": self.board,
            "state_dir": str(d / "state"),
            "install_path": str(d / "installed.bin"),
            "once": True,
            "version": "1",
            "timeout": 10,
            "log": 1,
        }
        if self.board == "esp32":
            cfg.update(fake_dir=str(d / "hw"), wifi_ssid="lab", wifi_password="pw-lab")
        return cfg

    def env(self, d):
        env = dict(os.environ)
        if self.frozen:
            env["EXOPROV_FROZEN"] = "1"
            env.pop("MICROPYPATH", None)
        if self.board == "esp32":
            env["EXOPROV_FAKE_HW"] = str(d / "hw")
            env["MICROPYPATH"] = micropypath(fakes=True, frozen=True)
        return env

    def install_old(self, d, old):
        """A device that runs `old` before the update."""
        if self.board != "esp32":
            (d / "installed.bin").write_bytes(old)
            return
        hw = hwkit.make_hw(d, app_size=ESP32_APP)
        (hw / "ota_0.bin").write_bytes(old + b"\xff" * (ESP32_APP - len(old)))
        (hw / "ota_1.bin").write_bytes(b"\xff" * ESP32_APP)

    def inspect(self, d, cfgpath, size):
        """-> (stored record dict or None, sha256 of the image the device boots next)."""
        if self.board != "esp32":
            try:
                rec = json.loads((d / "state" / "state.json").read_bytes())
            except (OSError, ValueError):
                rec = None
            try:
                sha = hashlib.sha256((d / "installed.bin").read_bytes()).hexdigest()
            except OSError:
                sha = None
            return rec, sha
        # on a copy: the fake bootloader that decides what boots runs at import and writes
        copy = d / "inspect"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(d / "hw", copy)
        env = dict(self.env(d), EXOPROV_FAKE_HW=str(copy))
        out = subprocess.run(
            [*self.cmd, "tools/harness/faults/cutinspect.py", str(cfgpath), str(size)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if out.returncode:
            raise RuntimeError(f"inspect failed: {out.stderr[-800:]}")
        got = json.loads(out.stdout.strip().splitlines()[-1])
        return got["record"], got["sha"]


def flavours(which, flash=False):
    """which: cpython, micropython, both, esp32-flash (only the hardware-level sweep), or
    frozen:BINARY (a unix-port firmware with agent/ and boards/unix.py frozen in)."""
    if which.startswith("frozen:"):
        return [Flavour("micropython-frozen/unix", [which[7:]], "unix", frozen=True)]
    if which == "esp32-flash":
        fl = Flavour("micropython/esp32-flash", [MICROPYTHON], "esp32")
        fl.flash = True
        return [fl]
    out = []
    if which in ("cpython", "both"):
        out.append(Flavour("cpython/linux", [sys.executable], "linux"))
    if which in ("micropython", "both"):
        board = "esp32" if (ROOT / "host_tests/fakes/esp32.py").exists() else "unix"
        out.append(Flavour(f"micropython/{board}", [MICROPYTHON], board))
        if board == "esp32" and flash:
            fl = Flavour("micropython/esp32-flash", [MICROPYTHON], board)
            fl.flash = True
            out.append(fl)
    return out


class Device:
    """One fresh device (temp dir) and one fresh server for one cut point."""

    def __init__(self, fl, old, new):
        self.fl = fl
        self.d = Path(tempfile.mkdtemp(prefix="powercut-"))
        self.srv = FaultServer()
        self.srv.enable(SN)
        self.new = self.srv.add_content("firmware-2", new, version=2)
        self.old_sha = hashlib.sha256(old).hexdigest()
        self.size = len(new)
        self.cfgpath = self.d / "config.json"
        self.cfgpath.write_text(json.dumps(fl.config(self.d, self.srv.url)))
        self.events = self.d / "events.txt"
        self.events.write_text("")
        self.starts = 0
        self.regens = 0
        fl.install_old(self.d, old)

    def close(self):
        self.srv.stop()
        shutil.rmtree(self.d, ignore_errors=True)

    def n_events(self):
        return len(self.events.read_text().splitlines())

    def start(self, cut=-1, mode="before"):
        self.starts += 1
        cmd = [
            *self.fl.cmd,
            "tools/harness/faults/cutlaunch.py",
            str(self.cfgpath),
            str(cut),
            mode,
        ]
        cmd.append(str(self.events))
        p = subprocess.run(
            cmd, cwd=ROOT, env=self.fl.env(self.d), capture_output=True, text=True, timeout=120
        )
        self.last_err = p.stderr + p.stdout  # MicroPython prints tracebacks on stdout
        return p.returncode

    def check(self):
        """Invariants after any start; -> problem text or None."""
        rec, sha = self.fl.inspect(self.d, self.cfgpath, self.size)
        if sha not in (self.old_sha, self.new.sha256):
            return f"installed image is neither old nor new (sha {sha})"
        cik = rec.get("cik") if isinstance(rec, dict) else None
        if cik is not None and cik not in self.srv.issued:
            return "stored CIK is not one the server issued (torn or corrupt)"
        return None

    def fetched(self):
        total = 0
        for r in self.srv.requests("blob"):
            if r.status == 206 and r.range:
                a, _, b = r.range.split("=", 1)[1].partition("-")
                total += int(b) - int(a) + 1
        return total


NOT_REACHED = "not reached"


def run_flow(dev, cut=-1, mode="before", hw=None):
    """Start the agent until it is up to date; the power is cut at board write `cut`
    (counted over all starts), or with hw=(start, n, mode) by the fake ESP32 hardware itself
    at its n-th persistent operation of that start. -> problem, NOT_REACHED or None."""
    done = 0  # events before the current start
    cut_seen = cut < 0 and hw is None
    for i in range(1, MAX_STARTS + 1):
        local = cut - done if cut >= 0 and cut >= done else -1
        armed = hw is not None and hw[0] == i
        power = dev.d / "hw" / "power.json"
        if armed:
            power.write_text(json.dumps({"at": hw[1], "mode": hw[2]}))
        rc = dev.start(local, mode)
        done = dev.n_events()
        if armed and power.exists():
            return NOT_REACHED  # this start made fewer than n persistent operations
        if rc in CUT_RCS:
            if local < 0 and not armed:
                return f"killed with exit {rc} without a cut"
            cut_seen = True
        problem = dev.check()
        if problem:
            return problem
        if rc == RC_OK:
            # a point never reached would "survive" without being tested
            return None if cut_seen else f"write {cut} never happened (only {done} writes)"
        if rc == RC_EXPIRED:
            # the CIK was lost between receiving and storing it: the operator regenerates
            dev.srv.regenerate(SN)
            dev.regens += 1
        elif rc not in (RC_RESET, RC_FAIL, *CUT_RCS):
            return f"agent exited {rc}: {dev.last_err.strip().splitlines()[-3:]}"
    tail = " | ".join(dev.last_err.strip().splitlines()[-3:])
    return f"not up to date after {MAX_STARTS} starts (last exit {rc}: {tail})"


def baseline(fl, old, new):
    dev = Device(fl, old, new)
    try:
        problem = run_flow(dev)
        if problem:
            raise RuntimeError(f"{fl.name}: the flow fails without any cut: {problem}")
        labels = dev.events.read_text().splitlines()
        return labels, dev.fetched(), dev.starts
    finally:
        dev.close()


def cut_points(labels):
    points = []
    for k, label in enumerate(labels):
        points.append((k, "before", label))
        if not label.startswith("slot_write"):
            points.append((k, "after", label))
    return points


def survive(fl, old, new, k, mode, base_fetched, hw=None):
    """-> (problem or None, operator regenerations, bytes fetched again)."""
    dev = Device(fl, old, new)
    try:
        problem = run_flow(dev, k, mode, hw)
        extra = dev.fetched() - base_fetched
        if problem:
            return problem, dev.regens, extra
        rec, sha = fl.inspect(dev.d, dev.cfgpath, dev.size)
        if sha != dev.new.sha256:
            problem = "the new image is not installed at the end"
        elif ((rec or {}).get("inst") or {}).get("sha") != dev.new.sha256:
            problem = "the record does not name the new image as installed"
        elif extra > CHUNK:
            problem = f"{extra} bytes fetched again (more than one {CHUNK}-byte Range request)"
        return problem, dev.regens, extra
    finally:
        dev.close()


def pick_sample(points, n):
    """Every store save and apply, plus evenly spread slot writes, up to n points."""
    keep = [p for p in points if not p[2].startswith("slot_write")]
    writes = [p for p in points if p[2].startswith("slot_write")]
    room = max(0, n - len(keep))
    if room and writes:
        step = max(1, len(writes) // room)
        keep += writes[::step][:room]
    return sorted(keep)


def flash_points(fl, old, new, base_fetched, starts, step, log):
    """Sweep the fake ESP32's own persistent operations (flash erase and write, NVS set and
    commit, otadata) of every start: cut before each, and torn (a flash write lands half,
    anything else lands, then the power goes). Yields (label, problem, regens, extra)."""
    for start in range(1, starts + 1):
        n = 0
        while True:
            n += 1
            if n % step:
                continue
            reached = True
            for mode in ("before", "torn"):
                problem, regens, extra = survive(
                    fl, old, new, -1, "before", base_fetched, hw=(start, n, mode)
                )
                if problem == NOT_REACHED:
                    reached = False
                    break
                yield f"start {start} op {n} {mode}", problem, regens, extra
            if not reached:
                log(f"powercut: {fl.name}: start {start} ends before persistent op {n}")
                break


def run(which="both", size=256 * 1024, sample=None, log=print, flash=False, flash_step=None):
    """-> (survived, total, failure lines, {flavour: stats}). sample: at most that many
    board-level cut points per flavour; flash_step: cut at every n-th hardware operation
    (default 1, or 8 with a sample)."""
    # app images: the ESP32 bootloader (and its fake) boots only an image starting with 0xe9
    old, new = b"\xe9" + image(size - 1, seed=1), b"\xe9" + image(size - 1, seed=2)
    failures = []
    stats = {}

    def tally(fl, st, label, problem, regens, extra):
        st["points"] += 1
        st["regens"] += bool(regens)
        st["max_refetch"] = max(st["max_refetch"], extra)
        if problem:
            failures.append(f"{fl.name} {label}: {problem}")
            log("powercut: FAIL " + failures[-1])

    for fl in flavours(which, flash):
        st = stats[fl.name] = {"points": 0, "regens": 0, "max_refetch": 0, "labels": []}
        t0 = time.monotonic()
        labels, base_fetched, starts = baseline(fl, old, new)
        if fl.flash:
            for label, problem, regens, extra in flash_points(
                fl, old, new, base_fetched, starts, flash_step or (8 if sample else 1), log
            ):
                tally(fl, st, label, problem, regens, extra)
            log(f"powercut: {fl.name}: {st['points']} cut points, most data fetched again "
                f"after one cut: {st['max_refetch']} bytes; done in "
                f"{time.monotonic() - t0:.0f} s")  # fmt: skip
            continue
        points = cut_points(labels)
        if sample:
            points = pick_sample(points, sample)
        log(f"powercut: {fl.name}: {len(labels)} writes in a full update of {size} bytes, "
            f"{len(points)} cut points")  # fmt: skip
        st["labels"] = [f"{mode} {label}" for _k, mode, label in points]
        for k, mode, label in points:
            problem, regens, extra = survive(fl, old, new, k, mode, base_fetched)
            tally(fl, st, f"cut {mode} write {k} {label}", problem, regens, extra)
        log(f"powercut: {fl.name}: {st['regens']} cuts lost a CIK between receiving and "
            f"storing it (the operator regenerated); most data fetched again after one cut: "
            f"{st['max_refetch']} bytes; done in {time.monotonic() - t0:.0f} s")  # fmt: skip
    if which in ("both", "littlefs"):
        from tools.harness import lfscut

        _ok, _n, lfails, st = lfscut.run(sample, log=log)
        stats["micropython/rp2-littlefs"] = st
        failures += lfails
    total = sum(st["points"] for st in stats.values())
    return total - len(failures), total, failures, stats


def build_frozen():
    """The 32-bit firmware with the agent frozen in (tools/harness/firmware.py: about 35 s, or
    cached); None, said, when EXOPROV_MICROPYTHON names no MicroPython tree."""
    from tools.harness.firmware import frozen_build, micropython_tree, skip_line

    if micropython_tree() is None:
        print("powercut: skipped: " + skip_line("the frozen firmware", "make powercut"))
        return None
    t = time.monotonic()
    binary = frozen_build(32, say=lambda m: print("powercut:", m))
    print(f"powercut: the frozen 32-bit firmware ready in {time.monotonic() - t:.0f} s")
    return binary


def main(argv=None):
    ap = argparse.ArgumentParser(prog="powercut", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--interp",
        choices=("cpython", "micropython", "both", "esp32-flash", "littlefs"),
        default="both",
    )
    ap.add_argument("--frozen", metavar="BIN", help="only a firmware built by exoprov build "
                    "--firmware unix (agent frozen in)")  # fmt: skip
    ap.add_argument("--size", type=int, default=256 * 1024)
    ap.add_argument("--sample", type=int, default=None, help="cut at most N points")
    ap.add_argument(
        "--no-flash", action="store_true",
        help="skip the sweep over the fake ESP32's own flash/NVS operations",
    )  # fmt: skip
    ap.add_argument("--no-frozen", action="store_true",
                    help="with both: skip the firmware with the agent frozen in")  # fmt: skip
    args = ap.parse_args(argv)
    flash = not args.no_flash
    which = f"frozen:{args.frozen}" if args.frozen else args.interp
    ok, total, failures, stats = run(which, args.size, args.sample, flash=flash)
    binary = which == "both" and not args.no_frozen and build_frozen()
    if binary:
        more = run(f"frozen:{binary}", args.size, args.sample)
        ok, total, failures = ok + more[0], total + more[1], failures + more[2]
        stats.update(more[3])
    print("cut points: " + ", ".join(f"{name} {st['points']}" for name, st in stats.items()))
    print(f"{ok}/{total} cut points survived")
    return 0 if ok == total and total else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(procs.main(main))
