"""A device-procedure server on loopback that misbehaves on request.

It serves the four procedures the agent uses (`POST /provision/activate`, and
`GET /provision/download` as list, `info=true` and blob with Range) itself, from memory,
instead of proxying to `tools/server`: every byte it writes is under the script's control
(status line, each header, timing, where the connection dies), a run needs no database and
starts in a millisecond, so the power-cut harness can restart it hundreds of times. The real
server's conformance is tested elsewhere; the answers here are those of the same procedures.

Scripting: `srv.script(kind, [action, ...])` queues actions for the next requests of one
kind ("activate", "list", "info", "blob"); a request with no queued action is answered
normally. Actions (tuples or plain strings):

    "ok"                      normal answer
    ("status", 503)           that status with a short text body
    ("drop", n)               headers and n body bytes, then a TCP reset
    ("truncate", n)           headers and n body bytes, then a clean close (FIN)
    ("stall", s)              wait s seconds (or until the client leaves) before any byte
    ("trickle", bps)          the normal answer at `bps` bytes per second
    "range200"                200 with the whole blob, ignoring Range
    ("cr_start", d)           Content-Range (and body) starting d bytes off the asked start
    ("cr_total", t)           Content-Range total t instead of the real size
    ("cr_raw", b"...")        this exact Content-Range value, body as asked
    ("more", n)               a range n bytes longer than asked, headers consistent
    ("overrun", n)            the asked range, then n stray bytes after the declared body
    ("replace", seed)         the content is replaced (new bytes, timestamp, digest) first
    ("corrupt", i)            the answer as asked, with body byte i flipped
    ("raw", b"...")           these exact bytes, then close

Blobs carry a strong ETag and honour If-Range (a stale validator gets the whole blob, 200),
as the real server does.

Every request is logged in `srv.log` as a `Req` (kind, range asked, status, body bytes sent).
"""

import hashlib
import secrets
import socket
import struct
import threading
import time
from urllib.parse import parse_qs, urlsplit

_MAX_HEAD = 16384


class Content:
    def __init__(self, cid, data, version=None, ctype="application/octet-stream", digest=True):
        self.id = cid
        self.ctype = ctype
        self.version = version
        self.digest = digest
        self.set(data)

    def set(self, data, updated=None):
        self.data = bytes(data)
        self.updated = updated or int(time.time())
        self.sha256 = hashlib.sha256(self.data).hexdigest()

    @property
    def etag(self):
        return '"%s"' % self.sha256[:32]

    @property
    def meta(self):
        parts = []
        if self.digest:
            parts.append("sha256=" + self.sha256)
        if self.version is not None:
            parts.append("version=" + str(self.version))
        return "&".join(parts)

    def info(self):
        return f"{self.ctype},{len(self.data)},{self.updated},{self.meta}"


def image(size, seed=0):
    """Deterministic pseudo-random bytes (no two 4 KiB blocks alike)."""
    out = bytearray()
    n = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d:%d" % (seed, n)).digest()
        n += 1
    return bytes(out[:size])


class Req:
    __slots__ = ("kind", "method", "target", "range", "status", "sent", "action", "t")

    def __init__(self, kind, method, target, rng):
        self.kind, self.method, self.target, self.range = kind, method, target, rng
        self.status, self.sent, self.action, self.t = None, 0, None, time.monotonic()

    def __repr__(self):
        return f"Req({self.kind} {self.range} -> {self.status} {self.sent}B {self.action})"


class _Close(Exception):
    """Stop serving this connection."""


