"""Staged rollouts through the real server (both engines): hold, waves by serial number, what a
device outside the wave sees, the pause on failures, advance on success, abort (--to)."""

import pytest
from serverkit import add_content, device, new_model

from tools.server import rollpolicy

ALIAS = "/onep:v1/stack/alias"
BLOB = b"new firmware" * 100


def _roll(model):
    return f"/exoprov/v1/model/{model}/rollouts/"


@pytest.fixture
def fleet(server, vendor, vclient):
    """A model with 40 activated devices: {sn: cik}."""
    model = new_model(vclient)
    ciks = {f"r{i:03d}": device(server, vendor, vclient, model, f"r{i:03d}") for i in range(40)}
    return model, ciks


def _held(vclient, model, cid, data=BLOB, meta="sha256=x&version=2"):
    r = vclient.post(_roll(model) + f"{cid}/hold")
    assert r.status_code == 200, r.text
    add_content(vclient, model, cid, data, meta=meta)


def _start(vclient, model, cid, **kw):
    return vclient.post(_roll(model) + f"{cid}/start", json=kw)


def _lists(server, cik, model, vendor):
    with server.session(cik=cik) as d:
        r = d.get("/provision/download", params={"vendor": vendor, "model": model})
        assert r.status_code == 200, r.text
        return r.text.split()


def _get(server, cik, model, vendor, cid):
    with server.session(cik=cik) as d:
        q = {"vendor": vendor, "model": model, "id": cid}
        return d.get("/provision/download", params=q, headers={"Range": "bytes=0-99"})


def _report(server, cik, **fields):
    with server.session(cik=cik) as d:
        assert d.post(ALIAS, data=fields).status_code == 204


def _status(vclient, model, cid):
    r = vclient.get(_roll(model) + cid)
    assert r.status_code == 200, r.text
    return r.json()


def test_held_content_is_offered_to_nobody(server, vendor, vclient, fleet):
    model, ciks = fleet
    _held(vclient, model, "fw2")
    add_content(vclient, model, "plain", b"x")
    for cik in list(ciks.values())[:5]:
        assert _lists(server, cik, model, vendor["vendor"]) == ["plain"]
        assert _get(server, cik, model, vendor["vendor"], "fw2").status_code == 404
    st = _status(vclient, model, "fw2")
    assert st["state"] == "held"
    # a content already offered to everyone cannot be rolled out
    r = _start(vclient, model, "plain", waves="10,100")
    assert r.status_code == 409 and "already offered to every device" in r.text
    r = vclient.post(_roll(model) + "plain/hold")
    assert r.status_code == 409


def test_wave_offers_to_its_devices_only(server, vendor, vclient, fleet):
    model, ciks = fleet
    _held(vclient, model, "fw2")
    r = _start(vclient, model, "fw2", waves="25,100", min_devices=100)
    assert r.status_code == 200, r.text
    st = r.json()
    assert st["state"] == "running" and st["wave"] == 25
    inside = {sn for sn in ciks if rollpolicy.in_wave("fw2", sn, 25)}
    assert 0 < len(inside) < len(ciks) and st["wave_size"] == len(inside)
    for sn, cik in ciks.items():
        listed = "fw2" in _lists(server, cik, model, vendor["vendor"])
        got = _get(server, cik, model, vendor["vendor"], "fw2")
        assert listed == (sn in inside)
        assert got.status_code == (206 if sn in inside else 404)
        if sn in inside:  # nginx's grant (a HEAD's yes) is never kept for it
            with server.session(cik=cik) as d:
                q = {"vendor": vendor["vendor"], "model": model, "id": "fw2"}
                head = d.head("/provision/download", params=q)
            assert head.status_code == 200 and head.headers["X-Accel-Expires"] == "0"
            assert "X-Accel-Expires" not in got.headers  # its slices may be (ETag-keyed)
        # the vendor's view as that serial number agrees
        r = vclient.get(f"/provision/manage/content/{model}/", params={"sn": sn})
        assert ("fw2" in r.text.split()) == (sn in inside)
    assert _status(vclient, model, "fw2")["took"] == len(inside)
    # a second start is refused, and so is holding it now
    assert _start(vclient, model, "fw2").status_code == 409
    r = vclient.post(_roll(model) + "fw2/hold")
    assert r.status_code == 409 and "(running)" in r.text


