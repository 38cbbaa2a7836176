"""Secrets at rest: a copy of the database (SQLite file, WAL and shared memory; a pg_dump or
the PostgreSQL cluster's files) holds none of the credentials the server handed out; an
existing database's plaintext is sealed or dropped at start; the key rotates; the files the
server makes are its user's only."""

import hashlib
import json
import os
import secrets
import sqlite3
import stat
import subprocess
from types import SimpleNamespace

from conftest import Server, exoprov
from serverkit import activate, add_content, add_sn, enable, new_model
from test_server_upgrade import OldServer, old_python  # noqa: F401 (a fixture)
from uikit import login


def _is_pg(srv):
    return str(srv.db).startswith("postgresql://")


def _stored(srv, pg=None):
    """{name: bytes} of everything the database keeps: SQLite's file, -wal, -shm and blob
    files; PostgreSQL: a pg_dump of the database, and (with `pg`) every file of the cluster,
    its WAL included."""
    if _is_pg(srv):
        from pgkit import POSTGRES_BIN_PATH

        dump = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_dump"), "-d", str(srv.db)],
            check=True,
            capture_output=True,
            timeout=120,
        ).stdout
        assert b"CREATE TABLE public.clients" in dump and b"COPY public.tokens" in dump
        out = {"pg_dump": dump}
        for root, _dirs, files in os.walk(pg.data) if pg is not None else ():
            for name in files:
                path = os.path.join(root, name)
                try:
                    with open(path, "rb") as f:
                        out[path] = f.read()
                except OSError:  # a file PostgreSQL removed meanwhile
                    pass
        return out
    db = str(srv.db)
    out = {}
    for path in (db, db + "-wal", db + "-shm"):
        if os.path.exists(path):
            with open(path, "rb") as f:
                out[path] = f.read()
    assert out[db].startswith(b"SQLite format 3")
    blobs = db + ".blobs"
    for name in os.listdir(blobs) if os.path.isdir(blobs) else ():
        with open(os.path.join(blobs, name), "rb") as f:
            out[name] = f.read()
    return out


def _found(stored, secrets_):
    """[(secret index, file)] of every secret found, as text or as its raw bytes."""
    hits = []
    for i, secret in enumerate(secrets_):
        forms = [secret.encode()]
        try:
            forms.append(bytes.fromhex(secret))
        except ValueError:
            pass
        for name, data in stored.items():
            if any(form in data for form in forms):
                hits.append((i, name))
    return hits


def test_no_credential_handed_out_is_in_the_database(make_server, backend, request):
    srv = make_server()
    pg = request.getfixturevalue("pg") if backend == "postgres" else None
    a, b = srv.add_vendor(), srv.add_vendor()
    handed = [a["cik"], b["cik"]]
    api = srv.session(cik=a["cik"])
    for tid in ("t1", "t2"):
        r = api.post("/provision/admin/auth/", data={"id": tid})
        assert r.status_code == 200
        handed.append(r.text)
    model = new_model(api)
    add_content(api, model, "fw", b"firmware bytes", meta="sha256=00")
    for sn in ("on", "again", "waiting"):
        add_sn(api, model, sn)
        enable(api, model, sn, a["rid"])
    for sn in ("on", "again"):
        r = activate(srv, a["vendor"], model, sn)
        assert r.status_code == 200
        handed.append(r.text)
    # regenerated and activated again: both CIKs were handed out
    r = api.post(f"/provision/manage/model/{model}/again", data={"enable": "true"})
    assert r.status_code == 205, r.text
    r = activate(srv, a["vendor"], model, "again")
    assert r.status_code == 200
    handed.append(r.text)
    ui = login(srv, a["cik"])
    handed.append(ui.cookies["exoprov_session"])
    # the API still shows again what it must
    assert api.get("/provision/admin/auth/t1").text == handed[2]
    again = exoprov("admin", "add-vendor", a["vendor"], "--if-missing", "--db", srv.db)
    assert json.loads(again.stdout)["cik"] == a["cik"]
    assert len(set(handed)) == len(handed) == 8
    assert _found(_stored(srv, pg), handed) == []
    with srv.session(cik=b["cik"]) as s:  # a rotated CIK: the old one and the new one
        r = s.post("/exoprov/v1/vendor/cik")
        assert r.status_code == 200
        handed.append(r.text)
    assert _found(_stored(srv, pg), handed) == []
    srv.stop()  # and once the server has closed its files
    assert _found(_stored(srv, pg), handed) == []


