"""Content: management procedures, device download, Range/If-Range, protected content."""

import time

import pytest
from serverkit import add_content, add_sn, device, lines, new_model

BLOB = bytes(range(256)) * 4  # 1024 bytes


@pytest.fixture
def blob_model(vclient):
    model = new_model(vclient)
    add_content(vclient, model, "fw", BLOB, meta="sha256=x&version=1", ctype="application/x-fw")
    return model


def test_create_list_info_delete(vclient):
    model = new_model(vclient)
    url = f"/provision/manage/content/{model}/"
    r = vclient.get(url)
    assert r.status_code == 200 and r.text == ""
    assert vclient.post(url, data={"id": "a", "meta": "m1"}).status_code == 205
    assert (
        vclient.post(url, data={"id": "b", "description": "old", "protected": "true"}).status_code
        == 205
    )
    assert vclient.post(url, data={"id": "a"}).status_code == 409
    r = vclient.get(url)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert lines(r) == ["a", "b"]
    r = vclient.get(url + "a")
    assert r.status_code == 200 and r.text == ",0,0,m1,false\n"
    assert vclient.get(url + "b").text == ",0,0,old,true\n"
    assert vclient.get(url + "a", params={"download": "true"}).status_code == 404
    assert vclient.post(url, data={"delete": "true", "id": "a"}).status_code == 205
    assert vclient.post(url, data={"delete": "true", "id": "a"}).status_code == 404
    assert vclient.delete(url + "b").status_code == 205
    assert vclient.delete(url + "b").status_code == 404
    assert vclient.get(url + "b").status_code == 404
    assert vclient.get(url).text == ""
    assert vclient.get("/provision/manage/content/nosuchmodel/").status_code == 400
    # a blob download names 403 for an invalid vendor/model pair (GET
    # /provision/manage/content/<model>/<id>?download=true); info stays 404
    dl = {"download": "true"}
    assert vclient.get("/provision/manage/content/nosuchmodel/a", params=dl).status_code == 403
    assert vclient.get("/provision/manage/content/nosuchmodel/a").status_code == 404


def test_upload_sets_type_size_timestamp(vclient, blob_model):
    url = f"/provision/manage/content/{blob_model}/fw"
    ctype, size, ts, meta, prot = vclient.get(url).text.rstrip("\n").split(",")
    assert (ctype, size, meta, prot) == ("application/x-fw", "1024", "sha256=x&version=1", "false")
    assert abs(int(ts) - time.time()) < 60
    r = vclient.post(url, data=b"v2", headers={"Content-Type": "text/plain"})
    assert r.status_code == 205
    assert vclient.get(url).text.startswith("text/plain,2,")
    assert vclient.get(url, params={"download": "true"}).content == b"v2"
    r = vclient.post(f"/provision/manage/content/{blob_model}/nosuch", data=b"x")
    assert r.status_code == 404