def test_failures_pause_and_nobody_new_is_offered(server, vendor, vclient, fleet):
    model, ciks = fleet
    _held(vclient, model, "bad")
    r = _start(vclient, model, "bad", waves="50,100", min_devices=4, max_failures=50)
    assert r.status_code == 200, r.text
    inside = [sn for sn in sorted(ciks) if rollpolicy.in_wave("bad", sn, 50)]
    assert len(inside) >= 6
    took = inside[:4]
    for sn in took[:3]:
        assert _get(server, ciks[sn], model, vendor["vendor"], "bad").status_code == 206
    _report(server, ciks[took[0]], state="rolledback", content="fw1:1", version="1")
    _report(server, ciks[took[1]], state="rolledback", content="fw1:1", version="1")
    assert _status(vclient, model, "bad")["state"] == "running"  # 3 < --min-devices
    assert _get(server, ciks[took[3]], model, vendor["vendor"], "bad").status_code == 206
    _report(server, ciks[took[3]], state="downloading", content="fw1:1", version="1")
    st = _status(vclient, model, "bad")
    assert st["state"] == "paused", st
    assert st["counts"] == {"rolledback": 2, "started": 2}
    assert "2 of 4" in st["reason"]
    assert [e["what"] for e in st["events"]].count(st["events"][0]["what"]) == 1
    # paused: a device that took it finishes; one in the wave that did not is not offered it
    assert "bad" in _lists(server, ciks[took[2]], model, vendor["vendor"])
    for sn in inside[4:]:
        assert "bad" not in _lists(server, ciks[sn], model, vendor["vendor"])
        assert _get(server, ciks[sn], model, vendor["vendor"], "bad").status_code == 404
    assert _status(vclient, model, "bad")["took"] == 4
    # resume, then abort: nobody is offered it any more
    assert vclient.post(_roll(model) + "bad/resume").json()["state"] == "running"
    assert vclient.post(_roll(model) + "bad/abort").json()["state"] == "aborted"
    for sn in took:
        assert "bad" not in _lists(server, ciks[sn], model, vendor["vendor"])
    assert vclient.post(_roll(model) + "bad/resume").status_code == 409


def test_success_advances_to_done(server, vendor, vclient, fleet):
    model, ciks = fleet
    _held(vclient, model, "good")
    r = _start(vclient, model, "good", waves="20,60,100", success=100)
    assert r.status_code == 200, r.text
    for pct in (20, 60, 100):
        st = _status(vclient, model, "good")
        assert st["wave"] == pct and st["state"] == "running", st
        inside = [sn for sn in ciks if rollpolicy.in_wave("good", sn, pct)]
        assert st["wave_size"] == len(inside)
        for sn in inside:
            assert "good" in _lists(server, ciks[sn], model, vendor["vendor"])
            _get(server, ciks[sn], model, vendor["vendor"], "good")
            _report(server, ciks[sn], state="active", content="good:5", version="2")
    st = _status(vclient, model, "good")
    assert st["state"] == "done" and st["wave"] == 100
    assert st["counts"] == {"active": len(ciks)}
    by = st["by_wave"]
    assert [w["wave"] for w in by] == [20, 60, 100]
    assert sum(w["devices"] for w in by) == len(ciks)
    listing = vclient.get(_roll(model)).json()["rollouts"]
    assert [(x["content"], x["state"]) for x in listing] == [("good", "done")]


def test_silent_devices_hold_back(server, vendor, vclient, fleet):
    model, ciks = fleet
    _held(vclient, model, "quiet")
    assert _start(vclient, model, "quiet", waves="50,100", success=100).status_code == 200
    inside = [sn for sn in ciks if rollpolicy.in_wave("quiet", sn, 50)]
    for sn in inside[1:]:  # one device never reports
        _report(server, ciks[sn], state="active", content="quiet:5", version="2")
    st = _status(vclient, model, "quiet")
    assert st["state"] == "running" and st["wave"] == 50
    assert st["counts"]["active"] == len(inside) - 1


def test_abort_to_offers_a_way_back_to_those_who_took_it(server, vendor, vclient, fleet):
    model, ciks = fleet
    _held(vclient, model, "bad")
    _held(vclient, model, "back", b"old", meta="sha256=y&version=1")
    _held(vclient, model, "unsigned", b"old", meta="sha256=y&version=1")
    vclient.post(
        f"/provision/manage/content/{model}/",
        data={"id": "signed", "meta": "sha256=z&version=1&sig=ab&key=k&rollback=1"},
    )
    assert _start(vclient, model, "bad", waves="50,100", min_devices=100).status_code == 200
    inside = [sn for sn in sorted(ciks) if rollpolicy.in_wave("bad", sn, 50)]
    taker = inside[0]
    assert _get(server, ciks[taker], model, vendor["vendor"], "bad").status_code == 206
    r = vclient.post(_roll(model) + "bad/abort", json={"to": "unsigned"})
    assert r.status_code == 409 and "rollback=1" in r.text
    # a signed way back: made here by hand (the signing itself is test_fleet_signing's)
    vclient.delete(f"/provision/manage/content/{model}/back")
    vclient.post(_roll(model) + "back/hold")
    add_content(vclient, model, "back", b"old", meta="sha256=y&version=1&sig=ab&key=k&rollback=1")
    r = vclient.post(_roll(model) + "bad/abort", json={"to": "back"})
    assert r.status_code == 200, r.text
    assert r.json()["to"] == "back"
    for sn, cik in ciks.items():
        assert ("back" in _lists(server, cik, model, vendor["vendor"])) == (sn == taker)


def test_only_the_owner_acts(server, vendor, vclient, fleet):
    model, _ciks = fleet
    other = server.add_vendor()
    with server.session(cik=other["cik"]) as s:
        assert s.post(_roll(model) + "x/hold").status_code in (403, 404)
    r = _start(vclient, model, "nosuch", waves="1,100")
    assert r.status_code == 404
    r = vclient.post(_roll(model) + "x/start", json={"waves": "50,10"})
    assert r.status_code == 400 and "increase" in r.text
    assert vclient.post(_roll(model) + "x/start", json={"soak": "5 min"}).status_code == 400


