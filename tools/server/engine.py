"""What a storage engine supplies to the query layer (db.Store), and nothing more.

The queries are written once, in db.py, with `?` placeholders and the SQL both engines speak
(`ON CONFLICT ... DO UPDATE`, `ON CONFLICT DO NOTHING`, `excluded.`). An engine brings only
what really differs: its connections and transactions, its placeholders, the few words of
its dialect (`Dialect`), bulk insert, locking a row for a read-modify-write, and telling the
download path when something its kept answers depend on has changed (`generation`).
Engines: sqlite_engine.SqliteEngine (one file) and pg_engine.PgEngine (asyncpg).
"""

from dataclasses import dataclass
from typing import Any, AsyncContextManager, Protocol, Sequence, runtime_checkable

from .migrations import TYPES


class Conflict(Exception):
    """A statement broke a uniqueness or foreign-key rule of the schema."""


@dataclass(frozen=True)
class Dialect:
    """The words of SQL the two engines spell differently."""

    name: str  # "sqlite" or "postgres"
    types: dict  # DDL words for the migrations: serial, int, real, bytes, rowid
    find: str  # position of a substring: find(haystack, needle) > 0
    noindex: str  # prefix that keeps the planner off an index on a column ("+" or "")
    for_update: str  # lock the rows a read-modify-write reads ("" where the tx does)


def dialect(name):
    """The Dialect of engine `name`: one table of what the two spell differently."""
    words = {
        # find, noindex, for_update (SQLite's BEGIN IMMEDIATE already holds the write lock)
        "sqlite": ("instr", "+", ""),
        "postgres": ("strpos", "", " FOR UPDATE"),
    }[name]
    return Dialect(name, TYPES[name], *words)


@runtime_checkable
class Engine(Protocol):
    """The engine interface: all async, rows as tuples (or tuple-like records)."""

    dialect: Dialect
    where: str  # the file or URL, for messages (storage.describe hides a password)

    async def open(self) -> None:
        """Connect, and bring the schema to the newest migration (migrations.py)."""

    async def aclose(self) -> None:
        """Disconnect; safe to call twice."""

    def tx(self) -> AsyncContextManager[None]:
        """One transaction; nested blocks join the outer one."""

    async def one(self, sql: str, *args: Any) -> Sequence | None:
        """The first row of a query, or None."""

    async def all(self, sql: str, *args: Any) -> list:
        """Every row of a query."""

    async def run(self, sql: str, *args: Any) -> int:
        """A write: rows touched. Conflict when it breaks a constraint (the transaction
        it runs in stays usable)."""

    async def insert_many(self, table: str, columns: Sequence[str], rows: list) -> None:
        """Insert many rows at once; Conflict when one breaks a constraint."""

    async def script(self, ddl: str) -> None:
        """Run several DDL statements (a migration) in the current transaction."""

    async def generation(self) -> int | None:
        """A number that moves with every committed change to the tables in
        migrations.WATCHED, by this process or any other on the same database; None while
        the engine cannot tell (then nothing may be kept)."""

    async def compact(self, tables: Sequence[str]) -> None:
        """Rewrite the storage of `tables` (outside any transaction) so that no free page,
        old row version or log frame keeps a value that was replaced (secrets at rest)."""

    def migration_lock(self) -> AsyncContextManager[None]:
        """A transaction that only one process at a time holds (the migrations run in it)."""
