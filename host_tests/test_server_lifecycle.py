"""The device lifecycle, row by row, against the real server: whitelist, enable
(`POST /provision/manage/model/<model>/<sn>`), `POST /provision/activate` once, regenerate,
disable, remap, delete."""

import json
import re
import time

from conftest import exoprov
from serverkit import HEX40, activate, add_sn, enable, new_model


def sn_info(s, model, sn):
    r = s.get(f"/provision/manage/model/{model}/{sn}")
    assert r.status_code == 200, r.text
    status, rid, extra = r.text.rstrip("\n").split(",", 2)
    return status, rid, extra


def cik_works(server, vendor, model, cik):
    with server.session(cik=cik) as d:
        r = d.get("/provision/download", params={"vendor": vendor, "model": model})
    return r.status_code


def test_add_vendor_prints_json_and_refuses_duplicates(server):
    rec = server.add_vendor()
    assert set(rec) == {"vendor", "cik", "rid"}
    assert len(rec["cik"]) == 40 and HEX40.fullmatch(rec["rid"])
    dup = exoprov("admin", "add-vendor", rec["vendor"], "--db", server.db, check=False)
    assert dup.returncode == 1
    assert dup.stderr.count("\n") == 1 and rec["cik"] not in dup.stderr
    again = exoprov("admin", "add-vendor", rec["vendor"], "--db", server.db, "--if-missing")
    assert again.returncode == 0
    assert json.loads(again.stdout) == rec
    listing = exoprov("admin", "list-vendors", "--db", server.db).stdout
    assert f"{rec['vendor']},{rec['rid']}" in listing.splitlines()
    assert rec["cik"] not in listing


def test_whitelisted_then_enabled_then_activated_once(server, vendor, vclient):
    model = new_model(vclient)
    add_sn(vclient, model, "sn1", "box 7")
    assert sn_info(vclient, model, "sn1") == ("", "", "box 7")
    r = vclient.get(f"/provision/manage/model/{model}/", params={"status": "true"})
    assert r.text == "sn1,,,box 7\n"

    rid = enable(vclient, model, "sn1", vendor["rid"])
    assert HEX40.fullmatch(rid)
    assert sn_info(vclient, model, "sn1") == ("notactivated", rid, "box 7")

    r = activate(server, vendor["vendor"], model, "sn1")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    cik = r.text
    assert len(cik) == 40
    assert sn_info(vclient, model, "sn1") == ("activated", rid, "box 7")
    assert cik_works(server, vendor["vendor"], model, cik) == 200

    again = activate(server, vendor["vendor"], model, "sn1")
    assert again.status_code == 409
    assert cik not in again.text
    assert sn_info(vclient, model, "sn1")[0] == "activated"

    r = vclient.get(f"/provision/manage/model/{model}/", params={"status": "true"})
    assert r.text == f"sn1,activated,{rid},box 7\n"
    r = vclient.get(f"/provision/manage/model/{model}/")
    assert r.text == f"sn1,{rid},box 7\n"


def test_activation_refusals(server, vendor, vclient):
    model = new_model(vclient)
    add_sn(vclient, model, "quiet")
    assert activate(server, vendor["vendor"], model, "quiet").status_code == 409
    assert activate(server, vendor["vendor"], model, "nosuch").status_code == 404
    assert activate(server, vendor["vendor"], "nomodel", "quiet").status_code == 403
    assert activate(server, "novendor-x", model, "quiet").status_code == 403
    with server.session() as s:
        assert s.post("/provision/activate", data={"vendor": vendor["vendor"]}).status_code == 400
    r = vclient.get(f"/provision/manage/model/{model}/quiet", params={"show": "log"})
    assert r.status_code == 200
    lines = r.text.splitlines()
    assert len(lines) == 1
    ts, conn, what = lines[0].split(",", 2)
    assert abs(int(ts) - time.time()) < 60
    assert re.fullmatch(r"127\.0\.0\.1:\d+", conn)
    assert what == "refused: not enabled"


def test_window_expires(make_server):
    srv = make_server("--activation-window", "2", "--activation-limit", "0")
    v = srv.add_vendor()
    with srv.session(cik=v["cik"]) as s:
        model = new_model(s)
        add_sn(s, model, "late")
        add_sn(s, model, "early")
        enable(s, model, "late", v["rid"])
        enable(s, model, "early", v["rid"])
        assert activate(srv, v["vendor"], model, "early").status_code == 200
        time.sleep(2.2)
        assert sn_info(s, model, "late")[0] == "expired"
        assert sn_info(s, model, "early")[0] == "activated"
        r = activate(srv, v["vendor"], model, "late")
        assert r.status_code == 409
        assert sn_info(s, model, "late")[0] == "expired"
        # re-enabling (regenerate) reopens the window
        r = s.post(f"/provision/manage/model/{model}/late", data={"enable": "true"})
        assert r.status_code == 205
        assert sn_info(s, model, "late")[0] == "notactivated"
        assert activate(srv, v["vendor"], model, "late").status_code == 200
        log = s.get(f"/provision/manage/model/{model}/late", params={"show": "log"}).text
        assert [line.split(",", 2)[2] for line in log.splitlines()] == [
            "refused: activation window expired",
            "activated",
        ]


