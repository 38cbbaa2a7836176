"""Abuse limits of the standalone server: slow clients (deadlines for headers and body, a
per-address connection cap), bad input answered 4xx with one log line, and "last seen from"
written only for a caller that proved to be the device."""

import selectors
import socket
import time

import requests
from conftest import Server
from serverkit import activate, add_content, add_sn, device, enable, new_model

# short deadlines so that the slow clients' fate is seen within seconds
SLOW_FLAGS = ("--header-timeout", "2", "--body-timeout", "3", "--activation-limit", "0")
ATTACKERS = ("127.0.0.2", "127.0.0.3")  # loopback addresses other than the normal clients'


class SlowClient:
    """One connection that never completes its request: idle, headers a byte at a time, or a
    POST body a byte at a time."""

    def __init__(self, port, kind, source):
        self.kind = kind
        self.sock = socket.socket()
        self.sock.bind((source, 0))
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.got = b""
        self.closed = False
        head = b"GET /ip HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 10_000
        if kind == "body":
            head = b"POST /provision/activate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            head += b"Content-Type: application/x-www-form-urlencoded\r\n\r\nvendor="
            self._send(head)
            head = b"x" * 1000
        self.todo = b"" if kind == "idle" else head

    def _send(self, data):
        try:
            self.sock.send(data)
        except (BlockingIOError, OSError):
            pass

    def drip(self):
        if self.todo and not self.closed:
            self._send(self.todo[:1])
            self.todo = self.todo[1:]

    def readable(self):
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self.got += data
        if not data:
            self.closed = True

    def outcome(self):
        if self.got.startswith(b"HTTP/1.1 "):
            return int(self.got.split()[1])
        return "closed"


def _normal_requests(srv, vendor, model, i):
    """What a device and a vendor do, from 127.0.0.1: all answered."""
    assert requests.get(srv.url + "/ip", timeout=10).status_code == 200
    with srv.session(cik=vendor["cik"]) as s:
        s.headers["Connection"] = "close"
        assert s.get(f"/provision/manage/model/{model}/", timeout=10).status_code in (200, 204)
        sn = f"n{i}"
        add_sn(s, model, sn)
        enable(s, model, sn, vendor["rid"])
    assert activate(srv, vendor["vendor"], model, sn).status_code == 200


def test_slow_clients_cannot_starve_the_server(tmp_path):
    """300 slow connections (a third each idle, dripping headers, dripping a body) against a
    server whose open-file limit is 256: the ones past the per-address cap are refused at
    once, the others closed at their deadline, and normal requests are answered throughout."""
    srv = Server(tmp_path, *SLOW_FLAGS, nofile=256)
    try:
        vendor = srv.add_vendor()
        with srv.session(cik=vendor["cik"]) as s:
            model = new_model(s)
        sel = selectors.DefaultSelector()
        done = []
        live = []

        def open_one(n):
            c = SlowClient(srv.port, ("idle", "headers", "body")[n % 3], ATTACKERS[n % 2])
            sel.register(c.sock, selectors.EVENT_READ, c)
            live.append(c)

        for n in range(300):
            open_one(n)
        n = 300
        held_until = time.monotonic() + 6  # longer than every deadline
        rounds = 0
        while live and time.monotonic() < held_until + 30:
            for key, _ in sel.select(0.25):
                key.data.readable()
            for c in [c for c in live if c.closed]:
                live.remove(c)
                sel.unregister(c.sock)
                c.sock.close()
                done.append(c)
                if time.monotonic() < held_until:  # the attacker comes back: 300 kept open
                    open_one(n)
                    n += 1
            for c in live:
                c.drip()
            if time.monotonic() < held_until:
                _normal_requests(srv, vendor, model, rounds)
                rounds += 1
        assert not live, [c.kind for c in live]  # every slow connection was ended by the server
        assert rounds >= 3 and srv.alive()
        outcomes = {}
        for c in done:
            outcomes.setdefault((c.kind, c.outcome()), 0)
            outcomes[(c.kind, c.outcome())] += 1
        # past the cap: 503 at once; held ones: 408 when they sent something, else closed
        assert {o for _k, o in outcomes} <= {503, 408, "closed"}, outcomes
        assert outcomes.get(("idle", "closed")) and outcomes.get(("headers", 408))
        assert outcomes.get(("body", 408)) and sum(v for (_k, o), v in outcomes.items()
                                                   if o == 503) >= 300 - 2 * 64  # fmt: skip
        _normal_requests(srv, vendor, model, "last")
        sel.close()
    finally:
        srv.stop()
    log = srv.log_text()
    assert "Traceback" not in log and "Too many open files" not in log


# -- bad input ---------------------------------------------------------------------------------


def _raw(srv, data, wait=True):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(data)
        if not wait:
            time.sleep(0.2)  # the server has the partial body; then the client is gone
            return b""
        return s.recv(4096)


