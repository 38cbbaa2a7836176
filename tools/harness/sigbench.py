"""Signature check figures: printed, never asserted.

`python -m tools.harness.sigbench [--frozen BIN ...] [--flow]` prints:

- the .mpy size of agent/sig.py;
- per MicroPython binary (the unix port of the venv running sig.mpy, and any `--frozen` build
  with agent/ frozen in, e.g. a 32-bit one from `exoprov build --firmware unix`): the time of
  one Ed25519 verify (median of 7), the heap its import takes, and the extra heap one verify
  needs: the smallest `-X heapsize` (bisected, 64-byte steps) with the verify minus the
  smallest without it, the same script otherwise; then the time again at a 12 KiB heap with
  the collection threshold the agent sets (agent/main.py);
- CPython: one verify through `cryptography` and through the pure-Python fallback;
- with --flow: the smallest heap (256-byte steps) of the agent's full flow (activate, list, info, a
  256 KiB download, verify, apply) under the venv's unix port, with and without `pubkeys`.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.harness import procs
from tools.harness.mpunix import MICROPYTHON, MPY_CROSS

ROOT = Path(__file__).resolve().parents[2]

# RFC 8032 7.1 TEST 3
PK = "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025"
MSG = "af82"
SIG = (
    "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
    "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
)

SCRIPT = """
import gc, time
from binascii import unhexlify as u
pk, m, s = u(%r), u(%r), u(%r)
if %r:
    gc.threshold(%r)
gc.collect()
a = gc.mem_alloc()
from agent import sig
gc.collect()
print("import", gc.mem_alloc() - a)
if %r:
    ts = []
    for i in range(%d):
        t = time.ticks_us()
        assert sig.verify(pk, m, s)
        ts.append(time.ticks_diff(time.ticks_us(), t))
    print("times", *ts)
print("ok")
"""


def log(*a):
    print("sigbench:", *a, flush=True)


def run_mp(binary, path, verify, heap=None, n=7, th=0):
    d = Path(tempfile.mkdtemp(prefix="sigbench-"))
    try:
        (d / "t.py").write_text(SCRIPT % (PK, MSG, SIG, th, th, verify, n))
        cmd = [str(binary)] + (["-X", f"heapsize={heap}"] if heap else []) + ["t.py"]
        env = dict(os.environ)
        env.pop("MICROPYPATH", None)
        if path:
            env["MICROPYPATH"] = path
        p = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True, timeout=120)
        return p.stdout if p.returncode == 0 and "ok" in p.stdout.split() else None
    finally:
        shutil.rmtree(d, ignore_errors=True)


def smallest(ok, lo=512, hi=256 * 1024, step=64):
    """heapflow.smallest with this bench's finer defaults (64-byte steps from 512 bytes)."""
    from tools.harness.heapflow import smallest as bisect

    return bisect(ok, lo, hi, step)


def bench_mp(name, binary, path):
    out = run_mp(binary, path, True)
    if out is None:
        log(f"{name}: the verify script fails")
        return
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    ts = [int(x) for x in lines["times"].split()]
    base = smallest(lambda h: run_mp(binary, path, False, h, 1) is not None)
    with_v = smallest(lambda h: run_mp(binary, path, True, h, 1) is not None)
    log(
        f"{name}: one verify {statistics.median(ts) / 1000:.1f} ms (median of {len(ts)}, "
        f"first {ts[0] / 1000:.1f} ms); import heap {lines['import']} bytes; smallest heap "
        f"{base} bytes without a verify, {with_v} with one: extra {with_v - base} bytes"
    )
    # as in the agent on a small board: a 12 KiB heap, a collection every 512 bytes allocated
    # (agent/main.py's gc.threshold), which the check's garbage makes run often
    out = run_mp(binary, path, True, 12 * 1024, 7, 512)
    if out is not None:
        ts = [int(x) for x in dict(ln.split(" ", 1) for ln in out.splitlines() if " " in ln)
              ["times"].split()]  # fmt: skip
        log(f"{name}: one verify at a 12 KiB heap with gc.threshold(512) as the agent sets it: "
            f"{statistics.median(ts) / 1000:.1f} ms (median of {len(ts)})")  # fmt: skip


