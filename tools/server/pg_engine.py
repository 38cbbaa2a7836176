"""The PostgreSQL engine (engine.Engine) through asyncpg, for several instances on one
database.

`async with engine.tx():` holds one pooled connection in a context variable: the statements
made inside it (and nested `tx()` blocks) run on that connection in one transaction; a
statement outside any transaction takes a connection from the pool for itself. An INSERT
inside a transaction runs in a savepoint, so that a Conflict leaves the transaction usable.

What must hold across instances is decided by the database: a CIK is released by a
conditional UPDATE (one winner), a read-modify-write locks its row (FOR UPDATE), Conflict
comes from the constraints. When the database cannot be reached, every call raises
Unavailable (an ApiError: 503 with Retry-After); the pool reconnects by itself once it is
back.

Change notification: every committed change to a WATCHED table notifies channel
`exoprov_changed` (a statement trigger, migration 2). One connection per instance LISTENs
to it and moves the instance's generation; the instance's own writes move it at their
commit, before their answer is sent. Another instance learns of a change when the
notification reaches it, a moment after the commit (PostgreSQL sends it to each listening
session as soon as that session's server process runs): a request it answers within that
moment may still get the kept answer. While the LISTEN connection is down, generation() is
None and the download path keeps nothing.
"""

import asyncio
import contextlib
import contextvars
import logging
import re
import time

import asyncpg

from . import migrations
from .engine import Conflict, dialect
from .util import ApiError

log = logging.getLogger("exoprov.server")

DIALECT = dialect("postgres")

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
_BROKEN = asyncpg.IntegrityConstraintViolationError
RETRY_AFTER = 2
CONNECT_TIMEOUT = 5.0  # seconds to open a connection
ACQUIRE_TIMEOUT = 10.0  # seconds to wait for a free pooled connection
LISTEN_RETRY = 1.0  # seconds between attempts to get the LISTEN connection back
CHANNEL = "exoprov_changed"
_MIGRATE_LOCK = 0x65786F70  # pg_advisory_xact_lock key of the migrations ("exop")


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


_SQL = {}
_TARGET = re.compile(r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\w+)", re.I)


def _prepare(sql):
    """(`?` placeholders numbered as $1, $2..., whether it writes a WATCHED table), cached."""
    got = _SQL.get(sql)
    if got is None:
        parts = sql.split("?")
        text = parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))
        target = _TARGET.match(sql)
        got = text, bool(target and target[1].lower() in migrations.WATCHED)
        _SQL[sql] = got
    return got