def test_download_whole_and_ranges(vclient, blob_model):
    url = f"/provision/manage/content/{blob_model}/fw"
    q = {"download": "true"}
    r = vclient.get(url, params=q)
    assert r.status_code == 200 and r.content == BLOB
    assert r.headers["Content-Type"] == "application/x-fw"
    assert r.headers["Accept-Ranges"] == "bytes"
    etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
    assert etag.startswith('"') and etag.endswith('"')
    assert modified.endswith(" GMT")

    def get(rng, **extra):
        return vclient.get(url, params=q, headers={"Range": rng, **extra})

    r = get("bytes=0-9")
    assert r.status_code == 206 and r.content == BLOB[:10]
    assert r.headers["Content-Range"] == "bytes 0-9/1024"
    assert r.headers["Content-Length"] == "10"
    r = get("bytes=1000-")
    assert r.status_code == 206 and r.content == BLOB[1000:]
    assert r.headers["Content-Range"] == "bytes 1000-1023/1024"
    r = get("bytes=-10")
    assert r.status_code == 206 and r.content == BLOB[-10:]
    assert r.headers["Content-Range"] == "bytes 1014-1023/1024"
    r = get("bytes=-5000")
    assert r.status_code == 206 and r.content == BLOB
    r = get("bytes=1020-5000")
    assert r.status_code == 206 and r.content == BLOB[1020:]
    for bad in ("bytes=1024-", "bytes=5000-6000", "bytes=-0"):
        r = get(bad)
        assert r.status_code == 416, bad
        assert r.headers["Content-Range"] == "bytes */1024"
    for ignored in ("bytes=abc", "items=0-1", "bytes=9-2", "bytes=0-1,5-6", "bytes=-"):
        r = get(ignored)
        assert r.status_code == 200 and r.content == BLOB, ignored
    # If-Range: the range applies only while the validator still matches
    r = get("bytes=0-3", **{"If-Range": etag})
    assert r.status_code == 206 and r.content == BLOB[:4]
    r = get("bytes=0-3", **{"If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == BLOB
    r = get("bytes=0-3", **{"If-Range": "W/" + etag})
    assert r.status_code == 200
    r = get("bytes=0-3", **{"If-Range": modified})
    assert r.status_code == 206
    r = get("bytes=0-3", **{"If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert r.status_code == 200 and r.content == BLOB
    # a new upload changes the validator
    vclient.post(url, data=b"new", headers={"Content-Type": "text/plain"})
    r = get("bytes=0-3", **{"If-Range": etag})
    assert r.status_code == 200 and r.content == b"new"


def test_empty_blob(vclient):
    model = new_model(vclient)
    add_content(vclient, model, "empty", b"")
    url = f"/provision/manage/content/{model}/empty"
    r = vclient.get(url, params={"download": "true"})
    assert r.status_code == 200 and r.content == b""
    r = vclient.get(url, params={"download": "true"}, headers={"Range": "bytes=0-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */0"


def test_device_download(server, vendor, vclient, blob_model):
    cik = device(server, vendor, vclient, blob_model, "dev1")
    q = {"vendor": vendor["vendor"], "model": blob_model}
    with server.session(cik=cik) as d:
        r = d.get("/provision/download", params=q)
        assert r.status_code == 200 and lines(r) == ["fw"]
        assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
        r = d.get("/provision/download", params={**q, "id": "fw", "info": "true"})
        assert r.status_code == 200
        ctype, size, _ts, meta = r.text.rstrip("\n").split(",", 3)
        assert (ctype, size, meta) == ("application/x-fw", "1024", "sha256=x&version=1")
        r = d.get("/provision/download", params={**q, "id": "fw"})
        assert r.status_code == 200 and r.content == BLOB
        r = d.get("/provision/download", params={**q, "id": "fw"}, headers={"Range": "bytes=-4"})
        assert r.status_code == 206 and r.content == BLOB[-4:]
        assert r.headers["Content-Range"] == "bytes 1020-1023/1024"
        r = d.get("/provision/download", params={**q, "id": "nosuch"})
        assert r.status_code == 404
        # invalid vendor/model pair: 403, and 400 for info (GET /provision/download)
        bad = {"vendor": vendor["vendor"], "model": "nosuch"}
        assert d.get("/provision/download", params=bad).status_code == 403
        assert d.get("/provision/download", params={**bad, "id": "fw"}).status_code == 403
        r = d.get("/provision/download", params={**bad, "id": "fw", "info": "true"})
        assert r.status_code == 400
        other = new_model(vclient)
        assert d.get("/provision/download", params={**q, "model": other}).status_code == 403
    with server.session() as anon:
        assert anon.get("/provision/download", params=q).status_code == 401
    with server.session(cik=vendor["cik"]) as v:
        assert v.get("/provision/download", params=q).status_code == 401


def test_head_of_a_download_is_its_get_without_the_bytes(server, vendor, vclient, blob_model):
    """HEAD /provision/download (what deploy/nginx asks before serving from its cache): the
    status and headers of the same GET, no body; refusals the same as the GET's."""
    cik = device(server, vendor, vclient, blob_model, "head1")
    q = {"vendor": vendor["vendor"], "model": blob_model, "id": "fw"}
    keys = ("Content-Type", "Content-Length", "Content-Range", "ETag", "Last-Modified")
    cases = [
        (cik, q, {}),
        (cik, q, {"Range": "bytes=10-19"}),
        (cik, q, {"Range": "bytes=5000-"}),
        (cik, {**q, "id": "nosuch"}, {}),
        (cik, {**q, "model": "nosuch"}, {}),
        (cik, {**q, "info": "true"}, {}),
        ("f" * 40, q, {}),
        (vendor["cik"], q, {}),
    ]
    with server.session() as d:
        for who, params, headers in cases:
            headers = {**headers, "X-Exosite-CIK": who}
            g = d.get("/provision/download", params=params, headers=headers)
            h = d.head("/provision/download", params=params, headers=headers)
            assert h.status_code == g.status_code, (params, headers)
            assert h.content == b""
            for k in keys:
                assert h.headers.get(k) == g.headers.get(k), (params, headers, k)


def _member(s, model, gid, type_, mid, expire=0):
    r = s.post(
        f"/provision/manage/group/{model}/{gid}/",
        data={"type": type_, "id": mid, "expire": str(expire)},
    )
    assert r.status_code == 205, r.text


def _group(s, model, gid):
    r = s.post(f"/provision/manage/group/{model}/", data={"id": gid})
    assert r.status_code == 205, r.text


def test_protected_content_through_groups(server, vendor, vclient):
    model = new_model(vclient)
    add_content(vclient, model, "pub", b"public")
    add_content(vclient, model, "sec", b"secret", protected=True)
    a = device(server, vendor, vclient, model, "a")
    b = device(server, vendor, vclient, model, "b")
    c = device(server, vendor, vclient, model, "c")
    q = {"vendor": vendor["vendor"], "model": model}

    def ids(cik):
        with server.session(cik=cik) as d:
            return lines(d.get("/provision/download", params=q))

    def fetch(cik):
        with server.session(cik=cik) as d:
            return d.get("/provision/download", params={**q, "id": "sec"}).status_code

    assert ids(a) == ["pub"] and fetch(a) == 404
    base = f"/provision/manage/content/{model}/"
    assert lines(vclient.get(base, params={"sn": "a"})) == ["pub"]
    assert vclient.get(base + "sec", params={"sn": "a"}).status_code == 404
    assert vclient.get(base, params={"sn": "unknown"}).status_code == 400

    # direct: one group holds both sn a and the content
    _group(vclient, model, "direct")
    _member(vclient, model, "direct", "sn", "a")
    _member(vclient, model, "direct", "content", "sec")
    assert ids(a) == ["pub", "sec"] and fetch(a) == 200
    assert lines(vclient.get(base, params={"sn": "a"})) == ["pub", "sec"]
    r = vclient.get(base + "sec", params={"sn": "a"})
    assert r.status_code == 200 and r.text.startswith("text/plain,6,") and r.text.count(",") == 3
    r = vclient.get(base + "sec", params={"sn": "a", "download": "true"})
    assert r.status_code == 200 and r.content == b"secret"
    assert vclient.get(base + "sec", params={"sn": "b", "download": "true"}).status_code == 404
    assert ids(b) == ["pub"]

    # nested: outer holds the content and group inner; inner holds sn b
    _group(vclient, model, "outer")
    _group(vclient, model, "inner")
    _member(vclient, model, "outer", "content", "sec")
    _member(vclient, model, "outer", "group", "inner")
    _member(vclient, model, "inner", "sn", "b")
    assert ids(b) == ["pub", "sec"] and fetch(b) == 200
    # the nesting membership expires: b loses it
    _member(vclient, model, "outer", "group", "inner", expire=int(time.time()) - 1)
    assert ids(b) == ["pub"] and fetch(b) == 404
    # an expiry in the future still counts
    _member(vclient, model, "outer", "group", "inner", expire=int(time.time()) + 3600)
    assert fetch(b) == 200
    # a's own membership expires
    _member(vclient, model, "direct", "sn", "a", expire=1)
    assert fetch(a) == 404
    assert ids(c) == ["pub"]
    # show=groups on content
    r = vclient.get(base + "sec", params={"show": "groups"})
    assert r.status_code == 200 and sorted(lines(r)) == ["direct", "outer"]
    assert vclient.get(base + "pub", params={"show": "groups"}).status_code == 204


def test_upload_over_cap_is_413(make_server):
    srv = make_server("--max-content-bytes", "1000")
    v = srv.add_vendor()
    with srv.session(cik=v["cik"]) as s:
        model = new_model(s)
        add_content(s, model, "small", b"x" * 1000)
        url = f"/provision/manage/content/{model}/small"
        r = s.post(url, data=b"y" * 1001, headers={"Content-Type": "text/plain"})
        assert r.status_code == 413
        assert r.headers["Connection"].lower() == "close"
        # chunked (no Content-Length): enforced while streaming
        r = s.post(url, data=iter([b"z" * 600, b"z" * 600]))
        assert r.status_code == 413
        assert s.get(url, params={"download": "true"}).content == b"x" * 1000
    blobs = srv.blob_names()
    assert len(blobs) == 1, blobs  # no temporary file (or half upload) left behind


def test_sn_in_range_sees_content(vclient):
    model = new_model(vclient)
    add_content(vclient, model, "pub", b"p")
    r = vclient.post(
        f"/provision/manage/model/{model}/",
        data='{"ranges":[{"format":"base10","length":4,"first":0,"last":99}]}',
        headers={"Content-Type": "application/javascript"},
    )
    assert r.status_code == 205
    base = f"/provision/manage/content/{model}/"
    assert lines(vclient.get(base, params={"sn": "0042"})) == ["pub"]
    assert vclient.get(base, params={"sn": "0100"}).status_code == 400
    add_sn(vclient, model, "listed")
    assert lines(vclient.get(base, params={"sn": "listed"})) == ["pub"]


def test_last_modified_names_one_upload(vclient):
    model = new_model(vclient)
    add_content(vclient, model, "c", b"first")
    url = f"/provision/manage/content/{model}/c"
    q = {"download": "true"}
    first = vclient.get(url, params=q).headers["Last-Modified"]
    vclient.post(url, data=b"second", headers={"Content-Type": "text/plain"})
    r = vclient.get(url, params=q, headers={"Range": "bytes=0-1", "If-Range": first})
    assert r.status_code == 200 and r.content == b"second"
    assert r.headers["Last-Modified"] != first


def _slow_get(server, path, headers, pause=0.5):
    """A GET on a raw socket with a small receive buffer that reads nothing for `pause`
    seconds (the server's socket fills up), then everything: -> (head, body)."""
    import socket

    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    s.connect(("127.0.0.1", server.port))
    lines_ = [f"GET {path} HTTP/1.1", "Host: x", "Connection: close"]
    lines_ += [f"{k}: {v}" for k, v in headers.items()]
    s.sendall(("\r\n".join(lines_) + "\r\n\r\n").encode())
    time.sleep(pause)
    buf = bytearray()
    s.settimeout(30)
    while True:
        got = s.recv(16384)
        if not got:
            break
        buf += got
    s.close()
    head, _, body = bytes(buf).partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def test_a_slow_reader_gets_every_byte(server, vendor, vclient):
    """The server's socket fills while the client does not read: the answer continues from
    where the kernel stopped (sendfile on plain TCP, then the transport), byte for byte."""
    import hashlib
    import os

    model = new_model(vclient)
    data = os.urandom(6 * 1024 * 1024 + 7)
    add_content(vclient, model, "big", data, ctype="application/octet-stream")
    cik = device(server, vendor, vclient, model, "slow1")
    path = f"/provision/download?vendor={vendor['vendor']}&model={model}&id=big"
    head, body = _slow_get(server, path, {"X-Exosite-CIK": cik})
    assert head.startswith("HTTP/1.1 200")
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    head, body = _slow_get(server, path, {"X-Exosite-CIK": cik, "Range": "bytes=5-1048580"})
    assert head.startswith("HTTP/1.1 206")
    assert body == data[5:1048581]
