"""Which storage engine a `--db` names, and its parts: a plain path is SQLite
(sqlite_engine, blob files in a directory beside it, the failed-activation counts in the
same file); a postgresql:// URL is PostgreSQL (pg_engine: tables, content blobs (pgblobs)
and the counts all in the database, shared by every instance). The handlers see the same
db.Store, blobs and limiter interfaces either way."""

import os
import time

from .db import Store
from .ratelimit import SharedLimiter


def is_postgres(db):
    return str(db).startswith(("postgresql://", "postgres://"))


def make_store(db):
    """The store for `db`, not yet connected (see start())."""
    if is_postgres(db):
        from .pg_engine import PgEngine

        return Store(PgEngine(str(db)))
    from .sqlite_engine import SqliteEngine

    return Store(SqliteEngine(db))


async def start(store):
    """Connect, and migrate the schema to this release's (migrations.py). OSError naming
    the database (without its password) when that fails."""
    try:
        await store.open()
    except Exception as exc:
        where = describe(store.db.where)
        raise OSError(f"cannot open {where}: {type(exc).__name__}: {exc}") from None


async def open_store(db):
    """make_store + start."""
    store = make_store(db)
    await start(store)
    return store


def describe(db):
    """`db` fit for a message: a URL's password left out."""
    if not is_postgres(db):
        return str(db)
    from urllib.parse import urlsplit

    parts = urlsplit(str(db))
    if parts.password is None:
        return str(db)
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


async def stop(store):
    await store.aclose()


def make_blobs(db, store, directory=None):
    if is_postgres(db):
        from .pgblobs import PgBlobs

        return PgBlobs(store.db)
    from .blobs import Blobs

    return Blobs(directory or (str(db) + ".blobs"))


def make_limiter(store, limit):
    """Failed activations per address, counted in the database: shared by the workers and
    by the instances on the same database."""
    return SharedLimiter(store.db, limit, time.time)


async def sweep(blobs, store):
    """Remove blobs no content row points at (left by a crash mid-replace)."""
    await blobs.sweep(store)


def default_db():
    return os.environ.get("EXOPROV_DB") or None
