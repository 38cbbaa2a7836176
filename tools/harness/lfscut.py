"""Power cuts on real LittleFS: the rp2 board (boards/rp2.py, boards/rp2_boot.py) with its record
and A/B bundles on MicroPython's own LittleFS2, on a flash that behaves like the Pico's.

`python -m tools.harness.lfscut [--sample N] [--no-torn]` (also a part of `make powercut`)

The device is faults/lfsboot.py: a file-backed NOR flash (4 KiB erase sectors, erase before
write enforced) formatted with LittleFS2 and holding bundle v1, confirmed; the server
(faults/faultserver.py) offers bundle v2. A first run without a cut records every program and
erase of the flash over the whole flow (activation with its record saves, the download staged
in app.stage, the unpack into the other bundle directory, the pointer rewrites, the reset into
v2 and its confirmation). Then for every one of those operations, a fresh device: the power
goes before it, and again with it torn (half of it lands), and the Pico restarts (main.py)
until the agent reports it up to date, playing the operator when a CIK was lost between
receiving and storing it (regenerate). After every start: the file system mounts, the stored
CIK is whole or absent (one the server issued), and the bundle main.py starts next is v1 or
v2 complete, file by file, never the factory application and never a mix; the flash saw no
program over bytes not erased. At the end v2 runs, confirmed, and the record names it.

Prints `N/N LittleFS cut points survived`; exit 1 otherwise.
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
from tools.harness.faults.faultserver import FaultServer
from tools.harness.mpunix import MICROPYTHON, micropypath

ROOT = Path(__file__).resolve().parents[2]
SN = "sn-lfs-1"
SECTORS = 212  # the Pico W's 848 KiB LittleFS
CHUNK = 16384
RC_OK, RC_FAIL, RC_RESET, RC_EXPIRED = 0, 1, 3, 4
CUT_RCS = (-9, 137)
MAX_STARTS = 8
NOT_REACHED = "not reached"

BUNDLE_APP = """print("bundle %s starting")


def main():
    from boards.rp2_app import main as run

    return run()
