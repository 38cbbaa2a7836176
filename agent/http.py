"""One HTTP/1.1 exchange at a time on one socket: request, status, headers, bounded body.

No retries and no backoff here (those live in fsm): an exchange either completes or raises,
and the socket is closed before the exception leaves this module.
"""

from agent.compat import const, ticks_diff

_LINE = const(1024)  # longest status/header/chunk-size line accepted
_NHDR = const(32)  # most headers accepted in one response
_RBUF = const(256)  # read-ahead for status line and headers

_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_FORM = "application/x-www-form-urlencoded; charset=utf-8"


class AgentError(Exception):
    """The agent's own error family (network trouble stays OSError)."""


class ProtocolError(AgentError):
    """An answer that is malformed, too large, or not the one asked for."""


def quote(s):
    """Percent-encode everything but RFC 3986 unreserved characters (MicroPython has no urllib)."""
    out = []
    for c in str(s).encode():
        out.append(chr(c) if c in _SAFE else "%%%02X" % c)
    return "".join(out)


def form(*pairs):
    """form(("vendor", v), ("sn", s)) -> 'vendor=..&sn=..' with both sides encoded."""
    return "&".join(quote(k) + "=" + quote(v) for k, v in pairs)


def parse_url(url):
    """'http://host:port' -> (tls, host, port); ValueError for anything else."""
    tls = url.startswith("https://")
    if not tls and not url.startswith("http://"):
        raise ValueError("must start with http:// or https://")
    rest = url[8 if tls else 7 :].rstrip("/")
    if not rest or "/" in rest or "@" in rest:
        raise ValueError("must be scheme://host[:port] without a path")
    host, port = rest, 443 if tls else 80
    i = rest.rfind(":")
    if i > 0 and "]" not in rest[i:]:
        host, port = rest[:i], int(rest[i + 1 :])
    return tls, host.strip("[]"), port


def connect(host, port, tls, timeout_ms, ca=None):
    """Default socket factory: a connected stream with readinto/write/close."""
    import socket

    ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]  # DNS once per attempt
    s = socket.socket(ai[0], socket.SOCK_STREAM)
    try:
        s.settimeout(timeout_ms / 1000)
        s.connect(ai[-1])
        if tls:
            s = _tls(s, host, ca)
        if hasattr(s, "recv_into"):  # CPython: an unbuffered raw file reads what is there
            f = s.makefile("rwb", 0)
            s.close()  # the file keeps the descriptor open until it is closed itself
            return f
        return _Poll(s, timeout_ms)
    except BaseException:
        s.close()
        raise


class _Poll:
    """MicroPython: a blocking socket's readinto() waits until the buffer is full, so the
    socket is made non-blocking and each read or write waits in poll() with the timeout."""

    def __init__(self, s, timeout_ms):
        import select

        s.setblocking(False)
        self.s, self.t, self.sel = s, timeout_ms, select
        self.p = select.poll()
        self.p.register(s, select.POLLIN)

    def _io(self, fn, buf, ev):
        while True:
            n = fn(buf)
            if n is not None:
                return n
            self.p.modify(self.s, ev)
            if not self.p.poll(self.t):
                import errno

                raise OSError(errno.ETIMEDOUT)

    def readinto(self, buf):
        return self._io(self.s.readinto, buf, self.sel.POLLIN)

    def write(self, buf):
        return self._io(self.s.write, buf, self.sel.POLLOUT)

    def close(self):
        self.s.close()


def _tls(s, host, ca):
    import ssl

    if hasattr(ssl, "create_default_context"):  # CPython: system CAs, hostname checked
        ctx = ssl.create_default_context(cafile=ca)
    else:  # MicroPython: only the configured CA is trusted (main requires ca_file)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=ca)
    return ctx.wrap_socket(s, server_hostname=host)


