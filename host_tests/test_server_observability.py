"""Observability on the server: last seen and reports per serial number (store and the exoprov
/exoprov/v1 extension), /metrics (parsed with prometheus_client's parser), --log-format json."""

import asyncio
import hashlib
import json
import socket

import pytest
import requests
from exoprov.server.db import STATUS_KEYS, Store
from exoprov.server.fleetstatus import Seen, report_fields
from prometheus_client.parser import text_string_to_metric_families
from serverkit import activate, add_content, add_sn, device, enable, new_model

ALIAS = "/onep:v1/stack/alias"


def status(s, model, **q):
    r = s.get(f"/exoprov/v1/model/{model}/status", params={"all": "true", **q})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return {d["sn"]: d for d in r.json()["devices"]}


# -- what devices tell -----------------------------------------------------------------------


def test_last_seen_and_reports_per_serial_number(server, vendor, vclient):
    model = new_model(vclient)
    add_sn(vclient, model, "quiet")
    cik = device(server, vendor, vclient, model, "d1")
    st = status(vclient, model)
    assert set(st) == {"quiet", "d1"}
    assert all(v is None for k, v in st["quiet"].items() if k in STATUS_KEYS)
    assert st["quiet"]["status"] == "" and st["d1"]["status"] == "activated"
    seen = st["d1"]["last_seen"]  # the activation was a device call
    assert isinstance(seen, int) and st["d1"]["address"] == "127.0.0.1"
    assert st["d1"]["reported"] is None and st["d1"]["rid"]
    with server.session(cik=cik) as d:
        assert d.get(f"/provision/download?vendor={vendor['vendor']}&model={model}").ok
        report = {"state": "downloading", "version": "1.0", "target": "2.0", "progress": "30"}
        report.update(boots="3", rollbacks="x1", content="firmware-1:17", error="E" * 300)
        assert d.post(ALIAS, data=report).status_code == 204
        one = status(vclient, model)["d1"]
        assert one["state"] == "downloading" and one["progress"] == 30 and one["boots"] == 3
        assert one["rollbacks"] is None  # not a number: left out
        assert one["error"] == "E" * 200 and one["error_at"] == one["reported"] >= seen
        assert one["content"] == "firmware-1:17" and one["target"] == "2.0"
        assert d.post(ALIAS, data={"state": "applied"}).status_code == 204
        one = status(vclient, model)["d1"]
        assert one["state"] == "applied" and one["progress"] is None  # only while downloading
        assert one["version"] == "1.0" and one["error"] == "E" * 200  # kept until told again
        r = d.get(ALIAS + "?state&version")  # the data interface still keeps every value
        assert r.text == "state=applied&version=1.0"
    # the filters of the listing
    assert set(status(vclient, model, state="applied")) == {"d1"}
    assert set(status(vclient, model, version="")) == {"quiet"}
    assert set(status(vclient, model, search="ui")) == {"quiet"}


def test_status_extension_follows_the_list_rules(server, vendor, vclient):
    model = new_model(vclient)
    add_sn(vclient, model, "s1")
    other = server.add_vendor()
    with server.session(cik=other["cik"]) as o:
        r = o.get(f"/exoprov/v1/model/{model}/status")
        assert r.status_code == 403  # another vendor's model
        assert o.get(f"/exoprov/v1/model/{model}/rollout").status_code == 403
    r = requests.get(f"{server.url}/exoprov/v1/model/{model}/status")
    assert r.status_code == 401
    assert vclient.get("/exoprov/v1/model/nosuchmodel/status").status_code == 404
    # a share sees only the serial numbers it enabled
    assert vclient.post(f"/provision/manage/share/{model}/", data={"vendor": other["vendor"]}).ok
    add_sn(vclient, model, "s2")
    with server.session(cik=other["cik"], vendor=vendor["vendor"]) as o:
        enable(o, model, "s2", other["rid"])
        assert set(status(o, model)) == {"s2"}
    assert set(status(vclient, model)) == {"s1", "s2"}
    assert set(status(vclient, model, shared=other["vendor"])) == {"s2"}


def test_rollout_counts(server, vendor, vclient):
    model = new_model(vclient)
    add_sn(vclient, model, "never")
    reports = {
        "a": {"state": "active", "version": "2.0"},
        "b": {"state": "active", "version": "2.0", "rollbacks": "1"},
        "c": {"state": "downloading", "version": "1.0", "target": "2.0", "progress": "40"},
        "d": {"state": "failed", "version": "1.0", "error": "ApiError(503)"},
    }
    for sn, rep in reports.items():
        cik = device(server, vendor, vclient, model, sn)
        with server.session(cik=cik) as d:
            assert d.post(ALIAS, data=rep).status_code == 204
    r = vclient.get(f"/exoprov/v1/model/{model}/rollout")
    assert r.status_code == 200
    assert r.json() == {
        "devices": 5,
        "heard": 4,
        "failed": 1,
        "rolled_back": 1,
        "versions": [["1.0", 2], ["2.0", 2], [None, 1]],
        "states": [["active", 2], ["downloading", 1], ["failed", 1], [None, 1]],
        "downloading": [["2.0", 1]],
    }


