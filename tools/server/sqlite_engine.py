"""The SQLite engine (engine.Engine): one file, one connection per process.

Its methods are async to fit the interface but never suspend, so a transaction here is
never interleaved with another request's statements in the same process; between processes
(`--workers N`, instances sharing the file) BEGIN IMMEDIATE and busy_timeout order writers.
The change counter is a one-row table moved by triggers (migration 1), read per request.
"""

import contextlib
import logging
import sqlite3

from . import migrations
from .engine import Conflict, dialect

log = logging.getLogger("exoprov.server")

DIALECT = dialect("sqlite")


def _statements(script):
    """A script's statements one by one (executescript would commit the transaction)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf
            buf = ""
    if buf.strip() and not buf.strip().startswith("--"):
        yield buf


class SqliteEngine:
    dialect = DIALECT

    def __init__(self, path):
        self.path = self.where = str(path)
        self.db = None

    async def open(self):
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=5000")
        # what a row held is zeroed in its page when it is deleted or rewritten, where that
        # costs no extra write: a sealed token deleted leaves nothing behind in free space
        self.db.execute("PRAGMA secure_delete=FAST")
        await migrations.migrate(self)

    async def aclose(self):
        if self.db is not None:
            self.db.close()
            self.db = None

    @contextlib.asynccontextmanager
    async def tx(self):
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def migration_lock(self):
        return self.tx()

    async def one(self, sql, *args):
        return self.db.execute(sql, args).fetchone()

    async def all(self, sql, *args):
        return self.db.execute(sql, args).fetchall()

    async def run(self, sql, *args):
        try:
            return self.db.execute(sql, args).rowcount
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from None

    async def insert_many(self, table, columns, rows):
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        async with self.tx():
            try:
                self.db.executemany(sql, rows)
            except sqlite3.IntegrityError as exc:
                raise Conflict(str(exc)) from None

    async def script(self, ddl):
        for stmt in _statements(ddl):
            self.db.execute(stmt)

    async def compact(self, tables):
        """The whole file rewritten (VACUUM), then the WAL, whose frames held the old pages
        too, checkpointed and emptied."""
        try:
            self.db.execute("VACUUM")
        except sqlite3.OperationalError as exc:  # another instance reading the file
            log.warning("could not VACUUM the database (%s): run the server alone once", exc)
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def generation(self):
        return self.db.execute("SELECT n FROM generation").fetchone()[0]
