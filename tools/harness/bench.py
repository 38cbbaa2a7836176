"""Benchmarks: figures printed, never asserted.

`python -m tools.harness.bench [--size-mib 32] [--heap 64] [--only NAME...]` measures, in one run:

- agent: download throughput of the agent under the MicroPython unix port (boards/unix.py,
  its defaults: 64 KiB Range requests through a 1 KiB buffer) fetching a SIZE image from the
  project's server, against micropython-lib `requests` (frozen into the same `micropython`)
  doing 4 KiB Range requests under the same `-X heapsize`, and against `curl` fetching the
  same content from the same server (one GET); ratios printed;
- heap: the smallest `-X heapsize` (bisected, 1 KiB steps) at which the full flow (activate,
  list, info, 1 MiB download in Range requests, sha256 verified, apply) passes, for the agent
  compiled to .mpy and for the `requests` baseline; and, since the agent's .mpy code is loaded
  into the GC heap on the unix port while `requests` is frozen (its bytecode outside the
  heap), the heap each one's import takes (gc.mem_free() before and after importing the
  modules resident during the flow) and the "data heap" = smallest heap - import heap, the
  figure that compares like with like;
  Then tools/harness/heapflow.py: the full flow (signed 1 MiB update, confirm, re-activation)
  bisected in 256-byte steps, side by side: 64-bit .mpy, 32-bit frozen firmware (built from
  the tree EXOPROV_MICROPYTHON names), from source, and `requests` frozen into the same 32-bit
  binary (from the micropython-lib checkout EXOPROV_MPLIB names); ways whose tree is not given
  are skipped with one line each;
- mpy: `.mpy` size of the agent, and of the agent with each board module;
- server: requests per second for 50 keep-alive clients (wrk) fetching 64 KiB Range
  requests of one blob, side by side: nginx serving the blob as a static file (HTTP and
  HTTPS), `exoprov server`, `exoprov server --workers 2`, and the shipped production
  arrangement (deploy/nginx: nginx terminating TLS before 2 instances on SQLite, also with 2
  workers each, also with its grants not kept, and on PostgreSQL), with ratios to nginx;
  then whole-blob throughput (50 curl clients) against nginx.
  nginx and wrk are installed with apt-get when missing (as root), else the step stops
  saying so;
- rss: the server's RSS high-water mark (VmHWM) around a 256 MiB upload and download, on
  SQLite (blob files) and on PostgreSQL (blob chunk rows, an embedded cluster).
"""

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from exoprov.fleet.client import Client

from tools.harness import procs
from tools.harness.faults.realserver import RealServer
from tools.harness.mpunix import MICROPYTHON, MPY_CROSS

ROOT = Path(__file__).resolve().parents[2]
MODEL = "benchmodel"
MIB = 1 << 20

# The requests baseline, run by MicroPython: the same flow as the agent's (activate, list,
# info, Range download into a file, sha256, rename into place), written the obvious way
# with micropython-lib `requests`.
REQUESTS_FLOW = r"""
import sys, hashlib, os, time
import requests
from binascii import hexlify
url, vendor, model, sn, out, chunk = sys.argv[1:7]
chunk = int(chunk)
q = "vendor=%s&model=%s" % (vendor, model)
r = requests.post(url + "/provision/activate", data=q + "&sn=" + sn,
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
if r.status_code != 200:
    raise SystemExit("activate: %d" % r.status_code)
cik = r.text.strip()
r.close()
h = {"X-Exosite-CIK": cik}
r = requests.get(url + "/provision/download?" + q, headers=h)
cid = [x for x in r.text.split() if x.startswith("firmware")][0]
r.close()
r = requests.get(url + "/provision/download?%s&id=%s&info=true" % (q, cid), headers=h)
ct, size, ts, meta = r.text.strip().split(",", 3)
r.close()
size = int(size)
sha = [p[7:] for p in meta.split("&") if p.startswith("sha256=")][0]
t0 = time.ticks_ms()
d = hashlib.sha256()
with open(out + ".new", "wb") as f:
    off = 0
    while off < size:
        last = min(off + chunk, size) - 1
        h["Range"] = "bytes=%d-%d" % (off, last)
        r = requests.get(url + "/provision/download?%s&id=%s" % (q, cid), headers=h)
        if r.status_code != 206:
            raise SystemExit("range: %d" % r.status_code)
        body = r.content
        r.close()
        if len(body) != last - off + 1:
            raise SystemExit("short range")
        f.write(body)
        d.update(body)
        off += len(body)
        body = None
if hexlify(d.digest()).decode() != sha:
    raise SystemExit("sha256 mismatch")
os.rename(out + ".new", out)
print("requests-flow ok", size, time.ticks_diff(time.ticks_ms(), t0))
"""


