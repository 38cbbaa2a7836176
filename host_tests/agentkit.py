"""Shared helpers for the agent's tests (and the board tests of other helpers).

Unit-test fakes (CPython, in-process):
    FakeSock(data, step=None)  a socket on io.BytesIO: records every byte written in .sent,
                               feeds `data` at most `step` bytes per readinto
    FakeNet(*responses)        connect factory for agent.http.Conn: each connect() returns the
                               next FakeSock; .socks lists them, .calls the (host, port, tls)
    FakeClock()                ticks_ms()/sleep_ms(): time only moves when slept or advanced
    TimedSock(clock, pieces, ms)  a CPython-style socket file on a FakeClock: each read takes
                               `ms` and gives the next piece; None stalls; honours set_timeout
    FakeBoard(...)             the board contract in memory: record, slot (asserts the block
                               rule), apply/confirm/rollback log, reset() raises Reset
    response(status, body, headers)  the bytes of one HTTP/1.1 response
    FakeProvision()            the device procedures in memory behind a connect() factory:
                               contents, activation answer, scripted faults, request log

Running the real agent (subprocess, both interpreters):
    INTERPS                    ("cpython", "micropython")
    build_mpy(dest)            compile agent/ and boards/ to .mpy under dest; -> {path: size}
    agent_config(tmp, server, **kw)  write CONFIG.json; -> its path
    run_agent(interp, config, heap=None, mpy=None, timeout=60)  -> CompletedProcess (text)
    start_agent(...)           the same as a Popen (for kill mid-download)
    StallProxy(host, port, budget=None, tls=None)  TCP proxy that forwards until a byte budget
                               of responses is spent, then holds the connection (a download
                               stuck mid-way); tls=(cert, key) makes it an HTTPS front
    make_certs(dir)            a CA and a server certificate for 127.0.0.1 (openssl)
    Fleet(server, vendor)      one vendor on one fresh model of a test server: the vendor
                               calls are exoprov.fleet.Client's setup/publish (.c); .s is a
                               plain session for the requests a test writes by hand
"""

import io
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from exoprov.fleet.client import Client

from tools.harness.mpunix import MICROPYTHON, MPY_CROSS

ROOT = Path(__file__).resolve().parent.parent
INTERPS = ("cpython", "micropython")


# -- fakes --------------------------------------------------------------------------------


class FakeSock:
    """A socket-like stream on io.BytesIO with readinto/write/close."""

    def __init__(self, data=b"", step=None):
        self.rx = io.BytesIO(data)
        self.sent = bytearray()
        self.step = step
        self.closed = False
        self.reads = 0

    def write(self, buf):
        assert not self.closed, "write on a closed socket"
        self.sent += bytes(buf)
        return len(buf)

    def readinto(self, buf):
        assert not self.closed, "read on a closed socket"
        self.reads += 1
        mv = memoryview(buf)
        if self.step:
            mv = mv[: self.step]
        return self.rx.readinto(mv)

    def close(self):
        self.closed = True


class FakeNet:
    """connect(host, port, tls, timeout_ms, ca) factory handing out FakeSocks in order."""

    def __init__(self, *responses, step=None):
        self.responses = list(responses)
        self.step = step
        self.socks = []
        self.calls = []

    def __call__(self, host, port, tls, timeout_ms, ca=None):
        self.calls.append((host, port, tls))
        if not self.responses:
            raise OSError("connection refused (no scripted response left)")
        data = self.responses.pop(0)
        if isinstance(data, Exception):
            raise data
        sock = FakeSock(data, self.step)
        self.socks.append(sock)
        return sock

    @property
    def sent(self):
        return b"".join(bytes(s.sent) for s in self.socks)


def response(status=200, body=b"", headers=None, reason="X", version="HTTP/1.1"):
    """Bytes of one response; Content-Length is added unless headers set framing."""
    headers = dict(headers or {})
    if "Transfer-Encoding" not in headers and "Content-Length" not in headers:
        headers["Content-Length"] = str(len(body))
    head = "%s %d %s\r\n" % (version, status, reason)
    head += "".join("%s: %s\r\n" % kv for kv in headers.items() if kv[1] is not None)
    return head.encode() + b"\r\n" + body


def chunked(body, size=7):
    out = b""
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


class FakeClock:
    def __init__(self):
        self.now = 1000
        self.sleeps = []

    def ticks_ms(self):
        return self.now

    def sleep_ms(self, ms):
        self.sleeps.append(ms)
        self.now += ms


