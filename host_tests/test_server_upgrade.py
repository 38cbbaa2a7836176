"""A database made by an earlier release (v0.1.0, installed from this repository's history
into a temporary virtual environment) is taken over by the current server: every row and
blob is still there, read through the API, and every procedure works on it."""

import configparser
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from conftest import Server
from exoprov.server.migrations import MIGRATIONS
from serverkit import add_content, add_sn, enable, lines, new_model

from tools.harness.launch import ROOT

TAG = "v0.1.0"
# the tag's commit, for a clone without tags
COMMIT = "7c0175e63082eecc3be5f019de1ba9e56c29bee4"
_LISTEN = re.compile(r"listening on (http://[0-9.]+:\d+)")


def _git(*args, **kw):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=False, **kw)


@pytest.fixture(scope="module")
def old_python(tmp_path_factory):
    """The python of a virtual environment where release v0.1.0 is installed: its packages
    copied into site-packages as its setup.cfg maps them (what pip would install; pip
    could not build it offline without `wheel`), its dependencies this environment's,
    through a .pth file."""
    tmp = tmp_path_factory.mktemp("old")
    found = _git("rev-parse", "--verify", "-q", TAG + "^{commit}", text=True)
    commit = found.stdout.strip() if found.returncode == 0 else COMMIT
    src = tmp / "src"
    src.mkdir()
    archive = _git("archive", "--format=tar", commit)
    assert archive.returncode == 0, archive.stderr.decode()
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    cfg = configparser.ConfigParser()
    cfg.read(src / "setup.cfg")
    mapping = dict(
        line.split("=") for line in cfg["options"]["package_dir"].replace(" ", "").split()
    )
    for package, folder in sorted(mapping.items()):  # exoprov first, then its subpackages
        shutil.copytree(src / folder, Path(site, *package.split(".")), dirs_exist_ok=True)
    return python


class OldServer:
    """`exoprov server` of the old release on 127.0.0.1."""

    def __init__(self, python, workdir, db):
        self.db, self.python, self.dir = str(db), str(python), workdir
        cmd = [self.python, "-m", "exoprov.cli", "server", "--db", self.db]
        cmd += ["--host", "127.0.0.1", "--port", "0", "--activation-limit", "0"]
        self.log = open(workdir / "old.log", "w")
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            m = _LISTEN.search(line or "")
            if m:
                self.url = m.group(1)
                return
            if not line:
                break
        self.stop()
        raise RuntimeError((workdir / "old.log").read_text())

    def add_vendor(self, name):
        cmd = [self.python, "-m", "exoprov.cli", "admin", "add-vendor", name, "--db", self.db]
        out = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def session(self, cik=None, token=None, vendor=None):
        from conftest import Client

        return Client(self.url, cik=cik, token=token, vendor=vendor)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc.stdout.close()
        self.log.close()


FW = bytes(range(256)) * 1024  # 256 KiB: more than one PostgreSQL blob chunk