def log(*a):
    print("bench:", *a, flush=True)


def fmt_rate(nbytes, secs):
    return f"{nbytes / MIB / secs:.2f} MiB/s" if secs > 0 else "inf"


class Bench:
    def __init__(self, size, db=None):
        self.size = size
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-"))
        self.srv = RealServer(
            "--activation-limit", "0", "--max-content-bytes", str(300 * MIB),
            workdir=self.tmp / "srv", db=db,
        )  # fmt: skip
        self.vendor = self.srv.add_vendor("benchvendor")
        self.fleet = Client(self.srv.url, cik=self.vendor["cik"], timeout=600)
        self.fleet.setup(MODEL)
        self._sn = 0
        self.cid = None
        # the agent runs as deployed: compiled to .mpy (requests is frozen, i.e. precompiled)
        self.code = self.tmp / "mpy"
        self.sizes = compile_mpy(self.code)

    def close(self):
        self.fleet.close()
        self.srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def activate(self, sn):
        form = {"vendor": self.vendor["vendor"], "model": MODEL, "sn": sn}
        r = requests.post(self.srv.url + "/provision/activate", data=form, timeout=30)
        r.raise_for_status()
        return r.text.strip()

    def blob_url(self):
        q = f"vendor={self.vendor['vendor']}&model={MODEL}&id={self.cid}"
        return f"{self.srv.url}/provision/download?{q}"

    def new_sn(self):
        self._sn += 1
        sn = f"bench{self._sn:04d}"
        self.fleet.setup(MODEL, [sn], owner=self.vendor["rid"])
        return sn

    def set_image(self, size, tag):
        """The one firmware content of the model: `size` random bytes. -> (path, sha256)."""
        path = self.tmp / f"image-{tag}.bin"
        h = hashlib.sha256()
        with open(path, "wb") as f:
            left = size
            while left:
                block = os.urandom(min(MIB, left))
                f.write(block)
                h.update(block)
                left -= len(block)
        # one content at a time, under a new id: meta (the digest) is set when it is created
        if self.cid:
            self.fleet.content_delete(MODEL, self.cid)
        self.cid = f"firmware-bench{tag}"
        self.fleet.publish(MODEL, self.cid, path, version=tag, sha256=h.hexdigest())
        return path, h.hexdigest()

    # -- agent ---------------------------------------------------------------------------
    def agent_run(self, heap_k, timeout=600, **extra):
        """One full flow of the agent under MicroPython. -> (ok, seconds downloading, log)."""
        d = Path(tempfile.mkdtemp(dir=self.tmp))
        cfg = {
            "server": self.srv.url, "vendor": self.vendor["vendor"], "model": MODEL,
            "sn": self.new_sn(), "board": "unix", "state_dir": str(d / "state"),
            "install_path": str(d / "installed.bin"), "once": True, "report": False,
        }  # fmt: skip
        cfg.update(extra)
        (d / "config.json").write_text(json.dumps(cfg))
        cmd = [str(MICROPYTHON), "-X", f"heapsize={heap_k}K", "-m", "agent"]
        cmd.append(str(d / "config.json"))
        env = dict(os.environ, MICROPYPATH=f"{self.code}:.frozen")
        t_start = t_end = None
        lines = []
        p = subprocess.Popen(cmd, cwd=d, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)  # fmt: skip
        try:
            for line in p.stdout:
                now = time.monotonic()
                lines.append(line.rstrip())
                if " downloading " in line:
                    t_start = now
                elif " applied " in line:
                    t_end = now
            p.wait(timeout)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        ok = p.returncode == 3 and t_end is not None  # applied, then board.reset()
        shutil.rmtree(d, ignore_errors=True)
        secs = (t_end - t_start) if ok and t_start else None
        return ok, secs, lines

    def requests_run(self, heap_k, chunk=4096, timeout=900):
        d = Path(tempfile.mkdtemp(dir=self.tmp))
        script = d / "flow.py"
        script.write_text(REQUESTS_FLOW)
        args = [self.srv.url, self.vendor["vendor"], MODEL, self.new_sn(), str(d / "out.bin")]
        cmd = [str(MICROPYTHON), "-X", f"heapsize={heap_k}K", str(script), *args, str(chunk)]
        secs = None
        try:
            p = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=timeout)
            ok = p.returncode == 0 and "requests-flow ok" in p.stdout
            out = p.stdout + p.stderr
            if ok:  # the download phase only, as for the agent: Range loop, verify, rename
                secs = int(p.stdout.split("requests-flow ok", 1)[1].split()[1]) / 1000
        except subprocess.TimeoutExpired:
            ok, out = False, "timeout"
        shutil.rmtree(d, ignore_errors=True)
        return ok, secs, out

    def curl_run(self):
        curl = shutil.which("curl")
        if not curl:
            return None
        cik = self.activate(self.new_sn())
        url = self.blob_url()
        out = self.tmp / "curl.bin"
        t0 = time.monotonic()
        subprocess.run([curl, "-sS", "-f", "-o", str(out), "-H", f"X-Exosite-CIK: {cik}", url],
                       check=True, timeout=600)  # fmt: skip
        secs = time.monotonic() - t0
        size = out.stat().st_size
        out.unlink()
        return size, secs


