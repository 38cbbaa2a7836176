"""What the agent's status reports cost a device: figures printed, never asserted.

`python -m tools.harness.reportcost [--size-kib 1024] [--fsm-without PATH]` runs the agent
compiled to .mpy under the MicroPython unix port against the project's server, through a
counting proxy, for one update (activate, list, info, the download in 64 KiB Range requests,
apply: exit 3) and the start that confirms it (exit 0), with `report` on and off, and prints:

- bytes on the wire each way, connections, and the alias writes among them (count, bytes);
  the difference on - off is what reports cost per update;
- heap: the smallest `-X heapsize` (1 KiB steps) for the update with `report` on and off, and,
  with --fsm-without (an agent/fsm.py without the report code, e.g. one from before reports),
  for that build too: code + data cost of the reports.

AliasProxy is also what the tests use to make alias writes fail (500) or hang.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tools.harness import procs
from tools.harness.bench import MODEL, Bench, bisect_heap, compile_mpy
from tools.harness.mpunix import MICROPYTHON, MPY_CROSS

_ALIAS = b"POST /onep:v1/stack/alias "


class AliasProxy:
    """Loopback TCP proxy counting bytes each way. A connection whose first request is an
    alias write (the agent sends every POST on a fresh connection) is answered by `mode`:
    "pass" forwards it, "500" answers 500 itself, "hang" reads it and never answers."""

    def __init__(self, host, port, mode="pass"):
        self.target, self.mode = (host, port), mode
        self.lock = threading.Lock()
        self.up = self.down = self.conns = self.alias = self.alias_bytes = 0
        self.socks = []
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        with self.lock:
            self.up = self.down = self.conns = self.alias = self.alias_bytes = 0

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.socks.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _count(self, up=0, down=0):
        with self.lock:
            self.up += up
            self.down += down

    def _serve(self, c):
        c.settimeout(60)
        first = b""
        try:
            while b"\r\n\r\n" not in first and len(first) < 8192:
                data = c.recv(4096)
                if not data:
                    break
                first += data
        except OSError:
            c.close()
            return
        with self.lock:
            self.conns += 1
        self._count(up=len(first))
        if first.startswith(_ALIAS):
            with self.lock:
                self.alias += 1
                self.alias_bytes += len(first)
            if self.mode == "hang":
                try:
                    while c.recv(4096):  # until the agent gives up and closes
                        pass
                except OSError:
                    pass
                c.close()
                return
            if self.mode == "500":
                answer = b"HTTP/1.1 500 Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                self._count(down=len(answer))
                c.sendall(answer)
                c.close()
                return
        try:
            s = socket.create_connection(self.target, timeout=60)
        except OSError:
            c.close()
            return
        self.socks.append(s)
        s.sendall(first)
        threading.Thread(target=self._pipe, args=(c, s, True), daemon=True).start()
        self._pipe(s, c, False)

    def _pipe(self, src, dst, up):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._count(up=len(data)) if up else self._count(down=len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def _run(b, code, d, server, sn, heap_k=256, **extra):
    cfg = {
        "server": server, "vendor": b.vendor["vendor"], "model": MODEL, "sn": sn,
        "board": "unix", "state_dir": str(d / "state"), "install_path": str(d / "fw.bin"),
        "once": True, "version": "1",
    }  # fmt: skip
    cfg.update(extra)
    (d / "config.json").write_text(json.dumps(cfg))
    cmd = [MICROPYTHON, "-X", f"heapsize={heap_k}K", "-m", "agent", str(d / "config.json")]
    env = dict(os.environ, MICROPYPATH=f"{code}:.frozen")
    p = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stderr


def wire(b, proxy, report):
    """One update and its confirming start through the proxy. -> {figure: value}."""
    out = {}
    d = Path(tempfile.mkdtemp(dir=b.tmp))
    sn = b.new_sn()
    for step, want in (("update", 3), ("confirm", 0)):
        proxy.reset()
        rc, err = _run(b, b.code, d, proxy.url, sn, report=report)
        if rc != want:
            raise SystemExit(f"agent {step} (report={report}) exit {rc}: {err[-500:]}")
        out[step] = (proxy.up, proxy.down, proxy.conns, proxy.alias, proxy.alias_bytes)
    shutil.rmtree(d, ignore_errors=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="reportcost", description=__doc__.split("\n")[0])
    ap.add_argument("--size-kib", type=int, default=1024)
    ap.add_argument("--fsm-without", help="an agent/fsm.py without reports, for the heap")
    args = ap.parse_args(argv)
    b = Bench(args.size_kib * 1024)
    proxy = AliasProxy("127.0.0.1", b.srv.port)
    try:
        b.set_image(args.size_kib * 1024, "2")
        print(f"reports: {args.size_kib} KiB image, 64 KiB Range requests, MicroPython .mpy")
        got = {r: wire(b, proxy, r) for r in (False, True)}
        for step in ("update", "confirm"):
            off, on = got[False][step], got[True][step]
            print(
                f"  {step}: report off: {off[0]} B up, {off[1]} B down, {off[2]} connections;"
                f" on: {on[0]} B up, {on[1]} B down, {on[2]} connections, {on[3]} alias"
                f" writes ({on[4]} B of requests)"
            )
            print(
                f"  {step}: reports cost {on[0] - off[0]} B up + {on[1] - off[1]} B down ="
                f" {on[0] + on[1] - off[0] - off[1]} B, {on[2] - off[2]} more connections"
            )
        heaps = {}
        for report in (False, True):

            def run(k, report=report):
                d = Path(tempfile.mkdtemp(dir=b.tmp))
                rc = _run(b, b.code, d, b.srv.url, b.new_sn(), k, report=report)[0]
                shutil.rmtree(d, ignore_errors=True)
                return rc == 3

            heaps[report] = bisect_heap(run, lo=16, hi=256)
        print(f"  heap: smallest -X heapsize for the update: report off {heaps[False]}K, on "
              f"{heaps[True]}K")  # fmt: skip
        if args.fsm_without:
            old = b.tmp / "mpy-without"
            compile_mpy(old)
            subprocess.run(
                [MPY_CROSS, "-o", str(old / "agent" / "fsm.mpy"),
                 "-s", "agent/fsm.py", args.fsm_without], check=True,
            )  # fmt: skip

            def run_old(k):
                d = Path(tempfile.mkdtemp(dir=b.tmp))
                rc = _run(b, old, d, b.srv.url, b.new_sn(), k)[0]
                shutil.rmtree(d, ignore_errors=True)
                return rc == 3

            k = bisect_heap(run_old, lo=16, hi=256)
            sizes = [(p / "agent" / "fsm.mpy").stat().st_size for p in (old, b.code)]
            print(f"  heap: without the report code (--fsm-without) {k}K; fsm.mpy {sizes[0]} B"
                  f" without, {sizes[1]} B with")  # fmt: skip
    finally:
        proxy.close()
        b.close()
    return 0


if __name__ == "__main__":
    sys.exit(procs.main(main))
