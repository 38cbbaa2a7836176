"""The PostgreSQL engine of the server's storage (asyncpg): the same methods, arguments and
return shapes as db.Store (SQLite), so that the handlers do not know which engine runs.

The SQL is db.py's, translated once per statement (`?` -> `$n`, instr -> strpos, INSERT OR
IGNORE -> ON CONFLICT DO NOTHING); db.py's schema is translated the same way and applied on
start under an advisory lock, so that several instances starting at once create or migrate
it once (new tables, and new columns of existing tables). Every table gets a `rowid`
column (bigserial) so that db.py's "in insertion order" queries read the same.

`async with store.tx():` holds one pooled connection in a context variable: the calls made
inside it (and nested `tx()` blocks) run on that connection in one transaction; a call
outside any transaction takes a connection from the pool for that one statement.

What must hold across instances is decided by the database: a CIK is released by a
conditional UPDATE (one winner), set_blob locks its content row, Duplicate comes from the
unique constraints. When the database cannot be reached, every call raises Unavailable
(an ApiError: 503 with Retry-After); the pool reconnects by itself once it is back.
"""

import asyncio
import collections
import contextlib
import contextvars
import json
import logging
import math
import re
import secrets
import time

import asyncpg

from .db import (
    _SCHEMA,
    _STATUS,
    ACTLOG_KEEP,
    DATA_KEEP,
    REPORT_INT,
    REPORT_TEXT,
    STATUS_KEYS,
    Duplicate,
    secret_hash,
)
from .ratelimit import WINDOW
from .util import ApiError, read_chunk, too_large

log = logging.getLogger("exoprov.server")

IntegrityError = asyncpg.IntegrityConstraintViolationError
# what "the database is not there right now" looks like to asyncpg
DOWN = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,  # shutting down, starting up
    asyncpg.InsufficientResourcesError,  # too many connections
    asyncpg.InternalClientError,  # a connection left mid-operation by the failure
)
RETRY_AFTER = 2
CONNECT_TIMEOUT = 5.0  # seconds to open a connection
ACQUIRE_TIMEOUT = 10.0  # seconds to wait for a free pooled connection
_MIGRATE_LOCK = 0x65786F70  # pg_advisory_lock key of the schema migration ("exop")
_NOT_USED = (STATUS_KEYS, _STATUS, REPORT_INT, REPORT_TEXT)  # kept importable beside db.py's


class Unavailable(ApiError):
    """The database cannot be reached: 503, try again in a moment."""

    def __init__(self):
        super().__init__(503, "database unavailable", {"Retry-After": str(RETRY_AFTER)})


_warned = [0.0]


def unavailable(exc):
    """Unavailable from a connection error, logged once in a while (one line, no traceback)."""
    now = time.monotonic()
    if now - _warned[0] > 5:
        _warned[0] = now
        log.warning("database unavailable: %s", type(exc).__name__)
    return Unavailable()


# -- dialect ---------------------------------------------------------------------------------

_SQL = {}


def pg_sql(sql):
    """db.py's SQLite statement as PostgreSQL (cached)."""
    out = _SQL.get(sql)
    if out is None:
        out = sql.replace("instr(", "strpos(").replace("+s.client_rid", "s.client_rid")
        if out.startswith("INSERT OR IGNORE"):
            out = "INSERT" + out[len("INSERT OR IGNORE") :] + " ON CONFLICT DO NOTHING"
        n = iter(range(1, 1000))
        out = re.sub(r"\?", lambda _m: f"${next(n)}", out)
        _SQL[sql] = out
    return out


_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", re.S)


def pg_schema(schema=_SCHEMA):
    """db.py's schema as PostgreSQL statements: (create statements, [(table, column def)])."""
    text = re.sub(r"--[^\n]*", "", schema)
    text = text.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
    text = re.sub(r"\bINTEGER\b", "BIGINT", text).replace(" REAL", " DOUBLE PRECISION")
    columns = []
    for table, body in _TABLE.findall(text):
        for line in body.split("\n"):
            line = line.strip().rstrip(",")
            first = line.split(" ", 1)[0]
            if line and first not in ("PRIMARY", "FOREIGN", "UNIQUE", "CHECK"):
                columns.append((table, line.replace(" PRIMARY KEY", "")))
    text = _TABLE.sub(
        lambda m: f"CREATE TABLE IF NOT EXISTS {m[1]} (\n    rowid BIGSERIAL,{m[2]}\n);", text
    )
    return [s.strip() for s in text.split(";") if s.strip()], columns


_EXTRA = """
CREATE TABLE IF NOT EXISTS pg_blobs (
    id TEXT PRIMARY KEY,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_chunks (
    blob TEXT NOT NULL,
    idx BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (blob, idx)
);
ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS act_fails (
    address TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS act_fails_a ON act_fails(address, ts);
"""


_LOCK_TIMEOUT = "10s"  # DDL waiting longer for its table lock gives up instead of queueing


async def _missing(conn, columns):
    """The (table, column) pairs of the schema the database does not have yet."""
    have = {
        (r["table_name"], r["column_name"])
        for r in await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        )
    }
    want = {(t, c.split(" ", 1)[0]) for t, c in columns}
    want |= {("pg_blobs", "id"), ("blob_chunks", "data"), ("act_fails", "address")}
    return want - have


async def migrate(conn):
    """Create what is missing of the schema, one instance at a time. A schema already
    complete costs one catalogue query and takes no table lock: DDL (even `IF NOT EXISTS`)
    would wait for an ACCESS EXCLUSIVE lock behind any open transaction on its table, and
    every query after it would queue behind that wait, so one slow request (a 100 000-line
    CSV) and an instance or `exoprov admin` starting meanwhile blocked the whole database."""
    creates, columns = pg_schema()
    if not await _missing(conn, columns):
        return
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATE_LOCK)
    try:
        await conn.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
        for stmt in creates:
            await conn.execute(stmt)
        for table, coldef in columns:  # columns added to db.py's tables since
            await conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {coldef}")
        await conn.execute(_EXTRA)
    finally:
        await conn.execute("RESET lock_timeout")
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATE_LOCK)