def _count(status):
    """Rows touched, from asyncpg's command tag ("UPDATE 3")."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, AttributeError):
        return 0


class PgEngine:
    dialect = DIALECT

    def __init__(self, url, min_size=0, max_size=10):
        self.url = self.where = url
        self.pool = None
        self._size = (min_size, max_size)
        self._cur = contextvars.ContextVar("exoprov_pg_tx", default=None)
        self._gen = 0
        self._listener = None  # the LISTEN connection, None while down
        self._listen_task = None
        self._closing = False

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
        await migrations.migrate(self)
        await self._listen()

    async def aclose(self):
        self._closing = True
        if self._listen_task is not None:
            self._listen_task.cancel()
            self._listen_task = None
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(*DOWN):
                await listener.close(timeout=2)
        if self.pool is not None:  # waits for the connections in use (a blob's deletion)
            await self.pool.close()
            self.pool = None

    # -- change notification -------------------------------------------------------------

    def _changed(self, *_args):
        self._gen += 1

    def _lost(self, _conn):
        self._listener = None
        self._gen += 1
        if not self._closing and self._listen_task is None:
            self._listen_task = asyncio.get_running_loop().create_task(self._relisten())

    async def _listen(self):
        conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)
        await conn.add_listener(CHANNEL, self._changed)
        conn.add_termination_listener(self._lost)
        self._listener = conn
        self._gen += 1  # what happened while nobody listened is unknown

    async def _relisten(self):
        try:
            while not self._closing and self._listener is None:
                await asyncio.sleep(LISTEN_RETRY)
                try:
                    await self._listen()
                except Exception as exc:  # down, or starting up: try again in a moment
                    log.debug("LISTEN connection: %s", type(exc).__name__)
        finally:
            self._listen_task = None

    async def generation(self):
        return None if self._listener is None else self._gen

    # -- connections and transactions ------------------------------------------------------

    async def _acquire(self):
        if self._closing:  # no new statement once closing (a background task's)
            raise Unavailable()
        try:
            return await self.pool.acquire(timeout=ACQUIRE_TIMEOUT)
        except DOWN as exc:
            raise unavailable(exc) from None

    async def _release(self, conn):
        with contextlib.suppress(*DOWN):
            await self.pool.release(conn)

    @contextlib.asynccontextmanager
    async def _conn(self):
        """The connection of the current transaction, else one from the pool."""
        cur = self._cur.get()
        if cur is not None:
            yield cur[0]
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
    async def tx(self, lock=None):
        """One transaction; nested calls join the outer one. Only the database's own failures
        become Unavailable, not what the block raises."""
        if self._cur.get() is not None:
            yield
            return
        conn = await self._acquire()
        state = [conn, False]  # the connection, whether a WATCHED table was written
        try:
            tr = conn.transaction()
            try:
                await tr.start()
                if lock is not None:
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
            except DOWN as exc:
                raise unavailable(exc) from None
            token = self._cur.set(state)
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
            if state[1]:
                self._changed()
        except Unavailable:
            with contextlib.suppress(*DOWN):
                conn.terminate()
            raise
        finally:
            await self._release(conn)

    def migration_lock(self):
        return self.tx(lock=_MIGRATE_LOCK)

    # -- statements ------------------------------------------------------------------------

    async def one(self, sql, *args):
        return await self._query(sql, args, first=True)

    async def all(self, sql, *args):
        return await self._query(sql, args, first=False)

    async def _query(self, sql, args, first):
        async with self._conn() as c:
            fetch = c.fetchrow if first else c.fetch
            try:
                return await fetch(_prepare(sql)[0], *args)
            except DOWN as exc:
                raise unavailable(exc) from None

    async def run(self, sql, *args):
        text, watched = _prepare(sql)
        cur = self._cur.get()
        async with self._conn() as c:
            try:
                if cur is not None and text.lstrip()[:6].upper() == "INSERT":
                    async with c.transaction():  # a savepoint
                        n = _count(await c.execute(text, *args))
                else:
                    n = _count(await c.execute(text, *args))
            except DOWN as exc:
                raise unavailable(exc) from None
            except _BROKEN as exc:
                raise Conflict(type(exc).__name__) from None
        self._wrote(cur, watched)
        return n

    async def insert_many(self, table, columns, rows):
        cur = self._cur.get()
        async with self._conn() as c:
            try:
                async with c.transaction():  # a savepoint inside a transaction
                    await c.copy_records_to_table(table, records=rows, columns=list(columns))
            except DOWN as exc:
                raise unavailable(exc) from None
            except _BROKEN as exc:
                raise Conflict(type(exc).__name__) from None
        self._wrote(cur, table in migrations.WATCHED)

    def _wrote(self, cur, watched):
        """A WATCHED table was written: the generation moves now (no transaction) or at the
        transaction's commit."""
        if watched:
            if cur is None:
                self._changed()
            else:
                cur[1] = True

    async def compact(self, tables):
        """VACUUM FULL: each table rewritten without its dead row versions."""
        async with self._conn() as c:
            try:
                for table in tables:
                    await c.execute(f"VACUUM FULL {table}")
            except DOWN as exc:
                raise unavailable(exc) from None

    async def script(self, ddl):
        async with self._conn() as c:
            try:
                await c.execute(ddl)
            except DOWN as exc:
                raise unavailable(exc) from None