class FaultServer:
    def __init__(self, vendor="vend", model="mod", host="127.0.0.1"):
        self.vendor, self.model = vendor, model
        self.devices = {}  # sn -> {"cik": str, "activated": bool}
        self.contents = {}  # id -> Content
        self.log = []
        self.issued = []  # every CIK minted, in order
        self.reports = []
        self._scripts = {}
        self._lock = threading.Lock()
        self._conns = set()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(64)
        self.host, self.port = self._sock.getsockname()
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    # -- set-up --------------------------------------------------------------------------
    def enable(self, sn):
        """Whitelist and enable `sn`: a fresh CIK, activation open. Returns the CIK."""
        cik = secrets.token_hex(20)
        self.devices[sn] = {"cik": cik, "activated": False}
        self.issued.append(cik)
        return cik

    regenerate = enable

    def add_content(self, cid, data, **kw):
        self.contents[cid] = Content(cid, data, **kw)
        return self.contents[cid]

    def script(self, kind, actions):
        with self._lock:
            self._scripts.setdefault(kind, []).extend(actions)

    def pending(self, kind=None):
        with self._lock:
            if kind:
                return len(self._scripts.get(kind, ()))
            return sum(len(v) for v in self._scripts.values())

    def requests(self, kind=None):
        return [r for r in self.log if kind is None or r.kind == kind]

    def stop(self):
        self._stop.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- serving -------------------------------------------------------------------------
    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(30)
        buf = bytearray()
        try:
            while not self._stop.is_set():
                req = self._read_request(conn, buf)
                if req is None:
                    return
                self._answer(conn, *req)
        except (_Close, OSError):
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _read_request(self, conn, buf):
        while b"\r\n\r\n" not in buf:
            if len(buf) > _MAX_HEAD:
                raise _Close()
            data = conn.recv(4096)
            if not data:
                return None
            buf += data
        end = buf.index(b"\r\n\r\n")
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[: end + 4]
        method, target, _ver = head[0].split(" ", 2)
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0") or 0)
        while len(buf) < n:
            data = conn.recv(4096)
            if not data:
                return None
            buf += data
        body = bytes(buf[:n])
        del buf[:n]
        return method, target, headers, body

    def _next_action(self, kind):
        with self._lock:
            q = self._scripts.get(kind)
            return q.pop(0) if q else "ok"

    def _answer(self, conn, method, target, headers, body):
        url = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if url.path == "/provision/activate" and method == "POST":
            kind = "activate"
            q = {k: v[0] for k, v in parse_qs(body.decode("latin-1")).items()}
        elif url.path == "/provision/download" and method == "GET":
            kind = "list" if "id" not in q else ("info" if q.get("info") == "true" else "blob")
        elif url.path == "/onep:v1/stack/alias" and method == "POST":
            kind = "report"
            self.reports.append(body.decode("latin-1"))
        else:
            kind = "other"
        req = Req(kind, method, target, headers.get("range"))
        self.log.append(req)
        action = self._next_action(kind)
        req.action = action
        name, arg = (action, None) if isinstance(action, str) else action
        if name == "replace":
            c = self.contents[q.get("id")]
            c.set(image(len(c.data), seed=arg), updated=c.updated + 1)
            name = "ok"
        if name == "stall":
            self._stop.wait(arg)
            # a stalled answer is never sent: the client had to give up
            raise _Close()
        if name == "raw":
            conn.sendall(arg)
            req.status = "raw"
            raise _Close()
        if name == "status":
            return self._send(conn, req, arg, b"injected failure\n", {}, name, arg)
        status, payload, extra = self._normal(kind, q, headers, name, arg)
        return self._send(conn, req, status, payload, extra, name, arg)

    def _normal(self, kind, q, headers, name, arg):
        if kind == "other":
            return 404, b"not found\n", {}
        if kind == "report":
            return 204, b"", {}
        if q.get("vendor") != self.vendor or q.get("model") != self.model:
            return 403, b"invalid vendor/model\n", {}
        if kind == "activate":
            dev = self.devices.get(q.get("sn"))
            if dev is None:
                return 404, b"unknown sn\n", {}
            if dev["activated"]:
                return 409, b"already activated\n", {}
            dev["activated"] = True
            return 200, dev["cik"].encode(), {"Content-Type": "text/plain; charset=utf-8"}
        cik = headers.get("x-exosite-cik")
        if not any(d["cik"] == cik and d["activated"] for d in self.devices.values()):
            return 401, b"unauthorized\n", {}
        if kind == "list":
            body = "".join(c + "\r\n" for c in sorted(self.contents))
            return 200, body.encode(), {"Content-Type": "text/csv; charset=utf-8"}
        c = self.contents.get(q.get("id"))
        if c is None:
            return 404, b"no such content\n", {}
        if kind == "info":
            return 200, c.info().encode(), {"Content-Type": "text/csv; charset=utf-8"}
        return self._blob(c, headers.get("range"), headers.get("if-range"), name, arg)

    def _blob(self, c, rng, if_range, name, arg):
        data, total = c.data, len(c.data)
        extra = {"Content-Type": c.ctype, "Accept-Ranges": "bytes", "ETag": c.etag}
        if if_range is not None and if_range != c.etag:
            rng = None  # RFC 9110 13.1.5: a stale validator gets the whole representation
        if not rng or name == "range200":
            return 200, data, extra
        spec = rng.split("=", 1)[1]
        a, _, b = spec.partition("-")
        if a == "":
            first, last = max(0, total - int(b)), total - 1
        else:
            first = int(a)
            last = min(int(b), total - 1) if b else total - 1
        if first >= total or first > last:
            extra["Content-Range"] = f"bytes */{total}"
            return 416, b"range not satisfiable\n", extra
        shown = (first, last, total)
        if name == "cr_start":
            first, last = max(0, first + arg), min(total - 1, last + arg)
            shown = (first, last, total)
        elif name == "cr_total":
            shown = (first, last, arg)
        elif name == "more":
            last = min(total - 1, last + arg)
            shown = (first, last, total)
        payload = data[first : last + 1]
        if name == "corrupt":
            payload = bytearray(payload)
            payload[arg] ^= 0xFF
            payload = bytes(payload)
        if name == "cr_raw":
            extra["Content-Range"] = arg
        else:
            extra["Content-Range"] = "bytes %d-%d/%d" % shown
        if name == "overrun":
            extra["_overrun"] = arg
        return 206, payload, extra

    def _send(self, conn, req, status, payload, extra, name, arg):
        req.status = status
        overrun = extra.pop("_overrun", 0)
        reason = {200: "OK", 206: "Partial Content"}.get(status, "Status")
        lines = [b"HTTP/1.1 %d %s" % (status, reason.encode())]
        extra.setdefault("Content-Type", "text/plain; charset=utf-8")
        for k, v in extra.items():
            lines.append(k.encode() + b": " + (v if isinstance(v, bytes) else v.encode()))
        lines.append(b"Content-Length: %d" % len(payload))
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        if name == "trickle":
            return self._trickle(conn, req, head + payload, arg)
        if name in ("drop", "truncate"):
            conn.sendall(head + payload[:arg])
            req.sent = min(arg, len(payload))
            if name == "drop":
                # SO_LINGER 0: close() sends a RST instead of a FIN
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raise _Close()
        conn.sendall(head + payload + image(overrun, seed=99) if overrun else head + payload)
        req.sent = len(payload)

    def _trickle(self, conn, req, data, bps):
        step = max(1, int(bps // 10))  # bps may be below 1: one byte every 1/bps seconds
        for i in range(0, len(data), step):
            if self._stop.wait(step / bps):
                raise _Close()
            conn.sendall(data[i : i + step])
            req.sent = max(0, i + step - data.index(b"\r\n\r\n") - 4)
        req.sent = len(data)


def main(argv=None):
    """`python -m tools.harness.faults.faultserver [SIZE]`: serve a test image."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    size = int(argv[0]) if argv else 256 * 1024
    srv = FaultServer()
    srv.enable("sn1")
    c = srv.add_content("firmware-1", image(size), version=1)
    print(f"listening on {srv.url} vendor=vend model=mod sn=sn1 sha256={c.sha256}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        srv.stop()


if __name__ == "__main__":
    from tools.harness import procs

    raise SystemExit(procs.main(main))