def _count(status):
    """Rows touched, from asyncpg's command tag ("UPDATE 3")."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, AttributeError):
        return 0


class PgStore:
    def __init__(self, url, min_size=0, max_size=10):
        self.url = url
        self.pool = None
        self._size = (min_size, max_size)
        self._cur = contextvars.ContextVar("exoprov_pg_conn", default=None)

    async def open(self):
        self.pool = await asyncpg.create_pool(
            self.url,
            min_size=self._size[0],
            max_size=self._size[1],
            command_timeout=60,
            timeout=CONNECT_TIMEOUT,  # a database that drops packets: 503, not a hang
            max_inactive_connection_lifetime=60,
            # a transaction left open by a handler that never came back ends by itself
            server_settings={"idle_in_transaction_session_timeout": "60000"},
        )
        async with self.pool.acquire() as conn:
            await migrate(conn)
        return self

    async def aclose(self):
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()

    def close(self):
        """Closing happens with aclose() inside the loop; nothing left to do here."""

    async def _acquire(self):
        try:
            return await self.pool.acquire(timeout=ACQUIRE_TIMEOUT)
        except DOWN as exc:
            raise unavailable(exc) from None

    async def _release(self, conn):
        with contextlib.suppress(*DOWN):
            await self.pool.release(conn)

    @contextlib.asynccontextmanager
    async def conn(self):
        """The connection of the current transaction, else one from the pool."""
        cur = self._cur.get()
        if cur is not None:
            yield cur
            return
        conn = await self._acquire()
        try:
            yield conn
        except Unavailable:
            with contextlib.suppress(*DOWN):  # not back into the pool as it is
                conn.terminate()
            raise
        finally:
            await self._release(conn)

    @contextlib.asynccontextmanager
    async def tx(self):
        """One transaction; nested calls join the outer one. Only the database's own failures
        become Unavailable, not what the block raises."""
        if self._cur.get() is not None:
            yield
            return
        conn = await self._acquire()
        try:
            tr = conn.transaction()
            try:
                await tr.start()
            except DOWN as exc:
                raise unavailable(exc) from None
            token = self._cur.set(conn)
            try:
                yield
            except BaseException:
                self._cur.reset(token)
                with contextlib.suppress(*DOWN):
                    await tr.rollback()
                raise
            self._cur.reset(token)
            try:
                await tr.commit()
            except DOWN as exc:
                raise unavailable(exc) from None
        except Unavailable:
            with contextlib.suppress(*DOWN):
                conn.terminate()
            raise
        finally:
            await self._release(conn)

    async def _one(self, sql, *args):
        async with self.conn() as c:
            try:
                row = await c.fetchrow(pg_sql(sql), *args)
            except DOWN as exc:
                raise unavailable(exc) from None
        return None if row is None else tuple(row)

    async def _all(self, sql, *args):
        async with self.conn() as c:
            try:
                rows = await c.fetch(pg_sql(sql), *args)
            except DOWN as exc:
                raise unavailable(exc) from None
        return [tuple(r) for r in rows]

    async def _run(self, sql, *args):
        async with self.conn() as c:
            try:
                return _count(await c.execute(pg_sql(sql), *args))
            except DOWN as exc:
                raise unavailable(exc) from None

    async def _insert(self, sql, *args):
        """_run for a statement that may break a constraint (IntegrityError): inside a
        transaction, in a savepoint, so that the transaction stays usable."""
        if self._cur.get() is None:
            return await self._run(sql, *args)
        async with self.conn() as c:
            try:
                async with c.transaction():
                    return _count(await c.execute(pg_sql(sql), *args))
            except DOWN as exc:
                raise unavailable(exc) from None

    # -- clients and vendors ---------------------------------------------------------------

    async def add_client(self, rid, parent, kind, cik, state, enabled_at=0):
        await self._run(
            "INSERT INTO clients (rid, parent, kind, cik_hash, secret, state, enabled_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rid,
            parent,
            kind,
            secret_hash(cik),
            cik,
            state,
            enabled_at,
        )

    async def client_by_cik(self, cik):
        """(rid, kind, state, enabled_at) of the client holding this CIK, or None."""
        return await self._one(
            "SELECT rid, kind, state, enabled_at FROM clients WHERE cik_hash = ?",
            secret_hash(cik),
        )

    async def client(self, rid):
        """(rid, parent, kind, state, enabled_at, secret) or None."""
        return await self._one(
            "SELECT rid, parent, kind, state, enabled_at, secret FROM clients WHERE rid = ?", rid
        )

    async def client_parent(self, rid):
        row = await self._one("SELECT parent FROM clients WHERE rid = ?", rid)
        return None if row is None else (row[0] or "")

    async def set_client_cik(self, rid, cik, state, enabled_at):
        """Mint (cik) or drop (cik None) the client's CIK and set its state."""
        await self._run(
            "UPDATE clients SET cik_hash = ?, secret = ?, state = ?, enabled_at = ? WHERE rid = ?",
            None if cik is None else secret_hash(cik),
            cik,
            state,
            enabled_at,
            rid,
        )

    async def delete_client(self, rid):
        await self._run("DELETE FROM clients WHERE rid = ?", rid)
        await self._run("DELETE FROM data WHERE client_rid = ?", rid)
        await self._run("DELETE FROM jsonp_tokens WHERE client_rid = ?", rid)

    async def add_vendor_name(self, name, rid):
        try:
            await self._insert("INSERT INTO vendors (name, rid) VALUES (?, ?)", name, rid)
        except IntegrityError:
            raise Duplicate(name)

    async def delete_vendor_name(self, name, rid):
        return await self._run("DELETE FROM vendors WHERE name = ? AND rid = ?", name, rid)

    async def vendor_by_name(self, name):
        """(name, rid) or None."""
        return await self._one("SELECT name, rid FROM vendors WHERE name = ?", name)

    async def vendor_name_of(self, rid):
        row = await self._one("SELECT name FROM vendors WHERE rid = ?", rid)
        return None if row is None else row[0]

    async def vendors(self):
        return await self._all("SELECT name, rid FROM vendors ORDER BY name")

    # -- vendor tokens -----------------------------------------------------------------------

    async def token_vendor(self, token):
        row = await self._one(
            "SELECT vendor_rid FROM tokens WHERE token_hash = ?", secret_hash(token)
        )
        return None if row is None else row[0]

    async def add_token(self, vendor_rid, tid, token):
        try:
            await self._insert(
                "INSERT INTO tokens (vendor_rid, tid, token_hash, secret) VALUES (?, ?, ?, ?)",
                vendor_rid,
                tid,
                secret_hash(token),
                token,
            )
        except IntegrityError:
            raise Duplicate(tid)

    async def token_ids(self, vendor_rid):
        rows = await self._all(
            "SELECT tid FROM tokens WHERE vendor_rid = ? ORDER BY rowid", vendor_rid
        )
        return [r[0] for r in rows]

    async def token_secret(self, vendor_rid, tid):
        row = await self._one(
            "SELECT secret FROM tokens WHERE vendor_rid = ? AND tid = ?", vendor_rid, tid
        )
        return None if row is None else row[0]

    async def delete_token(self, vendor_rid, tid):
        return await self._run(
            "DELETE FROM tokens WHERE vendor_rid = ? AND tid = ?", vendor_rid, tid
        )

    # -- models ----------------------------------------------------------------------------

    async def model(self, vendor_rid, name):
        """(id, name, template_kind, template, options list) or None."""
        row = await self._one(
            "SELECT id, name, template_kind, template, options FROM models "
            "WHERE vendor_rid = ? AND name = ?",
            vendor_rid,
            name,
        )
        if row is None:
            return None
        return row[0], row[1], row[2], row[3], json.loads(row[4])

    async def model_name_taken(self, name):
        return await self._one("SELECT 1 FROM models WHERE name = ? LIMIT 1", name) is not None

    async def models(self, vendor_rid):
        rows = await self._all(
            "SELECT name FROM models WHERE vendor_rid = ? ORDER BY id", vendor_rid
        )
        return [r[0] for r in rows]

    async def add_model(self, vendor_rid, name, kind, template, options):
        try:
            await self._insert(
                "INSERT INTO models (vendor_rid, name, template_kind, template, options) "
                "VALUES (?, ?, ?, ?, ?)",
                vendor_rid,
                name,
                kind,
                template,
                json.dumps(options),
            )
        except IntegrityError:
            raise Duplicate(name)

    async def update_model(self, model_id, kind, template, options):
        await self._run(
            "UPDATE models SET template_kind = ?, template = ?, options = ? WHERE id = ?",
            kind,
            template,
            json.dumps(options),
            model_id,
        )

    async def delete_model(self, model_id):
        """Delete a model and everything under it; returns the blob names to remove."""
        async with self.tx():
            blobs = [
                r[0]
                for r in await self._all(
                    "SELECT blob FROM content WHERE model_id = ? AND blob IS NOT NULL", model_id
                )
            ]
            rids = await self._all(
                "SELECT client_rid FROM sns WHERE model_id = ? AND client_rid IS NOT NULL",
                model_id,
            )
            for (rid,) in rids:
                await self.delete_client(rid)
            await self._run("DELETE FROM members WHERE model_id = ?", model_id)
            await self._run("DELETE FROM models WHERE id = ?", model_id)
        return blobs

    async def shared_models(self, vendor_name):
        """[(owner vendor name, model name)] shared to `vendor_name`."""
        return await self._all(
            "SELECT v.name, m.name FROM shares s JOIN models m ON m.id = s.model_id "
            "JOIN vendors v ON v.rid = m.vendor_rid WHERE s.vendor_name = ? ORDER BY m.id",
            vendor_name,
        )

    # -- shares ----------------------------------------------------------------------------

    async def share_names(self, model_id):
        rows = await self._all(
            "SELECT vendor_name FROM shares WHERE model_id = ? ORDER BY rowid", model_id
        )
        return [r[0] for r in rows]

    async def is_shared(self, model_id, vendor_name):
        row = await self._one(
            "SELECT 1 FROM shares WHERE model_id = ? AND vendor_name = ?", model_id, vendor_name
        )
        return row is not None

    async def add_share(self, model_id, vendor_name):
        try:
            await self._insert(
                "INSERT INTO shares (model_id, vendor_name) VALUES (?, ?)", model_id, vendor_name
            )
        except IntegrityError:
            raise Duplicate(vendor_name)

    async def delete_share(self, model_id, vendor_name):
        return await self._run(
            "DELETE FROM shares WHERE model_id = ? AND vendor_name = ?", model_id, vendor_name
        )

    # -- serial numbers --------------------------------------------------------------------

    async def sn(self, model_id, sn):
        """(sn, extra, client_rid, enabled_by) or None."""
        return await self._one(
            "SELECT sn, extra, client_rid, enabled_by FROM sns WHERE model_id = ? AND sn = ?",
            model_id,
            sn,
        )

    async def ensure_sn(self, model_id, sn):
        """Materialise a serial number that is whitelisted through a range."""
        await self._run("INSERT OR IGNORE INTO sns (model_id, sn) VALUES (?, ?)", model_id, sn)

    async def delete_sns(self, model_id, sns):
        """Delete serial numbers and their clients; returns how many existed."""
        count = 0
        async with self.tx():
            for sn in sns:
                row = await self.sn(model_id, sn)
                if row is None:
                    continue
                if row[2]:
                    await self.delete_client(row[2])
                await self._run("DELETE FROM sns WHERE model_id = ? AND sn = ?", model_id, sn)
                count += 1
        return count

    async def list_sns(self, model_id, offset, limit, enabled_by=None):
        """[(sn, extra, client_rid, state, enabled_at)] in insertion order."""
        sql = (
            "SELECT s.sn, s.extra, s.client_rid, c.state, c.enabled_at FROM sns s "
            "LEFT JOIN clients c ON c.rid = s.client_rid WHERE s.model_id = ?"
        )
        args = [model_id]
        if enabled_by is not None:
            sql += " AND s.enabled_by = ?"
            args.append(enabled_by)
        sql += " ORDER BY s.rowid LIMIT ? OFFSET ?"
        return await self._all(sql, *args, limit, offset)

    async def set_sn_client(self, model_id, sn, client_rid, enabled_by):
        await self._run(
            "UPDATE sns SET client_rid = ?, enabled_by = ? WHERE model_id = ? AND sn = ?",
            client_rid,
            enabled_by,
            model_id,
            sn,
        )

    async def sn_of_client(self, client_rid):
        """(model_id, sn) of the serial number this device client belongs to, or None."""
        return await self._one("SELECT model_id, sn FROM sns WHERE client_rid = ?", client_rid)

    async def generation(self):
        """None: no change counter here (db.py keeps one in SQLite by trigger; here every
        writer would queue on its row), so the download path keeps nothing (device.Grants)
        and asks the database at every request."""
        return None

    async def device_view(self, cik, vendor, model):
        """The download path's lookups in one query: (client_by_cik row or None, id of model
        `model` of vendor `vendor` or None, sn_of_client row or None)."""
        row = await self._one(
            "SELECT c.rid, c.kind, c.state, c.enabled_at, s.model_id, s.sn, "
            "(SELECT m.id FROM vendors v JOIN models m ON m.vendor_rid = v.rid "
            " WHERE v.name = ? AND m.name = ?) "
            "FROM clients c LEFT JOIN sns s ON s.client_rid = c.rid WHERE c.cik_hash = ?",
            vendor,
            model,
            secret_hash(cik),
        )
        if row is None:
            return None, None, None
        return row[:4], row[6], (row[4:6] if row[4] is not None else None)

    # -- ranges ----------------------------------------------------------------------------

    async def ranges(self, model_id):
        rows = await self._all("SELECT spec FROM ranges WHERE model_id = ? ORDER BY id", model_id)
        return [json.loads(r[0]) for r in rows]

    async def range_count(self, model_id):
        return (await self._one("SELECT COUNT(*) FROM ranges WHERE model_id = ?", model_id))[0]

    async def add_ranges(self, model_id, specs):
        async with self.tx():
            for spec in specs:
                await self._run(
                    "INSERT INTO ranges (model_id, spec) VALUES (?, ?)",
                    model_id,
                    json.dumps(spec, sort_keys=True),
                )

    async def delete_ranges(self, model_id, specs):
        count = 0
        async with self.tx():
            for spec in specs:
                count += await self._run(
                    "DELETE FROM ranges WHERE model_id = ? AND spec = ?",
                    model_id,
                    json.dumps(spec, sort_keys=True),
                )
        return count

    # -- activation log --------------------------------------------------------------------

    async def log_activation(self, model_id, sn, ts, conn, what):
        async with self.tx():
            await self._run(
                "INSERT INTO actlog (model_id, sn, ts, conn, what) VALUES (?, ?, ?, ?, ?)",
                model_id,
                sn,
                ts,
                conn,
                what,
            )
            await self._run(
                "DELETE FROM actlog WHERE model_id = ? AND sn = ? AND id <= ("
                "SELECT id FROM actlog WHERE model_id = ? AND sn = ? "
                "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                model_id,
                sn,
                model_id,
                sn,
                ACTLOG_KEEP,
            )

    async def activation_log(self, model_id, sn):
        return await self._all(
            "SELECT ts, conn, what FROM actlog WHERE model_id = ? AND sn = ? ORDER BY id",
            model_id,
            sn,
        )

    # -- content ---------------------------------------------------------------------------

    async def content(self, model_id, cid):
        """dict(cid, meta, protected, ctype, size, updated, blob) or None."""
        row = await self._one(
            "SELECT cid, meta, protected, ctype, size, updated, blob FROM content "
            "WHERE model_id = ? AND cid = ?",
            model_id,
            cid,
        )
        if row is None:
            return None
        keys = ("cid", "meta", "protected", "ctype", "size", "updated", "blob")
        return dict(zip(keys, row, strict=True))

    async def content_list(self, model_id):
        """[(cid, protected)] in creation order."""
        return await self._all(
            "SELECT cid, protected FROM content WHERE model_id = ? ORDER BY rowid", model_id
        )

    async def add_content(self, model_id, cid, meta, protected):
        try:
            await self._insert(
                "INSERT INTO content (model_id, cid, meta, protected) VALUES (?, ?, ?, ?)",
                model_id,
                cid,
                meta,
                int(protected),
            )
        except IntegrityError:
            raise Duplicate(cid)

    async def delete_content(self, model_id, cid):
        """Returns (existed, blob name or None)."""
        async with self.tx():
            row = await self._one(
                "SELECT blob FROM content WHERE model_id = ? AND cid = ?", model_id, cid
            )
            if row is None:
                return False, None
            await self._run("DELETE FROM content WHERE model_id = ? AND cid = ?", model_id, cid)
            await self._run(
                "DELETE FROM members WHERE model_id = ? AND type = 'content' AND mid = ?",
                model_id,
                cid,
            )
        return True, row[0]

    async def all_blobs(self):
        return {r[0] for r in await self._all("SELECT blob FROM content WHERE blob IS NOT NULL")}

    # -- groups ----------------------------------------------------------------------------

    async def group(self, model_id, gid):
        """(meta, member count) or None."""
        row = await self._one(
            "SELECT meta FROM groups WHERE model_id = ? AND gid = ?", model_id, gid
        )
        if row is None:
            return None
        count = (
            await self._one(
                "SELECT COUNT(*) FROM members WHERE model_id = ? AND gid = ?", model_id, gid
            )
        )[0]
        return row[0], count

    async def groups(self, model_id, offset, limit):
        return await self._all(
            "SELECT gid, meta FROM groups WHERE model_id = ? ORDER BY rowid LIMIT ? OFFSET ?",
            model_id,
            limit,
            offset,
        )

    async def add_group(self, model_id, gid, meta):
        try:
            await self._insert(
                "INSERT INTO groups (model_id, gid, meta) VALUES (?, ?, ?)", model_id, gid, meta
            )
        except IntegrityError:
            raise Duplicate(gid)

    async def delete_group(self, model_id, gid):
        async with self.tx():
            n = await self._run("DELETE FROM groups WHERE model_id = ? AND gid = ?", model_id, gid)
            await self._run(
                "DELETE FROM members WHERE model_id = ? AND type = 'group' AND mid = ?",
                model_id,
                gid,
            )
        return n

    async def upsert_members(self, model_id, gid, rows):
        """rows: [(type, mid, expire, meta)]."""
        async with self.tx():
            for type_, mid, expire, meta in rows:
                await self._run(
                    "INSERT INTO members (model_id, gid, type, mid, expire, meta) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (model_id, gid, type, mid) "
                    "DO UPDATE SET expire = excluded.expire, meta = excluded.meta",
                    model_id,
                    gid,
                    type_,
                    mid,
                    expire,
                    meta,
                )

    async def delete_members(self, model_id, gid, pairs):
        count = 0
        async with self.tx():
            for type_, mid in pairs:
                count += await self._run(
                    "DELETE FROM members WHERE model_id = ? AND gid = ? AND type = ? AND mid = ?",
                    model_id,
                    gid,
                    type_,
                    mid,
                )
        return count

    async def members(self, model_id, gid, type_=None, mid=None, offset=0, limit=1000):
        sql = "SELECT type, mid, expire, meta FROM members WHERE model_id = ? AND gid = ?"
        args = [model_id, gid]
        if type_ is not None:
            sql += " AND type = ?"
            args.append(type_)
        if mid is not None:
            sql += " AND mid = ?"
            args.append(mid)
        sql += " ORDER BY rowid LIMIT ? OFFSET ?"
        return await self._all(sql, *args, limit, offset)

    async def groups_of(self, model_id, type_, mid, offset=0, limit=1000, now=None):
        """Ids of the groups holding member (type, mid); with `now`, only unexpired ones."""
        sql = "SELECT gid FROM members WHERE model_id = ? AND type = ? AND mid = ?"
        args = [model_id, type_, mid]
        if now is not None:
            sql += " AND (expire = 0 OR expire > ?)"
            args.append(now)
        sql += " ORDER BY rowid LIMIT ? OFFSET ?"
        rows = await self._all(sql, *args, limit, offset)
        return [r[0] for r in rows]

    # -- data interface and jsonp ----------------------------------------------------------

    async def write_data(self, client_rid, ts, pairs):
        async with self.tx():
            for alias, value in pairs:
                await self._run(
                    "INSERT INTO data (client_rid, alias, ts, value) VALUES (?, ?, ?, ?)",
                    client_rid,
                    alias,
                    ts,
                    value,
                )
                await self._run(
                    "DELETE FROM data WHERE client_rid = ? AND alias = ? AND id <= ("
                    "SELECT id FROM data WHERE client_rid = ? AND alias = ? "
                    "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    client_rid,
                    alias,
                    client_rid,
                    alias,
                    DATA_KEEP,
                )

    async def latest(self, client_rid, alias):
        row = await self._one(
            "SELECT value FROM data WHERE client_rid = ? AND alias = ? ORDER BY id DESC LIMIT 1",
            client_rid,
            alias,
        )
        return None if row is None else row[0]

    async def series(self, client_rid, alias, start, end, offset, limit):
        return await self._all(
            "SELECT ts, value FROM data WHERE client_rid = ? AND alias = ? AND ts >= ? "
            "AND ts <= ? ORDER BY ts, id LIMIT ? OFFSET ?",
            client_rid,
            alias,
            start,
            end,
            limit,
            offset,
        )

    async def add_jsonp_token(self, token, client_rid, spec, expire):
        await self._run("DELETE FROM jsonp_tokens WHERE expire < ?", int(spec.get("now", 0)))
        await self._run(
            "INSERT INTO jsonp_tokens (token_hash, client_rid, spec, expire) VALUES (?, ?, ?, ?)",
            secret_hash(token),
            client_rid,
            json.dumps(spec),
            expire,
        )

    async def jsonp_token(self, token):
        """(client_rid, spec dict, expire) or None."""
        row = await self._one(
            "SELECT client_rid, spec, expire FROM jsonp_tokens WHERE token_hash = ?",
            secret_hash(token),
        )
        if row is None:
            return None
        return row[0], json.loads(row[1]), row[2]

    # -- device status (issue 10): last heard from, and what the device last reported -----

    async def heard(self, model_id, sn, ts, address):
        """A device call for serial number `sn` from `address` at `ts`: sets its `last_seen`
        and `address`. Nothing happens for a serial number not in the model's list."""
        try:
            await self._insert(
                "INSERT INTO devstatus (model_id, sn, last_seen, address) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (model_id, sn) DO UPDATE SET last_seen = excluded.last_seen, "
                "address = excluded.address",
                model_id,
                sn,
                ts,
                address,
            )
        except IntegrityError:  # not whitelisted (or deleted meanwhile)
            pass

    async def record_report(self, model_id, sn, ts, address, fields):
        """A device report at `ts` from `address`: `fields` maps names of REPORT_TEXT (str)
        and REPORT_INT (int) to the values to keep; other names are ignored. Also sets
        last_seen, address, reported (= ts) and error_at (= ts when `error` is given); a
        state other than "downloading" without a progress clears `progress`."""
        cols = [k for k in REPORT_TEXT + REPORT_INT if k in fields]
        if "error" in fields:
            cols.append("error_at")
            fields = dict(fields, error_at=ts)
        sets = [f"{c} = excluded.{c}" for c in ("last_seen", "address", "reported", *cols)]
        if fields.get("state", "downloading") != "downloading" and "progress" not in fields:
            sets.append("progress = NULL")
        names = ", ".join(("model_id", "sn", "last_seen", "address", "reported", *cols))
        try:
            await self._insert(
                f"INSERT INTO devstatus ({names}) VALUES ({', '.join('?' * (5 + len(cols)))}) "
                f"ON CONFLICT (model_id, sn) DO UPDATE SET {', '.join(sets)}",
                model_id,
                sn,
                ts,
                address,
                ts,
                *[fields[c] for c in cols],
            )
        except IntegrityError:
            pass

    async def device_status(self, model_id, sn):
        """dict(sn, *STATUS_KEYS) of one serial number, or None when its device never called:
        last_seen, reported, error_at: unix seconds or None; address, state, version,
        content ("id:updated"), error, target: str or None; boots, rollbacks, progress
        (percent, only while downloading): int or None."""
        row = await self._one(
            f"SELECT sn, {_STATUS} FROM devstatus WHERE model_id = ? AND sn = ?", model_id, sn
        )
        return None if row is None else dict(zip(("sn", *STATUS_KEYS), row, strict=True))

    async def device_statuses(
        self,
        model_id,
        offset=0,
        limit=100,
        enabled_by=None,
        version=None,
        state=None,
        search=None,
    ):
        """One page of a model's serial numbers (list order) with what their devices told:
        [dict(sn, client_rid, client_state, enabled_at, *STATUS_KEYS)] (client_state and
        enabled_at as in list_sns: give them to Server.status() for the spec's status;
        the STATUS_KEYS as in device_status(), all None for a device never heard from).
        Filters: enabled_by (a share sees what it enabled), version / state (exact; "" for
        none reported), search (part of the sn)."""
        sql = (
            "SELECT s.sn, s.client_rid, c.state, c.enabled_at, "
            + ", ".join("d." + k for k in STATUS_KEYS)
            + " FROM sns s LEFT JOIN clients c ON c.rid = s.client_rid "
            "LEFT JOIN devstatus d ON d.model_id = s.model_id AND d.sn = s.sn "
            "WHERE s.model_id = ?"
        )
        args = [model_id]
        if enabled_by is not None:
            sql += " AND s.enabled_by = ?"
            args.append(enabled_by)
        for col, value in (("version", version), ("state", state)):
            if value == "":
                sql += f" AND d.{col} IS NULL"
            elif value is not None:
                sql += f" AND d.{col} = ?"
                args.append(value)
        if search:
            sql += " AND instr(s.sn, ?) > 0"
            args.append(search)
        sql += " ORDER BY s.rowid LIMIT ? OFFSET ?"
        keys = ("sn", "client_rid", "client_state", "enabled_at", *STATUS_KEYS)
        rows = await self._all(sql, *args, limit, offset)
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def status_counts(self, model_id, enabled_by=None):
        """Counts over a model's serial numbers for a rollout view:
        {"devices": int (serial numbers), "heard": int (their devices ever called),
         "versions": [(version or None, int)], "states": [(state or None, int)],
         "downloading": [(target or None, int)] (state "downloading", by target version),
         "failed": int (state "failed" or "refused"), "rolled_back": int (rollbacks > 0)}.
        Lists are sorted by count, largest first, then by value (None, nothing reported,
        last among equal counts)."""
        where = "WHERE s.model_id = ?" + (" AND s.enabled_by = ?" if enabled_by else "")
        args = (model_id, enabled_by) if enabled_by else (model_id,)
        rows = await self._all(
            "SELECT d.version, d.state, d.target, d.sn IS NOT NULL, "
            "COALESCE(d.rollbacks, 0) > 0, COUNT(*) FROM sns s LEFT JOIN devstatus d "
            f"ON d.model_id = s.model_id AND d.sn = s.sn {where} GROUP BY 1, 2, 3, 4, 5",
            *args,
        )
        out = {"devices": 0, "heard": 0, "failed": 0, "rolled_back": 0}
        versions, states, downloading = {}, {}, {}
        for version, state, target, heard, rolled, n in rows:
            out["devices"] += n
            out["heard"] += n if heard else 0
            out["rolled_back"] += n if rolled else 0
            out["failed"] += n if state in ("failed", "refused") else 0
            versions[version] = versions.get(version, 0) + n
            states[state] = states.get(state, 0) + n
            if state == "downloading":
                downloading[target] = downloading.get(target, 0) + n
        for key, counts in (
            ("versions", versions),
            ("states", states),
            ("downloading", downloading),
        ):
            out[key] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
        return out

    # -- dashboard sessions and pages (tools/server/ui) ------------------------------------

    async def add_ui_session(self, id_hash, vendor_rid, expire, now):
        """A dashboard session: only the hash of its cookie, the vendor and its expiry."""
        async with self.tx():
            await self._run("DELETE FROM ui_sessions WHERE expire <= ?", now)
            await self._run(
                "INSERT INTO ui_sessions (id_hash, vendor_rid, expire) VALUES (?, ?, ?)",
                id_hash,
                vendor_rid,
                expire,
            )

    async def ui_session(self, id_hash, now):
        """The vendor rid of an unexpired session, or None."""
        row = await self._one(
            "SELECT vendor_rid FROM ui_sessions WHERE id_hash = ? AND expire > ?", id_hash, now
        )
        return None if row is None else row[0]

    async def delete_ui_session(self, id_hash):
        return await self._run("DELETE FROM ui_sessions WHERE id_hash = ?", id_hash)

    async def sn_count(self, model_id):
        return (await self._one("SELECT COUNT(*) FROM sns WHERE model_id = ?", model_id))[0]

    async def sn_page(self, model_id, page):
        """One page of a model's serial numbers in sn order, by keyset (`after` / `before` an
        sn, the primary key's order) so that a page costs the same at row 100 000 as at row 1.
        page: dict(limit, after, before, search, status, version, enabled_by, now, window);
        status is the spec's (activated, notactivated, expired) or "none" (no client).
        Rows: (sn, extra, client_rid, client state, enabled_at, and from devstatus: version,
        reported state, error, last_seen)."""
        # With a version, the walk is along devstatus_version_sn (only that version's rows,
        # already in sn order); else along the primary key.
        cols = (
            "SELECT s.sn, s.extra, s.client_rid, c.state, c.enabled_at, d.version, d.state, "
            "d.error, d.last_seen FROM "
        )
        if page.get("version"):
            key = "d.sn"
            sql = [
                cols + "devstatus d JOIN sns s ON s.model_id = d.model_id AND s.sn = d.sn "
                "LEFT JOIN clients c ON c.rid = s.client_rid WHERE d.model_id = ? "
                "AND d.version = ?"
            ]
            args = [model_id, page["version"]]
        else:
            key = "s.sn"
            sql = [
                cols + "sns s LEFT JOIN clients c ON c.rid = s.client_rid "
                "LEFT JOIN devstatus d ON d.model_id = s.model_id AND d.sn = s.sn "
                "WHERE s.model_id = ?"
            ]
            args = [model_id]
        backwards = page.get("after") is None and page.get("before") is not None
        if page.get("after") is not None:
            sql.append(f"AND {key} > ?")
            args.append(page["after"])
        elif backwards:
            sql.append(f"AND {key} < ?")
            args.append(page["before"])
        if page.get("enabled_by") is not None:
            sql.append("AND s.enabled_by = ?")
            args.append(page["enabled_by"])
        if page.get("search"):
            sql.append("AND instr(s.sn, ?) > 0")
            args.append(page["search"])
        status = page.get("status")
        if status:
            fresh = "c.state = 'notactivated' AND c.enabled_at + ? > ?"
            sql.append(
                {
                    "activated": "AND c.state = 'activated'",
                    "notactivated": f"AND {fresh}",
                    "expired": f"AND c.state IS NOT NULL AND c.state != 'activated' "
                    f"AND NOT ({fresh})",
                    # `+`: not through sns_client, which would give the rows out of order
                    "none": "AND +s.client_rid IS NULL",
                }[status]
            )
            if status in ("notactivated", "expired"):
                args += [page["window"], page["now"]]
        sql.append(f"ORDER BY {key} {'DESC' if backwards else 'ASC'} LIMIT ?")
        args.append(page["limit"])
        rows = await self._all(" ".join(sql), *args)
        return rows[::-1] if backwards else rows

    # -- PostgreSQL's own versions of what must hold across instances, or go faster ----------

    async def release_cik(self, rid):
        """Activation: the device now holds its CIK, the server forgets the plaintext. True
        for the one caller that released it (a conditional UPDATE: one winner)."""
        n = await self._run(
            "UPDATE clients SET state = 'activated', secret = NULL "
            "WHERE rid = ? AND state = 'notactivated' AND secret IS NOT NULL",
            rid,
        )
        return n == 1

    async def set_blob(self, model_id, cid, blob, ctype, size, updated):
        """As db.Store.set_blob; the content row is locked for the switch."""
        async with self.tx():
            row = await self._one(
                "SELECT blob, updated FROM content WHERE model_id = ? AND cid = ? FOR UPDATE",
                model_id,
                cid,
            )
            if row is None:
                return False
            updated = max(updated, row[1] + 1)
            await self._run(
                "UPDATE content SET blob = ?, ctype = ?, size = ?, updated = ? "
                "WHERE model_id = ? AND cid = ?",
                blob,
                ctype,
                size,
                updated,
                model_id,
                cid,
            )
        return row[0]

    async def add_sns(self, model_id, pairs):
        """Add (sn, extra) pairs in one transaction; Duplicate if any exists. In batches (a
        100 000-line CSV is a few statements, not 100 000 round trips)."""
        pairs = list(pairs)
        seen = set()
        for sn, _extra in pairs:
            if sn in seen:
                raise Duplicate(sn)
            seen.add(sn)
        async with self.tx():
            for i in range(0, len(pairs), 10000):
                part = pairs[i : i + 10000]
                row = await self._one(
                    "SELECT sn FROM sns WHERE model_id = ? AND sn = ANY(?::text[]) LIMIT 1",
                    model_id,
                    [sn for sn, _ in part],
                )
                if row is not None:
                    raise Duplicate(row[0])
                try:
                    await self._insert(
                        "INSERT INTO sns (model_id, sn, extra) "
                        "SELECT ?, unnest(?::text[]), unnest(?::text[])",
                        model_id,
                        [sn for sn, _ in part],
                        [extra for _, extra in part],
                    )
                except IntegrityError:  # added by someone else meanwhile
                    raise Duplicate(part[0][0])


