"""The storage layer: both engines satisfy engine.Engine, the numbered migrations (recorded,
applied once, an unversioned database adopted, a newer one refused), and the download
path's kept answers never stale across instances on one database (both engines)."""

import asyncio
import inspect
import sqlite3

import pytest
from conftest import Server
from exoprov.server import migrations, storage
from exoprov.server.engine import Engine
from exoprov.server.migrations import MIGRATIONS, Migration, SchemaTooNew
from exoprov.server.pg_engine import PgEngine
from exoprov.server.sqlite_engine import DIALECT as SQLITE
from exoprov.server.sqlite_engine import SqliteEngine
from serverkit import add_content, device, new_model

_PROTOCOL = {
    name: member
    for name, member in vars(Engine).items()
    if not name.startswith("_") and callable(member)
}


@pytest.mark.parametrize("engine", [SqliteEngine, PgEngine])
def test_each_engine_satisfies_the_interface(engine):
    assert _PROTOCOL  # the interface declares its methods
    for name, declared in _PROTOCOL.items():
        own = getattr(engine, name, None)
        assert own is not None, name
        assert inspect.iscoroutinefunction(own) == inspect.iscoroutinefunction(declared), name
        want = list(inspect.signature(declared).parameters)
        assert list(inspect.signature(own).parameters)[: len(want)] == want, name
    assert isinstance(engine("x"), Engine)
    assert engine.dialect.types == migrations.TYPES[engine.dialect.name]


def _open(path, migrations_=None):
    async def go():
        engine = SqliteEngine(path)
        engine.db = sqlite3.connect(str(path), isolation_level=None)
        applied = await migrations.migrate(engine, migrations_)
        await engine.aclose()
        return applied

    return asyncio.run(go())


def _versions(path):
    with sqlite3.connect(str(path)) as db:
        return [r[0] for r in db.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def test_migrations_are_numbered_once_and_recorded(tmp_path):
    numbers = [m.version for m in MIGRATIONS]
    assert numbers == list(range(1, len(numbers) + 1))
    assert _open(tmp_path / "a.db") == numbers
    assert _open(tmp_path / "a.db") == []  # nothing twice
    assert _versions(tmp_path / "a.db") == numbers


def test_an_unversioned_database_is_adopted_with_its_rows(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(str(path)) as db:  # what release 0.1.0 made: no schema_migrations
        db.executescript(MIGRATIONS[0].text(SQLITE))
        db.execute("INSERT INTO vendors (name, rid) VALUES ('acme', 'r1')")
    assert _open(path) == [m.version for m in MIGRATIONS]
    with sqlite3.connect(str(path)) as db:
        assert db.execute("SELECT name, rid FROM vendors").fetchall() == [("acme", "r1")]


def test_a_new_migration_is_applied_once_and_a_newer_database_refused(tmp_path):
    path = tmp_path / "a.db"
    _open(path)
    extra = Migration(len(MIGRATIONS) + 1, "a column", "ALTER TABLE vendors ADD note TEXT;")
    assert _open(path, [*MIGRATIONS, extra]) == [extra.version]
    assert _open(path, [*MIGRATIONS, extra]) == []
    with sqlite3.connect(str(path)) as db:
        assert "note" in [r[1] for r in db.execute("PRAGMA table_info(vendors)")]
    with pytest.raises(SchemaTooNew):
        _open(path)  # this code does not know the newest migration of the file


def test_the_server_refuses_a_database_newer_than_itself(tmp_path):
    path = tmp_path / "a.db"
    _open(path)
    with sqlite3.connect(str(path)) as db:
        db.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")

    async def go():
        await storage.open_store(path)

    with pytest.raises(OSError, match="newer than this server"):
        asyncio.run(go())


def test_no_stale_answer_across_instances(tmp_path, backend, request):
    """A change made through instance A is never served from instance B's kept answers."""
    db = request.getfixturevalue("pg_url") if backend == "postgres" else tmp_path / "one.db"
    a = Server(tmp_path / "a", db=str(db))
    b = Server(tmp_path / "b", db=str(db))
    try:
        vendor = a.add_vendor()
        with a.session(cik=vendor["cik"]) as va:
            model = new_model(va)
            cik = device(a, vendor, va, model, "sn1")
            add_content(va, model, "fw", b"first" * 20000)
            url = f"/provision/download?vendor={vendor['vendor']}&model={model}&id=fw"
            with b.session(cik=cik) as dev:
                for _ in range(3):  # B now keeps this answer
                    r = dev.get(url, headers={"Range": "bytes=0-4"})
                    assert (r.status_code, r.content) == (206, b"first")
                for i in range(3):
                    data = f"new{i}!".encode() * 1000
                    r = va.post(f"/provision/manage/content/{model}/fw", data=data)
                    assert r.status_code == 205
                    r = dev.get(url, headers={"Range": "bytes=0-4"})
                    assert (r.status_code, r.content) == (206, data[:5]), i
                r = va.post(f"/provision/manage/model/{model}/sn1", data={"disable": "true"})
                assert r.status_code == 205
                assert dev.get(url, headers={"Range": "bytes=0-4"}).status_code == 401
    finally:
        a.stop()
        b.stop()
