"""The server's shared state, reachable from every handler as `request.app[SERVER]`."""

import logging
import secrets
import time

from aiohttp import web

from . import proxies

log = logging.getLogger("exoprov.server")


def new_rid():
    return secrets.token_hex(20)


def new_cik():
    return secrets.token_hex(20)


class Server:
    def __init__(
        self,
        store,
        blobs,
        limiter,
        window,
        max_content,
        read_idle=30.0,
        clock=time.time,
        trusted=(),
        vendor_quota=0,
    ):
        self.store = store
        self.vendor_quota = vendor_quota  # bytes of content per vendor (0: no quota)
        self.trusted = list(trusted)  # ip_networks of reverse proxies (--trusted-proxy)
        self.read_idle = read_idle  # seconds a request body may stall
        self.blobs = blobs
        self.limiter = limiter
        self.window = window
        self.max_content = max_content
        self.clock = clock
        self.rollout_tick = 2.0  # seconds between checks of running rollouts (rollouts.py)

    def now(self):
        return int(self.clock())

    def status(self, state, enabled_at):
        """A serial number's status as the Provision API lists it: activated, notactivated
        (its activation window open) or expired; '' with no client."""
        if state is None:
            return ""
        if state == "activated":
            return "activated"
        if state == "notactivated" and self.now() < enabled_at + self.window:
            return "notactivated"
        return "expired"


SERVER = web.AppKey("server", Server)


def peer(request):
    """(address, 'ip:port') of the caller, for rate limiting and the activation log: the TCP
    peer, or the client a trusted proxy forwards for (proxies.py)."""
    info = request.transport.get_extra_info("peername") if request.transport else None
    if not (isinstance(info, tuple) and len(info) >= 2):
        return "unknown", "unknown"
    addr, port, _reached = proxies.resolve(
        str(info[0]), info[1], request, request.app[SERVER].trusted
    )
    return addr, (f"{addr}:{port}" if port is not None else addr)


def reached(request):
    """(address, port) of the server as the client reached it: the local socket, or what a
    trusted proxy says it accepted the client on (Forwarded: by=)."""
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    host, port = ("0.0.0.0", 0) if not isinstance(sock, tuple) else (str(sock[0]), sock[1])
    info = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(info, tuple) and len(info) >= 2:
        _a, _p, by = proxies.resolve(str(info[0]), info[1], request, request.app[SERVER].trusted)
        if by is not None:
            host, port = by[0], by[1] if by[1] is not None else port
    return host, port