def test_metrics_gauges(server, vendor, vclient, fleet):
    model, ciks = fleet
    _held(vclient, model, "m-fw")
    assert _start(vclient, model, "m-fw", waves="50,100", min_devices=100).status_code == 200
    inside = [sn for sn in sorted(ciks) if rollpolicy.in_wave("m-fw", sn, 50)]
    for sn in inside[:2]:
        _get(server, ciks[sn], model, vendor["vendor"], "m-fw")
    _report(server, ciks[inside[0]], state="active", content="m-fw:1")
    _report(server, ciks[inside[1]], state="failed", content="fw1:1")
    with server.session() as s:
        text = s.get("/metrics").text
    labels = f'content="m-fw",model="{model}"'
    assert f'exoprov_rollout_state{{{labels},state="running"}} 1.0' in text
    assert f"exoprov_rollout_wave_percent{{{labels}}} 50.0" in text
    for state, n in (("active", 1), ("failed", 1), ("took", 2)):
        assert f'exoprov_rollout_devices{{{labels},state="{state}"}} {n}.0' in text


def test_decisions_are_made_once_by_racing_instances(backend, request, tmp_path):
    """Two instances and a --workers 2 server on one database, every report of a wave sent to
    them at once: each wave starts once and the pause is decided once (rollout_events)."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import Server

    db = request.getfixturevalue("pg").new_database() if backend == "postgres" else None
    first = Server(tmp_path / "a", "--activation-limit", "0", db=db)
    db = db or first.db
    servers = [first]
    try:
        servers.append(Server(tmp_path / "b", "--activation-limit", "0", db=db))
        servers.append(Server(tmp_path / "c", "--workers", "2", "--activation-limit", "0", db=db))
        vendor = first.add_vendor()
        with first.session(cik=vendor["cik"]) as v:
            model = new_model(v)
            ciks = {f"x{i:03d}": device(first, vendor, v, model, f"x{i:03d}") for i in range(60)}
            _held(v, model, "good")
            # success 50: every report after the half of a wave decides again, on any instance
            assert _start(v, model, "good", waves="10,50,100", success=50).status_code == 200
            _held(v, model, "bad")
            r = _start(v, model, "bad", waves="100", min_devices=1, max_failures=1)
            assert r.status_code == 200

        def report(job):
            i, (sn, fields) = job
            srv = servers[i % len(servers)]
            with srv.session(cik=ciks[sn]) as d:
                assert d.post(ALIAS, data=fields).status_code == 204

        def race(jobs):
            with ThreadPoolExecutor(12) as ex:
                list(ex.map(report, enumerate(jobs)))

        for pct in (10, 50, 100):  # the whole wave reports active at once, on every instance
            inside = [sn for sn in ciks if rollpolicy.in_wave("good", sn, pct)]
            race([(sn, {"state": "active", "content": "good:1"}) for sn in inside] * 2)
        # every device refuses "bad" at once (a refusal counts without a download)
        refused = {"state": "refused", "content": "good:1", "error": "bad: sha256 mismatch"}
        race([(sn, refused) for sn in ciks])
        with first.session(cik=vendor["cik"]) as v:
            good, bad = _status(v, model, "good"), _status(v, model, "bad")
        assert good["state"] == "done" and good["counts"] == {"active": 60}
        assert sorted(e["what"].split(" (")[0] for e in good["events"]) == [
            "done",
            "start wave 0",
            "wave 1",
            "wave 2",
        ]
        assert bad["state"] == "paused"
        assert [e["what"].split(" (")[0].split(":")[0] for e in bad["events"]] == [
            "paused",
            "start wave 0",
        ]
    finally:
        for srv in servers:
            srv.stop()


def test_group_rollout_offers_to_its_members_only(server, vendor, vclient, fleet):
    model, ciks = fleet
    members = sorted(ciks)[:10]
    r = vclient.post(f"/provision/manage/group/{model}/", data={"id": "canary"})
    assert r.status_code == 205, r.text
    r = vclient.post(
        f"/provision/manage/group/{model}/canary/",
        data={"type": "sn", "id[]": members},
    )
    assert r.status_code == 205, r.text
    _held(vclient, model, "g-fw")
    assert _start(vclient, model, "g-fw", group="nosuch").status_code == 404
    r = _start(vclient, model, "g-fw", waves="100", group="canary", success=100)
    assert r.status_code == 200 and r.json()["wave_size"] == len(members)
    for sn, cik in ciks.items():
        assert ("g-fw" in _lists(server, cik, model, vendor["vendor"])) == (sn in members)
    for sn in members:
        _report(server, ciks[sn], state="active", content="g-fw:1")
    st = _status(vclient, model, "g-fw")
    assert st["state"] == "done" and st["counts"] == {"active": len(members)}
    for sn, cik in ciks.items():  # done: still the group's only
        assert ("g-fw" in _lists(server, cik, model, vendor["vendor"])) == (sn in members)