def _fill(srv):
    """Everything the API can store, made through `srv`; -> what _read needs to find it."""
    acme, beta = srv.add_vendor("acme"), srv.add_vendor("beta")
    with srv.session(cik=acme["cik"]) as s:
        model = new_model(s)
        for sn in ("a1", "a2", "a3", "a4"):
            add_sn(s, model, sn, extra=f"x-{sn}")
        r = s.post(
            f"/provision/manage/model/{model}/",
            data=json.dumps({"ranges": [{"format": "base10", "first": 100, "last": 199}]}),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 205, r.text
        enable(s, model, "a1", acme["rid"])
        enable(s, model, "a2", acme["rid"])
        enable(s, model, "a3", acme["rid"])
        assert s.post(f"/provision/manage/model/{model}/a3", data={"disable": "true"}).ok
        add_content(s, model, "fw", FW, meta="version=1", ctype="application/octet-stream")
        add_content(s, model, "sec", b"protected", protected=True)
        assert s.post(f"/provision/manage/group/{model}/", data={"id": "g", "meta": "m"}).ok
        r = s.post(f"/provision/manage/group/{model}/g/", data={"type": "sn", "id": "a1"})
        assert r.status_code == 205
        assert s.post(f"/provision/manage/share/{model}/", data={"vendor": "beta"}).ok
        token = s.post("/provision/admin/auth/", data={"id": "ci"}).text
    with srv.session() as s:
        form = {"vendor": "acme", "model": model, "sn": "a1"}
        cik = s.post("/provision/activate", data=form).text
    with srv.session(cik=cik) as d:
        assert d.post("/onep:v1/stack/alias", data={"state": "active", "version": "1"}).ok
    return {"acme": acme, "beta": beta, "model": model, "token": token, "cik": cik}


def _read(srv, made):
    """What the API shows of `made` (everything but times)."""
    model, acme = made["model"], made["acme"]
    out = {}
    with srv.session(cik=acme["cik"]) as s:
        base = f"/provision/manage/model/{model}/"
        out["models"] = lines(s.get("/provision/manage/model/"))
        out["model"] = s.get(f"/provision/manage/model/{model}").text
        out["sns"] = lines(s.get(base, params={"status": "true", "limit": 100}))
        out["ranges"] = s.get(base, params={"show": "ranges"}).json()
        out["log"] = [ln.split(",", 1)[1] for ln in lines(s.get(base + "a1?show=log"))]
        out["content"] = lines(s.get(f"/provision/manage/content/{model}/"))
        out["fw"] = s.get(f"/provision/manage/content/{model}/fw").text
        out["groups"] = lines(s.get(f"/provision/manage/group/{model}/"))
        out["members"] = lines(s.get(f"/provision/manage/group/{model}/g/"))
        out["shares"] = lines(s.get(f"/provision/manage/share/{model}/"))
        out["tokens"] = lines(s.get("/provision/admin/auth/"))
        out["token"] = s.get("/provision/admin/auth/ci").text == made["token"]
    with srv.session(token=made["token"]) as s:
        out["by token"] = lines(s.get("/provision/manage/model/"))
    with srv.session(cik=made["beta"]["cik"]) as s:
        out["shared"] = lines(s.get("/provision/manage/model/", params={"show": "shared"}))
    with srv.session(cik=made["cik"]) as d:
        q = {"vendor": "acme", "model": model, "id": "fw"}
        r = d.get("/provision/download", params=q, headers={"Range": "bytes=262000-262143"})
        out["range"] = (r.status_code, r.content == FW[262000:262144])
        out["whole"] = d.get("/provision/download", params=q).content == FW
        out["alias"] = d.get("/onep:v1/stack/alias?state").text
    return out


def _works(srv, made):
    """Procedures that write, on the adopted database."""
    model, acme = made["model"], made["acme"]
    with srv.session(cik=acme["cik"]) as s:
        add_sn(s, model, "new1")
        enable(s, model, "new1", acme["rid"])
        enable(s, model, "150", acme["rid"])  # a range member, used for the first time
        assert s.post(f"/provision/manage/content/{model}/fw", data=b"replaced").ok
        add_content(s, model, "new", b"more")
        r = s.post(f"/provision/manage/group/{model}/g/", data={"type": "sn", "id": "new1"})
        assert r.status_code == 205
        assert s.post(f"/provision/manage/model/{model}/a2", data={"enable": "true"}).ok
        assert s.delete(f"/provision/manage/model/{model}/a4").status_code == 205
        assert s.delete("/provision/admin/auth/ci").status_code == 205
        assert s.delete(f"/provision/manage/share/{model}/beta").status_code == 205
    for sn in ("new1", "150"):
        with srv.session() as s:
            r = s.post("/provision/activate", data={"vendor": "acme", "model": model, "sn": sn})
            assert r.status_code == 200, r.text
        with srv.session(cik=r.text) as d:
            q = {"vendor": "acme", "model": model, "id": "fw"}
            assert d.get("/provision/download", params=q).content == b"replaced"
    with srv.session() as s:  # activated by the old release: still once only
        r = s.post("/provision/activate", data={"vendor": "acme", "model": model, "sn": "a1"})
        assert r.status_code == 409
    with srv.session(cik=acme["cik"]) as s:
        r = s.post("/provision/manage/model/", data={"model": model, "delete": "true"})
        assert r.status_code == 205


def test_a_database_of_the_earlier_release(tmp_path, backend, request, old_python):
    db = request.getfixturevalue("pg_url") if backend == "postgres" else tmp_path / "x.db"
    old = OldServer(old_python, tmp_path, db)
    try:
        made = _fill(old)
        before = _read(old, made)
    finally:
        old.stop()
    assert before["range"] == (206, True) and before["whole"] and before["token"]
    new = Server(tmp_path / "new", db=str(db))
    try:
        assert _read(new, made) == before
        _works(new, made)
    finally:
        new.stop()
    assert "Traceback" not in new.log_text()
    if backend == "postgres":
        from pgkit import psql

        versions = psql(str(db), "SELECT version FROM schema_migrations ORDER BY 1").split()
    else:
        with sqlite3.connect(str(db)) as conn:
            versions = [str(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [str(m.version) for m in MIGRATIONS]