def _seed(srv):
    """A vendor with a token, an enabled device not yet activated, an activated one."""
    v = srv.add_vendor()
    api = srv.session(cik=v["cik"])
    token = api.post("/provision/admin/auth/", data={"id": "t"}).text
    model = new_model(api)
    for sn in ("on", "waiting"):
        add_sn(api, model, sn)
        enable(api, model, sn, v["rid"])
    device = activate(srv, v["vendor"], model, "on").text
    return v, api, token, model, device


def _sql(srv, statements):
    if _is_pg(srv):
        from pgkit import psql

        for sql, args in statements:
            for arg in args:
                sql = sql.replace("?", "'" + arg + "'", 1)
            psql(str(srv.db), sql)
        return
    db = sqlite3.connect(str(srv.db))
    try:
        with db:
            for sql, args in statements:
                db.execute(sql, args)
    finally:
        db.close()


def test_an_existing_database_is_sealed_in_place_at_start(make_server, backend):
    """A database as an earlier release left it (vendor CIK, token and a waiting device's
    CIK in clear): the next start seals or drops them, and no copy keeps them."""
    srv = make_server()
    v, api, token, model, device = _seed(srv)
    api.close()
    srv.stop()
    waiting = secrets.token_hex(20)
    sha = hashlib.sha256(waiting.encode()).hexdigest()
    _sql(
        srv,
        [
            ("UPDATE clients SET secret = ? WHERE rid = ?", [v["cik"], v["rid"]]),
            ("UPDATE tokens SET secret = ? WHERE tid = 't'", [token]),
            (
                "UPDATE clients SET secret = ?, cik_hash = ? WHERE kind = 'device' "
                "AND state = 'notactivated'",
                [waiting, sha],
            ),
        ],
    )
    assert len(_found(_stored(srv), [v["cik"], token, waiting])) >= 3
    again = Server(srv.dir, db=srv.db if _is_pg(srv) else None)
    try:
        assert _found(_stored(again), [v["cik"], token, waiting, device]) == []
        assert "sealed or dropped 3 secrets" in again.log_text()
        with again.session(cik=v["cik"]) as s:
            assert s.get("/provision/admin/auth/t").text == token
        out = exoprov("admin", "add-vendor", v["vendor"], "--if-missing", "--db", again.db)
        assert json.loads(out.stdout)["cik"] == v["cik"]
        # the waiting device's old CIK was never handed out: it is no credential now, and
        # its activation draws a new one
        with again.session(cik=waiting) as s:
            r = s.get("/provision/download", params={"vendor": v["vendor"], "model": model})
            assert r.status_code == 401
        r = activate(again, v["vendor"], model, "waiting")
        assert r.status_code == 200 and r.text != waiting
        with again.session(cik=device) as s:  # an activated device keeps working
            r = s.get("/provision/download", params={"vendor": v["vendor"], "model": model})
            assert r.status_code in (200, 204), r.status_code
    finally:
        again.stop()
    assert _found(_stored(again), [v["cik"], token, waiting, device]) == []


def test_files_the_server_makes_are_its_own(tmp_path):
    old = os.umask(0o022)  # what a service manager may hand down
    try:
        srv = Server(tmp_path)
        try:
            v = srv.add_vendor()
            with srv.session(cik=v["cik"]) as api:
                model = new_model(api)
                add_content(api, model, "fw", b"x" * 1000, meta="sha256=00")
            db = str(srv.db)
            modes = {
                p: stat.S_IMODE(os.stat(p).st_mode)
                for p in (db, db + "-wal", db + "-shm", db + ".key")
            }
            assert modes == dict.fromkeys(modes, 0o600), modes
            blobs = db + ".blobs"
            assert stat.S_IMODE(os.stat(blobs).st_mode) == 0o700
            names = os.listdir(blobs)
            assert names
            for name in names:
                assert stat.S_IMODE(os.stat(os.path.join(blobs, name)).st_mode) == 0o600
        finally:
            srv.stop()
        # a database made 0644 by an earlier release is closed up at the next start
        for path in (db, db + ".blobs"):
            os.chmod(path, 0o755 if path.endswith(".blobs") else 0o644)
        srv = Server(tmp_path)
        srv.stop()
        assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(db + ".blobs").st_mode) == 0o700
    finally:
        os.umask(old)