def test_bad_input_is_4xx_with_one_log_line(make_server):
    srv = make_server("--metrics-token", "metric-tok", "--activation-limit", "0")
    vendor = srv.add_vendor()
    got = _raw(srv, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 401"), got
    cik = vendor["cik"].encode()
    for path, head in (
        (b"/provision/activate", b""),
        (b"/provision/manage/model/", b"X-Exosite-CIK: " + cik + b"\r\n"),
    ):
        req = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n" + head
        _raw(srv, req + b"Content-Type: application/x-www-form-urlencoded\r\n\r\nmodel=", False)
    forged = b"2026-01-01 00:00:00,000 exoprov.server INFO forged"
    got = _raw(srv, b"GET /x%0A" + forged.replace(b" ", b"%20") + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 404"), got
    assert requests.get(srv.url + "/ip", timeout=10).ok  # still serving
    time.sleep(0.3)
    srv.stop()
    log = srv.log_text()
    assert "Traceback" not in log and " 500 " not in log, log
    lines = log.splitlines()
    assert not [ln for ln in lines if ln.startswith("2026-01-01 00:00:00,000")], log
    assert [ln for ln in lines if "GET /x\\x0a2026-01-01" in ln and " 404 " in ln]
    assert len([ln for ln in lines if "/metrics 401" in ln]) == 1
    for path in ("/provision/activate 400", "/provision/manage/model/ 400"):
        assert len([ln for ln in lines if path in ln]) == 1, log


def test_refused_activation_does_not_move_last_seen(server, vendor, vclient):
    model = new_model(vclient)
    device(server, vendor, vclient, model, "seen1")

    def last():
        r = vclient.get(f"/exoprov/v1/model/{model}/status", params={"search": "seen1"})
        (row,) = r.json()["devices"]
        return row["last_seen"], row["address"]

    before = last()
    assert before[1] == "127.0.0.1"
    # anyone may ask to activate an activated serial number: refused, and not "seen"
    with server.session() as s:
        form = {"vendor": vendor["vendor"], "model": model, "sn": "seen1"}
        s.mount("http://", _SourceAdapter("127.0.0.2"))
        assert s.post("/provision/activate", data=form).status_code == 409
    assert last() == before


class _SourceAdapter(requests.adapters.HTTPAdapter):
    """Requests from another loopback address (the caller that is not the device)."""

    def __init__(self, source):
        self._source = (source, 0)
        super().__init__()

    def init_poolmanager(self, *a, **kw):
        kw["source_address"] = self._source
        super().init_poolmanager(*a, **kw)


def test_text_log_escapes_control_characters():
    import logging

    from tools.server.logs import TextFormatter

    fmt = TextFormatter("%(levelname)s %(message)s")
    args = ("/a\nINFO forged", "\\x0a \udcff\u2028\x1b[31m")
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %s", args, None)
    line = fmt.format(rec)
    assert "\n" not in line and "\x1b" not in line and "\u2028" not in line
    assert line == "INFO /a\\x0aINFO forged \\x5cx0a \\udcff\\u2028\\x1b[31m"
    line.encode("utf-8")  # a lone surrogate would have made the stream handler fail


# -- what one client or vendor can make the server keep ---------------------------------------

ALIAS = "/onep:v1/stack/alias"


def test_alias_names_and_kept_values_per_client_are_bounded(server, vendor, vclient):
    model = new_model(vclient)
    cik = device(server, vendor, vclient, model, "a1")
    with server.session(cik=cik) as d:
        for batch in range(2):  # 128 names: the bound
            form = {f"n{batch}_{i}": "v" for i in range(64)}
            assert d.post(ALIAS, data=form).status_code == 204
        assert d.post(ALIAS, data={"n0_5": "again"}).status_code == 204  # a known name
        r = d.post(ALIAS, data={"n0_6": "x", "one_more": "y"})
        assert r.status_code == 413, r.text
        assert d.get(ALIAS + "?n0_6").text == "n0_6=v"  # refused whole
        big = "b" * 4000
        for _ in range(40):  # 160 000 characters to one name
            assert d.post(ALIAS, data={"n0_7": big}).status_code == 204
        tok = d.post("/jsonp/register", data={"alias[]": "n0_7"}).text.strip()
    r = requests.get(server.url + "/jsonp", params={"token": tok, "callback": "cb"}, timeout=30)
    kept = r.text.count(big)
    assert 1 <= kept <= 32 * 1024 // 4000 + 1, kept


def test_vendor_storage_quota(make_server):
    srv = make_server("--vendor-quota-bytes", "10000")
    vendor, other = srv.add_vendor(), srv.add_vendor()
    with srv.session(cik=vendor["cik"]) as s:
        model = new_model(s)
        add_content(s, model, "a", b"x" * 6000)
        add_content(s, model, "b")
        path = f"/provision/manage/content/{model}/b"
        r = s.post(path, data=b"y" * 5000, headers={"Content-Type": "text/plain"})
        assert r.status_code == 413 and "quota" in r.text, r.text
        r = s.post(path, data=b"y" * 4000, headers={"Content-Type": "text/plain"})
        assert r.status_code == 205, r.text
        # replacing a content counts its new size, not both
        path = f"/provision/manage/content/{model}/a"
        r = s.post(path, data=b"z" * 6000, headers={"Content-Type": "text/plain"})
        assert r.status_code == 205, r.text
    with srv.session(cik=other["cik"]) as s:  # another vendor's room is its own
        add_content(s, new_model(s), "c", b"w" * 9000)
