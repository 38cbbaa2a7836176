"""Smallest `-X heapsize` of the agent's full flow, side by side: printed, never
asserted. Used by `make bench` (tools/harness/bench.py, heap step); also on its own:

    python -m tools.harness.heapflow [--frozen BIN] [--micropython SRC] [--step 256]

The full flow, every start under the same heap: activation, reports, 1 MiB downloaded in Range
requests and its sha256 and Ed25519 signature verified (`pubkeys` set), apply (board reset);
a second start that confirms; the CIK regenerated; a third start that activates again.

Ways, each bisected (STEP bytes):
- the agent compiled to .mpy under the venv's 64-bit unix port (the code sits in the heap);
- the agent frozen into a 32-bit unix-port binary (`exoprov build --firmware unix --bits 32`,
  the way a board runs it; the code stays outside the heap), with and without `pubkeys`;
- the agent from its .py sources under the venv's unix port (compiled at import, as after a
  `mip` install of the sources);
- the .mpy files and the sources under the 32-bit binary (frozen modules off its path): what
  a 32-bit board needs after a `mip` install of either;
- micropython-lib `requests` frozen into the same 32-bit binary, doing only the download (4 KiB
  Range requests) and the sha256 of the same 1 MiB (the device activated beforehand).

Without --frozen it builds the 32-bit binary from --micropython (default: the tree
EXOPROV_MICROPYTHON names), about a minute; `requests` is frozen in beside the agent when
EXOPROV_MPLIB names a micropython-lib checkout. Ways whose tree is not given are skipped, each
with one line saying so; the 64-bit ways need neither.
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

import requests
from exoprov.fleet.client import Client

from tools.harness import procs
from tools.harness.faults.realserver import RealServer
from tools.harness.firmware import MPLIB_ENV, micropython_tree, mplib_requests, skip_line
from tools.harness.mpunix import MICROPYTHON, MPY_CROSS

ROOT = Path(__file__).resolve().parents[2]
MODEL = "heapmodel"
CID = "firmware-heap"
MIB = 1 << 20
RC_APPLIED = 3  # board.reset() after apply

# micropython-lib requests: only the download (4 KiB Range requests) and the sha256
REQUESTS_DOWNLOAD = r"""
import sys, hashlib
import requests
from binascii import hexlify
url, cik, size, sha = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
d = hashlib.sha256()
off = 0
while off < size:
    end = min(off + 4096, size) - 1
    r = requests.get(url, headers={"X-Exosite-CIK": cik, "Range": "bytes=%d-%d" % (off, end)})
    if r.status_code != 206:
        raise SystemExit("status %d" % r.status_code)
    body = r.content
    r.close()
    d.update(body)
    off += len(body)
    body = None
if hexlify(d.digest()).decode() != sha:
    raise SystemExit("sha256 mismatch")
