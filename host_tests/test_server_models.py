"""Models, serial numbers (one, many, CSV), pagination, serial-number ranges."""

import json

import pytest
from serverkit import activate, add_sn, enable, lines, new_model

M = "/provision/manage/model/"
JS = {"Content-Type": "application/javascript; charset=utf-8"}


def test_model_create_list_info_update_delete(vclient, vendor):
    r = vclient.post(
        M,
        data=[
            ("model", "alpha"),
            ("rid", vendor["rid"]),
            ("options[]", "noaliases"),
            ("options[]", "nohistorical"),
        ],
    )
    assert r.status_code == 205
    assert vclient.post(M, data={"model": "beta", "code": "c0de"}).status_code == 205
    assert vclient.post(M, data={"model": "alpha", "code": "x"}).status_code == 409
    r = vclient.get(M)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert lines(r) == ["alpha", "beta"]
    r = vclient.get(M + "alpha")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert r.text == f"rid={vendor['rid']}&options[]=noaliases&options[]=nohistorical"
    assert vclient.get(M + "beta").text == "code=c0de"
    r = vclient.put(M + "beta", data={"code": "new", "options[]": "nocomments"})
    assert r.status_code == 205
    assert vclient.get(M + "beta").text == "code=new&options[]=nocomments"
    assert vclient.delete(M + "alpha").status_code == 205
    assert vclient.post(M, data={"delete": "true", "model": "beta"}).status_code == 205
    assert vclient.get(M).text == ""
    assert vclient.get(M + "alpha").status_code == 404
    assert vclient.delete(M + "alpha").status_code == 404
    assert vclient.post(M, data={"delete": "true", "model": "beta"}).status_code == 404


def test_model_template_rules(server, vclient):
    other = server.add_vendor()
    # rid must be a client the vendor owns; code any non-empty string; exactly one of them
    assert vclient.post(M, data={"model": "x1", "rid": other["rid"]}).status_code == 403
    assert vclient.post(M, data={"model": "x2", "rid": "nothex"}).status_code == 400
    assert vclient.post(M, data={"model": "x3", "code": ""}).status_code == 400
    assert vclient.post(M, data={"model": "x4"}).status_code == 400
    assert vclient.post(M, data={"model": "x5", "code": "a", "rid": "b" * 40}).status_code == 400
    assert vclient.post(M, data={"code": "a"}).status_code == 400
    assert vclient.post(M, data={"model": "a,b", "code": "a"}).status_code == 400


def test_model_delete_removes_everything(server, vendor, vclient):
    model = new_model(vclient)
    add_sn(vclient, model, "s")
    enable(vclient, model, "s", vendor["rid"])
    cik = activate(server, vendor["vendor"], model, "s").text
    vclient.post(f"/provision/manage/content/{model}/", data={"id": "c"})
    vclient.post(f"/provision/manage/content/{model}/c", data=b"blob")
    assert vclient.delete(M + model).status_code == 205
    with server.session(cik=cik) as d:
        assert d.post("/onep:v1/stack/alias", data={"a": "1"}).status_code == 401
    # the name is free again, and empty
    assert vclient.post(M, data={"model": model, "code": "c"}).status_code == 205
    assert vclient.get(M + model + "/").text == ""
    assert vclient.get(f"/provision/manage/content/{model}/").text == ""


