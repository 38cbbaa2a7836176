"""Slow and greedy clients of the standalone server (no proxy in front to absorb them).

aiohttp alone keeps a connection as long as its client trickles: an idle connection, request
headers sent a byte at a time, a request body dripping. Each holds a file descriptor, and once
the process's open-file limit is reached no one else is accepted. Here:

- the request line and headers must be complete within `header_timeout` seconds of the
  connection opening, or of the first byte of the next request on a kept-alive connection
  (an idle kept-alive connection is aiohttp's keepalive_timeout, `--idle-timeout`);
- a request body must be complete within `body_timeout` seconds of its headers; a handler
  reading it then gets BodyTimeout (answered 408);
- one address holds at most `per_address` connections at a time, and the process at most
  its open-file limit less a reserve for the database and blobs: a connection past either
  is answered 503 and closed at once. Addresses of --trusted-proxy peers have no per-address
  cap (every client behind the proxy shares it; the proxy limits them itself).
"""

import collections
import ipaddress
import logging
import resource
import time

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("exoprov.server")

FD_RESERVE = 64  # descriptors kept for the database, blobs, logs and the listening socket
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 10\r\nConnection: close\r\nContent-Length: 22\r\n\r\n"
    b"too many connections\r\n"
)
_SLOW = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\nContent-Length: 30\r\n\r\nrequest headers not complete\r\n"
)
_WARN_EVERY = 60.0


class BodyTimeout(Exception):
    """The request body did not arrive within the body deadline."""


def raise_nofile():
    """The soft open-file limit raised to the hard one (Linux often starts processes at
    1024, which a few hundred slow clients use up); -> the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class Guard:
    """The limits and this process's connection counts (shared by its connections)."""

    def __init__(self, header_timeout, body_timeout, per_address, trusted=(), nofile=None):
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.per_address = per_address
        self.trusted = list(trusted)
        if nofile is None:
            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.total_max = max(8, nofile - FD_RESERVE)
        self.open = collections.Counter()  # address -> connections open now
        self.total = 0
        self._warned = 0.0

    def is_trusted(self, addr):
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def admit(self, addr):
        """Count a new connection from `addr`; False when it must be refused."""
        if self.total >= self.total_max:
            self._warn("connection refused: %d connections open (open-file limit)", self.total)
            return False
        if addr is not None and self.per_address and not self.is_trusted(addr):
            if self.open[addr] >= self.per_address:
                self._warn("connection refused: %d open from %s", self.open[addr], addr)
                return False
            self.open[addr] += 1
        self.total += 1
        return True

    def release(self, addr):
        self.total -= 1
        if addr is not None and addr in self.open:
            self.open[addr] -= 1
            if self.open[addr] <= 0:
                del self.open[addr]

    def _warn(self, msg, *args):
        """One line a minute at most: a flood must not become a flood of log lines."""
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning(msg, *args)


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler with the Guard's deadlines and caps."""

    def __init__(self, manager, **kwargs):
        super().__init__(manager, **kwargs)
        self._guard = manager.guard
        self._counted = False
        self._addr = None
        self._header_timer = None
        self._body_timer = None
        self._partial = False

    def connection_made(self, transport):
        info = transport.get_extra_info("peername")
        self._addr = str(info[0]) if isinstance(info, tuple) and info else None
        if not self._guard.admit(self._addr):
            transport.write(_BUSY)
            transport.close()
            return  # connection_lost follows; nothing of aiohttp's was started
        self._counted = True
        super().connection_made(transport)
        self._start_header_timer()

    def connection_lost(self, exc):
        if self._counted:
            self._counted = False
            self._guard.release(self._addr)
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None
        super().connection_lost(exc)

    def data_received(self, data):
        if data and not self._request_in_progress and not self._messages:
            self._partial = True  # a request has begun: too slow is then answered 408
            if self._header_timer is None:
                self._start_header_timer()  # the first byte of the next request
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) > queued:  # headers complete: a message queued for start()
            self._partial = False
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            payload = self._messages[-1][1]
            if not payload.is_eof() and self._guard.body_timeout:
                if self._body_timer is not None:
                    self._body_timer.cancel()
                self._body_timer = self._loop.call_later(
                    self._guard.body_timeout, self._body_late, payload
                )

    def _start_header_timer(self):
        if self._guard.header_timeout:
            self._header_timer = self._loop.call_later(
                self._guard.header_timeout, self._header_late
            )

    def _header_late(self):
        self._header_timer = None
        if self.transport is None or self._messages or self._request_in_progress:
            return
        if self._waiter is None:
            return  # start() is busy (discarding an unread body): its own limit applies
        if self._partial:  # else an idle connection: closed without a word, as nginx does
            log.info("%s: request headers not complete in time, connection closed", self._addr)
            self.transport.write(_SLOW)
        self.force_close()

    def _body_late(self, payload):
        self._body_timer = None
        if payload.is_eof() or self.transport is None:
            return
        log.info("%s: request body not complete in time", self._addr)
        payload.set_exception(BodyTimeout())
        self._lingering_time = 0  # no reading the rest after the answer: the connection ends
        if not self._request_in_progress:
            self.force_close()  # no handler will read (and answer) it


class GuardedRunner(web.AppRunner):
    """An AppRunner whose connections are GuardedHandlers."""

    def __init__(self, app, guard, **kwargs):
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self):
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # the same object; only the handler it makes differs
        server.guard = self.guard
        return server


class _GuardedServer(web.Server):
    def __call__(self):
        return GuardedHandler(self, loop=self._loop, **self._kwargs)
