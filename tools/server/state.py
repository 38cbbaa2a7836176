"""The server's shared state, reachable from every handler as `request.app[SERVER]`."""

import logging
import secrets
import time

from aiohttp import web

log = logging.getLogger("exoprov.server")


def new_rid():
    return secrets.token_hex(20)


def new_cik():
    return secrets.token_hex(20)


class Server:
    def __init__(
        self, store, blobs, limiter, window, max_content, read_idle=30.0, clock=time.time
    ):
        self.store = store
        self.read_idle = read_idle  # seconds a request body may stall
        self.blobs = blobs
        self.limiter = limiter
        self.window = window
        self.max_content = max_content
        self.clock = clock

    def now(self):
        return int(self.clock())

    def status(self, state, enabled_at):
        """The status column of the spec README lifecycle table ('' with no client)."""
        if state is None:
            return ""
        if state == "activated":
            return "activated"
        if state == "notactivated" and self.now() < enabled_at + self.window:
            return "notactivated"
        return "expired"


SERVER = web.AppKey("server", Server)


def peer(request):
    """(address, 'ip:port') of the caller, for rate limiting and the activation log."""
    info = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), f"{info[0]}:{info[1]}"
    return "unknown", "unknown"
