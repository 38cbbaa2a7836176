"""Run `exoprov server` in a subprocess on loopback: for tests, fuzz, load and bench."""

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.harness import procs

ROOT = Path(__file__).resolve().parents[2]
_LISTEN = re.compile(r"listening on (https?://[0-9.]+:(\d+))")


class ServerProcess:
    """One `exoprov server` process on 127.0.0.1 (port 0: the line it prints names the port),
    with its own database in `workdir` (a temporary directory when none is given), or `db`
    (a database several instances share)."""

    def __init__(self, *extra, workdir=None, db=None):
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="exoprov-")
            workdir = self._tmp.name
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = db or self.dir / "exoprov.db"
        cmd = [sys.executable, "-m", "exoprov.cli", "server", "--db", str(self.db)]
        cmd += ["--host", "127.0.0.1", "--port", "0", *map(str, extra)]
        self.logpath = self.dir / "server.log"
        self._log = open(self.logpath, "w+")
        self.proc = procs.spawn(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True)
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = _LISTEN.search(line)
            if m:
                self.url, self.port = m.group(1), int(m.group(2))
                return
        self.stop()
        raise RuntimeError(f"server did not start: {line!r}\n{self.log_text()}")

    def log_text(self):
        try:
            return self.logpath.read_text(errors="replace")
        except OSError:
            return ""

    def add_vendor(self, name):
        cmd = [sys.executable, "-m", "exoprov.cli", "admin", "add-vendor", name]
        cmd += ["--db", str(self.db)]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
        if out.returncode:
            raise RuntimeError(f"add-vendor failed: {out.stderr.strip()}")
        return json.loads(out.stdout)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        procs.stop(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