class TimedSock(FakeSock):
    """A socket file as agent.http.connect() makes it on CPython, on a FakeClock: Conn calls
    set_timeout(seconds) before each read; a read takes `ms` of clock time and returns the
    next of `pieces` (b"" or none left: end of stream); a None piece never arrives (a stall).
    A read longer than the timeout runs the clock to the timeout and raises TimeoutError, as
    a socket timeout does. .timeouts lists what Conn set, in ms."""

    def __init__(self, clock, pieces, ms):
        super().__init__()
        self.clock, self.pieces, self.ms = clock, list(pieces), ms
        self.timeouts = []

    def set_timeout(self, seconds):
        self.timeouts.append(round(seconds * 1000))

    def readinto(self, buf):
        assert not self.closed, "read on a closed socket"
        self.reads += 1
        piece = self.pieces[0] if self.pieces else b""
        took = self.ms if piece is not None else float("inf")
        if took > self.timeouts[-1]:
            self.clock.now += self.timeouts[-1]
            raise TimeoutError("timed out")
        self.clock.now += took
        n = min(len(buf), len(piece))
        buf[:n] = piece[:n]
        if self.pieces:
            self.pieces[0] = piece[n:]
            if not self.pieces[0]:
                self.pieces.pop(0)
        return n


class Reset(Exception):
    """FakeBoard.reset(): the device restarts (tests catch it)."""


class FakeBoard:
    """The board contract in memory. `log` lists slot calls other than write/read."""

    name = "fake"
    block = 4096

    def __init__(self, config=None, capacity=4 << 20, record=None):
        self.config = config or {}
        self.record = record
        self.saves = 0
        self.slot = bytearray()
        self.capacity = capacity
        self.installed = b""
        self.previous = None
        self.log = []
        self.writes = 0
        self.fail_apply = False
        self.fail_save_at = None  # power cut: raise on this save number (1-based)
        self.clock = FakeClock()
        self.size = None

    # storage
    def load(self):
        return self.record

    def save(self, data):
        assert isinstance(data, bytes)
        self.saves += 1
        if self.fail_save_at == self.saves:
            raise Reset("power cut during save")
        self.record = data

    def state(self):
        return json.loads(self.record) if self.record else None

    # slot
    def slot_begin(self, size):
        if size > self.capacity:
            raise OSError("slot: image does not fit")
        self.size = size
        self.log.append(("begin", size))

    def slot_erase(self):
        self.slot = bytearray()
        self.log.append(("erase",))

    def slot_write(self, offset, buf):
        assert offset % self.block == 0, offset
        assert len(buf) == self.block or offset + len(buf) == self.size, (offset, len(buf))
        self.writes += 1
        end = offset + len(buf)
        if len(self.slot) < end:
            self.slot.extend(bytes(end - len(self.slot)))
        self.slot[offset:end] = buf

    def slot_read(self, offset, buf):
        piece = self.slot[offset : offset + len(buf)]
        buf[: len(piece)] = piece
        return len(piece)

    def slot_finish(self, size):
        assert len(self.slot) == size
        self.log.append(("finish", size))

    def slot_apply(self):
        self.log.append(("apply",))
        if self.fail_apply:
            raise OSError("apply failed")
        self.previous, self.installed = self.installed, bytes(self.slot)

    def slot_confirm(self):
        self.log.append(("confirm",))

    def slot_rollback(self):
        self.log.append(("rollback",))
        if self.previous is not None:
            self.installed, self.previous = self.previous, None

    # network, clock, identity
    def network_up(self, timeout_ms):
        pass

    def ticks_ms(self):
        return self.clock.ticks_ms()

    def sleep_ms(self, ms):
        self.clock.sleep_ms(ms)

    def time(self):
        return None

    def unique_id(self):
        return "fa4e0001"

    def reset(self):
        self.log.append(("reset",))
        raise Reset()


# -- running the real agent -----------------------------------------------------------------


def build_mpy(dest):
    """Compile agent/*.py and boards/*.py (except board README) into dest/agent, dest/boards.
    Returns {relative path: .mpy size}."""
    dest = Path(dest)
    sizes = {}
    for pkg in ("agent", "boards"):
        (dest / pkg).mkdir(parents=True, exist_ok=True)
        for src in sorted((ROOT / pkg).glob("*.py")):
            out = dest / pkg / (src.stem + ".mpy")
            subprocess.run(
                [MPY_CROSS, "-o", str(out), "-s", f"{pkg}/{src.name}", str(src)],
                check=True,
                timeout=60,
            )
            sizes[f"{pkg}/{out.name}"] = out.stat().st_size
    return sizes


_models = itertools.count(1)


