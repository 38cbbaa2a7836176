"""agent.http and agent.api on fake sockets: exact request bytes, scripted answers."""

import pytest
from agentkit import FakeClock, FakeNet, TimedSock, chunked, response

from agent import api as A
from agent.config import parse_url
from agent.http import Conn, ProtocolError, form, quote

CIK = "c" * 20 + "1" * 20  # generated shape only: 40 characters


def conn(*responses, step=None, port=80, clock=None):
    net = FakeNet(*responses, step=step)
    c = Conn("h.example", port, False, 5000, clock.ticks_ms if clock else None, connect=net)
    return c, net


def api(*responses, step=None, port=80):
    c, net = conn(*responses, step=step, port=port)
    return A.Api(c, "ven dor", "mo/del"), net


def test_quote_and_form():
    assert quote("a b/c&d=é~") == "a%20b%2Fc%26d%3D%C3%A9~"
    assert form(("vendor", "v&x"), ("sn", "00:11")) == "vendor=v%26x&sn=00%3A11"


def test_parse_url():
    assert parse_url("http://127.0.0.1:8080") == (False, "127.0.0.1", 8080)
    assert parse_url("https://m2.exosite.com/") == (True, "m2.exosite.com", 443)
    assert parse_url("http://[::1]:81") == (False, "::1", 81)
    for bad in ("ftp://x", "http://", "http://h/path", "h:80"):
        with pytest.raises(ValueError):
            parse_url(bad)