def bench_download(b, heap_k):
    _path, _sha = b.set_image(b.size, "1")
    mib = b.size / MIB
    ok, secs, lines = b.agent_run(heap_k)
    if not ok:
        log(f"agent: FAILED at heap {heap_k}K: {' | '.join(lines[-3:])}")
        return
    agent = b.size / secs
    log(f"agent (MicroPython unix port, heap {heap_k}K, 64 KiB Range requests, 1 KiB buffer): "
        f"{mib:.0f} MiB in {secs:.2f} s = {fmt_rate(b.size, secs)}")  # fmt: skip
    ok4, secs4, _lines = b.agent_run(heap_k, chunk=4096)
    ok, rsecs, out = b.requests_run(heap_k)
    if ok:
        log(f"requests (micropython-lib, frozen, heap {heap_k}K, 4 KiB Range requests): "
            f"{mib:.0f} MiB in {rsecs:.2f} s = {fmt_rate(b.size, rsecs)}; "
            f"agent/requests = {agent / (b.size / rsecs):.2f}x")  # fmt: skip
        if ok4:
            log(f"agent with 4 KiB Range requests too (config chunk=4096): {mib:.0f} MiB in "
                f"{secs4:.2f} s = {fmt_rate(b.size, secs4)}; same-size-request ratio "
                f"agent/requests = {rsecs / secs4:.2f}x")  # fmt: skip
    else:
        log(f"requests: FAILED at heap {heap_k}K: {out.strip().splitlines()[-1:]}")
    cr = b.curl_run()
    if cr is None:
        log("curl: not installed, no curl figure (nothing is installed by this benchmark)")
    else:
        size, csecs = cr
        log(f"curl (one GET of the whole content): {size / MIB:.0f} MiB in {csecs:.2f} s = "
            f"{fmt_rate(size, csecs)}; agent/curl = {agent / (size / csecs):.2f}x")  # fmt: skip


