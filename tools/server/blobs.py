"""Content blobs as files: streamed in to a temporary file then renamed, streamed out in
chunks. Neither direction holds a whole blob in memory."""

import os
import secrets
import socket
import time

from .util import body_chunks, check_length

CHUNK = 256 * 1024
# Left-overs are only removed once this old: another worker or instance sharing the
# directory may be writing a tmp- file, or about to commit a just-renamed blob, right now.
STALE = 120.0
SMALL = 1 << 20  # Range answers up to this size are read whole and sent in one write
_FDS_MAX = 64


class Blobs:
    """Content blobs as files of one directory (the SQLite engine's)."""

    SMALL = SMALL

    def __init__(self, directory):
        self.dir = str(directory)
        self._fds = {}  # blob name -> open descriptor (read_small), oldest first
        os.makedirs(self.dir, exist_ok=True)
        for name in os.listdir(self.dir):
            if name.startswith("tmp-") and self._stale(name):  # an upload cut short
                self._unlink(name)

    def path(self, name):
        return os.path.join(self.dir, name)

    def _stale(self, name):
        try:
            return os.stat(self.path(name)).st_mtime < time.time() - STALE
        except FileNotFoundError:
            return False

    def _unlink(self, name):
        self._forget(name)
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            pass

    def remove(self, name):
        if name:
            self._unlink(name)

    async def sweep(self, store):
        """Remove blob files no content row of `store` points at (left by a crash
        mid-replace)."""
        keep = await store.all_blobs()
        for name in os.listdir(self.dir):
            if not name.startswith("tmp-") and name not in keep and self._stale(name):
                self._unlink(name)

    async def receive(self, request, cap, digest=None):
        """Stream the request body to a new blob: returns (name, size). 413 over `cap`.
        `digest` (a hashlib object) sees every byte on the way."""
        check_length(request, cap)
        name = secrets.token_hex(16)
        tmp = "tmp-" + name
        size = 0
        ok = False
        try:
            with open(self.path(tmp), "wb") as f:
                async for chunk in body_chunks(request, cap, digest):
                    size += len(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(self.path(tmp), self.path(name))
            ok = True
        finally:
            if not ok:
                self._unlink(tmp)
        return name, size

    def _fd(self, name):
        """A cached read-only descriptor of blob `name` (None when it is gone): blob files are
        never rewritten, only replaced under a new name."""
        fd = self._fds.get(name)
        if fd is None:
            try:
                fd = os.open(self.path(name), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                return None
            while len(self._fds) >= _FDS_MAX:
                os.close(self._fds.pop(next(iter(self._fds))))
            self._fds[name] = fd
        return fd

    async def read_small(self, name, first, count):
        """Bytes [first, first + count) of blob `name` (a Range answer, at most SMALL bytes).
        None when the blob is gone."""
        fd = self._fd(name)
        return None if fd is None else os.pread(fd, count, first)

    def _forget(self, name):
        fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)

    async def send(self, request, response, name, first, count):
        """Stream `count` bytes of blob `name` from `first` as the body of `response` (its
        headers not sent yet). On plain TCP the kernel copies them from the page cache to the
        socket (sendfile(2), the headers corked in front of them); whenever the socket is
        full, one CHUNK goes through the transport, whose flow control wakes us up once it
        has all gone. Under TLS, read and written in CHUNKs. -> response, or None when the
        blob is gone (replaced or deleted since the row was read)."""
        fd = self._fd(name)
        if fd is None:
            return None
        writer = await response.prepare(request)
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost")
        sock = _plain_socket(transport)
        pos, end = first, first + count
        limits = None
        if sock is not None:
            limits = transport.get_write_buffer_limits()
            transport.set_write_buffer_limits(high=1, low=0)  # drain() = all of it sent
            _cork(sock, True)
        try:
            getattr(writer, "send_headers", lambda: None)()  # aiohttp >= 3.10 buffers them
            while pos < end:
                if transport.is_closing():
                    raise ConnectionResetError("connection lost")
                if sock is not None and not transport.get_write_buffer_size():
                    try:
                        n = os.sendfile(sock.fileno(), fd, pos, end - pos)
                    except (BlockingIOError, InterruptedError):
                        n = None  # the socket is full
                    if limits is not None:
                        _cork(sock, False)
                    if n == 0:
                        break  # the file is shorter than its row says
                    if n:
                        pos += n
                        writer.output_size += n
                        writer.buffer_size += n
                        continue
                chunk = os.pread(fd, min(CHUNK, end - pos), pos)
                if not chunk:
                    break
                pos += len(chunk)
                await response.write(chunk)
                await writer.drain()
        finally:
            if sock is not None:
                _cork(sock, False)
                if not transport.is_closing():
                    transport.set_write_buffer_limits(high=limits[1], low=limits[0])
        if pos < end:
            response.force_close()  # the client must see the answer cut short
        await response.write_eof()
        return response


def _plain_socket(transport):
    """The socket under a plain TCP transport, None under TLS (or without one)."""
    if transport is None or transport.get_extra_info("sslcontext") is not None:
        return None
    if transport.get_extra_info("ssl_object") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or getattr(sock, "type", None) != socket.SOCK_STREAM:
        return None
    return sock


def _cork(sock, on):
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, int(on))
    except (OSError, AttributeError):  # not Linux, or the connection is gone
        pass