print("requests-download ok")
"""


def log(*a):
    print("heapflow:", *a, flush=True)


def smallest(ok, lo=2048, hi=256 * 1024, step=256):
    """Smallest heap (bytes, a multiple of step) at which ok(heap) passes; None if not at hi."""
    if not ok(hi):
        return None
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


class HeapFlow:
    """One server, one model, one signed 1 MiB content; fresh serial numbers per run."""

    def __init__(self, size=MIB):
        from exoprov.fleet import signing

        self.tmp = Path(tempfile.mkdtemp(prefix="heapflow-"))
        self.srv = RealServer("--activation-limit", "0", workdir=self.tmp / "srv")
        self.vendor = self.srv.add_vendor("heapvendor")
        self.fleet = Client(self.srv.url, cik=self.vendor["cik"], timeout=600)
        self.fleet.setup(MODEL)
        _, _, self.publine = signing.generate("heap", self.tmp)
        name, key = signing.load(self.tmp / "heap.key")
        data = os.urandom(size)
        self.size, self.sha = size, hashlib.sha256(data).hexdigest()
        sig = signing.sign(name, key, MODEL, CID, "2.0", size, self.sha)
        self.fleet.publish(MODEL, CID, data, "2.0", meta=sig.items(), sha256=self.sha)
        self.n = 0
        self.code = self.tmp / "mpy"
        for pkg in ("agent", "boards"):
            (self.code / pkg).mkdir(parents=True)
            for src in sorted((ROOT / pkg).glob("*.py")):
                out = self.code / pkg / (src.stem + ".mpy")
                subprocess.run([str(MPY_CROSS), "-o", str(out), f"{pkg}/{src.name}"],
                               cwd=ROOT, check=True, timeout=60)  # fmt: skip

    def close(self):
        self.fleet.close()
        self.srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def new_sn(self):
        self.n += 1
        sn = f"heap{self.n:04d}"
        self.fleet.setup(MODEL, [sn], owner=self.vendor["rid"])
        return sn

    def agent_ok(self, binary, micropypath, heap, pubkeys=True):
        """The full flow (three starts) at `heap` bytes. micropypath None: frozen agent."""
        sn = self.new_sn()
        d = Path(tempfile.mkdtemp(dir=self.tmp))
        cfg = {"server": self.srv.url, "vendor": self.vendor["vendor"], "model": MODEL,
               "sn": sn, "board": "unix", "state_dir": str(d / "state"), "once": True,
               "install_path": str(d / "installed.bin"), "version": "1.0"}  # fmt: skip
        if pubkeys:
            cfg["pubkeys"] = [self.publine]
        (d / "config.json").write_text(json.dumps(cfg))
        env = dict(os.environ)
        env.pop("MICROPYPATH", None)
        if micropypath:
            env["MICROPYPATH"] = micropypath
        cmd = [str(binary), "-X", f"heapsize={heap}", "-m", "agent", str(d / "config.json")]

        def start():
            p = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True, timeout=300)
            return p.returncode

        try:
            if start() != RC_APPLIED or start() != 0:
                return False
            self.fleet.sn_regenerate(MODEL, sn)  # a new CIK: the stored one gets 401
            if start() != 0:
                return False
            st = json.loads((d / "state" / "state.json").read_bytes())
            return st["n"]["act"] == 2 and st["inst"]["ver"] == "2.0"
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def requests_ok(self, binary, heap):
        sn = self.new_sn()
        form = {"vendor": self.vendor["vendor"], "model": MODEL, "sn": sn}
        r = requests.post(self.srv.url + "/provision/activate", data=form, timeout=30)
        r.raise_for_status()
        cik = r.text.strip()
        url = f"{self.srv.url}/provision/download?vendor={self.vendor['vendor']}&model={MODEL}"
        script = self.tmp / "requests_download.py"
        script.write_text(REQUESTS_DOWNLOAD)
        env = dict(os.environ)
        env.pop("MICROPYPATH", None)
        cmd = [str(binary), "-X", f"heapsize={heap}", str(script), f"{url}&id={CID}", cik,
               str(self.size), self.sha]  # fmt: skip
        p = subprocess.run(cmd, cwd=self.tmp, env=env, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
        return p.returncode == 0 and "requests-download ok" in p.stdout


def build_frozen(src, out, requests_pkg=None):
    """The 32-bit binary with the agent (and micropython-lib requests, if given) frozen in."""
    from exoprov.build import build_firmware

    extra = [requests_pkg] if requests_pkg else []
    return build_firmware("unix", src, 32, "unix", out, say=lambda m: log(m), extra=extra)


def _has_requests(binary):
    """Whether a given binary has micropython-lib requests frozen in."""
    env = dict(os.environ)
    env.pop("MICROPYPATH", None)
    p = subprocess.run([str(binary), "-c", "import requests"], env=env, capture_output=True,
                       cwd=tempfile.gettempdir(), timeout=30)  # fmt: skip
    return p.returncode == 0


def run(frozen=None, src=None, step=256, log=log):
    """Bisect every way; -> {name: smallest heap in bytes or None}."""
    tmp = Path(tempfile.mkdtemp(prefix="heapflow-fw-"))
    hf = HeapFlow()
    out = {}
    try:
        reqs = mplib_requests()
        src = src or micropython_tree()
        if frozen is None and src is not None:
            t = time.monotonic()
            frozen = build_frozen(src, tmp / "mp32", reqs)
            log(f"built the 32-bit firmware (agent{' + requests' if reqs else ''} frozen) in "
                f"{time.monotonic() - t:.0f} s")  # fmt: skip
        elif frozen is not None:
            reqs = _has_requests(frozen)
        ways = [
            ("64-bit .mpy, signature check on",
             lambda h: hf.agent_ok(MICROPYTHON, f"{hf.code}:.frozen", h)),
            ("32-bit frozen, signature check on", lambda h: hf.agent_ok(frozen, None, h)),
            ("from source .py (64-bit), signature check on",
             lambda h: hf.agent_ok(MICROPYTHON, f"{ROOT}:.frozen", h)),
            ("32-bit frozen, no pubkeys", lambda h: hf.agent_ok(frozen, None, h, False)),
            # the same binary without .frozen on its path: the agent as `mip` installs it
            ("32-bit .mpy (mip install of an exoprov build --mip), signature check on",
             lambda h: hf.agent_ok(frozen, str(hf.code), h)),
            ("32-bit from source .py (mip install of package.json), signature check on",
             lambda h: hf.agent_ok(frozen, str(ROOT), h)),
            ("requests, 32-bit frozen, download + sha256 only",
             lambda h: hf.requests_ok(frozen, h)),
        ]  # fmt: skip
        if frozen is None:
            log("skipped: " + skip_line("each 32-bit way", "make bench"))
            ways = [w for w in ways if not w[0].startswith(("32-bit", "requests"))]
        elif not reqs:
            why = skip_line("the requests baseline", "make bench", MPLIB_ENV, "micropython-lib")
            log("skipped: " + why)
            ways = [w for w in ways if not w[0].startswith("requests")]
        for name, ok in ways:
            t = time.monotonic()
            got = out[name] = smallest(ok, step=step)
            fig = f"{got} bytes ({got / 1024:.2f} KiB)" if got else "fails at 256 KiB"
            log(f"smallest heap, {name}: {fig} [{time.monotonic() - t:.0f} s]")
        short = {n: n.replace(", signature check on", " + sig").split(" (")[0] for n in out}
        log("side by side (full flow, 1 MiB): " + " | ".join(
            f"{short[n]} {v / 1024:.2f} KiB" if v else f"{short[n]} -"
            for n, v in out.items()))  # fmt: skip
        return out
    finally:
        hf.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="heapflow", description=__doc__.split("\n")[0])
    ap.add_argument("--frozen", help="a 32-bit binary with the agent (and requests) frozen in")
    ap.add_argument("--micropython", help="MicroPython source tree or tarball to build it from "
                    "(default: $EXOPROV_MICROPYTHON)")  # fmt: skip
    ap.add_argument("--step", type=int, default=256, help="bisection step in bytes")
    a = ap.parse_args(argv)
    run(a.frozen, a.micropython, a.step)
    return 0


if __name__ == "__main__":
    sys.exit(procs.main(main))
