"""One HTTP/1.1 exchange at a time on one socket: request, status, headers, bounded body.

No retries or backoff here (fsm owns them): an exchange completes or raises, and the socket
is closed before the exception leaves. Memory note: on the 64-bit unix port every function
object costs ~100 bytes of heap and every class ~250, so this module has few, longer methods
(the agent must run in a 16 KiB heap with its .mpy code loaded into that heap).
"""

from .compat import const, ticks_diff

_LINE = const(1024)  # longest status/header/chunk-size line accepted
_NHDR = const(32)  # most headers accepted in one response
_RBUF = const(256)  # read-ahead for status line and headers
# The throughput floor (min_rate) is judged on the average since the body began, and only
# after its first 2 s: TCP slow start, a server's first disk read or a radio waking up may
# hold the first bytes back, and once a body runs, bytes received earlier absorb a short
# pause later. A trickle below the floor is cut about 2 s into the body (an exchange shorter
# than that is bounded by its deadline anyway), not at the deadline a minute later.
_GRACE = const(2000)
_KEEP = ("content-length", "transfer-encoding", "connection", "content-range", "etag")
_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


class AgentError(Exception):
    """The agent's own error family; network trouble stays OSError."""


class ProtocolError(AgentError):
    """An answer that is malformed, too large, or not the one asked for."""


def quote(s):
    """Percent-encode all but RFC 3986 unreserved characters (MicroPython has no urllib)."""
    return "".join(chr(c) if c in _SAFE else "%%%02X" % c for c in str(s).encode())


def form(*pairs):
    """form(("vendor", v), ("sn", s)) -> 'vendor=..&sn=..', both sides encoded."""
    return "&".join(quote(k) + "=" + quote(v) for k, v in pairs)


def connect(host, port, tls, timeout_ms, ca=None):
    """Default socket factory -> a connected stream with readinto/write/close."""
    import socket

    ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]  # DNS once per attempt
    s = socket.socket(ai[0], socket.SOCK_STREAM)
    try:
        s.settimeout(timeout_ms / 1000)
        s.connect(ai[-1])
        if tls:
            s = _tls(s, host, ca)
        if hasattr(s, "makefile") and hasattr(s, "recv_into"):  # CPython: an unbuffered raw
            f = s.makefile("rwb", 0)  # file reads what is there (so does MicroPython's socket)
            f.set_timeout = s.settimeout  # Conn._io bounds each blocking wait with it
            s.close()  # the file keeps the descriptor until it is closed itself
            return f
        s.setblocking(False)  # MicroPython: see Conn._io()
        return s
    except BaseException:
        s.close()
        raise


def _tls(s, host, ca):
    import ssl

    try:
        if hasattr(ssl, "create_default_context"):  # CPython: system CAs, hostname checked
            ctx = ssl.create_default_context(cafile=ca)
        else:  # MicroPython: only the configured CA (config requires ca_file)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = ssl.CERT_REQUIRED
            with open(ca, "rb") as f:
                data = f.read()
            if b"-----BEGIN" not in data:
                ctx.load_verify_locations(cadata=data)  # DER
            for part in data.split(b"-----BEGIN CERTIFICATE-----")[1:]:
                # PEM: builds without mbedtls' PEM parser accept only DER
                from binascii import a2b_base64

                b64 = part.split(b"-----END")[0].replace(b"\n", b"").replace(b"\r", b"")
                ctx.load_verify_locations(cadata=a2b_base64(b64))
        return ctx.wrap_socket(s, server_hostname=host)
    except ValueError as e:  # MicroPython's TLS errors (bad CA, certificate refused)
        raise OSError("TLS: %s" % str(e).strip())


def _num(text, base, most):
    # Strict digits: int() would also take '+', '_', spaces and non-ASCII digits.
    digits = "0123456789abcdefABCDEF"[: 10 if base == 10 else 22]
    if isinstance(text, bytes):
        text = text.decode()
    if not text or len(text) > most or [c for c in text if c not in digits]:
        raise ProtocolError("bad number")
    return int(text, base)