class Fleet:
    """The vendor side of the agent and board scenarios: one vendor, one fresh model."""

    prefix = "agent"  # of the model's name

    def __init__(self, server, vendor):
        self.server, self.vendor = server, vendor
        self.c = Client(server.url, cik=vendor["cik"], timeout=120)
        self.s = server.session(cik=vendor["cik"])
        self.model = f"{self.prefix}{os.getpid()}x{next(_models)}"
        self.c.setup(self.model)

    def close(self):
        self.c.close()
        self.s.close()

    @staticmethod
    def ok(r, codes=(200, 204, 205)):
        assert r.status_code in codes, (r.status_code, r.text)
        return r

    def sn(self, sn, enable=True):
        """Whitelist `sn` and (with enable) enable it for the vendor; -> sn."""
        self.c.setup(self.model, [sn], owner=self.vendor["rid"] if enable else None)
        return sn

    def enable(self, sn):
        self.c.sn_enable(self.model, sn, self.vendor["rid"])

    def regenerate(self, sn):  # a new CIK; the old one gets 401, the window opens again
        self.c.sn_regenerate(self.model, sn)

    def disable(self, sn):
        self.c.sn_disable(self.model, sn)

    def status(self, sn):
        return self.c.sn_info(self.model, sn).status

    def content(self, cid, data, version=None, sha=None):
        """Create or replace content cid with data and its sha256 (and version) in meta."""
        self.c.publish(self.model, cid, data, version, sha256=sha)

    def config(self, tmp, sn, server=None, **kw):
        """The agent's CONFIG.json (agent_config) for `sn` of this model; -> its path."""
        kw.setdefault("once", True)
        kw.update(vendor=self.vendor["vendor"], model=self.model, sn=sn)
        return agent_config(tmp, server or self.server, **kw)


def agent_config(tmp, server=None, **kw):
    """Write a CONFIG.json in tmp for `server` (a conftest Server or URL); -> Path."""
    tmp = Path(tmp)
    cfg = {"state_dir": str(tmp / "state"), "install_path": str(tmp / "install" / "fw.bin")}
    if server is not None:
        cfg["server"] = server if isinstance(server, str) else server.url
    cfg.update(kw)
    (tmp / "install").mkdir(parents=True, exist_ok=True)
    path = tmp / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def agent_cmd(interp, config, heap=None, mpy=None):
    """(argv, env, cwd) running the agent on `config` with one interpreter.
    mpy: a build_mpy() directory to run compiled code from instead of the sources."""
    env = dict(os.environ)
    if interp == "cpython":
        return [sys.executable, "-m", "agent", str(config)], env, str(ROOT)
    cmd = [MICROPYTHON]
    if heap:
        cmd += ["-X", f"heapsize={heap}"]
    # the agent's tree and the firmware's frozen modules (ssl), as on a board; no lib dirs
    env["MICROPYPATH"] = "%s:.frozen" % (mpy or ROOT)
    return cmd + ["-m", "agent", str(config)], env, str(mpy or ROOT)


def run_agent(interp, config, heap=None, mpy=None, timeout=60):
    argv, env, cwd = agent_cmd(interp, config, heap, mpy)
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start_agent(interp, config, heap=None, mpy=None):
    argv, env, cwd = agent_cmd(interp, config, heap, mpy)
    return subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def ssl_want_read():
    import ssl

    return ssl.SSLWantReadError