@pytest.mark.parametrize("step", [None, 1])
def test_activate_exact_bytes(step):
    a, net = api(response(200, CIK.encode() + b"\r\n"), step=step, port=8080)
    assert a.activate("sn 1") == CIK
    body = b"vendor=ven%20dor&model=mo%2Fdel&sn=sn%201"
    assert net.sent == (
        b"POST /provision/activate HTTP/1.1\r\nHost: h.example:8080\r\n"
        b"Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )


@pytest.mark.parametrize("status", [404, 409, 403, 401, 500, 503, 400])
def test_status_becomes_typed_error(status):
    a, net = api(response(status, b"reason"))
    with pytest.raises(A.ApiError) as e:
        a.activate("x")
    assert e.value.args == (status,)
    assert net.socks[0].closed


@pytest.mark.parametrize("body", [b"short", b"x" * 41, b"c" * 39 + b" ", b""])
def test_activate_rejects_non_cik(body):
    a, _ = api(response(200, body))
    with pytest.raises(ProtocolError):
        a.activate("x")


@pytest.mark.parametrize("step", [None, 1])
def test_list_info_keepalive_exact_bytes(step):
    a, net = api(
        response(200, b"firmware-1\r\nother\nfirmware-2\n")
        + response(200, b"application/octet-stream,1024,1700000000,sha256=ab&version=1.2"),
        step=step,
    )
    assert a.list(CIK, "firmware") == ["firmware-1", "firmware-2"]
    ct, size, ts, meta = a.info(CIK, "firmware-2")
    assert (ct, size, ts, meta) == (
        "application/octet-stream",
        1024,
        1700000000,
        {"sha256": "ab", "version": "1.2"},
    )
    assert len(net.socks) == 1  # the connection was reused
    q = b"/provision/download?vendor=ven%20dor&model=mo%2Fdel"
    hdr = b" HTTP/1.1\r\nHost: h.example\r\nX-Exosite-CIK: " + CIK.encode() + b"\r\n\r\n"
    assert net.sent == b"GET " + q + hdr + b"GET " + q + b"&id=firmware-2&info=true" + hdr


def test_info_meta_with_commas_and_garbage():
    a, _ = api(response(200, b"t,5,6,desc, with comma&sha256=x"), response(200, b"t,five,6,"))
    assert a.info(CIK, "f")[3] == {"desc, with comma": "", "sha256": "x"}
    with pytest.raises(ProtocolError):
        a.info(CIK, "f")


@pytest.mark.parametrize("step", [None, 1, 3])
def test_range_fetch_and_chunked_body(step):
    data = bytes(range(200))
    ok = {"Content-Range": "bytes 100-299/1000", "ETag": '"e1"'}
    r1 = response(206, data, ok)
    r2 = response(206, chunked(data), dict(ok, **{"Transfer-Encoding": "chunked"}))
    a, net = api(r1 + r2, step=step)
    for etag in (None, '"e1"'):
        assert a.fetch(CIK, "fw", 100, 299, 1000, etag) == '"e1"'
        buf = bytearray(64)
        got = bytearray()
        while n := a.conn.readinto(memoryview(buf)):
            got += buf[:n]
        assert bytes(got) == data and a.conn.at_end()
    assert b"Range: bytes=100-299\r\n\r\n" in net.sent
    assert net.sent.endswith(b'Range: bytes=100-299\r\nIf-Range: "e1"\r\n\r\n')
    assert len(net.socks) == 1


@pytest.mark.parametrize(
    "resp",
    [
        response(200, b"x" * 200),  # Range ignored
        response(206, b"x" * 200, {"Content-Range": "bytes 101-300/1000"}),  # wrong start
        response(206, b"x" * 200, {"Content-Range": "bytes 100-299/999"}),  # wrong total
        response(206, b"x" * 201, {"Content-Range": "bytes 100-299/1000"}),  # longer body
        response(206, b"x" * 200),  # no Content-Range
    ],
)
def test_range_answer_not_the_one_asked_is_refused(resp):
    a, net = api(resp)
    with pytest.raises((ProtocolError, A.ApiError)):
        a.fetch(CIK, "fw", 100, 299, 1000)
    assert net.socks[0].closed


def test_connection_close_and_reconnect():
    a, net = api(
        response(200, b"a\n", {"Connection": "close"}), response(200, b"b\n") + response(200, b"")
    )
    assert a.list(CIK) == ["a"]
    assert net.socks[0].closed
    assert a.list(CIK) == ["b"]
    assert len(net.socks) == 2
    assert a.list(CIK) == []
    assert len(net.socks) == 2


def test_post_always_on_fresh_connection_and_report_bytes():
    a, net = api(response(200, b"x\n"), response(204))
    a.list(CIK)
    a.report(CIK, ("state", "active"), ("version", "1.0"))
    assert net.socks[0].closed and len(net.socks) == 2
    assert bytes(net.socks[1].sent) == (
        b"POST /onep:v1/stack/alias HTTP/1.1\r\nHost: h.example\r\nX-Exosite-CIK: "
        + CIK.encode()
        + b"\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
        b"Content-Length: 24\r\n\r\nstate=active&version=1.0"
    )


def test_stale_keepalive_get_retried_once_on_fresh_socket():
    a, net = api(response(200, b"a\n"), response(200, b"b\n"))
    # The first socket only holds one answer: the second GET on it reads EOF.
    assert a.list(CIK) == ["a"]
    assert a.list(CIK) == ["b"]
    assert len(net.socks) == 2


def test_eof_on_fresh_connection_is_protocol_error():
    a, net = api(b"")
    with pytest.raises(ProtocolError):
        a.list(CIK)
    assert net.socks[0].closed


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 1100 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 33 + b"\r\n",
        b"SPDY/9 200 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_heads_are_protocol_errors(raw):
    a, net = api(raw)
    with pytest.raises(ProtocolError):
        a.list(CIK)
    assert net.socks[0].closed


def test_body_cap_and_body_until_close():
    a, _ = api(response(200, b"f\n" * 5000))
    with pytest.raises(ProtocolError):
        a.list(CIK)
    a, net = api(b"HTTP/1.1 200 OK\r\n\r\nfw-a\nfw-b", response(200, b""))
    assert a.list(CIK) == ["fw-a", "fw-b"]
    a.list(CIK)
    assert len(net.socks) == 2


def test_short_body_is_protocol_error():
    a, _ = api(response(200, b"", {"Content-Length": "10"}) + b"abc")
    with pytest.raises(ProtocolError):
        a.list(CIK)


def test_deadline_per_exchange():
    clock = FakeClock()

    class Slow(FakeNet):
        def __call__(self, *args):
            s = super().__call__(*args)
            read = s.readinto

            def slow(buf):
                clock.now += 2000
                return read(buf)

            s.readinto = slow
            return s

    net = Slow(response(200, b"a\n"), step=4)
    c = Conn("h", 80, False, 5000, clock.ticks_ms, connect=net)
    with pytest.raises(OSError, match="deadline"):
        A.Api(c, "v", "m").list(CIK)


def timed(pieces, ms, min_rate=512, timeout=30000, ahead=False, length=None):
    """A Conn on a TimedSock: the head arrives in the first read (with the first piece of the
    body if `ahead`), then the `pieces` of the body one per read of `ms` each; Content-Length
    is `length`, else the pieces' total. -> (conn, sock, clock)"""
    clock = FakeClock()
    body = b"".join(p for p in pieces if p)
    pieces = [response(200, b"", {"Content-Length": str(length or len(body))})] + pieces
    if ahead:
        pieces[:2] = [pieces[0] + pieces[1]]
    sock = TimedSock(clock, pieces, ms)
    c = Conn("h", 80, False, timeout, clock.ticks_ms, connect=lambda *a: sock)
    c.min_rate = min_rate
    return c, sock, clock


def drain(c):
    """Read the body to its end -> bytes; errors propagate."""
    out, mv = bytearray(), memoryview(bytearray(4096))
    while n := c.readinto(mv):
        out += mv[:n]
    return bytes(out)


def test_trickle_below_the_floor_is_cut_after_the_grace_period():
    # 64 bytes every 250 ms = 256 B/s against a 512 B/s floor, 30 s deadline
    c, sock, clock = timed([b"x" * 64] * 1024, 250)
    assert c.request("GET", "/blob", (("X-Exosite-CIK", CIK),)) == 200
    t0 = clock.now  # the body begins once the head is read
    with pytest.raises(OSError) as e:
        drain(c)
    # at 2 s the 512 bytes received are exactly the floor; the wait ends 1 ms later
    assert clock.now - t0 == 2001
    assert str(e.value) == "body slower than 512 B/s" and CIK not in str(e.value)
    assert sock.closed and c._s is None


@pytest.mark.parametrize("min_rate,cut_at", [(512, None), (0, None), (513, 2246)])
def test_a_body_just_above_the_floor_is_not_cut_one_byte_per_second_more_is(min_rate, cut_at):
    # 128 bytes every 250 ms (512 B/s) for 16 s, one piece ahead: received / elapsed stays
    # above 512 B/s at every instant (bytes come in bursts: at exactly 512 B/s on average it
    # would dip below between them)
    c, sock, clock = timed([b"y" * 128] * 64, 250, min_rate, ahead=True)
    c.request("GET", "/blob")
    t0 = clock.now
    if cut_at is None:
        assert drain(c) == b"y" * 8192 and clock.now - t0 == 63 * 250
    else:
        # at 2 s, 1152 bytes are 2245 ms of 513 B/s: cut 1 ms past that, while waiting
        with pytest.raises(OSError, match="body slower than 513 B/s"):
            drain(c)
        assert clock.now - t0 == cut_at and sock.closed


@pytest.mark.parametrize("min_rate", [512, 0])
def test_a_stall_is_cut_at_the_deadline_not_a_timeout_later(min_rate):
    # 4 KiB every 250 ms for 4 s, then nothing: the floor (64 KiB at 512 B/s = 128 s) is far,
    # the exchange's 5 s deadline is not; no wait may reach past it
    c, sock, clock = timed([b"z" * 4096] * 16 + [None], 250, min_rate, 5000, length=1 << 20)
    start = clock.now
    c.request("GET", "/blob")
    with pytest.raises(OSError, match="exchange deadline passed"):
        drain(c)
    assert clock.now - start == 5001 and sock.closed
    assert sock.timeouts[-1] == 5000 - 250 * 17 + 1  # the last wait: what was left, + 1 ms


def test_a_stall_early_in_the_body_is_cut_by_the_floor():
    c, sock, clock = timed([b"w" * 100, None], 250, timeout=60000, length=65536)
    c.request("GET", "/blob")
    t0 = clock.now
    with pytest.raises(OSError, match="512 B/s"):
        drain(c)
    assert clock.now - t0 == 2001 and sock.closed


def test_a_stall_before_the_head_is_cut_at_the_deadline():
    clock = FakeClock()
    sock = TimedSock(clock, [None], 10)
    c = Conn("h", 80, False, 5000, clock.ticks_ms, connect=lambda *a: sock)
    c.min_rate = 512
    with pytest.raises(OSError, match="deadline"):
        c.request("GET", "/x")
    assert clock.now == 1000 + 5001 and sock.timeouts == [5001, 5001]  # write, then read


def test_1xx_204_and_headers_case_insensitive():
    c, _ = conn(b"HTTP/1.1 204 No Content\r\nETAG: x\r\n\r\n" + response(200, b"ok"))
    assert c.request("GET", "/") == 204 and c.headers == {"etag": "x"}
    assert c.request("GET", "/") == 200 and bytes(c.read_all(10)) == b"ok"


def test_range_body_delimited_by_close():
    data = b"z" * 100
    raw = b"HTTP/1.1 206 X\r\nContent-Range: bytes 0-99/100\r\n\r\n" + data
    a, net = api(raw)
    a.fetch(CIK, "fw", 0, 99, 100)
    buf = bytearray(100)
    assert a.conn.readinto(memoryview(buf)) == 100 and a.conn.at_end()
    a, net = api(raw + b"extra")
    a.fetch(CIK, "fw", 0, 99, 100)
    assert a.conn.readinto(memoryview(buf)) == 100 and not a.conn.at_end()


def test_unread_body_is_not_reused_and_ipv6_host_bracketed():
    net = FakeNet(response(200, b"0123456789") + response(200, b"x"), response(200, b"y"))
    c = Conn("::1", 8080, False, 5000, None, connect=net)
    assert c.request("GET", "/a") == 200
    assert c.request("GET", "/b") == 200  # the first body was left unread: new connection
    assert bytes(c.read_all(10)) == b"y" and len(net.socks) == 2
    assert net.socks[0].closed and b"Host: [::1]:8080\r\n" in net.sent