class Conn:
    """A keep-alive connection to one server: request(), then readinto() or read_all()."""

    def __init__(self, host, port, tls=False, timeout_ms=30000, ticks_ms=None, connect=connect):
        self.host, self.port, self.tls = host, port, tls
        self.ca = None
        self.min_rate = 0  # bytes/s a body must keep up after _GRACE; 0: no floor
        self._connect = connect
        self._timeout = timeout_ms
        self._ticks = ticks_ms
        self._s = self._p = None
        self._buf = bytearray(_RBUF)
        self._pos = self._end = self._left = self._chunked = 0
        self._keep = self.sent = self._rx = False
        self._deadline = self._got = 0
        self._t0 = None  # ticks when the body began (None: not reading a body)
        self.status = 0
        self.headers = {}

    def close(self):
        s, self._s, self._p = self._s, None, None
        self._pos = self._end = self._left = self._chunked = 0
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def _io(self, write, buf):
        # One read or write. The default connect() leaves MicroPython sockets non-blocking
        # (their blocking readinto waits for a full buffer): None means "wait in poll()".
        # Every wait ends 1 ms past the exchange deadline or the throughput floor, whichever
        # comes first, so a stall is cut there and not a whole timeout later.
        while True:
            wait = self._timeout
            if self._ticks:
                now = self._ticks()
                wait = ticks_diff(self._deadline, now)
                if wait < 0:
                    raise OSError("exchange deadline passed")
                r = self.min_rate
                if r and self._t0 is not None and not write:
                    # ms left until the bytes received are fewer than min_rate * elapsed
                    # (in whole seconds past 1 MiB: got * 1000 stays a small int on 32-bit
                    # ports, so the download loop allocates nothing)
                    t = self._got
                    t = max(t * 1000 // r if t < 0x100000 else t // r * 1000, _GRACE)
                    t -= ticks_diff(now, self._t0)
                    if t < 0:
                        raise OSError("body slower than %d B/s" % r)
                    wait = min(wait, t)
                wait += 1
            st = getattr(self._s, "set_timeout", None)
            if st:  # CPython: a blocking file with a socket timeout
                st(wait / 1000)
            try:
                n = self._s.write(buf) if write else self._s.readinto(buf)
            except OSError as e:
                if st and self._ticks and isinstance(e, TimeoutError):
                    continue  # the wait ended at a bound: the checks above name it
                raise
            if n is not None:
                return n
            import select

            if self._p is None:
                self._p = select.poll()
                self._p.register(self._s)
            self._p.modify(self._s, select.POLLOUT if write else select.POLLIN)
            if not self._p.poll(wait) and not self._ticks:
                raise OSError(110)  # ETIMEDOUT

    def _line(self):
        # One CRLF-terminated line without its CRLF. Bare LF or CR, control bytes and
        # lines longer than _LINE are malformed (RFC 9112 section 2.2, strictly).
        line = bytearray()
        while True:
            if self._pos == self._end:
                self._end = self._io(0, self._buf)
                self._pos = 0
                if not self._end:
                    raise ProtocolError("connection closed mid-answer")
                self._rx = True
            i = self._buf.find(b"\n", self._pos, self._end)
            stop = self._end if i < 0 else i
            line.extend(memoryview(self._buf)[self._pos : stop])
            self._pos = stop + (i >= 0)
            if len(line) > _LINE:
                raise ProtocolError("line too long")
            if i >= 0:
                if not line or line[-1] != 13:
                    raise ProtocolError("bare LF")
                line = bytes(line[:-1])
                for c in line:
                    if (c < 32 and c != 9) or c == 127:
                        raise ProtocolError("control byte in a line")
                return line

    def request(self, method, path, hdrs=(), body=None, ms=0):
        """Send one request, read the status line and headers; -> status. `ms`, when shorter
        than the connection's timeout, bounds this exchange instead (the connect, and with a
        clock its deadline: request, answer and body). A GET on a kept-alive connection that
        the server had closed (nothing came back) is sent once more on a fresh one; a POST
        always goes on a fresh connection, so it is never sent twice."""
        if self._s is not None and (
            method != "GET" or not self._keep or self._left or self._chunked
        ):
            self.close()  # a POST, Connection: close, or a body not read to its end
        host = self.host
        if ":" in host:  # an IPv6 literal
            host = "[%s]" % host
        if self.port != (443 if self.tls else 80):
            host = "%s:%d" % (host, self.port)
        req = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, host)
        for k, v in hdrs:
            req += "%s: %s\r\n" % (k, v)
        if body is not None:
            req += "Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
            req += "Content-Length: %d\r\n\r\n%s" % (len(body), body)
        else:
            req += "\r\n"
        req = memoryview(req.encode())
        ms = min(ms, self._timeout) if ms else self._timeout
        self.sent = False  # did any byte of this request leave? (fsm: a lost activation)
        while True:
            fresh = self._s is None
            self._rx = False
            self._t0 = None
            if self._ticks:
                self._deadline = self._ticks() + ms
            try:
                if fresh:
                    self._s = self._connect(self.host, self.port, self.tls, ms, self.ca)
                mv = req
                while mv:
                    mv = mv[self._io(1, mv) :]
                    self.sent = True
                return self._head()
            except BaseException as e:
                self.close()
                if fresh or self._rx or not isinstance(e, (OSError, ProtocolError)):
                    raise

    def _head(self):
        for _ in range(4):  # skip interim 1xx answers
            parts = self._line().split(b" ", 2)
            if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
                raise ProtocolError("bad status line")
            status = _num(parts[1], 10, 3)
            if len(parts[1]) != 3:
                raise ProtocolError("bad status code")
            h = {}
            for _ in range(_NHDR + 1):
                line = self._line()
                if not line:
                    break
                i = line.find(b":")
                if i <= 0 or b" " in line[:i] or b"\t" in line[:i]:
                    raise ProtocolError("bad header")
                k = line[:i].decode().lower()
                if k in _KEEP:
                    if k in h:
                        raise ProtocolError("repeated " + k)
                    h[k] = line[i + 1 :].decode().strip()
            else:
                raise ProtocolError("too many headers")
            if status >= 200:
                break
        else:
            raise ProtocolError("too many interim answers")
        self.status, self.headers = status, h
        self._got, self._t0 = 0, self._ticks and self._ticks()  # the body begins
        self._keep = parts[0] == b"HTTP/1.1" and h.get("connection", "").lower() != "close"
        self._left = self._chunked = 0
        te = h.get("transfer-encoding")
        if te is not None:
            if te.lower() != "chunked" or "content-length" in h:
                raise ProtocolError("unsupported Transfer-Encoding")
        if status == 204 or status == 304:
            pass
        elif te:
            self._chunked = 1
        elif "content-length" in h:
            self._left = _num(h["content-length"], 10, 12)
        else:
            self._left = -1  # until the server closes
            self._keep = False
        if not self._left and not self._chunked and not self._keep:
            self.close()
        return status

    def readinto(self, mv):
        """Read body bytes into mv; -> how many, 0 at the end of the body."""
        if self._s is None:
            return 0
        try:
            if not self._left:
                if not self._chunked:
                    return 0
                if self._chunked == 2 and self._line():  # the CRLF closing the last chunk
                    raise ProtocolError("chunk longer than its size")
                self._chunked = 2
                self._left = _num(self._line().split(b";")[0], 16, 8)
                if not self._left:  # last chunk: skip trailers, the body is complete
                    for _ in range(_NHDR + 1):
                        if not self._line():
                            break
                    else:
                        raise ProtocolError("too many trailers")
                    self._chunked = 0
                    if not self._keep:
                        self.close()
                    return 0
            want = len(mv) if self._left < 0 else min(len(mv), self._left)
            if self._pos < self._end:
                n = min(want, self._end - self._pos)
                mv[:n] = memoryview(self._buf)[self._pos : self._pos + n]
                self._pos += n
            else:
                n = self._io(0, mv[:want] if want < len(mv) else mv)
                if not n:
                    if self._left > 0:
                        raise ProtocolError("connection closed mid-body")
                    self.close()  # body delimited by the server closing
                    return 0
            self._got += n
            if self._left > 0:
                self._left -= n
                if not self._left and not self._chunked and not self._keep:
                    self.close()
            return n
        except BaseException:
            self.close()
            raise

    def at_end(self):
        """Is the body completely read? Reads what is needed to know: the last chunk of a
        chunked body, or the close of a body delimited by it."""
        if self._left > 0:
            return False
        return (not self._left and not self._chunked) or not self.readinto(bytearray(1))

    def read_all(self, cap):
        """The rest of the body as a bytearray; ProtocolError past cap bytes."""
        out = bytearray()
        tmp = memoryview(bytearray(64))
        while True:
            n = self.readinto(tmp)
            if not n:
                return out
            if len(out) + n > cap:
                self.close()
                raise ProtocolError("body too large")
            out.extend(tmp[:n])
