"""Which storage engine a `--db` names, and its parts: a plain path is SQLite (db.Store, blob
files in a directory beside it, the failed-activation counts in the same file); a
postgresql:// URL is PostgreSQL (pgstore: tables, content blobs and the counts all in the
database, shared by every instance). The handlers see the same interface either way."""

import os
import time


def is_postgres(db):
    return str(db).startswith(("postgresql://", "postgres://"))


def make_store(db):
    """The store for `db` (not yet connected for PostgreSQL: see start())."""
    if is_postgres(db):
        from .pgstore import PgStore

        return PgStore(str(db))
    from .db import Store

    return Store(db)


async def start(store):
    """Connect (PostgreSQL: the pool, and the schema created or migrated). OSError naming
    the database (without its password) when that fails."""
    if hasattr(store, "open"):
        try:
            await store.open()
        except Exception as exc:
            raise OSError(f"cannot open {describe(store.url)}: {type(exc).__name__}: {exc}")


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
    if hasattr(store, "aclose"):
        await store.aclose()


def make_blobs(db, store, directory=None):
    if is_postgres(db):
        from .pgstore import PgBlobs

        return PgBlobs(store)
    from .blobs import Blobs

    return Blobs(directory or (str(db) + ".blobs"))


def make_limiter(db, store, limit):
    """Failed activations per address, counted in the database: shared by the workers and
    by the instances on the same database."""
    if is_postgres(db):
        from .pgstore import PgLimiter

        return PgLimiter(store, limit, time.time)
    from .ratelimit import SharedLimiter

    return SharedLimiter(db, limit, time.time)


async def sweep(blobs, store):
    """Remove blobs no content row points at (left by a crash mid-replace)."""
    if hasattr(blobs, "sweep_now"):
        await blobs.sweep_now()
    else:
        blobs.sweep(await store.all_blobs())


def default_db():
    return os.environ.get("EXOPROV_DB") or None
