"""A fake socket that plays one scripted response (CPython and MicroPython).

It offers every read call a socket or its stream wrapper has on either interpreter
(`recv`, `recv_into`, `read`, `readinto`, `readline`), `bytewise=True` hands out one byte
per call. An endless response, or a reader that keeps going past `limit` bytes or past
`deadline_ms`, raises `Hang`, which is a BaseException so that no `except Exception` in the
code under test can hide it.
"""

import time

try:
    _ticks = time.ticks_ms

    def _elapsed(t0):
        return time.ticks_diff(time.ticks_ms(), t0)
except AttributeError:

    def _ticks():
        return int(time.monotonic() * 1000)

    def _elapsed(t0):
        return _ticks() - t0


class Hang(BaseException):
    pass


class FakeSock:
    def __init__(self, response, bytewise=False, limit=1 << 20, deadline_ms=5000):
        if isinstance(response, tuple):
            self._head, self._unit = response
        else:
            self._head, self._unit = response, None
        self._pos = 0
        self.served = 0
        self.sent = bytearray()
        self.closed = False
        self._one = bytewise
        self._limit = limit
        self._t0 = _ticks()
        self._deadline = deadline_ms
        self.timeout = None

    # -- the scripted stream -------------------------------------------------------------
    def _take(self, n):
        if self.closed:
            raise OSError(9)  # EBADF: reading a closed socket
        if self.served > self._limit or _elapsed(self._t0) > self._deadline:
            raise Hang("reader did not stop: %d bytes" % self.served)
        if n is None or n < 0:
            n = 4096
        if self._one:
            n = min(n, 1)
        head = self._head
        if self._pos < len(head):
            out = head[self._pos : self._pos + n]
            self._pos += len(out)
        elif self._unit:
            unit = self._unit
            k = (self._pos - len(head)) % len(unit)
            out = unit[k : k + n]
            self._pos += len(out)
        else:
            out = b""
        self.served += len(out)
        return bytes(out)

    def recv(self, n=4096, *flags):
        return self._take(n)

    def read(self, n=-1):
        if n is None or n < 0:
            out = bytearray()
            while True:
                b = self._take(4096)
                if not b:
                    return bytes(out)
                out.extend(b)
        return self._take(n)

    def recv_into(self, buf, n=0, *flags):
        n = n or len(buf)
        b = self._take(n)
        buf[: len(b)] = b
        return len(b)

    def readinto(self, buf, n=None):
        return self.recv_into(buf, n or len(buf))

    def readline(self, limit=-1):
        out = bytearray()
        while True:
            b = self._take(1)
            if not b:
                break
            out.extend(b)
            if b == b"\n" or (0 < limit <= len(out)):
                break
        return bytes(out)

    # -- the rest of a socket ------------------------------------------------------------
    def send(self, data):
        self.sent.extend(data)
        return len(data)

    def write(self, data):
        return self.send(data)

    def sendall(self, data):
        self.send(data)

    def settimeout(self, t):
        self.timeout = t

    def setblocking(self, flag):
        pass

    def setsockopt(self, *a):
        pass

    def fileno(self):
        return -1

    def makefile(self, *a, **kw):
        return self

    def close(self):
        self.closed = True