class StallProxy:
    """Loopback TCP proxy. Server->client bytes pass until `budget` is spent (None: no
    limit); then the proxy holds every connection until release() or close()."""

    def __init__(self, host, port, budget=None, tls=None):
        self.target = (host, port)
        self.tls = None
        if tls:  # (certfile, keyfile): terminate TLS here, forward plain HTTP
            import ssl

            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(*tls)
        self.budget = budget
        self.passed = 0
        self.stalled = threading.Event()
        self.go = threading.Event()
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self.lock = threading.Lock()
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if self.tls:
                threading.Thread(target=self._handshake, args=(c,), daemon=True).start()
                continue
            self._start(c)

    def _handshake(self, c):
        c.settimeout(30)
        try:
            c = self.tls.wrap_socket(c, server_side=True)
        except OSError:  # a client that refused our certificate
            c.close()
            return
        # one thread per TLS connection: an SSL object must not be read and written at once
        import select

        s = socket.create_connection(self.target, timeout=30)
        self.socks += [c, s]
        try:
            while True:
                if not c.pending():
                    select.select([c, s], [], [], 30)
                for src, dst in ((c, s), (s, c)):
                    src.setblocking(False)
                    try:
                        data = src.recv(65536)
                    except (BlockingIOError, ssl_want_read()):
                        continue
                    finally:
                        src.setblocking(True)
                    if not data:
                        return
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            c.close()
            s.close()

    def _start(self, c):
        s = socket.create_connection(self.target, timeout=30)
        self.socks += [c, s]
        threading.Thread(target=self._pipe, args=(c, s, False), daemon=True).start()
        threading.Thread(target=self._pipe, args=(s, c, True), daemon=True).start()

    def _pipe(self, src, dst, down):
        try:
            while True:
                data = src.recv(4096)
                if not data:
                    break
                if down and self.budget is not None:
                    with self.lock:
                        room = max(0, self.budget - self.passed)
                        self.passed += min(room, len(data))
                    if room < len(data):
                        dst.sendall(data[:room])
                        self.stalled.set()
                        self.go.wait(60)
                        data = data[room:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def release(self):
        self.budget = None
        self.go.set()

    def close(self):
        self.go.set()
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


# -- an in-process device-procedure server for unit tests ------------------------------------


class _ServerSock(FakeSock):
    def __init__(self, server):
        super().__init__(b"")
        self.server = server
        self.pending = bytearray()

    def write(self, buf):
        n = super().write(buf)
        self.pending += bytes(buf)
        while True:
            head, sep, rest = bytes(self.pending).partition(b"\r\n\r\n")
            if not sep:
                break
            lines = head.decode().split("\r\n")
            hdrs = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            size = int(hdrs.get("content-length", 0))
            if len(rest) < size:
                break
            self.pending = bytearray(rest[size:])
            method, path, _ = lines[0].split(" ")
            out = self.server.answer(method, path, hdrs, rest[:size].decode())
            pos = self.rx.tell()
            self.rx.seek(0, 2)
            self.rx.write(out)
            self.rx.seek(pos)
        return n


class FakeProvision:
    """The four device procedures, in memory, behind a connect() factory (pass as connect=).

    contents: {id: {"data": bytes, "ts": int, "meta": str}}; add() fills meta with sha256.
    activation: status for the next activations (200 hands out `cik`).
    faults: list of callables f(method, params, headers) -> bytes or None, consulted in order
    before the normal answer (a callable returning bytes answers that request instead).
    """

    def __init__(self, cik=None):
        import secrets

        self.cik = cik or secrets.token_hex(20)
        self.valid = {self.cik}
        self.activation = 200
        self.contents = {}
        self.requests = []
        self.faults = []
        self.socks = []
        self.step = None

    def add(self, cid, data, version=None, ts=1700000000, digest=True):
        import hashlib

        meta = "sha256=" + hashlib.sha256(data).hexdigest() if digest else "x=1"
        if version:
            meta += "&version=" + version
        self.contents[cid] = {"data": bytes(data), "ts": ts, "meta": meta}

    def __call__(self, host, port, tls, timeout_ms, ca=None):
        s = _ServerSock(self)
        s.step = self.step
        self.socks.append(s)
        return s

    def answer(self, method, path, hdrs, body):
        from urllib.parse import parse_qs, urlsplit

        u = urlsplit(path)
        q = {k: v[0] for k, v in parse_qs(u.query or body).items()}
        self.requests.append((method, u.path, q, hdrs))
        for f in self.faults:
            out = f(method, q, hdrs)
            if out is not None:
                return out
        if u.path == "/provision/activate":
            st = self.activation
            if st == 200:
                self.activation = 409
                return response(200, self.cik.encode())
            return response(st, b"no")
        if u.path == "/onep:v1/stack/alias":
            return response(204)
        if hdrs.get("x-exosite-cik") not in self.valid:
            return response(401, b"unauthorized")
        if "id" not in q:
            return response(200, "".join(c + "\r\n" for c in self.contents).encode())
        c = self.contents.get(q["id"])
        if c is None:
            return response(404, b"no such content")
        data = c["data"]
        if q.get("info"):
            info = "application/octet-stream,%d,%d,%s" % (len(data), c["ts"], c["meta"])
            return response(200, info.encode())
        etag = '"%d-%d"' % (c["ts"], len(data))
        rng = hdrs.get("range")
        if not rng or hdrs.get("if-range", etag) != etag:
            return response(200, data, {"ETag": etag})
        first, _, last = rng[6:].partition("-")
        first, last = int(first), min(int(last), len(data) - 1)
        cr = "bytes %d-%d/%d" % (first, last, len(data))
        return response(206, data[first : last + 1], {"Content-Range": cr, "ETag": etag})


def make_certs(d):
    """A throwaway CA and a certificate for IP 127.0.0.1 signed by it, made with openssl.
    -> {"ca", "cert", "key", "other_ca"} paths (other_ca: a CA that signed nothing)."""
    d = Path(d)

    def ssl_(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "other_ca"):
        ssl_("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=exoprov test {name}")  # fmt: skip
    ssl_("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl_("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return {k: str(d / v) for k, v in
            (("ca", "ca.pem"), ("cert", "srv.pem"), ("key", "srv.key"),
             ("other_ca", "other_ca.pem"))}  # fmt: skip
