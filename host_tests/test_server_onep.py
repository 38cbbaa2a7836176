"""The data interface (/onep:v1/stack/alias), /jsonp/register + /jsonp, and GET /ip."""

import json
import re
import socket
import time
from urllib.parse import parse_qs

from serverkit import device, new_model

ALIAS = "/onep:v1/stack/alias"


def test_write_and_read_latest(server, vendor, vclient):
    model = new_model(vclient)
    cik = device(server, vendor, vclient, model, "d1")
    with server.session(cik=cik) as d:
        r = d.post(ALIAS, data={"state": "idle", "version": "1.0"})
        assert r.status_code == 204
        r = d.post(ALIAS, data={"state": "updating", "progress": "42"})
        assert r.status_code == 204
        r = d.get(ALIAS + "?state&version&progress&never")
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
        assert parse_qs(r.text) == {
            "state": ["updating"],
            "version": ["1.0"],
            "progress": ["42"],
        }
        assert d.post(ALIAS, data="").status_code == 400
        assert d.get(ALIAS).status_code == 400
        assert d.post(ALIAS, data={"bad,alias": "1"}).status_code == 400
    # another device does not see these values
    other = device(server, vendor, vclient, model, "d2")
    with server.session(cik=other) as d:
        assert d.get(ALIAS + "?state").text == ""
    for creds in ({}, {"cik": vendor["cik"]}, {"cik": "x" * 40}):
        with server.session(**creds) as s:
            assert s.post(ALIAS, data={"state": "x"}).status_code == 401
            assert s.get(ALIAS + "?state").status_code == 401


def test_jsonp(server, vendor, vclient):
    model = new_model(vclient)
    cik = device(server, vendor, vclient, model, "j1")
    with server.session(cik=cik) as d:
        for i in range(3):
            d.post(ALIAS, data={"temp": str(20 + i), "state": f"s{i}"})
        r = d.post(
            "/jsonp/register",
            data={
                "alias[]": ["temp", "state"],
                "starttime": "0",
                "endtime": str(int(time.time()) + 60),
                "limit": "2",
                "access[]": "data",
                "expire": str(int(time.time()) + 600),
            },
        )
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
        token = r.text
        assert (
            d.post("/jsonp/register", data={"alias[]": "temp", "expire": "1"}).status_code == 400
        )
        assert d.post("/jsonp/register", data={}).status_code == 400
    with server.session() as anon:
        r = anon.get("/jsonp", params={"token": token, "callback": "cb", "show[]": "data"})
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("application/javascript")
        m = re.fullmatch(r"cb\((.*)\);", r.text, re.S)
        assert m, r.text
        result = json.loads(m.group(1))["result"]
        assert [v for _ts, v in result["temp"]["data"]] == ["20", "21"]
        assert [v for _ts, v in result["state"]["data"]] == ["s0", "s1"]
        ts = [t for t, _v in result["temp"]["data"]]
        assert ts == sorted(ts) and abs(ts[0] - time.time()) < 60
        r = anon.get("/jsonp", params={"token": token, "callback": "cb", "p": "1"})
        result = json.loads(r.text[3:-2])["result"]
        assert [v for _ts, v in result["temp"]["data"]] == ["22"]
        bad_cb = anon.get("/jsonp", params={"token": token, "callback": "alert(1)//"})
        assert bad_cb.status_code == 400
        assert anon.get("/jsonp", params={"token": "x" * 40, "callback": "cb"}).status_code == 401
        assert anon.get("/jsonp", params={"callback": "cb"}).status_code == 400
        with server.session() as s:
            assert s.post("/jsonp/register", data={"alias[]": "temp"}).status_code == 401


def test_ip(server):
    with server.session() as s:
        r = s.get("/ip")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    octets = [int(x) for x in r.text.split(",")]
    assert octets[:4] == [127, 0, 0, 1]
    assert octets[4] * 256 + octets[5] == server.port


def test_keep_alive_and_server_header(server):
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        answers = []
        for _ in range(3):
            s.sendall(b"GET /ip HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf or not buf.split(b"\r\n\r\n", 1)[1].count(b",") == 5:
                chunk = s.recv(4096)
                assert chunk, "connection closed between requests"
                buf += chunk
            answers.append(buf)
    assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers)
    assert b"\r\nServer: exoprov\r\n" in answers[0]