class Conn:
    """A keep-alive connection to one server; request() then readinto()/read_all()."""

    def __init__(self, host, port, tls=False, timeout_ms=30000, ticks_ms=None, connect=connect):
        self.host, self.port, self.tls = host, port, tls
        self.ca = None
        self._connect = connect
        self._timeout = timeout_ms
        self._ticks = ticks_ms
        self._s = None
        self._buf = bytearray(_RBUF)
        self._pos = self._end = 0
        self._left = 0  # bytes left in the body (or current chunk); -1: until the server closes
        self._chunked = False
        self._keep = False
        self._deadline = 0
        self.status = 0
        self.headers = {}

    def close(self):
        s, self._s = self._s, None
        self._pos = self._end = self._left = 0
        self._chunked = False
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def request(self, method, path, hdrs=(), body=None):
        """Send one request and read the status line and headers; returns the status."""
        if self._s is not None and (method != "GET" or not self._keep or not self.at_end()):
            self.close()  # unread body, Connection: close, or a POST (never sent twice)
        if self._ticks:
            self._deadline = self._ticks() + self._timeout
        host = self.host
        if self.port != (443 if self.tls else 80):
            host = "%s:%d" % (host, self.port)
        req = ["%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, host)]
        for k, v in hdrs:
            req.append("%s: %s\r\n" % (k, v))
        if body is not None:
            req.append("Content-Type: %s\r\nContent-Length: %d\r\n" % (_FORM, len(body)))
        req.append("\r\n")
        if body:
            req.append(body)
        data = "".join(req).encode()
        req = None
        reused = self._s is not None
        try:
            if not reused:
                self._s = self._connect(self.host, self.port, self.tls, self._timeout, self.ca)
            try:
                self._send(data)
                return self._head()
            except OSError:
                if not reused:
                    raise
            # A kept-alive connection the server had already closed: one fresh attempt (GET only)
            self.close()
            self._s = self._connect(self.host, self.port, self.tls, self._timeout, self.ca)
            self._send(data)
            return self._head()
        except BaseException:
            self.close()
            raise

    def _send(self, data):
        mv = memoryview(data)
        while mv:
            self._check()
            mv = mv[self._s.write(mv) or 0 :]

    def _fill(self):
        self._check()
        n = self._s.readinto(self._buf)
        if not n:
            raise OSError("connection closed by server")
        self._pos, self._end = 0, n

    def _check(self):
        if self._ticks and ticks_diff(self._ticks(), self._deadline) > 0:
            raise OSError("exchange deadline passed")

    def _line(self):
        line = bytearray()
        while True:
            if self._pos == self._end:
                self._fill()
            i = self._buf.find(b"\n", self._pos, self._end)
            stop = self._end if i < 0 else i
            line.extend(memoryview(self._buf)[self._pos : stop])
            self._pos = stop if i < 0 else i + 1
            if len(line) > _LINE:
                raise ProtocolError("line too long")
            if i >= 0:
                return bytes(line[:-1] if line and line[-1] == 13 else line)

    def _head(self):
        line = self._line()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError("bad status line")
        try:
            status = int(parts[1])
        except ValueError:
            raise ProtocolError("bad status code")
        h = {}
        count = 0
        while True:
            line = self._line()
            if not line:
                break
            i = line.find(b":")
            count += 1
            if i <= 0 or count > _NHDR:
                raise ProtocolError("bad or too many headers")
            h[bytes(line[:i]).decode().strip().lower()] = bytes(line[i + 1 :]).decode().strip()
        self.status, self.headers = status, h
        self._keep = parts[0] == b"HTTP/1.1" and h.get("connection", "").lower() != "close"
        self._chunked = False
        if status == 204 or status == 304 or 100 <= status < 200:
            self._left = 0
        elif h.get("transfer-encoding", "").lower() == "chunked":
            self._chunked = True
            self._left = 0
            self._chunk()
        elif "content-length" in h:
            try:
                self._left = int(h["content-length"])
            except ValueError:
                raise ProtocolError("bad Content-Length")
            if self._left < 0:
                raise ProtocolError("bad Content-Length")
        else:
            self._left = -1
            self._keep = False
        self._done()
        return status

    def _chunk(self):
        # The current chunk is used up: read its CRLF (none before the first chunk), the next
        # size line, and the trailers after the last chunk.
        line = self._line()
        if not line and self._seen:
            line = self._line()
        self._seen = True
        try:
            n = int(bytes(line).split(b";")[0].strip(), 16)
        except ValueError:
            raise ProtocolError("bad chunk size")
        if n == 0:
            while self._line():
                pass
            self._chunked = False
        self._left = n

    _seen = False

    def _done(self):
        if self._left == 0 and not self._chunked:
            self._seen = False
            if not self._keep:
                self.close()

    def at_end(self):
        """True when the whole body of the last response has been read."""
        return self._s is None or (self._left == 0 and not self._chunked)

    def readinto(self, mv):
        """Read body bytes into mv; returns how many, 0 at the end of the body."""
        if self._left == 0:
            return 0
        want = len(mv) if self._left < 0 else min(len(mv), self._left)
        if self._pos < self._end:
            n = min(want, self._end - self._pos)
            mv[:n] = memoryview(self._buf)[self._pos : self._pos + n]
            self._pos += n
        else:
            self._check()
            n = self._s.readinto(mv[:want] if want < len(mv) else mv)
            if not n:
                if self._left > 0:
                    self.close()
                    raise OSError("connection closed mid-body")
                self._left = 0
                self._done()
                return 0
        if self._left > 0:
            self._left -= n
            if self._left == 0:
                if self._chunked:
                    self._chunk()
                self._done()
        return n

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
