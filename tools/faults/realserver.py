"""Start the project's own server (`exoprov server`) on loopback for fuzz, load and bench.

Also the few vendor calls those tools need to set up a model, serial numbers and content.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent.parent
_LISTEN = re.compile(r"listening on (http://[0-9.]+:(\d+))")


class RealServer:
    def __init__(self, *extra, workdir=None):
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="exoprov-")
            workdir = self._tmp.name
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = self.dir / "exoprov.db"
        cmd = [sys.executable, "-m", "tools.cli", "server", "--db", str(self.db)]
        cmd += ["--host", "127.0.0.1", "--port", "0", *map(str, extra)]
        self.logpath = self.dir / "server.log"
        self._log = open(self.logpath, "w+")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
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
        cmd = [sys.executable, "-m", "tools.cli", "admin", "add-vendor", name]
        cmd += ["--db", str(self.db)]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
        if out.returncode:
            raise RuntimeError(f"add-vendor failed: {out.stderr.strip()}")
        return json.loads(out.stdout)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Fleet:
    """The vendor calls the tools need (a model, serial numbers, content)."""

    def __init__(self, url, vendor):
        self.url, self.vendor = url, vendor
        self.s = requests.Session()
        self.s.headers["X-Exosite-CIK"] = vendor["cik"]

    def _call(self, method, path, ok, **kw):
        r = self.s.request(method, self.url + path, timeout=120, **kw)
        if r.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:200]}")
        return r

    def model(self, model):
        data = {"model": model, "rid": self.vendor["rid"]}
        self._call("POST", "/provision/manage/model/", (205, 409), data=data)

    def add_sns(self, model, sns):
        path = f"/provision/manage/model/{model}/"
        for i in range(0, len(sns), 500):
            body = "".join(s + "\r\n" for s in sns[i : i + 500])
            hdr = {"Content-Type": "text/csv; charset=utf-8"}
            self._call("POST", path, (205,), data=body.encode(), headers=hdr)

    def add_sn(self, model, sn):
        path = f"/provision/manage/model/{model}/"
        self._call("POST", path, (205, 409), data={"sn": sn, "extra": ""})

    def enable(self, model, sn):
        data = {"enable": "true", "owner": self.vendor["rid"]}
        return self._call("POST", f"/provision/manage/model/{model}/{sn}", (200,), data=data)

    def content(self, model, cid, data, version=None):
        meta = "sha256=" + hashlib.sha256(data).hexdigest()
        if version is not None:
            meta += f"&version={version}"
        path = f"/provision/manage/content/{model}/"
        self._call("POST", path, (205, 409), data={"id": cid, "meta": meta})
        hdr = {"Content-Type": "application/octet-stream"}
        self._call("POST", path + cid, (205,), data=data, headers=hdr)
        return meta

    def delete_content(self, model, cid):
        self._call("DELETE", f"/provision/manage/content/{model}/{cid}", (204, 205, 404))

    def content_file(self, model, cid, fpath, version=None):
        h = hashlib.sha256()
        with open(fpath, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        meta = "sha256=" + h.hexdigest()
        if version is not None:
            meta += f"&version={version}"
        path = f"/provision/manage/content/{model}/"
        self._call("POST", path, (205, 409), data={"id": cid, "meta": meta})
        hdr = {"Content-Type": "application/octet-stream"}
        hdr["Content-Length"] = str(os.path.getsize(fpath))
        with open(fpath, "rb") as f:
            self._call("POST", path + cid, (205,), data=f, headers=hdr)
        return meta
