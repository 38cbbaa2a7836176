"""The authorization matrix: credentials, vendor isolation, shares, tokens, registration."""

import pytest
from serverkit import activate, add_sn, device, enable, lines, new_model

# (method, path template, form) of every vendor procedure; {m} = model
VENDOR_ROUTES = [
    ("GET", "/provision/manage/model/", None),
    ("POST", "/provision/manage/model/", {"model": "zz", "code": "c"}),
    ("GET", "/provision/manage/model/{m}", None),
    ("PUT", "/provision/manage/model/{m}", {"code": "c"}),
    ("DELETE", "/provision/manage/model/{m}", None),
    ("GET", "/provision/manage/model/{m}/", None),
    ("POST", "/provision/manage/model/{m}/", {"sn": "new"}),
    ("GET", "/provision/manage/model/{m}/s", None),
    ("POST", "/provision/manage/model/{m}/s", {"disable": "true"}),
    ("DELETE", "/provision/manage/model/{m}/s", None),
    ("GET", "/provision/manage/content/{m}/", None),
    ("POST", "/provision/manage/content/{m}/", {"id": "c2"}),
    ("GET", "/provision/manage/content/{m}/c", None),
    ("POST", "/provision/manage/content/{m}/c", {"x": "y"}),
    ("DELETE", "/provision/manage/content/{m}/c", None),
    ("GET", "/provision/manage/group/{m}/", None),
    ("POST", "/provision/manage/group/{m}/", {"id": "g2"}),
    ("GET", "/provision/manage/group/{m}/g", None),
    ("DELETE", "/provision/manage/group/{m}/g", None),
    ("GET", "/provision/manage/group/{m}/g/", None),
    ("POST", "/provision/manage/group/{m}/g/", {"type": "sn", "id": "s"}),
    ("GET", "/provision/manage/share/{m}/", None),
    ("POST", "/provision/manage/share/{m}/", {"vendor": "x"}),
    ("GET", "/provision/manage/share/{m}/x", None),
    ("DELETE", "/provision/manage/share/{m}/x", None),
    ("GET", "/provision/admin/auth/", None),
    ("POST", "/provision/admin/auth/", {"id": "t"}),
    ("GET", "/provision/admin/auth/t", None),
    ("DELETE", "/provision/admin/auth/t", None),
]


@pytest.fixture
def world(server, vendor, vclient):
    """Vendor A's model with a serial number, content and a group; an activated device."""
    model = new_model(vclient)
    add_sn(vclient, model, "s")
    vclient.post(f"/provision/manage/content/{model}/", data={"id": "c"})
    vclient.post(f"/provision/manage/group/{model}/", data={"id": "g"})
    dev = device(server, vendor, vclient, model, "d")
    return {"model": model, "device_cik": dev}


def _call(s, method, path, form, model):
    return s.request(method, path.format(m=model), data=form)


def test_no_unknown_or_device_credentials_get_401(server, world):
    model = world["model"]
    sessions = [
        server.session(),
        server.session(cik="q" * 40),
        server.session(token="t" * 40),
        server.session(cik=world["device_cik"]),
    ]
    for s in sessions:
        with s:
            for method, path, form in VENDOR_ROUTES:
                r = _call(s, method, path, form, model)
                assert r.status_code == 401, (method, path, s.headers)
                assert r.headers["Content-Type"].startswith("text/plain")


def test_second_vendor_is_forbidden(server, world):
    other = server.add_vendor()
    model = world["model"]
    with server.session(cik=other["cik"]) as s:
        for method, path, form in VENDOR_ROUTES:
            if "{m}" not in path:
                continue
            r = _call(s, method, path, form, model)
            assert r.status_code == 403, (method, path, r.text)
        # the vendor's own namespace is untouched by the attempt
        assert lines(s.get("/provision/manage/model/")) == []
        # naming the owner without a share is forbidden too
        s.headers["X-Exosite-Vendor"] = "someone-else"
        assert s.get(f"/provision/manage/model/{model}/").status_code == 403


