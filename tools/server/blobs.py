"""Content blobs as files: streamed in to a temporary file then renamed, streamed out in
chunks. Neither direction holds a whole blob in memory."""

import os
import secrets
import time

from .util import read_chunk, too_large

CHUNK = 256 * 1024
# Left-overs are only removed once this old: another worker or instance sharing the
# directory may be writing a tmp- file, or about to commit a just-renamed blob, right now.
STALE = 120.0


class Blobs:
    def __init__(self, directory):
        self.dir = str(directory)
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

    async def send(self, request, response, name, first, count):
        """Stream `count` bytes of blob `name` from `first` as the body of `response`."""
        try:
            f = open(self.path(name), "rb")
        except FileNotFoundError:
            return None  # replaced or deleted since the row was read
        with f:
            f.seek(first)
            await response.prepare(request)
            left = count
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break  # the file shrank under us: the connection is cut short
                left -= len(chunk)
                await response.write(chunk)
        await response.write_eof()
        return response