def compile_mpy(dest):
    """agent/*.py and boards/*.py -> dest/{agent,boards}/*.mpy. -> {relative path: size}."""
    sizes = {}
    for pkg in ("agent", "boards"):
        (dest / pkg).mkdir(parents=True, exist_ok=True)
        for src in sorted((ROOT / pkg).glob("*.py")):
            rel = f"{pkg}/{src.stem}.mpy"
            subprocess.run([str(MPY_CROSS), "-o", str(dest / rel), f"{pkg}/{src.name}"],
                           cwd=ROOT, check=True, timeout=60)  # fmt: skip
            sizes[rel] = (dest / rel).stat().st_size
    return sizes


def bench_mpy(b):
    sizes = b.sizes
    agent = sum(v for k, v in sizes.items() if k.startswith("agent/"))
    log(f".mpy: agent/ {agent} bytes ({len([k for k in sizes if k.startswith('agent/')])} "
        "modules: " + ", ".join(f"{Path(k).stem} {v}" for k, v in sizes.items()
                                  if k.startswith("agent/")) + ")")  # fmt: skip
    init = sizes.get("boards/__init__.mpy", 0)
    boards = {"esp32": ["esp32"], "rp2": ["rp2", "rp2_app"], "linux": ["linux"],
              "unix": ["unix"]}  # fmt: skip
    parts = []
    for name, mods in boards.items():
        got = [sizes.get(f"boards/{m}.mpy") for m in mods]
        if None in got:
            continue
        parts.append(f"{name} {agent + init + sum(got)}")
    log(".mpy: agent + board: " + ", ".join(parts) + " bytes")


def bisect_heap(run, lo=4, hi=256):
    """Smallest heap (KiB) at which run(heap_k) passes, or None if it fails at hi."""
    from tools.harness.heapflow import smallest

    return smallest(run, lo, hi, step=1)


# What stays imported while the agent runs its flow (agent.config is dropped after startup).
RESIDENT = ("agent.compat agent.http agent.api agent.store agent.updater agent.fsm agent.main "
            "boards.unix").split()  # fmt: skip


def import_heap(modules, micropypath=None):
    """Bytes of GC heap that importing `modules` takes in the MicroPython unix port: module
    objects, globals, function and class objects, and for .mpy files (not for frozen modules)
    the bytecode itself."""
    script = (
        "import gc\ngc.collect()\na = gc.mem_free()\n"
        "for m in %r:\n    __import__(m)\n"
        "gc.collect()\nprint('import-heap', a - gc.mem_free())\n" % (list(modules),)
    )
    env = dict(os.environ)
    if micropypath:
        env["MICROPYPATH"] = micropypath
    p = subprocess.run([str(MICROPYTHON), "-X", "heapsize=256K", "-c", script], env=env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    if p.returncode or "import-heap" not in p.stdout:
        raise RuntimeError("import heap: " + (p.stderr or p.stdout).strip()[-300:])
    return int(p.stdout.split("import-heap", 1)[1].split()[0])


def bench_heap(b):
    b.set_image(MIB, "2")
    agent = bisect_heap(lambda k: b.agent_run(k, timeout=300)[0])
    log(
        f"heap: the agent (.mpy) completes the full flow with a 1 MiB image at "
        f"-X heapsize={agent}K and not below"
        if agent
        else "heap: the agent fails at 256K"
    )
    req = bisect_heap(lambda k: b.requests_run(k, timeout=300)[0])
    log(f"heap: the requests baseline (4 KiB Range requests) needs -X heapsize={req}K"
        if req else "heap: the requests baseline fails at 256K")  # fmt: skip
    code = import_heap(RESIDENT, f"{b.code}:.frozen")
    rcode = import_heap(["requests", "hashlib", "binascii"])
    kib = 1024
    log(f"heap: code loaded into the heap: the agent's resident .mpy modules {code / kib:.1f} "
        f"KiB ({' '.join(RESIDENT)}); requests, frozen, {rcode / kib:.1f} KiB "
        "(its bytecode stays outside the heap)")  # fmt: skip
    if agent and req:
        log(
            f"heap: data heap (smallest heap - code heap): agent {agent - code / kib:.1f} KiB, "
            f"requests {req - rcode / kib:.1f} KiB (the 16 KiB target is "
            f"{'met' if agent <= 16 else 'not met'} for the whole heap: agent {agent} KiB)"
        )
    # the full flow (signed, confirm, re-activation) bisected side by side for the
    # 64-bit .mpy, the 32-bit frozen firmware and the sources, against requests frozen too
    from tools.harness import heapflow

    heapflow.run(log=log)


def _fetch_all(urls_headers, n):
    """n concurrent whole-body GETs; -> (bytes, seconds). curl when present."""
    curl = shutil.which("curl")

    def one(i):
        url, hdrs = urls_headers[i % len(urls_headers)]
        if curl:
            cmd = [curl, "-sS", "-f", "-o", "/dev/null", "-w", "%{size_download}", url]
            for k, v in hdrs.items():
                cmd += ["-H", f"{k}: {v}"]
            return int(subprocess.run(cmd, capture_output=True, text=True, check=True,
                                      timeout=600).stdout)  # fmt: skip
        with requests.get(url, headers=hdrs, stream=True, timeout=600) as r:
            r.raise_for_status()
            return sum(len(c) for c in r.iter_content(256 * 1024))

    t0 = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        total = sum(pool.map(one, range(n)))
    return total, time.monotonic() - t0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# wrk script: each connection walks the blob in 64 KiB Range requests, as a device does
_RANGE_LUA = """
local size, chunk, n = %d, %d, 0
request = function()
  local off = (n * chunk) %% size
  n = n + 1
  wrk.headers["Range"] = "bytes=" .. off .. "-" .. (math.min(off + chunk, size) - 1)
  return wrk.format(nil)
end
"""


def _which(name):
    path = shutil.which(name)
    if not path and Path(f"/usr/sbin/{name}").exists():
        path = f"/usr/sbin/{name}"
    return path


def ensure_tool(name):
    """A server or load tool from Debian (nginx, wrk): installed with apt-get when missing
    and we are root; otherwise a clear message (the comparison always runs, or says why not)."""
    if _which(name):
        return _which(name)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"bench: {name} is not installed: run `apt-get install {name}` as root")
    log(f"installing {name} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", name]
    for cmd in (["apt-get", "update", "-q"], install):
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, timeout=900)
    if not _which(name):
        raise SystemExit(f"bench: apt-get install {name} gave no {name} command")
    return _which(name)