def test_regenerate_invalidates_old_cik(server, vendor, vclient):
    model = new_model(vclient)
    add_sn(vclient, model, "r1")
    rid = enable(vclient, model, "r1", vendor["rid"])
    old = activate(server, vendor["vendor"], model, "r1").text
    r = vclient.post(f"/provision/manage/model/{model}/r1", data={"enable": "true"})
    assert r.status_code == 205
    assert cik_works(server, vendor["vendor"], model, old) == 401
    assert sn_info(vclient, model, "r1") == ("notactivated", rid, "")
    new = activate(server, vendor["vendor"], model, "r1")
    assert new.status_code == 200 and new.text != old
    assert cik_works(server, vendor["vendor"], model, new.text) == 200


def test_disable_then_reenable(server, vendor, vclient):
    model = new_model(vclient)
    add_sn(vclient, model, "d1")
    enable(vclient, model, "d1", vendor["rid"])
    cik = activate(server, vendor["vendor"], model, "d1").text
    r = vclient.post(f"/provision/manage/model/{model}/d1", data={"disable": "true"})
    assert r.status_code == 205
    assert cik_works(server, vendor["vendor"], model, cik) == 401
    assert sn_info(vclient, model, "d1")[0] == "expired"
    assert activate(server, vendor["vendor"], model, "d1").status_code == 409
    r = vclient.post(f"/provision/manage/model/{model}/d1", data={"enable": "true"})
    assert r.status_code == 205
    assert sn_info(vclient, model, "d1")[0] == "notactivated"
    fresh = activate(server, vendor["vendor"], model, "d1")
    assert fresh.status_code == 200 and fresh.text != cik


def test_remap_moves_client(server, vendor, vclient):
    model = new_model(vclient)
    add_sn(vclient, model, "old")
    add_sn(vclient, model, "new")
    rid = enable(vclient, model, "old", vendor["rid"])
    cik = activate(server, vendor["vendor"], model, "old").text
    r = vclient.post(
        f"/provision/manage/model/{model}/new", data={"enable": "true", "oldsn": "old"}
    )
    assert r.status_code == 205
    assert sn_info(vclient, model, "new") == ("notactivated", rid, "")
    assert sn_info(vclient, model, "old") == ("", "", "")
    assert cik_works(server, vendor["vendor"], model, cik) == 401
    assert activate(server, vendor["vendor"], model, "old").status_code == 409
    moved = activate(server, vendor["vendor"], model, "new")
    assert moved.status_code == 200
    assert cik_works(server, vendor["vendor"], model, moved.text) == 200


def test_delete_sn_drops_client(server, vendor, vclient):
    model = new_model(vclient)
    add_sn(vclient, model, "gone")
    add_sn(vclient, model, "gone2")
    enable(vclient, model, "gone", vendor["rid"])
    cik = activate(server, vendor["vendor"], model, "gone").text
    assert vclient.delete(f"/provision/manage/model/{model}/gone").status_code == 205
    assert cik_works(server, vendor["vendor"], model, cik) == 401
    assert vclient.get(f"/provision/manage/model/{model}/gone").status_code == 404
    assert activate(server, vendor["vendor"], model, "gone").status_code == 404
    r = vclient.post(f"/provision/manage/model/{model}/", data={"delete": "true", "sn": "gone2"})
    assert r.status_code == 205
    assert vclient.delete(f"/provision/manage/model/{model}/gone2").status_code == 404


def test_enable_rules(server, vendor, vclient):
    model = new_model(vclient)
    add_sn(vclient, model, "e1")
    url = f"/provision/manage/model/{model}/e1"
    # owner must be the vendor or a client under it
    other = server.add_vendor()
    assert vclient.post(url, data={"enable": "true", "owner": other["rid"]}).status_code == 409
    assert vclient.post(url, data={"enable": "true", "owner": "0" * 40}).status_code == 409
    rid = enable(vclient, model, "e1", vendor["rid"])
    # a client already exists
    assert vclient.post(url, data={"enable": "true", "owner": vendor["rid"]}).status_code == 409
    # the device client is itself a valid owner (owner chain)
    add_sn(vclient, model, "e2")
    child = enable(vclient, model, "e2", rid)
    assert HEX40.fullmatch(child) and child != rid
    # regenerate or disable a never-enabled sn
    add_sn(vclient, model, "e3")
    e3 = f"/provision/manage/model/{model}/e3"
    assert vclient.post(e3, data={"enable": "true"}).status_code == 409
    assert vclient.post(e3, data={"disable": "true"}).status_code == 409
    assert vclient.post(e3, data={"enable": "true", "disable": "true"}).status_code == 400
    assert vclient.post(e3, data={}).status_code == 400
    missing = f"/provision/manage/model/{model}/nosuch"
    assert (
        vclient.post(missing, data={"enable": "true", "owner": vendor["rid"]}).status_code == 404
    )
    assert vclient.get(missing).status_code == 404