def test_not_whitelisted_or_deleted_leaves_no_status(server, vendor, vclient):
    model = new_model(vclient)
    r = activate(server, vendor["vendor"], model, "nobody")
    assert r.status_code == 404
    cik = device(server, vendor, vclient, model, "gone")
    assert vclient.delete(f"/provision/manage/model/{model}/gone").status_code == 205
    add_sn(vclient, model, "gone")
    assert status(vclient, model)["gone"]["last_seen"] is None  # the row went with the sn
    with server.session(cik=cik) as d:  # its old CIK is dead: nothing is recorded
        assert d.post(ALIAS, data={"state": "active"}).status_code == 401
    assert status(vclient, model)["gone"]["state"] is None


def test_store_queries_for_the_dashboard(tmp_path):
    async def go():
        s = Store(tmp_path / "x.db")
        await s.add_model("v", "m", "code", "t", [])
        mid = (await s.model("v", "m"))[0]
        await s.add_sns(mid, [(f"sn{i:03d}", "") for i in range(30)])
        for i in range(0, 30, 3):
            await s.heard(mid, f"sn{i:03d}", 1000 + i, "10.0.0.%d" % i)
        fields = report_fields([("state", "active"), ("version", "3"), ("boots", "2")])
        await s.record_report(mid, "sn003", 2000, "10.0.0.9", fields)
        await s.heard(mid, "unknown", 1, "x")  # not whitelisted: ignored
        one = await s.device_status(mid, "sn003")
        assert one == dict.fromkeys(("sn", *STATUS_KEYS)) | {
            "sn": "sn003",
            "last_seen": 2000,
            "address": "10.0.0.9",
            "reported": 2000,
            "state": "active",
            "version": "3",
            "boots": 2,
        }
        assert await s.device_status(mid, "unknown") is None
        page = await s.device_statuses(mid, offset=10, limit=5)
        assert [r["sn"] for r in page] == [f"sn{i:03d}" for i in range(10, 15)]
        assert page[2]["last_seen"] == 1012 and page[0]["last_seen"] is None
        assert set(page[0]) == {"sn", "client_rid", "client_state", "enabled_at", *STATUS_KEYS}
        assert [r["sn"] for r in await s.device_statuses(mid, version="3")] == ["sn003"]
        assert len(await s.device_statuses(mid, limit=100, state="")) == 29
        counts = await s.status_counts(mid)
        assert counts["devices"] == 30 and counts["heard"] == 10
        assert counts["versions"] == [(None, 29), ("3", 1)]
        s.close()

    asyncio.run(go())


def test_last_seen_writes_are_throttled_per_serial_number():
    now = [100.0]
    seen = Seen(every=60, clock=lambda: now[0])
    assert seen.due((1, "a"), "1.2.3.4")
    assert not seen.due((1, "a"), "1.2.3.4")  # a download's next Range request: no write
    assert seen.due((1, "b"), "1.2.3.4")  # another serial number
    assert seen.due((1, "a"), "5.6.7.8")  # it moved: written at once
    now[0] += 59
    assert not seen.due((1, "a"), "5.6.7.8")
    now[0] += 1
    assert seen.due((1, "a"), "5.6.7.8")


# -- /metrics ----------------------------------------------------------------------------------


def _metrics(url, **kw):
    r = requests.get(url + "/metrics", timeout=30, **kw)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            if s.name.startswith("exoprov_"):
                out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _value(m, name, **labels):
    return sum(v for lab, v in m.get(name, []) if labels.items() <= lab.items())