def test_second_vendor_cannot_download_with_own_device(server, vendor, world):
    other = server.add_vendor()
    with server.session(cik=other["cik"]) as b:
        mb = new_model(b)
        bcik = device(server, other, b, mb, "bdev")
    q = {"vendor": vendor["vendor"], "model": world["model"]}
    with server.session(cik=bcik) as d:
        assert d.get("/provision/download", params=q).status_code == 403
        assert d.get("/provision/download", params={**q, "id": "c"}).status_code == 403


def test_shared_vendor_allowed_and_forbidden(server, vendor, vclient, world):
    model = world["model"]
    b = server.add_vendor()
    add_sn(vclient, model, "b1", "secret-extra")
    add_sn(vclient, model, "b2", "x")
    add_sn(vclient, model, "b3")
    r = vclient.post(f"/provision/manage/share/{model}/", data={"vendor": b["vendor"]})
    assert r.status_code == 205
    with server.session(cik=b["cik"]) as plain:
        assert lines(plain.get("/provision/manage/model/", params={"show": "shared"})) == [
            f"{vendor['vendor']},{model}"
        ]
    with server.session(cik=b["cik"], vendor=vendor["vendor"]) as s:
        base = f"/provision/manage/model/{model}/"
        # allowed: enable (owner under B), info, list, log, regenerate, disable, remap
        rid = enable(s, model, "b1", b["rid"])
        r = s.post(base + "b3", data={"enable": "true", "owner": vendor["rid"]})
        assert r.status_code == 409  # owner must be under the calling vendor
        r = s.get(base + "b1")
        assert r.status_code == 200 and r.text == f"notactivated,{rid},\n"
        r = s.get(base)
        assert r.status_code == 200 and lines(r) == [f"b1,{rid},"]
        r = s.get(base, params={"status": "true"})
        assert lines(r) == [f"b1,notactivated,{rid},"]
        assert activate(server, vendor["vendor"], model, "b1").status_code == 200
        r = s.get(base + "b1", params={"show": "log"})
        assert r.status_code == 200 and lines(r)[0].endswith(",activated")
        assert s.post(base + "b1", data={"enable": "true"}).status_code == 205
        assert s.post(base + "b1", data={"disable": "true"}).status_code == 205
        assert s.post(base + "b2", data={"enable": "true", "oldsn": "b1"}).status_code == 205
        assert s.get(base + "b2").text == f"notactivated,{rid},\n"
        # forbidden: serial numbers the owner enabled, and every other procedure
        assert s.get(base + "s").status_code == 403
        assert s.get(base + "d").status_code == 403
        assert s.get(base + "d", params={"show": "log"}).status_code == 403
        assert s.post(base + "d", data={"disable": "true"}).status_code == 403
        assert s.post(base + "d", data={"enable": "true"}).status_code == 403
        assert s.post(base + "b3", data={"enable": "true", "oldsn": "d"}).status_code == 403
        forbidden = [
            ("GET", f"/provision/manage/model/{model}", None),
            ("PUT", f"/provision/manage/model/{model}", {"code": "x"}),
            ("DELETE", f"/provision/manage/model/{model}", None),
            ("POST", base, {"sn": "new"}),
            ("POST", base, {"sn": "b2", "delete": "true"}),
            ("DELETE", base + "b2", None),
            ("GET", base + "b2?show=groups", None),
            ("GET", base + "?show=ranges", None),
            ("GET", "/provision/manage/model/", None),
            ("GET", f"/provision/manage/content/{model}/", None),
            ("GET", f"/provision/manage/content/{model}/c", None),
            ("GET", f"/provision/manage/group/{model}/", None),
            ("GET", f"/provision/manage/share/{model}/", None),
            ("GET", "/provision/admin/auth/", None),
        ]
        for method, path, form in forbidden:
            r = s.request(method, path, data=form)
            assert r.status_code == 403, (method, path, r.text)
    # the owner sees B's serial numbers with their extra
    assert vclient.get(f"/provision/manage/model/{model}/b2").text.endswith(",x\n")
    # unshare: B loses access
    assert vclient.delete(f"/provision/manage/share/{model}/{b['vendor']}").status_code == 205
    with server.session(cik=b["cik"], vendor=vendor["vendor"]) as s:
        assert s.get(f"/provision/manage/model/{model}/").status_code == 403


