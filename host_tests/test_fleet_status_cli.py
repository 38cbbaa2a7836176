"""`exoprov fleet sn status` with what devices told the server: version, last seen,
state and last error beside the status and the last activation, in every output format."""

import csv
import io
import json
import os
import time

from conftest import exoprov
from exoprov.fleet.client import Client
from serverkit import add_sn, device, new_model

ALIAS = "/onep:v1/stack/alias"
NEW = ["version", "last_seen", "state", "error"]


def _env(server, vendor, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    e = {k: v for k, v in os.environ.items() if not k.startswith("EXOPROV_")}
    e.update(HOME=str(home), EXOPROV_SERVER=server.url, EXOPROV_CIK=vendor["cik"])
    return e


def _fleet(env, *args, secrets=()):
    r = exoprov("fleet", *args, check=False, env=env)
    assert r.returncode == 0, (r.stdout, r.stderr)
    for s in secrets:
        assert s not in r.stdout and s not in r.stderr
    return r


def test_sn_status_shows_what_devices_told(server, vendor, vclient, tmp_path):
    model = new_model(vclient)
    add_sn(vclient, model, "idle")
    before = int(time.time())
    ciks = [device(server, vendor, vclient, model, sn) for sn in ("ok1", "bad1")]
    with server.session(cik=ciks[0]) as d:
        assert d.post(ALIAS, data={"state": "active", "version": "2.1"}).status_code == 204
    with server.session(cik=ciks[1]) as d:
        rep = {"state": "failed", "version": "2.0", "error": "ApiError(503,)"}
        assert d.post(ALIAS, data=rep).status_code == 204
    env = _env(server, vendor, tmp_path)
    secrets = [vendor["cik"], *ciks]

    r = _fleet(env, "sn", "status", model, "--json", secrets=secrets)
    rows = {o["sn"]: o for o in json.loads(r.stdout)}
    assert set(NEW) <= set(rows["ok1"])
    assert rows["ok1"]["version"] == "2.1" and rows["ok1"]["state"] == "active"
    assert rows["ok1"]["error"] == "" and rows["ok1"]["status"] == "activated"
    assert rows["bad1"]["state"] == "failed" and rows["bad1"]["error"] == "ApiError(503,)"
    seen = rows["bad1"]["last_seen"]
    assert seen.endswith("Z") and seen >= time.strftime("%Y-%m-%dT%H:%M", time.gmtime(before))
    assert [rows["idle"][k] for k in NEW] == ["", "", "", ""]

    r = _fleet(env, "sn", "status", model, secrets=secrets)
    head = r.stdout.splitlines()[0].split()
    assert head[-4:] == [k.upper() for k in NEW]
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("bad1"))
    assert line.split()[-4:] == ["2.0", seen, "failed", "ApiError(503,)"]

    r = _fleet(env, "sn", "status", model, "--csv", "--no-log", secrets=secrets)
    rows = {row["sn"]: row for row in csv.DictReader(io.StringIO(r.stdout))}
    assert rows["ok1"]["version"] == "2.1" and rows["bad1"]["last_seen"] == seen


def test_client_without_the_extension_gets_none(server, vendor, monkeypatch):
    with Client(server.url, cik=vendor["cik"]) as c:
        c.model_create("nostatus", code="x")
        c.sn_add("nostatus", "s1")
        got = c.sn_statuses("nostatus")
        assert set(got) == {"s1"} and got["s1"]["state"] is None and got["s1"]["status"] == ""
        # an older server: the extension path answers 404
        real = c.request

        def old_server(method, path, *a, **kw):
            if path.startswith("/exoprov/"):
                path = "/no/such/procedure"
            return real(method, path, *a, **kw)

        monkeypatch.setattr(c, "request", old_server)
        assert c.sn_statuses("nostatus") is None