# -- content blobs in the database -------------------------------------------------------------

CHUNK = 256 * 1024  # bytes per blob_chunks row: a 64 KiB Range reads one or two rows
STALE = 120.0  # unreferenced blobs younger than this may be an upload about to be committed


class PgBlobs:
    """Content blobs as rows of blob_chunks (blob id, chunk index, CHUNK bytes), with the
    interface of blobs.Blobs. An upload streams in chunk by chunk under a new blob id that no
    content row names until set_blob switches to it in one transaction; the old blob's
    chunks are deleted after. A Range answer reads only the chunks it covers."""

    SMALL = 1 << 20  # Range answers up to this size go through read_small (and the cache)
    CACHE = 32 << 20  # bytes of chunk rows kept per process for read_small

    def __init__(self, store):
        self.store = store
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
        out = bytearray()
        pos, left = first, count
        while left > 0:
            key = (name, pos // CHUNK)
            data = self._cache.get(key)
            if data is None:
                row = await self.store._one(
                    "SELECT data FROM blob_chunks WHERE blob = ? AND idx = ?", *key
                )
                if row is None:
                    return None
                data = row[0]
                self._cache[key] = data
                self._cached += len(data)
                while self._cached > self.CACHE:
                    self._cached -= len(self._cache.popitem(last=False)[1])
            else:
                self._cache.move_to_end(key)
            part = data[pos % CHUNK : pos % CHUNK + left]
            if not part:
                return None  # shorter than the content row says
            out += part
            pos += len(part)
            left -= len(part)
        return bytes(out)

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
            async with self.store.tx():
                await self.store._run("DELETE FROM blob_chunks WHERE blob = ?", name)
                await self.store._run("DELETE FROM pg_blobs WHERE id = ?", name)
        except Unavailable:
            pass  # the next sweep removes it

    def remove(self, name):
        if name:
            self._background(self._delete(name))

    def sweep(self, keep=None):
        """Remove blobs no content row points at (uploads cut short, replaced blobs whose
        deletion was interrupted), once they are STALE."""
        self._background(self.sweep_now())

    async def sweep_now(self):
        old = time.time() - STALE
        orphans = (
            "SELECT id FROM pg_blobs b WHERE created < ? AND NOT EXISTS "
            "(SELECT 1 FROM content c WHERE c.blob = b.id)"
        )
        try:
            async with self.store.tx():
                await self.store._run(f"DELETE FROM blob_chunks WHERE blob IN ({orphans})", old)
                await self.store._run(f"DELETE FROM pg_blobs WHERE id IN ({orphans})", old)
        except Unavailable:
            pass

    async def receive(self, request, cap, digest=None):
        """Stream the request body to a new blob: returns (name, size). 413 over `cap`.
        `digest` (a hashlib object) sees every byte on the way."""
        length = request.content_length
        if length is not None and length > cap:
            raise too_large(cap)
        name = secrets.token_hex(16)
        await self.store._run(
            "INSERT INTO pg_blobs (id, created) VALUES (?, ?)", name, time.time()
        )
        size, idx = 0, 0
        buf = bytearray()
        ok = False
        try:
            while True:
                chunk = await read_chunk(request)
                if not chunk:
                    break
                size += len(chunk)
                if size > cap:
                    raise too_large(cap)
                if digest is not None:
                    digest.update(chunk)
                buf += chunk
                while len(buf) >= CHUNK:
                    await self._put(name, idx, bytes(buf[:CHUNK]))
                    del buf[:CHUNK]
                    idx += 1
            if buf:
                await self._put(name, idx, bytes(buf))
            # the sweep's clock starts now: the caller is about to point a content row at it
            await self.store._run(
                "UPDATE pg_blobs SET created = ? WHERE id = ?", time.time(), name
            )
            ok = True
        finally:
            if not ok:  # gone before the answer (413, 408), even if the request is cancelled
                await asyncio.shield(self._background(self._delete(name)))
        return name, size

    async def _put(self, name, idx, data):
        await self.store._run(
            "INSERT INTO blob_chunks (blob, idx, data) VALUES (?, ?, ?)", name, idx, data
        )

    async def _get(self, name, idx, start, length):
        row = await self.store._one(
            "SELECT substring(data FROM ? FOR ?) FROM blob_chunks WHERE blob = ? AND idx = ?",
            start + 1,
            length,
            name,
            idx,
        )
        return None if row is None else row[0]

    async def send(self, request, response, name, first, count):
        """Stream `count` bytes of blob `name` from `first` as the body of `response`, one
        chunk row at a time. None when the blob is gone (replaced or deleted)."""
        pos, left = first, count
        data = b""
        if count > 0:
            data = await self._get(name, pos // CHUNK, pos % CHUNK, min(left, CHUNK - pos % CHUNK))
            if data is None:
                return None
        elif await self.store._one("SELECT 1 FROM pg_blobs WHERE id = ?", name) is None:
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


# -- failed activations per address, across instances ------------------------------------------


class PgLimiter:
    """ratelimit.SharedLimiter's sliding minute in the act_fails table of PostgreSQL, so that
    every instance counts an address together. Async methods (awaited by device.py)."""

    _CLEAN_EVERY = 1000

    def __init__(self, store, limit, clock=time.time):
        self.store = store
        self.limit = limit
        self.clock = clock
        self._n = 0

    async def retry_after(self, address):
        if not self.limit:
            return 0
        now = self.clock()
        rows = await self.store._all(
            "SELECT ts FROM act_fails WHERE address = ? AND ts > ? ORDER BY ts DESC LIMIT ?",
            address,
            now - WINDOW,
            self.limit,
        )
        if len(rows) < self.limit:
            return 0
        return max(1, math.ceil(rows[-1][0] + WINDOW - now))

    async def failed(self, address):
        if not self.limit:
            return
        now = self.clock()
        await self.store._run("INSERT INTO act_fails (address, ts) VALUES (?, ?)", address, now)
        self._n += 1
        if self._n % self._CLEAN_EVERY == 0:
            await self.store._run("DELETE FROM act_fails WHERE ts <= ?", now - WINDOW)
        else:
            await self.store._run(
                "DELETE FROM act_fails WHERE address = ? AND ts <= ?", address, now - WINDOW
            )