def test_share_procedures(server, vclient, world):
    model = world["model"]
    b, c = server.add_vendor(), server.add_vendor()
    url = f"/provision/manage/share/{model}/"
    assert vclient.get(url).status_code == 204
    assert vclient.post(url, data={"vendor": b["vendor"]}).status_code == 205
    assert vclient.post(url, data={"vendor": c["vendor"]}).status_code == 205
    assert vclient.post(url, data={"vendor": b["vendor"]}).status_code == 409
    assert vclient.post(url, data={"vendor": "no-such-vendor"}).status_code == 404
    r = vclient.get(url)
    assert r.status_code == 200 and lines(r) == [b["vendor"], c["vendor"]]
    assert vclient.get(url + b["vendor"]).status_code == 204
    assert vclient.post(url, data={"vendor": b["vendor"], "delete": "true"}).status_code == 205
    assert vclient.get(url + b["vendor"]).status_code == 404
    assert vclient.post(url, data={"vendor": b["vendor"], "delete": "true"}).status_code == 404
    assert vclient.delete(url + c["vendor"]).status_code == 205
    assert vclient.delete(url + c["vendor"]).status_code == 404
    assert vclient.get(url).status_code == 204


def test_vendor_tokens(server, vendor, vclient):
    url = "/provision/admin/auth/"
    assert vclient.get(url).text == ""
    r = vclient.post(url, data={"id": "ci"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/plain; charset=utf-8"
    token = r.text
    assert len(token) == 40
    assert vclient.post(url, data={"id": "ci"}).status_code == 409
    t2 = vclient.post(url, data={"id": "other"}).text
    assert lines(vclient.get(url)) == ["ci", "other"]
    r = vclient.get(url + "ci")
    assert r.status_code == 200 and r.text == token
    assert vclient.get(url + "nosuch").status_code == 404
    with server.session(token=token) as t:
        assert t.get("/provision/manage/model/").status_code == 200
        model = new_model(t)
        assert model in lines(vclient.get("/provision/manage/model/"))
    assert vclient.post(url, data={"id": "ci", "delete": "true"}).status_code == 205
    with server.session(token=token) as t:
        assert t.get("/provision/manage/model/").status_code == 401
    assert vclient.delete(url + "other").status_code == 205
    assert vclient.delete(url + "other").status_code == 404
    with server.session(token=t2) as t:
        assert t.get("/provision/manage/model/").status_code == 401
    # tokens are per vendor
    other = server.add_vendor()
    with server.session(cik=other["cik"]) as o:
        o.post(url, data={"id": "mine"})
        assert vclient.get(url + "mine").status_code == 404
        assert vclient.delete(url + "mine").status_code == 404
        assert lines(o.get(url)) == ["mine"]


def test_register(server, vendor, vclient, world):
    url = "/provision/register"
    r = vclient.get(url)
    assert r.status_code == 200 and r.text == vendor["vendor"]
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert vclient.post(url, data={"vendor": "another-name"}).status_code == 409
    other = server.add_vendor()
    r = vclient.post(url, data={"vendor": other["vendor"], "delete": "true"})
    assert r.status_code == 404
    r = vclient.post(url, data={"vendor": vendor["vendor"], "delete": "true"})
    assert r.status_code == 205
    assert vclient.get(url).status_code == 404
    assert vclient.get("/provision/manage/model/").status_code == 401
    assert vclient.post(url, data={"vendor": other["vendor"]}).status_code == 409
    assert vclient.post(url, data={"vendor": vendor["vendor"]}).status_code == 205
    assert vclient.get("/provision/manage/model/").status_code == 200
    with server.session(cik=world["device_cik"]) as d:
        assert d.get(url).status_code == 404
        assert d.post(url, data={"vendor": "devname"}).status_code == 403
    with server.session() as anon:
        assert anon.get(url).status_code == 401
