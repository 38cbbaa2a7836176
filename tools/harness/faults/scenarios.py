"""Network-fault scenarios: each must end in a typed error, a retry with backoff, and never a
wrong image applied.

`python -m tools.harness.faults.scenarios [--interp cpython|micropython|both] [NAME...]` runs the
agent (faultlaunch.py beside this file: its real main, not in `once` mode, sleeps recorded) against
faultserver.py scripted with one fault per scenario, and prints
`N/N fault scenarios handled`. A scenario is handled when:
- "applied" (also "burst", "restart", see SCENARIOS): the agent logged a retry after a
  typed error (`retrying in ... after <Error>`), waited a backoff of at least a second before
  it, then applied exactly the content the server holds (sha256 of the installed image), and
  each fault cost at most the one Range request it hit (asked again, not the whole image);
- "refetch": applied as above after a sha256 mismatch, the image fetched again from byte 0;
- "refused": the agent refused the content and the old image is still installed.
Slow answers (a stall, a trickle slower than the read timeout would notice) must be cut by the
agent's per-exchange deadline: the agent's `timeout` is 2 s here, so a trickled 64 KiB answer
that would take minutes ends in seconds; the time to the retry is printed. A scenario may also
set (keys starting with `_` in its script): `_config`, agent configuration for it alone;
`_cut`, the most seconds from the slow request to the next one (the deadline or the
throughput floor must cut it by then, not a read timeout later); `_log`, text the agent's
log must hold (which bound cut it). The floor scenarios run with `timeout` 30 s, so only
the agent's `min_rate` (512 B/s by default) can cut a 300 B/s trickle within seconds.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.harness import procs
from tools.harness.faults.faultserver import FaultServer, image
from tools.harness.mpunix import MICROPYTHON

ROOT = Path(__file__).resolve().parents[3]
SIZE = 256 * 1024
CHUNK = 65536
TIMEOUT_S = 2
SN = "sn-fault-1"
FIRST = f"bytes 0-{CHUNK - 1}/{SIZE}"


def _fw(s):
    """s with ASCII digits replaced by FULLWIDTH digits (int() on a str accepts them)."""
    return "".join(chr(0xFF10 + ord(c) - 48) if c.isdigit() else c for c in s)


_BAD_CR = [
    ("bytes ", "bytes "),
    ("abc-def", "bytes abc-def/x"),
    ("only-start", "bytes 5"),
    ("no-unit", f"0-{CHUNK - 1}/{SIZE}"),
    ("tiny-no-unit", "5-6/2"),
    ("two-ranges", "bytes 5-6/20 7-8/20"),
    ("asked-range-then-another", f"bytes 0-{CHUNK - 1}/{SIZE} 7-8/20"),
    ("three-numbers", "bytes 100-200-300/400"),
    ("star-negative", "bytes */-1"),
    ("plus-two", "+2"),
    ("plus-signs", f"bytes +0-+{CHUNK - 1}/+{SIZE}"),
    ("unicode-digits", _fw(FIRST)),
    ("empty", ""),
    ("nul", FIRST + "\x00"),
]

# name, {kind: [actions]}, expected outcome ("applied"; "refused"; "burst": applied after a
# burst of failures of one request, during which the backoff must double; "restart": applied
# after the download started again from byte 0).
# Faults that strike before any byte of the answer arrived are scripted twice: the agent
# silently retries a GET once on a fresh connection when a kept-alive one fails that way.
SCENARIOS = [
    ("drop-mid-body", {"blob": [("drop", 1000)]}, "applied"),
    ("drop-second-chunk", {"blob": ["ok", ("drop", 30000)]}, "applied"),
    ("truncate", {"blob": [("truncate", 5000)]}, "applied"),
    ("stall-first-byte", {"blob": [("stall", 60)] * 2, "_cut": TIMEOUT_S + 0.7,
                          "_log": "exchange deadline passed"}, "applied"),
    ("stall-activate", {"activate": [("stall", 60)]}, "applied"),
    ("trickle-200Bps", {"blob": [("trickle", 200)] * 2}, "applied"),
    ("trickle-under-read-timeout", {"blob": [("trickle", 0.7)] * 2, "_cut": TIMEOUT_S + 0.7,
                                    "_log": "exchange deadline passed"}, "applied"),
    ("trickle-below-floor", {"blob": [("trickle", 300)], "_config": {"timeout": 30},
                             "_cut": 10, "_log": "body slower than 512 B/s"}, "applied"),
    ("trickle-below-floor-twice", {"blob": [("trickle", 100)] * 2, "_cut": 10,
                                   "_config": {"timeout": 30, "min_rate": 1000},
                                   "_log": "body slower than 1000 B/s"}, "burst"),
    ("trickle-floor-off-deadline", {"blob": [("trickle", 300)], "_cut": 4 + 0.7,
                                    "_config": {"timeout": 4, "min_rate": 0},
                                    "_log": "exchange deadline passed"}, "applied"),
    ("200-to-range", {"blob": ["range200"]}, "applied"),
    ("cr-wrong-start", {"blob": [("cr_start", 4096)]}, "applied"),
    ("cr-wrong-start-later", {"blob": ["ok", ("cr_start", -4096)]}, "applied"),
    ("cr-wrong-total", {"blob": [("cr_total", SIZE + 1)]}, "applied"),
    ("cr-total-smaller", {"blob": [("cr_total", SIZE - 1)]}, "applied"),
    *[(f"cr-malformed-{n}", {"blob": [("cr_raw", v.encode())]}, "applied") for n, v in _BAD_CR],
    ("more-bytes-than-asked", {"blob": [("more", 100)]}, "applied"),
    # reports off: a progress report (a POST, always on a fresh connection) would drop the
    # connection holding the stray bytes before the next range could trip over them
    ("stray-bytes-after-body", {"blob": [("overrun", 100)], "_config": {"report": False}},
     "applied"),
    ("5xx-burst-download", {"blob": [("status", 503)] * 3}, "burst"),
    ("5xx-burst-activate", {"activate": [("status", 500), ("status", 503)]}, "burst"),
    ("5xx-list-and-info", {"list": [("status", 502)], "info": [("status", 504)]}, "applied"),
    ("content-replaced-mid-download", {"blob": ["ok", ("replace", 5)]}, "restart"),
    ("garbage-list-answer", {"list": [("raw", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nfi")]},
     "applied"),
    ("tls-bytes-on-info", {"info": [("raw", b"\x15\x03\x03\x00\x02\x02\x28")] * 2}, "applied"),
    # a flipped byte (a proxy, the line): the whole image is fetched again from zero, once here
    ("corrupt-chunk", {"blob": ["ok", ("corrupt", 10)]}, "refetch"),
    # corrupt on every fetch: refused after verify_retries refetches
    ("corrupt-every-fetch", {"blob": [("corrupt", 10), "ok", "ok", "ok"] * 2,
                             "_config": {"verify_retries": 1}}, "refused"),
]  # fmt: skip


class Result:
    def __init__(self, name, interp):
        self.name, self.interp = name, interp
        self.problem = None
        self.error = None  # the typed error the agent retried after
        self.sleeps = []
        self.cut_s = None  # faulty request -> next request (slow-answer scenarios)
        self.rc = None

    def __str__(self):
        head = f"{self.interp:<11} {self.name:<34}"
        if self.problem:
            return f"{head} FAIL: {self.problem}"
        bits = [f"error {self.error}"] if self.error else []
        if self.sleeps:
            bits.append("backoff " + ",".join(f"{s / 1000:.1f}" for s in self.sleeps[:3]) + " s")
        if self.cut_s is not None:
            bits.append(f"cut after {self.cut_s:.1f} s")
        return f"{head} ok: " + "; ".join(bits)


def run_one(name, script, expect, interp):
    res = Result(name, interp)
    opts = {k: v for k, v in script.items() if k.startswith("_")}
    script = {k: v for k, v in script.items() if not k.startswith("_")}
    d = Path(tempfile.mkdtemp(prefix="faults-"))
    srv = FaultServer()
    try:
        srv.enable(SN)
        old = b"\xe9" + image(SIZE - 1, seed=11)
        new = srv.add_content("firmware-2", b"\xe9" + image(SIZE - 1, seed=12), version=2)
        for kind, actions in script.items():
            srv.script(kind, actions)
        (d / "installed.bin").write_bytes(old)
        cfg = {
            "server": srv.url, "vendor": "vend", "model": "mod", "sn": SN,
            "board": "linux" if interp == "cpython" else "unix",
            "state_dir": str(d / "state"), "install_path": str(d / "installed.bin"),
            "version": "1", "timeout": TIMEOUT_S, "poll": 3600, "retry": 900,
        }  # fmt: skip
        cfg.update(opts.get("_config", {}))
        (d / "config.json").write_text(json.dumps(cfg))
        exe = sys.executable if interp == "cpython" else MICROPYTHON
        cmd = [
            exe,
            "tools/harness/faults/faultlaunch.py",
            str(d / "config.json"),
            str(d / "sleeps"),
        ]
        cmd.append("8")
        try:
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=90)
        except subprocess.TimeoutExpired:
            res.problem = "the agent hung (no result in 90 s)"
            return res
        res.rc = p.returncode
        out = p.stderr + p.stdout
        try:
            res.sleeps = [int(x) for x in (d / "sleeps").read_text().split()]
        except OSError:
            res.sleeps = []
        for line in out.splitlines():
            m = re.search(r"retrying in .* after (\w+)", line)
            if m:
                res.error = m.group(1)
                break
        res.out = out
        installed = hashlib.sha256((d / "installed.bin").read_bytes()).hexdigest()
        old_sha = hashlib.sha256(old).hexdigest()
        res.cut_s = _cut_time(srv)
        res.problem = _judge(expect, res, out, installed, old_sha, new, srv)
        if not res.problem and opts.get("_log") and opts["_log"] not in out:
            res.problem = f"the log does not say {opts['_log']!r}"
        if not res.problem and opts.get("_cut") and not (res.cut_s or 99) <= opts["_cut"]:
            res.problem = f"slow answer cut after {res.cut_s} s, not within {opts['_cut']} s"
        return res
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def _cut_time(srv):
    for i, r in enumerate(srv.log[:-1]):
        if isinstance(r.action, tuple) and r.action[0] in ("stall", "trickle"):
            return srv.log[i + 1].t - r.t
    return None


def _judge(expect, res, out, installed, old_sha, new, srv):
    tail = " | ".join(out.strip().splitlines()[-3:])
    if installed not in (old_sha, new.sha256):
        return "a wrong image was installed"
    if expect == "refused":
        if installed != old_sha:
            return "corrupt content was applied"
        if "refused" not in out:
            return f"no refusal logged (exit {res.rc}: {tail})"
        return None
    if res.rc != 3:
        return f"agent exit {res.rc}, not an applied update: {tail}"
    if installed != new.sha256:
        return "the installed image is not the server's content"
    if srv.pending():
        return f"the fault was never hit ({srv.pending()} scripted answers left)"
    if not res.error:
        return "no retry after a typed error was logged"
    if not res.sleeps or res.sleeps[0] < 1000:
        return f"no backoff before the retry (sleeps {res.sleeps})"
    if expect == "refetch":
        starts = [r for r in srv.requests("blob") if (r.range or "").startswith("bytes=0-")]
        if len(starts) < 2 or "sha256 mismatch" not in out:
            return "the image was not fetched again from zero after a sha256 mismatch"
    if expect == "restart":
        blobs = srv.requests("blob")
        hit = [i for i, r in enumerate(blobs) if isinstance(r.action, tuple)]
        later = blobs[hit[0] + 1 :] if hit else []
        if not later or not (later[0].range or "").startswith("bytes=0-"):
            return "the download did not start again from byte 0 after the content changed"
    if expect == "burst":
        # jittered in [ms/2, ms] of 2 s doubling: the i-th wait is at least 2**i seconds
        for i, ms in enumerate(res.sleeps):
            if ms < 1000 * 2**i:
                return f"backoff does not double across the burst (sleeps {res.sleeps})"
    if expect not in ("restart", "refetch"):
        blobs = srv.requests("blob")
        faults = sum(1 for r in blobs if r.action != "ok")
        asked = sum(_span(r.range) for r in blobs)
        if asked - SIZE > faults * CHUNK:
            return f"{asked - SIZE} bytes asked again for {faults} faulty answers"
    return None


def _span(rng):
    if not rng or not rng.startswith("bytes="):
        return SIZE
    a, _, b = rng[6:].partition("-")
    return int(b) - int(a) + 1 if a and b else SIZE


def interps(which):
    return ["cpython", "micropython"] if which == "both" else [which]


def run(which="both", names=None, log=print):
    results = []
    for interp in interps(which):
        for name, script, expect in SCENARIOS:
            if names and name not in names:
                continue
            r = run_one(name, script, expect, interp)
            log(str(r))
            results.append(r)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(prog="faults", description=__doc__.split("\n")[0])
    ap.add_argument("--interp", choices=("cpython", "micropython", "both"), default="both")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    results = run(args.interp, args.names)
    ok = sum(1 for r in results if not r.problem)
    print(f"faults: {len(results)} runs in {time.monotonic() - t0:.0f} s")
    print(f"{ok}/{len(results)} fault scenarios handled")
    return 0 if ok == len(results) and results else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(procs.main(main))