def test_rotating_the_secret_key_reseals_everything(tmp_path):
    srv = Server(tmp_path)
    try:
        v, api, token, _model, _device = _seed(srv)
        key = str(srv.db) + ".key"
        before = open(key).read()
        r = exoprov("admin", "rotate-secret-key", "--db", srv.db)
        out = json.loads(r.stdout)
        assert out["resealed"] == 2 and out["key"] not in out["old_keys"]
        after = open(key).read()
        assert after != before and stat.S_IMODE(os.stat(key).st_mode) == 0o600
        assert not any(line in after for line in before.splitlines()[1:])
        # the running server takes the new key, for what it opens and what it seals
        assert api.get("/provision/admin/auth/t").text == token
        assert api.post("/provision/admin/auth/", data={"id": "u"}).status_code == 200
        db = sqlite3.connect(str(srv.db))
        try:
            sealed = [r[0] for r in db.execute("SELECT secret FROM tokens")]
            sealed += [r[0] for r in db.execute("SELECT secret FROM clients WHERE secret!=''")]
        finally:
            db.close()
        assert len(sealed) == 3
        assert all(s.startswith(f"s1.{out['key']}.") for s in sealed), sealed
        again = exoprov("admin", "add-vendor", v["vendor"], "--if-missing", "--db", srv.db)
        assert json.loads(again.stdout)["cik"] == v["cik"]
    finally:
        srv.stop()
    # the old key alone no longer opens anything: the server refuses to start on it
    with open(key, "w") as f:
        f.write(before)
    r = exoprov("server", "--db", srv.db, "--port", "0", check=False)
    assert r.returncode == 1 and "lacks key" in r.stderr
    os.unlink(key)
    r = exoprov("server", "--db", srv.db, "--port", "0", check=False)
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert not os.path.exists(key)


def test_a_database_of_release_0_1_0_is_sealed_at_start(tmp_path, backend, request):
    """The real earlier release (test_server_upgrade.py installs it) writes vendor CIKs,
    tokens and a waiting device's CIK in clear, and an activated device's CIK reaches its
    WAL; the current server's first start leaves none of them in the database."""
    pg = request.getfixturevalue("pg") if backend == "postgres" else None
    db = pg.new_database() if pg is not None else tmp_path / "exoprov.db"
    old = OldServer(request.getfixturevalue("old_python"), tmp_path, db)
    try:
        v = old.add_vendor("acme")
        with old.session(cik=v["cik"]) as s:
            token = s.post("/provision/admin/auth/", data={"id": "t"}).text
            model = new_model(s)
            for sn in ("on", "waiting"):
                add_sn(s, model, sn)
                enable(s, model, sn, v["rid"])
        device = activate(old, "acme", model, "on").text
        if pg is not None:
            from pgkit import psql

            waiting = psql(str(db), "SELECT secret FROM clients WHERE state = 'notactivated'")
        else:
            with sqlite3.connect(str(db)) as conn:
                waiting = conn.execute(
                    "SELECT secret FROM clients WHERE state = 'notactivated'"
                ).fetchone()[0]
    finally:
        old.stop()
    handed = [v["cik"], token, device, waiting]
    assert len(waiting) == 40
    # what the old release left: its vendor CIK, token and waiting CIK readable
    left = {i for i, _name in _found(_stored(SimpleNamespace(db=db), pg), handed)}
    assert {0, 1, 3} <= left
    new = Server(tmp_path, db=db if pg is not None else None)
    try:  # PostgreSQL's own WAL keeps what it logged then (README): the dump is clean
        assert _found(_stored(new), handed) == []
        with new.session(cik=v["cik"]) as s:
            assert s.get("/provision/admin/auth/t").text == token
        r = activate(new, "acme", model, "waiting")
        assert r.status_code == 200 and r.text != waiting
    finally:
        new.stop()
