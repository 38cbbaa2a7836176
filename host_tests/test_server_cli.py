"""`exoprov server` as a process: listening line, clean stop on SIGTERM/SIGINT with nothing
lost, secrets never in its log, refusal of bad options."""

import signal
import subprocess
import sys

from conftest import ROOT, Server, exoprov
from serverkit import add_content, device, new_model


def _stop(srv, sig):
    srv.proc.send_signal(sig)
    rc = srv.proc.wait(15)
    srv.stop()
    return rc


def test_stop_is_clean_and_nothing_is_lost(tmp_path):
    srv = Server(tmp_path)
    try:
        v = srv.add_vendor("persist")
        with srv.session(cik=v["cik"]) as s:
            model = new_model(s)
            add_content(s, model, "fw", b"firmware-bytes", meta="version=1")
            dev = device(srv, v, s, model, "sn1")
            r = s.post("/provision/admin/auth/", data={"id": "ci"})
            token = r.text
    finally:
        rc = _stop(srv, signal.SIGTERM)
    assert rc == 0
    assert "Traceback" not in (tmp_path / "server.log").read_text()

    srv = Server(tmp_path)  # same database, new process
    try:
        with srv.session(token=token) as s:
            assert s.get(f"/provision/manage/model/{model}/sn1").text.startswith("activated,")
            r = s.get(f"/provision/manage/content/{model}/fw", params={"download": "true"})
            assert r.content == b"firmware-bytes"
        with srv.session(cik=dev) as d:
            q = {"vendor": "persist", "model": model, "id": "fw"}
            assert d.get("/provision/download", params=q).content == b"firmware-bytes"
    finally:
        rc = _stop(srv, signal.SIGINT)
    assert rc == 0


def test_log_has_no_secrets(make_server):
    srv = make_server("--activation-limit", "0")
    v = srv.add_vendor()
    secrets = [v["cik"]]
    with srv.session(cik=v["cik"]) as s:
        model = new_model(s)
        secrets.append(device(srv, v, s, model, "a"))
        secrets.append(s.post("/provision/admin/auth/", data={"id": "t"}).text)
        with srv.session(cik=secrets[1]) as d:
            assert d.post("/onep:v1/stack/alias", data={"x": "1"}).status_code == 204
            tok = d.post("/jsonp/register", data={"alias[]": "x"}).text
            secrets.append(tok)
        with srv.session() as anon:
            assert anon.get("/jsonp", params={"token": tok, "callback": "cb"}).status_code == 200
        s.post(f"/provision/manage/model/{model}/a", data={"enable": "true"})
        with srv.session(cik=secrets[1]) as d:
            assert d.post("/onep:v1/stack/alias", data={"x": "1"}).status_code == 401
    _stop(srv, signal.SIGTERM)
    log = (srv.dir / "server.log").read_text()
    assert "POST /provision/activate 200" in log
    for secret in secrets:
        assert len(secret) == 40
        assert secret not in log


def test_bad_options_and_missing_db(tmp_path):
    r = exoprov("server", "--db", tmp_path / "x.db", "--activation-window", "0", check=False)
    assert r.returncode == 2
    r = exoprov("admin", "list-vendors", "--db", tmp_path / "none.db", check=False)
    assert r.returncode == 1 and r.stderr.startswith("exoprov admin: ")
    r = exoprov("admin", "add-vendor", "bad,name", "--db", tmp_path / "x.db", check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1


def test_port_in_use_is_one_line_error(server, tmp_path):
    cmd = [sys.executable, "-m", "exoprov.cli", "server", "--db", str(tmp_path / "y.db")]
    cmd += ["--port", str(server.port)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "exoprov server:" in r.stderr and "Traceback" not in r.stderr


def test_admin_takes_the_database_from_exoprov_db(tmp_path):
    """`exoprov admin` finds the server's database as `exoprov server` does: --db, else
    $EXOPROV_DB; with neither, a usage error."""
    import json
    import os

    env = {k: v for k, v in os.environ.items() if k != "EXOPROV_DB"}
    r = exoprov("admin", "list-vendors", check=False, env=env)
    assert r.returncode == 2 and "--db" in r.stderr
    env["EXOPROV_DB"] = str(tmp_path / "env.db")
    made = json.loads(exoprov("admin", "add-vendor", "envvendor", env=env).stdout)
    assert exoprov("admin", "list-vendors", env=env).stdout.split(",")[0] == "envvendor"
    listed = exoprov("admin", "list-vendors", "--db", tmp_path / "env.db").stdout
    assert made["rid"] in listed