def _wrk(wrk, url, lua, clients, secs, headers=()):
    """wrk -t1 (one client thread: the machine's cores go to the servers) -> (req/s, errors)."""
    cmd = [wrk, "-t1", f"-c{clients}", f"-d{secs}s", "-s", str(lua), "--latency"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=secs + 60).stdout
    rps = float(out.split("Requests/sec:")[1].split()[0])
    errors = 0
    for line in out.splitlines():
        if "Non-2xx" in line or "Socket errors" in line:
            errors += sum(int(x) for x in line.replace(",", " ").split() if x.isdigit())
    return rps, errors


def _tree(pid):
    """pid and its descendants (servers fork workers, nginx its worker processes)."""
    from tools.harness.cluster import _children

    out = [pid]
    for child in _children(pid):
        out += _tree(child)
    return out


def _cpu_s(roots):
    """CPU seconds (user + system) used so far by the processes under roots."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in (p for r in roots for p in _tree(r)):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone since it was listed
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def _static_nginx(b, nginx, static_dir, certs):
    """nginx serving static_dir as files on a plain and a TLS port, rootless in b.tmp."""
    from tools.harness.cluster import Nginx

    http, https = _free_port(), _free_port()
    site = b.tmp / "static.conf"
    site.write_text(
        f"server {{ listen 127.0.0.1:{http}; root {static_dir}; keepalive_requests 100000; }}\n"
        f"server {{ listen 127.0.0.1:{https} ssl; root {static_dir}; "
        f"keepalive_requests 100000; ssl_certificate {certs['cert']}; "
        f"ssl_certificate_key {certs['key']}; }}\n"
    )
    d = b.tmp / "nginx-static"
    d.mkdir(exist_ok=True)
    return Nginx(d, site, http), http, https


def bench_server(b, clients=50, secs=8, rounds=2):
    """Requests/s of 64 KiB Range requests on keep-alive connections (wrk, `clients`
    connections) for nginx serving the blob as a static file and for each exoprov
    arrangement, all started at once and measured in turn, `rounds` times (the best of each
    is kept: the machine is shared); then whole-blob throughput (curl) against nginx."""
    from contextlib import ExitStack

    from tools.harness.cluster import Cluster, make_certs
    from tools.harness.launch import ServerProcess

    nginx, wrk = ensure_tool("nginx"), ensure_tool("wrk")
    path, _sha = b.set_image(b.size, "3")
    cik = b.activate(b.new_sn())
    q = f"/provision/download?vendor={b.vendor['vendor']}&model={MODEL}&id={b.cid}"
    hdr = [f"X-Exosite-CIK: {cik}"]
    lua = b.tmp / "range.lua"
    lua.write_text(_RANGE_LUA % (b.size, 64 * 1024))
    static_dir = b.tmp / "static"
    static_dir.mkdir(exist_ok=True)
    os.link(path, static_dir / "image.bin")
    certs = make_certs(b.tmp / "certs")
    off = ("--activation-limit", "0")
    with ExitStack() as stack:
        static, http, https = _static_nginx(b, nginx, static_dir, certs)
        stack.callback(static.stop)
        # the recipe as shipped: its instances on PostgreSQL (the same blob, its own device)
        from tools.harness.pgkit import EmbeddedPostgres

        pg = EmbeddedPostgres()
        stack.callback(pg.close)
        bp = Bench(b.size, db=pg.new_database())
        stack.callback(bp.close)
        bp.set_image(b.size, "3")
        hdr_pg = [f"X-Exosite-CIK: {bp.activate(bp.new_sn())}"]
        q_pg = f"/provision/download?vendor={bp.vendor['vendor']}&model={MODEL}&id={bp.cid}"
        cp = stack.enter_context(Cluster(instances=2, db=bp.srv.db, extra=off))
        w2 = stack.enter_context(
            ServerProcess("--workers", "2", *off, db=b.srv.db, workdir=b.tmp / "w2")
        )
        c1 = stack.enter_context(Cluster(instances=2, db=b.srv.db, extra=off))
        c2 = stack.enter_context(Cluster(instances=2, workers=2, db=b.srv.db, extra=off))
        c0 = stack.enter_context(Cluster(instances=2, db=b.srv.db, extra=off, grant_ttl="0s"))

        def pids(c):  # a server's or nginx's process, or a cluster's: nginx's and its instances'
            if isinstance(c, Cluster):
                return [c.nginx.proc.pid] + [s.proc.pid for s in c.servers]
            return [c.proc.pid]

        st = pids(static)
        rows = [
            ("nginx, static file (HTTP)", f"http://127.0.0.1:{http}/image.bin", (), st),
            ("nginx, static file (HTTPS)", f"https://127.0.0.1:{https}/image.bin", (), st),
            ("exoprov server (1 process, HTTP)", b.srv.url + q, hdr, pids(b.srv)),
            ("exoprov server --workers 2 (HTTP)", w2.url + q, hdr, pids(w2)),
            ("nginx (TLS) + 2 exoprov instances: the deploy/nginx recipe", c1.url + q, hdr,
             pids(c1)),
            ("nginx (TLS) + 2 instances x --workers 2", c2.url + q, hdr, pids(c2)),
            ("nginx (TLS) + 2 instances, grants not kept (each request asked)", c0.url + q, hdr,
             pids(c0)),
            ("nginx (TLS) + 2 instances on PostgreSQL (the recipe as shipped)", cp.url + q_pg,
             hdr_pg, pids(cp)),
        ]  # fmt: skip
        best = {label: (0.0, 0, 0.0) for label, *_ in rows}
        for i in range(rounds):
            for label, url, headers, roots in rows:
                cpu = _cpu_s(roots)
                rps, errors = _wrk(wrk, url, lua, clients, secs, headers)
                us = (_cpu_s(roots) - cpu) / max(rps * secs, 1) * 1e6
                log(f"server: round {i + 1}: {label}: {rps:.0f} requests/s, {us:.0f} µs CPU "
                    "per request" + (f" ({errors} errors)" if errors else ""))  # fmt: skip
                best[label] = max(best[label], (rps, errors, us))
        theirs, t_theirs = _fetch_all([(f"http://127.0.0.1:{http}/image.bin", {})], clients)
    base, base_tls = best[rows[0][0]][0], best[rows[1][0]][0]
    log(f"server: {clients} keep-alive connections, 64 KiB Range requests of one "
        f"{b.size // MIB} MiB blob, wrk -t1, {secs} s each, best of {rounds}; ratio to nginx "
        "static over the same transport; servers' CPU (not wrk's) per request:")  # fmt: skip
    for label, *_ in rows:
        rps, errors, us = best[label]
        ref = base_tls if "TLS" in label or "HTTPS" in label else base
        log(f"  {label:<66} {rps:>8.0f} req/s  {rps / ref:5.2f}x  {us:4.0f} µs CPU/req"
            + (f"  {errors} errors" if errors else ""))  # fmt: skip
    ciks = [b.activate(b.new_sn()) for _ in range(clients)]
    ours, t_ours = _fetch_all([(b.blob_url(), {"X-Exosite-CIK": c}) for c in ciks], clients)
    client = "curl" if shutil.which("curl") else "requests"
    r_ours, r_theirs = ours / t_ours, theirs / t_theirs
    log(f"server: whole blob, {clients} concurrent {client} clients x {b.size / MIB:.0f} MiB: "
        f"exoprov server {fmt_rate(ours, t_ours)}, nginx static {fmt_rate(theirs, t_theirs)}; "
        f"ratio {r_ours / r_theirs:.2f}")  # fmt: skip


def _hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss


def bench_rss(b0, size=256 * MIB):
    b = Bench(b0.size)  # a fresh server: its high-water mark is this transfer's alone
    try:
        _rss(b, size, "SQLite")
    finally:
        b.close()
    from tools.harness.pgkit import EmbeddedPostgres  # blobs in PostgreSQL: chunk rows

    pg = EmbeddedPostgres()
    try:
        b = Bench(b0.size, db=pg.new_database())
        try:
            _rss(b, size, "PostgreSQL")
        finally:
            b.close()
    finally:
        pg.close()


def _rss(b, size, engine):
    pid = b.srv.proc.pid
    start = _hwm_kib(pid)
    path, sha = b.set_image(size, "4")
    after_up = _hwm_kib(pid)
    cik = b.activate(b.new_sn())
    url = b.blob_url()
    h = hashlib.sha256()
    with requests.get(url, headers={"X-Exosite-CIK": cik}, stream=True,
                      timeout=600) as resp:  # fmt: skip
        for c in resp.iter_content(MIB):
            h.update(c)
    after_down = _hwm_kib(pid)
    same = "sha256 verified" if h.hexdigest() == sha else "SHA256 MISMATCH"
    log(f"rss ({engine}): server VmHWM (RSS high-water) {start / 1024:.1f} MiB at the start, "
        f"{after_up / 1024:.1f} MiB after a {size // MIB} MiB upload, "
        f"{after_down / 1024:.1f} MiB after its download ({same})")  # fmt: skip
    path.unlink()


STEPS = {"mpy": bench_mpy, "download": None, "heap": bench_heap, "server": bench_server,
         "rss": bench_rss}  # fmt: skip


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=32)
    ap.add_argument("--heap", type=int, default=64, help="KiB, for the download comparison")
    ap.add_argument("--only", nargs="*", choices=sorted(STEPS))
    args = ap.parse_args(argv)
    b = Bench(args.size_mib * MIB)
    t0 = time.monotonic()
    try:
        for name in args.only or list(STEPS):
            if name == "download":
                bench_download(b, args.heap)
            else:
                STEPS[name](b)
    finally:
        b.close()
    log(f"done in {time.monotonic() - t0:.0f} s (figures only, nothing asserted)")
    return 0


if __name__ == "__main__":
    sys.exit(procs.main(main))
