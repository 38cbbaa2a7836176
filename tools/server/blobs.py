"""Content blobs as files: streamed in to a temporary file then renamed, streamed out in
chunks. Neither direction holds a whole blob in memory."""

import asyncio
import os
import secrets
import time

from .util import read_chunk, too_large

CHUNK = 256 * 1024
# Left-overs are only removed once this old: another worker or instance sharing the
# directory may be writing a tmp- file, or about to commit a just-renamed blob, right now.
STALE = 120.0
SMALL = 1 << 20  # Range answers up to this size are read whole and sent in one write
_FDS_MAX = 64


class Blobs:
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

    def sweep(self, keep):
        """Remove blob files no content row points at (left by a crash mid-replace)."""
        for name in os.listdir(self.dir):
            if not name.startswith("tmp-") and name not in keep and self._stale(name):
                self._unlink(name)

    async def receive(self, request, cap, digest=None):
        """Stream the request body to a new blob: returns (name, size). 413 over `cap`.
        `digest` (a hashlib object) sees every byte on the way."""
        length = request.content_length
        if length is not None and length > cap:
            raise too_large(cap)
        name = secrets.token_hex(16)
        tmp = "tmp-" + name
        size = 0
        ok = False
        try:
            with open(self.path(tmp), "wb") as f:
                while True:
                    chunk = await read_chunk(request)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > cap:
                        raise too_large(cap)
                    f.write(chunk)
                    if digest is not None:
                        digest.update(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(self.path(tmp), self.path(name))
            ok = True
        finally:
            if not ok:
                self._unlink(tmp)
        return name, size

    def read_small(self, name, first, count):
        """Bytes [first, first + count) of blob `name` (a Range answer, at most SMALL bytes)
        from a cached descriptor: blob files are never rewritten, only replaced under a new
        name. None when the blob is gone."""
        fd = self._fds.get(name)
        if fd is None:
            try:
                fd = os.open(self.path(name), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                return None
            while len(self._fds) >= _FDS_MAX:
                os.close(self._fds.pop(next(iter(self._fds))))
            self._fds[name] = fd
        return os.pread(fd, count, first)

    def _forget(self, name):
        fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)

    async def send(self, request, response, name, first, count):
        """Stream `count` bytes of blob `name` from `first` as the body of `response`: with
        sendfile(2) where the transport allows it (plain TCP), else in CHUNK reads."""
        try:
            f = open(self.path(name), "rb")
        except FileNotFoundError:
            return None  # replaced or deleted since the row was read
        with f:
            await response.prepare(request)
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("connection lost")
            try:
                # the kernel copies page cache to socket; a short file just sends less and
                # the client sees the connection cut short, as below
                if count > 0:
                    loop = asyncio.get_running_loop()
                    await loop.sendfile(transport, f, first, count, fallback=False)
            except NotImplementedError:  # TLS, or a loop without sendfile
                f.seek(first)
                left = count
                while left > 0:
                    chunk = f.read(min(CHUNK, left))
                    if not chunk:
                        break  # the file shrank under us: the connection is cut short
                    left -= len(chunk)
                    await response.write(chunk)
        await response.write_eof()
        return response
