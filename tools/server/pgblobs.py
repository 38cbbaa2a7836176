"""Content blobs in PostgreSQL (the interface of blobs.Blobs): every instance reads the
same blobs, with no shared file system."""

import asyncio
import collections
import contextvars
import secrets
import time

from .pg_engine import Unavailable
from .util import body_chunks, check_length

CHUNK = 256 * 1024  # bytes per blob_chunks row: a 64 KiB Range reads one or two rows
STALE = 120.0  # unreferenced blobs younger than this may be an upload about to be committed


class PgBlobs:
    """Content blobs as rows of blob_chunks (blob id, chunk index, CHUNK bytes), with the
    interface of blobs.Blobs. An upload streams in chunk by chunk under a new blob id that no
    content row names until set_blob switches to it in one transaction; the old blob's
    chunks are deleted after. A Range answer reads only the chunks it covers."""

    SMALL = 1 << 20  # Range answers up to this size go through read_small (and the cache)
    CACHE = 32 << 20  # bytes of chunk rows kept per process for read_small

    def __init__(self, engine):
        self.db = engine
        self._tasks = set()
        # (blob id, chunk index) -> bytes, least recently used first. Always right: a blob
        # id is never reused and its chunks never rewritten (an upload makes a new blob).
        self._cache = collections.OrderedDict()
        self._cached = 0

    async def read_small(self, name, first, count):
        """Bytes [first, first + count) of blob `name` (a Range answer, at most SMALL bytes),
        its chunks kept in a bounded cache: the device download pattern (many devices, the
        same 64 KiB ranges of one firmware) costs no database round trip once warm. None
        when the blob is gone."""
        parts = []
        pos, left = first, count
        while left > 0:
            data = await self._chunk(name, pos // CHUNK)
            part = None if data is None else data[pos % CHUNK : pos % CHUNK + left]
            if not part:
                return None  # gone, or shorter than the content row says
            parts.append(part)
            pos += len(part)
            left -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _chunk(self, name, idx):
        """Chunk `idx` of blob `name` from the cache, else from the database (then kept)."""
        key = (name, idx)
        data = self._cache.get(key)
        if data is not None:
            self._cache.move_to_end(key)
            return data
        row = await self.db.one("SELECT data FROM blob_chunks WHERE blob = ? AND idx = ?", *key)
        if row is None:
            return None
        (data,) = row
        if key not in self._cache:  # another request may have read it meanwhile
            self._cache[key] = data
            self._cached += len(data)
        while self._cached > self.CACHE:
            _oldest, dropped = self._cache.popitem(last=False)
            self._cached -= len(dropped)
        return data

    def _background(self, coro):
        """Run `coro` outside the caller's transaction (a fresh context), unawaited."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            return None
        task = loop.create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _delete(self, name):
        try:
            async with self.db.tx():
                await self.db.run("DELETE FROM blob_chunks WHERE blob = ?", name)
                await self.db.run("DELETE FROM pg_blobs WHERE id = ?", name)
        except Unavailable:
            pass  # the next sweep removes it

    def remove(self, name):
        if name:
            self._background(self._delete(name))

    async def sweep(self, store):
        """Remove blobs no content row points at (uploads cut short, replaced blobs whose
        deletion was interrupted), once they are STALE."""
        old = time.time() - STALE
        orphans = (
            "SELECT id FROM pg_blobs b WHERE created < ? AND NOT EXISTS "
            "(SELECT 1 FROM content c WHERE c.blob = b.id)"
        )
        try:
            async with self.db.tx():
                await self.db.run(f"DELETE FROM blob_chunks WHERE blob IN ({orphans})", old)
                await self.db.run(f"DELETE FROM pg_blobs WHERE id IN ({orphans})", old)
        except Unavailable:
            pass

    async def receive(self, request, cap, digest=None):
        """Stream the request body to a new blob: returns (name, size). 413 over `cap`.
        `digest` (a hashlib object) sees every byte on the way."""
        check_length(request, cap)
        name = secrets.token_hex(16)
        await self.db.run("INSERT INTO pg_blobs (id, created) VALUES (?, ?)", name, time.time())
        size, idx = 0, 0
        buf = bytearray()
        ok = False
        try:
            async for chunk in body_chunks(request, cap, digest):
                size += len(chunk)
                buf += chunk
                while len(buf) >= CHUNK:
                    await self._put(name, idx, bytes(buf[:CHUNK]))
                    del buf[:CHUNK]
                    idx += 1
            if buf:
                await self._put(name, idx, bytes(buf))
            # the sweep's clock starts now: the caller is about to point a content row at it
            await self.db.run("UPDATE pg_blobs SET created = ? WHERE id = ?", time.time(), name)
            ok = True
        finally:
            if not ok:  # gone before the answer (413, 408), even if the request is cancelled
                await asyncio.shield(self._background(self._delete(name)))
        return name, size

    async def _put(self, name, idx, data):
        await self.db.run(
            "INSERT INTO blob_chunks (blob, idx, data) VALUES (?, ?, ?)", name, idx, data
        )

    async def _get(self, name, idx, start, length):
        row = await self.db.one(
            "SELECT substring(data FROM ? FOR ?) AS part FROM blob_chunks "
            "WHERE blob = ? AND idx = ?",
            start + 1,
            length,
            name,
            idx,
        )
        return None if row is None else row["part"]

    async def send(self, request, response, name, first, count):
        """Stream `count` bytes of blob `name` from `first` as the body of `response`, one
        chunk row at a time. None when the blob is gone (replaced or deleted)."""
        pos, left = first, count
        data = b""
        if count > 0:
            data = await self._get(name, pos // CHUNK, pos % CHUNK, min(left, CHUNK - pos % CHUNK))
            if data is None:
                return None
        elif await self.db.one("SELECT 1 FROM pg_blobs WHERE id = ?", name) is None:
            return None
        await response.prepare(request)
        while data:
            await response.write(data)
            pos += len(data)
            left -= len(data)
            if left <= 0:
                break
            try:
                data = await self._get(
                    name, pos // CHUNK, pos % CHUNK, min(left, CHUNK - pos % CHUNK)
                )
            except Unavailable:
                raise ConnectionResetError("database unavailable mid-answer") from None
        if left > 0:
            raise ConnectionResetError("blob gone mid-answer")  # the client sees it cut short
        await response.write_eof()
        return response