def test_add_and_remove_serial_numbers(vclient):
    model = new_model(vclient)
    url = M + model + "/"
    assert vclient.post(url, data={"sn": "one", "extra": "e1"}).status_code == 205
    assert vclient.post(url, data={"sn[]": ["two", "three"]}).status_code == 205
    r = vclient.post(
        url, data="four,e4\nfive,has,commas\n\n", headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 205
    assert vclient.post(url, data={"sn": "one"}).status_code == 409
    assert vclient.post(url, data={"sn[]": ["six", "two"]}).status_code == 409
    assert (
        vclient.post(url, data="seven\nfour\n", headers={"Content-Type": "text/csv"}).status_code
        == 409
    )
    r = vclient.get(url, params={"limit": 1000})
    assert lines(r) == ["one,,e1", "two,,", "three,,", "four,,e4", "five,,has,commas"]
    # a refused batch adds nothing
    assert vclient.get(M + model + "/six").status_code == 404
    assert vclient.post(url, data={"delete": "true", "sn": "one"}).status_code == 205
    assert vclient.post(url, data={"delete": "true", "sn[]": ["two", "three"]}).status_code == 205
    r = vclient.delete(url, data="four\n", headers={"Content-Type": "text/csv"})
    assert r.status_code == 205
    assert lines(vclient.get(url)) == ["five,,has,commas"]
    assert vclient.post(url, data={"delete": "true", "sn": "one"}).status_code == 404
    assert vclient.post(url, data={"delete": "true", "sn[]": ["x", "y"]}).status_code == 404
    r = vclient.delete(url, data="four\n", headers={"Content-Type": "text/csv"})
    assert r.status_code == 404
    assert vclient.post(url, data={"extra": "x"}).status_code == 400
    assert vclient.delete(url).status_code == 400


def test_pagination_clamps(vclient):
    model = new_model(vclient)
    url = M + model + "/"
    sns = [f"p{i:04d}" for i in range(1100)]
    body = "\n".join(sns)
    assert vclient.post(url, data=body, headers={"Content-Type": "text/csv"}).status_code == 205

    def page(**params):
        r = vclient.get(url, params=params)
        assert r.status_code == 200, r.text
        return [line.split(",")[0] for line in lines(r)]

    assert page() == sns[:5]
    assert page(limit=1) == sns[:5]
    assert page(limit=0) == sns[:5]
    assert page(limit=7, offset=3) == sns[3:10]
    assert page(limit=5000) == sns[:1000]
    assert page(limit=1000, offset=1000) == sns[1000:]
    assert page(offset=2000) == []
    for bad in ({"limit": "x"}, {"offset": "-1"}, {"offset": "1.5"}):
        assert vclient.get(url, params=bad).status_code == 400


RANGES = [
    {"format": "base10", "length": 6, "first": 100, "last": 199},
    {"format": "base16", "length": 4, "casing": "upper", "first": 0xAB00, "last": 0xABFF},
    {"format": "base16", "casing": "lower", "first": 0x10, "last": 0x1F},
    {"format": "mac:48", "casing": "lower", "first": 0x001122330000, "last": 0x0011223300FF},
    {"format": "mac-48", "casing": "upper", "first": 0xA0B0C0000000, "last": 0xA0B0C0000010},
    {"format": "mac.48", "first": 0x0, "last": 0xFFFF},
]

INSIDE = [
    "000100",
    "000199",
    "AB00",
    "ABFF",
    "1a",
    "10",
    "00:11:22:33:00:7f",
    "A0-B0-C0-00-00-10",
    "0000.0000.ffff",
    "0000.0000.ABCD",
]
OUTSIDE = [
    "100",  # not padded to 6
    "000200",
    "ab00",  # wrong casing
    "AC00",
    "1A",
    "010",  # unpadded numbers have no leading zeros
    "00:11:22:33:01:00",
    "00:11:22:33:00:7F",
    "a0-b0-c0-00-00-10",
    "00-11-22-33-00-01",
    "0000.0001.0000",
    "00:00:00:00:ff:ff",
]


@pytest.fixture
def ranged(vclient):
    model = new_model(vclient)
    r = vclient.post(M + model + "/", data=json.dumps({"ranges": RANGES}), headers=JS)
    assert r.status_code == 205, r.text
    return model


def test_ranges_round_trip(vclient, ranged):
    r = vclient.get(M + ranged + "/", params={"show": "ranges"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert r.json() == {"ranges": RANGES}
    doomed = {"ranges": RANGES[:2]}
    assert vclient.delete(M + ranged + "/", data=json.dumps(doomed), headers=JS).status_code == 205
    assert vclient.get(M + ranged + "/", params={"show": "ranges"}).json() == {
        "ranges": RANGES[2:]
    }


def test_sn_inside_a_range_is_whitelisted(server, vendor, vclient, ranged):
    for sn in INSIDE:
        # whitelisted but never used: 204 for info, 409 (not enabled) for activation
        assert vclient.get(M + ranged + "/" + sn).status_code == 204, sn
        assert activate(server, vendor["vendor"], ranged, sn).status_code == 409, sn
        rid = enable(vclient, ranged, sn, vendor["rid"])
        r = vclient.get(M + ranged + "/" + sn)
        assert r.status_code == 200 and r.text == f"notactivated,{rid},\n", sn
        assert activate(server, vendor["vendor"], ranged, sn).status_code == 200, sn


def test_sn_outside_ranges_is_unknown(server, vendor, vclient, ranged):
    for sn in OUTSIDE:
        url = M + ranged + "/" + sn
        assert vclient.get(url).status_code == 404, sn
        assert activate(server, vendor["vendor"], ranged, sn).status_code == 404, sn
        r = vclient.post(url, data={"enable": "true", "owner": vendor["rid"]})
        assert r.status_code == 404, sn


BAD_RANGES = [
    "not json",
    "[]",
    '{"ranges": []}',
    '{"ranges": [{"format": "base8", "first": 0, "last": 1}]}',
    '{"ranges": [{"format": "base10", "first": 5, "last": 1}]}',
    '{"ranges": [{"format": "base10", "first": -1, "last": 1}]}',
    '{"ranges": [{"format": "base10", "first": "0", "last": 1}]}',
    '{"ranges": [{"format": "base10", "length": 2, "first": 0, "last": 100}]}',
    '{"ranges": [{"format": "base10", "casing": "upper", "first": 0, "last": 1}]}',
    '{"ranges": [{"format": "mac:48", "length": 12, "first": 0, "last": 1}]}',
    '{"ranges": [{"format": "mac:48", "first": 0, "last": 281474976710656}]}',
    '{"ranges": [{"format": "base16", "casing": "mixed", "first": 0, "last": 1}]}',
    '{"ranges": [{"format": "base10", "first": 0, "last": 1, "step": 2}]}',
]


def test_bad_ranges_are_400(vclient):
    model = new_model(vclient)
    for bad in BAD_RANGES:
        r = vclient.post(M + model + "/", data=bad, headers=JS)
        assert r.status_code == 400, bad
        assert r.headers["Content-Type"].startswith("text/plain")
    assert vclient.get(M + model + "/", params={"show": "ranges"}).json() == {"ranges": []}


def test_unused_sn_groups_and_log(vclient):
    model = new_model(vclient)
    add_sn(vclient, model, "u")
    url = M + model + "/u"
    assert vclient.get(url, params={"show": "log"}).status_code == 204
    assert vclient.get(url, params={"show": "groups"}).status_code == 204
    vclient.post(f"/provision/manage/group/{model}/", data={"id": "g"})
    vclient.post(f"/provision/manage/group/{model}/g/", data={"type": "sn", "id": "u"})
    r = vclient.get(url, params={"show": "groups"})
    assert r.status_code == 200 and lines(r) == ["g"]
    assert vclient.get(url, params={"show": "other"}).status_code == 400


def test_shared_filter(server, vendor, vclient):
    b = server.add_vendor()
    model = new_model(vclient)
    for sn in ("a1", "b1", "b2"):
        add_sn(vclient, model, sn, "x")
    vclient.post(f"/provision/manage/share/{model}/", data={"vendor": b["vendor"]})
    enable(vclient, model, "a1", vendor["rid"])
    with server.session(cik=b["cik"], vendor=vendor["vendor"]) as sb:
        rb1 = enable(sb, model, "b1", b["rid"])
        enable(sb, model, "b2", b["rid"])
    r = vclient.get(M + model + "/", params={"shared": b["vendor"]})
    assert [line.split(",")[0] for line in lines(r)] == ["b1", "b2"]
    assert lines(r)[0] == f"b1,{rb1},x"
    r = vclient.get(M + model + "/", params={"shared": "nobody-at-all"})
    assert r.status_code == 200 and r.text == ""