"""
FACTORY_APP = 'print("factory application starting")\nfrom boards.rp2_app import main\n'


def make_bundles():
    """-> (old, new) bundle bytes: app.py and a blob each, several flash sectors long."""
    from exoprov.build import make_bundle

    def one(tag, seed, size):
        blob = hashlib.sha256(b"%d" % seed).digest() * (size // 32)
        return make_bundle([("app.py", (BUNDLE_APP % tag).encode()), ("lib/blob.bin", blob)])

    return one("v1", 1, 12 * 1024), one("v2", 2, 40 * 1024)


def expected_files(bundle):
    """What lfsboot inspect shows for a directory holding `bundle`: {file: sha256 hex}."""
    from exoprov.build import read_bundle

    files = {name: hashlib.sha256(data).hexdigest() for name, data in read_bundle(bundle)}
    files[".bundle"] = hashlib.sha256(bundle[8:40].hex().encode()).hexdigest()
    return files


class Device:
    """A fresh Pico W (flash image, fake Wi-Fi) and a fresh server for one cut point."""

    def __init__(self, old, new, micropython=MICROPYTHON):
        self.mp = str(micropython)
        self.d = Path(tempfile.mkdtemp(prefix="lfscut-"))
        self.hw = hwkit.make_hw(self.d, chip="cyw43")
        self.image = self.d / "flash.img"
        factory = self.d / "factory"
        factory.mkdir()
        (factory / "app.py").write_text(FACTORY_APP)
        self.env = dict(os.environ, EXOPROV_FAKE_HW=str(self.hw), EXOPROV_ROOT="/flash")
        self.env["MICROPYPATH"] = micropypath(factory, fakes=True)
        self.srv = FaultServer()
        self.srv.enable(SN)
        self.new = self.srv.add_content("firmware-2", new, version=2)
        self.want = {"v1": expected_files(old), "v2": expected_files(new)}
        cfg = {
            "server": self.srv.url, "vendor": "vend", "model": "mod", "sn": SN,
            "board": "rp2", "state_dir": "/flash", "wifi_ssid": "lab",
            "wifi_password": "pw-lab", "once": True, "version": "1", "timeout": 10,
            "chunk": CHUNK, "log": 1,
        }  # fmt: skip
        self.cfgpath = self.d / "config.json"
        self.cfgpath.write_text(json.dumps(cfg))
        self.env["EXOPROV_CONFIG"] = str(self.cfgpath)
        self.events = self.d / "events.txt"
        self.events.write_text("")
        self.starts = self.regens = 0
        self.last_err = ""
        (self.d / "v1.bundle").write_bytes(old)
        r = self._mp("format", str(SECTORS), str(self.d / "v1.bundle"))
        if r.returncode:
            raise RuntimeError(f"lfsboot format failed: {r.stdout}{r.stderr}")

    def _mp(self, *args):
        cmd = [self.mp, "tools/harness/faults/lfsboot.py", str(self.image), *args]
        return subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip

    def close(self):
        self.srv.stop()
        shutil.rmtree(self.d, ignore_errors=True)

    def ops(self):
        return [x for x in self.events.read_text().splitlines() if not x.startswith("violation")]

    def violations(self):
        return [x for x in self.events.read_text().splitlines() if x.startswith("violation")]

    def start(self, cut=-1, mode="before"):
        self.starts += 1
        r = self._mp("boot", str(cut), mode, str(self.events))
        self.last_err = r.stdout + r.stderr
        self.last_out = r.stdout
        return r.returncode

    def inspect(self):
        r = self._mp("inspect")
        if r.returncode:
            raise RuntimeError(f"lfsboot inspect failed: {r.stdout}{r.stderr}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def which(self, files):
        for tag, want in self.want.items():
            if files == want:
                return tag
        return None

    def check(self):
        """Invariants after any start; -> (problem or None, inspection)."""
        got = self.inspect()
        if "mount" in got:
            return f"the file system does not mount: {got['mount']}", got
        bad = self.violations()
        if bad:
            return f"programmed bytes not erased first: {bad[0]}", got
        try:
            rec = json.loads(got["record"]) if got["record"] else None
        except ValueError:
            return "the record loads but is not JSON", got
        cik = rec.get("cik") if isinstance(rec, dict) else None
        if cik is not None and cik not in self.srv.issued:
            return "stored CIK is not one the server issued (torn or corrupt)", got
        ptr = (got["ptr"] or "- - ok").split()
        if len(ptr) != 3:
            ptr = ["-", "-", "ok"]  # what main.py makes of a pointer it cannot read
        cur, prev, state = ptr
        nxt = prev if state == "trying" else cur
        if nxt == "-":
            return f"main.py would start the factory application (pointer {ptr})", got
        if self.which(got["dirs"].get(nxt)) is None:
            return f"main.py would start {nxt}, which holds neither bundle whole", got
        return None, got

    def fetched(self):
        total = 0
        for r in self.srv.requests("blob"):
            if r.status == 206 and r.range:
                a, _, b = r.range.split("=", 1)[1].partition("-")
                total += int(b) - int(a) + 1
        return total


def run_flow(dev, cut=-1, mode="before"):
    """Start the Pico until the agent is up to date, the power cut at flash operation `cut`
    (counted over all starts). -> problem, NOT_REACHED or None."""
    done = 0
    cut_seen = cut < 0
    rc = None
    for _ in range(MAX_STARTS):
        local = cut - done if cut >= done else -1
        rc = dev.start(local, mode)
        done = len(dev.ops())
        if rc in CUT_RCS:
            if local < 0:
                return f"killed with exit {rc} without a cut"
            cut_seen = True
        elif "factory application starting" in dev.last_out:
            return "the factory application started: neither bundle"
        elif "bundle v1 starting" not in dev.last_out and "bundle v2 starting" not in dev.last_out:
            return f"no bundle started (exit {rc}): {dev.last_err.strip().splitlines()[-3:]}"
        problem, _got = dev.check()
        if problem:
            return problem
        if rc == RC_OK:
            return None if cut_seen else NOT_REACHED
        if rc == RC_EXPIRED:
            dev.srv.regenerate(SN)  # the CIK was lost between receiving and storing it
            dev.regens += 1
        elif rc not in (RC_RESET, RC_FAIL, *CUT_RCS):
            return f"exit {rc}: {dev.last_err.strip().splitlines()[-3:]}"
    tail = " | ".join(dev.last_err.strip().splitlines()[-3:])
    return f"not up to date after {MAX_STARTS} starts (last exit {rc}: {tail})"


def finished(dev):
    """After a flow that ended up to date: v2 runs confirmed and the record names it."""
    _problem, got = dev.check()
    cur, _prev, state = (got.get("ptr") or "- - ?").split()
    if dev.which(got["dirs"].get(cur)) != "v2" or state != "ok":
        return f"v2 is not running confirmed at the end (pointer {got.get('ptr')!r})"
    rec = json.loads(got["record"])
    if (rec.get("inst") or {}).get("sha") != dev.new.sha256:
        return "the record does not name v2 as installed"
    return None


def baseline(old, new, micropython=MICROPYTHON):
    dev = Device(old, new, micropython)
    try:
        problem = run_flow(dev) or finished(dev)
        if problem:
            raise RuntimeError(f"the LittleFS flow fails without any cut: {problem}")
        return dev.ops(), dev.fetched()
    finally:
        dev.close()


def pick(points, n):
    """n points spread evenly over the flow (both ends kept)."""
    if n is None or n >= len(points):
        return points
    step = (len(points) - 1) / max(1, n - 1)
    return [points[round(i * step)] for i in range(n)]


def run(sample=None, torn=True, log=print, micropython=MICROPYTHON):
    """-> (survived, total, failure lines, stats). sample: at most that many cut points."""
    old, new = make_bundles()
    t0 = time.monotonic()
    ops, base_fetched = baseline(old, new, micropython)
    modes = ("before", "torn") if torn else ("before",)
    points = pick([(k, m, label) for k, label in enumerate(ops) for m in modes], sample)
    progs = sum(1 for x in ops if x.startswith("prog"))
    log(f"lfscut: {len(ops)} flash operations ({progs} programs, {len(ops) - progs} sector "
        f"erases) in a whole flow on LittleFS2 (update of a {len(new)}-byte bundle), "
        f"{len(points)} cut points")  # fmt: skip
    st = {"points": 0, "regens": 0, "max_refetch": 0, "ops": len(ops),
          "labels": [f"{m} {label}" for _k, m, label in points]}  # fmt: skip
    failures = []
    for k, mode, label in points:
        dev = Device(old, new, micropython)
        try:
            problem = run_flow(dev, k, mode)
            if problem is None:
                problem = finished(dev)
            extra = dev.fetched() - base_fetched
            if problem is None and extra > CHUNK:
                problem = f"{extra} bytes fetched again (more than one Range request)"
            st["points"] += 1
            st["regens"] += bool(dev.regens)
            st["max_refetch"] = max(st["max_refetch"], extra)
            if problem:
                failures.append(f"littlefs cut {mode} op {k} {label}: {problem}")
                log("lfscut: FAIL " + failures[-1])
        finally:
            dev.close()
    log(f"lfscut: {st['regens']} cuts lost a CIK between receiving and storing it (the "
        f"operator regenerated); most data fetched again after one cut: {st['max_refetch']} "
        f"bytes; done in {time.monotonic() - t0:.0f} s")  # fmt: skip
    return st["points"] - len(failures), st["points"], failures, st


def main(argv=None):
    ap = argparse.ArgumentParser(prog="lfscut", description=__doc__.split("\n")[0])
    ap.add_argument("--sample", type=int, default=None, help="cut at most N points")
    ap.add_argument("--no-torn", action="store_true", help="only cut before each operation")
    ap.add_argument("--micropython", default=str(MICROPYTHON), help="the unix-port binary")
    args = ap.parse_args(argv)
    ok, total, _failures, _st = run(args.sample, not args.no_torn, micropython=args.micropython)
    print(f"{ok}/{total} LittleFS cut points survived")
    return 0 if ok == total and total else 1


if __name__ == "__main__":
    sys.exit(procs.main(main))