def bench_cpython():
    sys.path.insert(0, str(ROOT))
    from agent import sig

    pk, m, s = bytes.fromhex(PK), bytes.fromhex(MSG), bytes.fromhex(SIG)
    for name, f, n in (("cryptography", sig.verify, 200), ("pure Python", sig._verify, 20)):
        assert f(pk, m, s)  # its imports done before the clock starts
        t = time.perf_counter()
        for _ in range(n):
            assert f(pk, m, s)
        log(f"CPython {sys.version.split()[0]}, {name}: one verify "
            f"{(time.perf_counter() - t) / n * 1000:.3f} ms")  # fmt: skip


def bench_flow(runs):
    """Smallest heap of the full flow with and without pubkeys, per (name, binary, path)."""
    import hashlib

    from exoprov.fleet import signing
    from exoprov.fleet.client import Client

    from tools.harness.faults.realserver import RealServer

    tmp = Path(tempfile.mkdtemp(prefix="sigbench-flow-"))
    srv = RealServer("--activation-limit", "0", workdir=tmp / "srv")
    try:
        vendor = srv.add_vendor("sigbench")
        fleet = Client(srv.url, cik=vendor["cik"], timeout=120)
        fleet.setup("sigmodel")
        _, _, line = signing.generate("bench", tmp)
        name, key = signing.load(tmp / "bench.key")
        data = os.urandom(256 * 1024)
        sha = hashlib.sha256(data).hexdigest()
        sig = signing.sign(name, key, "sigmodel", "firmware-2", "2.0", len(data), sha)
        fleet.publish("sigmodel", "firmware-2", data, "2.0", meta=sig.items())
        n = [0]

        def run(binary, path, heap, keys):
            n[0] += 1
            sn = f"s{n[0]}"
            fleet.setup("sigmodel", [sn], owner=vendor["rid"])
            d = tmp / sn
            d.mkdir()
            cfg = {"server": srv.url, "vendor": vendor["vendor"], "model": "sigmodel",
                   "sn": sn, "board": "unix", "state_dir": str(d / "st"), "once": True,
                   "install_path": str(d / "fw.bin"), "report": False}  # fmt: skip
            if keys:
                cfg["pubkeys"] = [line]
            (d / "c.json").write_text(json.dumps(cfg))
            env = dict(os.environ, MICROPYPATH=path)
            p = subprocess.run(
                [str(binary), "-X", f"heapsize={heap}", "-m", "agent", str(d / "c.json")],
                cwd=d, env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            return p.returncode == 3

        for name, binary, path in runs:
            off = smallest(lambda h, b=binary, p=path: run(b, p, h, False), 4096, 1 << 18, 256)
            on = smallest(lambda h, b=binary, p=path: run(b, p, h, True), 4096, 1 << 18, 256)
            log(f"full flow (256 KiB image), {name}: smallest heap (256-byte steps) {off} bytes "
                f"without pubkeys, {on} with the signature check: {on - off:+d}")  # fmt: skip
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="sigbench", description=__doc__.split("\n")[0])
    ap.add_argument("--frozen", action="append", default=[], metavar="BIN",
                    help="a MicroPython binary with agent/ frozen in (repeatable)")  # fmt: skip
    ap.add_argument("--flow", action="store_true", help="also bisect the full flow's heap")
    a = ap.parse_args(argv)
    code = Path(tempfile.mkdtemp(prefix="sigbench-mpy-"))
    try:
        for pkg in ("agent", "boards"):
            (code / pkg).mkdir()
            for src in sorted((ROOT / pkg).glob("*.py")):
                subprocess.run([str(MPY_CROSS), "-o", str(code / pkg / (src.stem + ".mpy")),
                                f"{pkg}/{src.name}"], cwd=ROOT, check=True)  # fmt: skip
        log(f".mpy: agent/sig.py {(code / 'agent' / 'sig.mpy').stat().st_size} bytes")
        runs = [("unix port (venv, 64-bit), .mpy", MICROPYTHON, f"{code}:.frozen")]
        runs += [(f"{b}, frozen", b, ".frozen") for b in a.frozen]
        for name, binary, path in runs:
            bench_mp(name, binary, path)
        bench_cpython()
        if a.flow:
            bench_flow(runs)
    finally:
        shutil.rmtree(code, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(procs.main(main))