def test_metrics_after_some_requests(make_server):
    srv = make_server("--activation-limit", "2")
    vendor = srv.add_vendor()
    with srv.session(cik=vendor["cik"]) as s:
        model = new_model(s)
        cik = device(srv, vendor, s, model, "m1")
        add_content(s, model, "fw", b"x" * 5000, ctype="application/octet-stream")
        with srv.session(cik=cik) as d:
            q = f"/provision/download?vendor={vendor['vendor']}&model={model}"
            assert d.get(q).ok and d.get(q + "&id=fw&info=true").ok
            r = d.get(q + "&id=fw", headers={"Range": "bytes=0-999"})
            assert r.status_code == 206
            assert d.post(ALIAS, data={"state": "active"}).status_code == 204
    bad = {"vendor": vendor["vendor"], "model": model, "sn": "m1"}
    url = srv.url + "/provision/activate"
    codes = [requests.post(url, data=bad).status_code for _ in range(3)]
    assert codes == [409, 409, 429]
    requests.get(srv.url + "/no/such/path/" + "x" * 50)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw:
        raw.sendall(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n")  # never parses: still counted
        assert raw.recv(100).startswith(b"HTTP/1.0 400")
    m = _metrics(srv.url)
    pid = {lab["pid"] for lab, _ in m["exoprov_requests_total"]}
    assert len(pid) == 1 and pid.pop() == str(srv.proc.pid)
    req = "exoprov_requests_total"
    assert _value(m, req, procedure="activate", status="200") == 1
    assert _value(m, req, procedure="activate", status="409") == 2
    assert _value(m, req, procedure="device_content_list", status="200") == 1
    assert _value(m, req, procedure="device_content_info", status="200") == 1
    assert _value(m, req, procedure="device_download", status="206") == 1
    assert _value(m, req, procedure="alias_write", status="204") == 1
    assert _value(m, req, procedure="unknown", status="404") == 1
    assert _value(m, req, procedure="unknown", status="400") == 1
    procedures = {lab["procedure"] for lab, _ in m[req]}
    assert not [p for p in procedures if "/" in p]  # names, never paths
    assert _value(m, "exoprov_activations_total") == 1
    assert _value(m, "exoprov_activations_refused_total", status="409") == 2
    assert _value(m, "exoprov_rate_limited_total") == 1
    assert _value(m, "exoprov_response_bytes_total", procedure="device_download") > 1000
    h = "exoprov_request_duration_seconds"
    assert _value(m, h + "_count", procedure="device_download") == 1
    assert _value(m, h + "_bucket", procedure="device_download", le="+Inf") == 1
    assert _value(m, h + "_bucket", procedure="activate", le="60.0") == 4


def test_metrics_access(make_server):
    srv = make_server("--trusted-proxy", "127.0.0.1")
    far = {"X-Forwarded-For": "203.0.113.7"}  # through a trusted proxy: not loopback
    assert requests.get(srv.url + "/metrics", headers=far).status_code == 403
    assert requests.get(srv.url + "/metrics").status_code == 200
    tok = make_server("--metrics-token", "s3cret-metrics")
    assert requests.get(tok.url + "/metrics").status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert requests.get(tok.url + "/metrics", headers=bad).status_code == 401
    ok = {"Authorization": "Bearer s3cret-metrics"}
    assert "exoprov_requests_total" in requests.get(tok.url + "/metrics", headers=ok).text
    assert "s3cret-metrics" not in tok.log_text()


# -- --log-format json -----------------------------------------------------------------------


def test_json_log_one_object_per_request_without_secrets(make_server):
    srv = make_server("--log-format", "json", "--metrics-token", "metric-tok-123")
    vendor = srv.add_vendor()
    with srv.session(cik=vendor["cik"]) as s:
        model = new_model(s)
        cik = device(srv, vendor, s, model, "j1")
        r = s.post("/provision/admin/auth/", data={"id": "t1"})
        assert r.status_code in (200, 201, 205), r.text
        token = s.get("/provision/admin/auth/t1").text.strip()
        assert len(token) >= 20
    with srv.session(token=token) as t:
        assert t.get(f"/provision/manage/model/{model}/").ok
    with srv.session(cik=cik) as d:
        assert d.post(ALIAS, data={"state": "active"}).status_code == 204
        jtok = d.post("/jsonp/register", data={"alias[]": "state"}).text.strip()
        assert requests.get(srv.url + f"/jsonp?token={jtok}&callback=cb").ok
    requests.get(srv.url + "/metrics", headers={"Authorization": "Bearer metric-tok-123"})
    srv.stop()
    log = srv.log_text()
    for secret in (vendor["cik"], cik, token, jtok, "metric-tok-123"):
        assert secret not in log
    lines = [json.loads(ln) for ln in log.splitlines() if ln.strip()]  # every line is JSON
    access = [ln for ln in lines if "procedure" in ln]
    assert {"time", "level", "procedure", "method", "status", "ms", "bytes", "cred"} <= set(
        access[0]
    )

    def short(secret):
        return hashlib.sha256(secret.encode()).hexdigest()[:8]

    by = {(ln["procedure"], ln["cred"]) for ln in access}
    assert ("alias_write", short(cik)) in by
    assert ("sn_list", short(token)) in by
    assert ("model_create_delete", short(vendor["cik"])) in by
    assert ("activate", None) in by and ("jsonp", None) in by
    assert all(isinstance(ln["bytes"], int) and ln["status"] >= 200 for ln in access)
    assert not [ln for ln in access if "?" in ln["path"]]  # never the query


@pytest.mark.parametrize("pairs,want", [
    ([("state", "a" * 500)], {"state": "a" * 200}),
    ([("progress", "50"), ("progress", "60")], {"progress": 60}),
    ([("progress", "-1"), ("boots", "٣"), ("other", "1")], {}),
])  # fmt: skip
def test_report_fields(pairs, want):
    assert report_fields(pairs) == want
