"""Bad input and limits: body caps, activation rate limit, a malformed-input sweep that must
produce no 5xx, and a 256 MiB content round trip with the server's memory staying flat.

The memory test takes a few seconds; deselect it with `-k "not memory_flat"`.
"""

import hashlib
import json
import socket
import subprocess
import sys
import time

from serverkit import activate, add_content, add_sn, new_model


def raw_request(server, data, timeout=5.0):
    """Send raw bytes; return (status or None, head+body bytes read before close/timeout)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                head, sep, body = buf.partition(b"\r\n\r\n")
                if sep:
                    if data.startswith(b"HEAD "):
                        break
                    length = _content_length(head)
                    if length is not None and len(body) >= length:
                        break
        except (TimeoutError, ConnectionResetError):
            pass
    if not buf.startswith(b"HTTP/1."):
        return None, buf
    return int(buf.split(b" ", 2)[1]), buf


def _content_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


def test_100000_sns_in_one_csv(vclient):
    model = new_model(vclient)
    body = "".join(f"sn{i:06d},batch 7\n" for i in range(100_000))  # ~1.7 MB
    hdr = {"Content-Type": "text/csv; charset=utf-8"}
    r = vclient.post(f"/provision/manage/model/{model}/", data=body.encode(), headers=hdr)
    assert r.status_code == 205, r.text
    r = vclient.get(f"/provision/manage/model/{model}/sn099999")
    assert r.status_code == 200


def _abandon(srv, path, cik, body, send):
    """POST a CSV body, send only its first `send` bytes, and go away without an answer."""
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Exosite-CIK: {cik}\r\n"
            f"Content-Type: text/csv\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(head.encode() + body[:send])


def test_abandoned_csv_leaves_the_next_write_fast(make_server, backend):
    """A 100 000-line CSV whose client gives up (mid-body, or right after the body) leaves the
    database usable at once: an `exoprov admin` command and the next API write go through.
    On PostgreSQL, with a transaction on `sns` still open (as that CSV's insert is while the
    server works on it, seconds on a busy machine): opening the store took table locks for
    its schema check, queued behind the insert, and every query on `sns` queued behind it."""
    srv = make_server()
    v = srv.add_vendor()
    with srv.session(cik=v["cik"]) as s:
        model = new_model(s)
    body = "".join(f"sn{i:06d},batch 7\n" for i in range(100_000)).encode()
    path = f"/provision/manage/model/{model}/"
    _abandon(srv, path, v["cik"], body, len(body) // 2)
    _abandon(srv, path, v["cik"], body, len(body))
    held = None
    if backend == "postgres":
        from pgkit import POSTGRES_BIN_PATH

        held = subprocess.Popen(
            [str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-At", "-d", str(srv.db)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        held.stdin.write("BEGIN;\nINSERT INTO sns (model_id, sn, extra) SELECT id, 'held', '' "
                         "FROM models LIMIT 1;\nSELECT 'open';\n")  # fmt: skip
        held.stdin.flush()
        assert held.stdout.readline().strip() == "open"
    try:
        cmd = [sys.executable, "-m", "exoprov.cli", "admin", "add-vendor", "after-csv"]
        r = subprocess.run(cmd + ["--db", str(srv.db)], capture_output=True, text=True,
                           timeout=30)  # fmt: skip
        assert r.returncode == 0, r.stderr
        with srv.session(cik=v["cik"]) as s:
            add_sn(s, model, "after-csv")
            assert s.get(f"{path}after-csv").status_code == 200
    finally:
        if held is not None:
            held.stdin.close()  # psql ends: the held transaction rolls back
            held.wait(10)


def test_form_body_over_64k_is_413(server, vclient):
    r = vclient.post("/provision/manage/model/", data="model=" + "x" * 70000)
    assert r.status_code == 413
    assert r.headers["Connection"].lower() == "close"
    assert r.headers["Content-Type"].startswith("text/plain")
    model = new_model(vclient)
    r = vclient.post(  # a CSV serial-number list may be larger: 4 MiB
        f"/provision/manage/model/{model}/",
        data="a\n" * (2 * 1024 * 1024 + 1),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 413
    # decided from Content-Length, before any of the body arrives
    t0 = time.monotonic()
    status, _ = raw_request(
        server,
        b"POST /provision/activate HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 1000000000\r\n\r\n",
    )
    assert status == 413
    assert time.monotonic() - t0 < 4
    # a chunked form body is cut off while streaming
    r = vclient.post(
        "/provision/manage/model/", data=iter([b"model=", b"y" * 40000, b"y" * 40000])
    )
    assert r.status_code == 413


def test_activation_rate_limit(make_server):
    srv = make_server("--activation-limit", "3")
    v = srv.add_vendor()
    with srv.session(cik=v["cik"]) as s:
        model = new_model(s)
        add_sn(s, model, "ok")
        s.post(f"/provision/manage/model/{model}/ok", data={"enable": "true", "owner": v["rid"]})
    for _ in range(3):
        assert activate(srv, v["vendor"], model, "nosuch").status_code == 404
    r = activate(srv, v["vendor"], model, "ok")
    assert r.status_code == 429
    assert r.headers["Content-Type"].startswith("text/plain")
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    # refused before it counted: the serial number can still activate once allowed
    with srv.session(cik=v["cik"]) as s:
        log = s.get(f"/provision/manage/model/{model}/ok", params={"show": "log"})
        assert log.status_code == 204


def test_success_does_not_count_towards_limit(make_server):
    srv = make_server("--activation-limit", "2")
    v = srv.add_vendor()
    with srv.session(cik=v["cik"]) as s:
        model = new_model(s)
        for i in range(4):
            add_sn(s, model, f"s{i}")
            s.post(
                f"/provision/manage/model/{model}/s{i}", data={"enable": "true", "owner": v["rid"]}
            )
    for i in range(4):
        assert activate(srv, v["vendor"], model, f"s{i}").status_code == 200


RAW = [
    b"GARBAGE\r\n\r\n",
    b"GET /ip HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /ip HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /ip HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /provision/activate HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /provision/activate HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /provision/activate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /provision/activate HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Content-Length: 6\r\n\r\nabcdef",
    b"POST /provision/activate HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nvendor=\xff\xfe",
    b"GET /provision/download?vendor=%ff&model=%zz HTTP/1.1\r\nHost: x\r\n"
    b"X-Exosite-CIK: \xff\xfe\r\n\r\n",
]

PATHS = [
    "/",
    "//",
    "/provision",
    "/provision/",
    "/provision/manage/model/%00/",
    "/provision/manage/model/a%2Fb/",
    "/provision/manage/model/%ff%fe/",
    "/provision/manage/model/%E2%82/",
    "/provision/manage/model/" + "x" * 3000 + "/",
    "/provision/manage/model/a,b/s",
    "/provision/manage/model/M/%0d%0a",
    "/provision/manage/content/M/%ff",
    "/provision/manage/content/M/c?download=true&sn=%ff",
    "/provision/manage/group/M/%00/",
    "/provision/manage/model/M/?limit=99999999999999999999999&offset=-1",
    "/provision/manage/model/M/?offset=99999999999999999",
    "/provision/manage/model/M/?limit=1e5",
    "/provision/manage/model/M/?show=%ff",
    "/provision/manage/model/M/?status=maybe",
    "/provision/manage/model/M/s?show=groups&limit=x",
    "/provision/manage/group/M/?offset=%zz",
    "/provision/manage/group/M/g/?type=%00&id=",
    "/provision/admin/auth/%ff",
    "/provision/download?vendor&model",
    "/provision/download?vendor=a&model=b&id=c&info=maybe",
    "/jsonp?token=&callback=",
    "/jsonp?token=a&callback=cb&p=99999999999999999",
    "/onep:v1/stack/alias?%ff",
    "/ip?%zz",
    "/provision/../../etc/passwd",
]

RANGES = [
    "bytes=",
    "bytes=-",
    "bytes=--1",
    "bytes=1-2-3",
    "bytes= 1-2",
    "bytes=99999999999999999999999-",
    "bytes=-99999999999999999999",
    "bytes=9999999999999999999-",
    "bytes=0-0,0-0,0-0",
    "bits=0-1",
    "bytes=\u00e9",
    "",
]

BODIES = [
    ("application/x-www-form-urlencoded", b"%zz=%ff&&&==="),
    ("application/x-www-form-urlencoded", b"sn=%ff%fe"),
    ("application/x-www-form-urlencoded", b"\xff\xfe\x00\x01"),
    ("application/x-www-form-urlencoded", b"a=1&" * 3000),
    ("application/x-www-form-urlencoded", b"enable=true&owner=" + b"z" * 5000),
    ("application/x-www-form-urlencoded", b"enable=true&enable=true"),
    ("application/x-www-form-urlencoded", b"type=sn&id=x&expire=99999999999999999999"),
    ("text/csv", b"\xff\xfe\n,,,,\n"),
    ("text/csv", b",,,\n\n\r\n"),
    ("text/csv", b"a\x00b,c\n"),
    ("application/javascript", b"{"),
    ("application/javascript", b'{"ranges": {"a": 1}}'),
    ("application/javascript", b'{"ranges": [1, "x", null]}'),
    ("application/javascript", b'{"ranges":[{"format":"base10","first":1e400,"last":2}]}'),
    ("application/javascript", b"[" * 100000),
    ("application/javascript", b"[" * 60000),
    (
        "application/javascript",
        b'{"ranges":[{"format":"base10","first":1' + b"0" * 5000 + b',"last":2}]}',
    ),
    ("application/json", b"\xff"),
    ("multipart/form-data; boundary=x", b"--x--"),
    ("", b"\x00" * 10),
]


def test_malformed_input_sweep_has_no_5xx(server, vendor, vclient):
    model = new_model(vclient)
    add_sn(vclient, model, "s")
    add_content(vclient, model, "c", b"0123456789")
    add_content(vclient, model, "keep", b"0123456789")
    vclient.post(f"/provision/manage/group/{model}/", data={"id": "g"})
    seen = []

    def check(status, what, body=b""):
        seen.append(status)
        assert status is not None, what
        assert status < 500, (what, status, body[:200])
        assert b"Traceback" not in body, what

    for data in RAW:
        status, buf = raw_request(server, data)
        check(status, data[:60], buf)
    for header in (
        b"X-Exosite-Vendor",
        b"X-Exosite-CIK",
        b"X-Exosite-Token",
        b"Range",
        b"If-Range",
    ):
        for value in (b"\xff\xfe", b"\xc3", b"a\x7fb", b"%ff"):
            for path in (
                f"/provision/manage/model/{model}/s",
                f"/provision/manage/content/{model}/keep?download=true",
            ):
                req = f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Exosite-CIK: {vendor['cik']}\r\n"
                req = req.encode() + header + b": " + value + b"\r\n\r\n"
                status, buf = raw_request(server, req)
                check(status, (header, value, path), buf)
    for path in PATHS:
        path = path.replace("/M/", f"/{model}/")
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"):
            req = f"{method} {path} HTTP/1.1\r\nHost: x\r\nX-Exosite-CIK: {vendor['cik']}\r\n"
            req += "Content-Length: 0\r\n\r\n"
            status, buf = raw_request(server, req.encode("latin-1"))
            check(status, (method, path), buf)
    blob = f"/provision/manage/content/{model}/keep?download=true"
    for rng in RANGES:
        for if_range in (None, '"nope"', "Mon, 99 Foo 2020", "W/", ""):
            headers = {"Range": rng}
            if if_range is not None:
                headers["If-Range"] = if_range
            r = vclient.get(blob, headers={k: v.encode() for k, v in headers.items()})
            check(r.status_code, (rng, if_range), r.content)
    targets = [
        "/provision/activate",
        "/provision/register",
        "/provision/admin/auth/",
        f"/provision/manage/model/{model}/",
        f"/provision/manage/model/{model}/s",
        "/provision/manage/model/",
        f"/provision/manage/content/{model}/",
        f"/provision/manage/group/{model}/",
        f"/provision/manage/group/{model}/g/",
        f"/provision/manage/share/{model}/",
        "/onep:v1/stack/alias",
        "/jsonp/register",
    ]
    for path in targets:
        for ctype, body in BODIES:
            for method in ("POST", "PUT", "DELETE"):
                r = vclient.request(method, path, data=body, headers={"Content-Type": ctype})
                check(r.status_code, (method, path, ctype, body[:30]), r.content)
    for name, value in [
        ("X-Exosite-CIK", "x" * 300),
        ("X-Exosite-CIK", ""),
        ("X-Exosite-Token", "\u00e9"),
        ("X-Exosite-Vendor", "\u00e9\u00e9"),
        ("X-Exosite-Vendor", ""),
        ("Content-Length", "0"),
    ]:
        with server.session() as s:
            r = s.get(f"/provision/manage/model/{model}/", headers={name: value.encode()})
            check(r.status_code, name, r.content)
    # upload Content-Type that would break the CSV info line
    r = vclient.post(
        f"/provision/manage/content/{model}/keep", data=b"x", headers={"Content-Type": "a,b"}
    )
    check(r.status_code, "ctype with comma", r.content)
    assert r.status_code == 400
    # the server is still up and answering
    with server.session() as s:
        assert s.get("/ip").status_code == 200
    assert len(seen) > 500
    assert vclient.get(f"/provision/manage/content/{model}/keep?download=true").content == (
        b"0123456789"
    )


class _Pattern:
    """`size` bytes of a repeating non-trivial pattern, readable in chunks (never whole)."""

    def __init__(self, size):
        self.size = size
        self.pos = 0
        block = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB
        self.block = block

    def __len__(self):
        return self.size - self.pos

    def read(self, n=-1):
        if n is None or n < 0:
            n = 1 << 20
        n = min(n, self.size - self.pos, 1 << 20)
        if n <= 0:
            return b""
        off = self.pos % len(self.block)
        out = self.block[off : off + n]
        if len(out) < n:
            out += self.block[: n - len(out)]
        self.pos += n
        return out


def _rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


def test_big_content_memory_flat(make_server):
    size = 256 << 20
    srv = make_server("--max-content-bytes", str(size))
    v = srv.add_vendor()
    pid = srv.proc.pid
    with srv.session(cik=v["cik"]) as s:
        model = new_model(s)
        add_content(s, model, "big", b"warm-up")
        url = f"/provision/manage/content/{model}/big"
        s.get(url, params={"download": "true"})  # warm the paths up before measuring
        base_hwm = _rss_kib(pid, "VmHWM")
        base_rss = _rss_kib(pid, "VmRSS")

        src = _Pattern(size)
        want = hashlib.sha256()
        t0 = time.monotonic()

        class _Hashing:
            def __len__(self):
                return len(src)

            def read(self, n=-1):
                chunk = src.read(n)
                want.update(chunk)
                return chunk

        r = s.post(url, data=_Hashing(), headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 205, r.text
        t_up = time.monotonic() - t0
        info = s.get(url).text.split(",")
        assert info[1] == str(size)

        got = hashlib.sha256()
        n = 0
        t0 = time.monotonic()
        with s.get(url, params={"download": "true"}, stream=True) as r:
            assert r.status_code == 200
            assert r.headers["Content-Length"] == str(size)
            for chunk in r.iter_content(1 << 20):
                got.update(chunk)
                n += len(chunk)
        t_down = time.monotonic() - t0
        assert n == size and got.hexdigest() == want.hexdigest()
        r = s.get(url, params={"download": "true"}, headers={"Range": f"bytes={size - 5}-"})
        assert r.status_code == 206 and len(r.content) == 5

    growth = (_rss_kib(pid, "VmHWM") - base_hwm) / 1024
    rss = _rss_kib(pid, "VmRSS") / 1024
    print(
        f"\n256 MiB: upload {t_up:.1f}s ({256 / t_up:.0f} MiB/s), download {t_down:.1f}s "
        f"({256 / t_down:.0f} MiB/s); server peak grew {growth:.1f} MiB "
        f"(RSS {base_rss / 1024:.0f} -> {rss:.0f} MiB)"
    )
    assert growth < 64, f"server peak RSS grew {growth:.1f} MiB for a 256 MiB blob"


def test_json_ranges_document_is_bounded(vclient):
    model = new_model(vclient)
    doc = {"ranges": [{"format": "base10", "first": i, "last": i} for i in range(1001)]}
    r = vclient.post(
        f"/provision/manage/model/{model}/",
        data=json.dumps(doc),
        headers={"Content-Type": "application/javascript"},
    )
    assert r.status_code == 400


def test_stalled_body_is_408(make_server):
    srv = make_server("--read-timeout", "0.5")
    v = srv.add_vendor()
    with srv.session(cik=v["cik"]) as s:
        model = new_model(s)
        add_content(s, model, "c", b"old")
    for path, head in (
        ("/provision/activate", b""),
        (f"/provision/manage/content/{model}/c", f"X-Exosite-CIK: {v['cik']}\r\n".encode()),
    ):
        t0 = time.monotonic()
        req = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n".encode()
        status, buf = raw_request(srv, req + head + b"\r\nabc")
        assert status == 408, buf
        assert time.monotonic() - t0 < 5
    with srv.session(cik=v["cik"]) as s:
        r = s.get(f"/provision/manage/content/{model}/c", params={"download": "true"})
        assert r.content == b"old"
    assert len(srv.blob_names()) == 1  # "old" only: nothing left of the stalled upload
