"""The rollout decisions in the database (tools/server/rollstore.py), on both engines: two
instances holding the same row (read before either acted) try the same decision; exactly one
changes the rollout and writes its event, whatever the order or the interleaving."""

import asyncio

import pytest

from tools.server import rollstore, storage
from tools.server.rollouts import Took

P = {"waves": "10,50,100", "grp": "", "min_devices": 1, "max_failures": 20.0, "success": 100.0,
     "soak": 0, "wave_size": 3}  # fmt: skip


async def _stores(engine, tmp_path, pg_url):
    """Two stores on one database, as two instances would have."""
    db_ = str(tmp_path / "r.db") if engine == "sqlite" else pg_url
    return [await storage.open_store(db_), await storage.open_store(db_)]


async def _close(stores):
    for s in stores:
        await storage.stop(s)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request):
    return request.param


@pytest.fixture
def url(engine, request):
    return request.getfixturevalue("pg").new_database() if engine == "postgres" else None


def test_one_instance_wins_each_decision(engine, url, tmp_path):
    async def go():
        a, b = stores = await _stores(engine, tmp_path, url)
        try:
            await a.add_model("v" * 40, "m", "code", "t", [])
            mid = (await a.model("v" * 40, "m")).id
            assert await rollstore.hold(a, mid, "fw", 1)
            assert not await rollstore.hold(b, mid, "fw", 1)  # held once
            assert await rollstore.start(a, mid, "fw", P, 2)
            assert not await rollstore.start(b, mid, "fw", P, 2)
            # both saw wave 0 complete: one starts wave 1, the other changes nothing
            won = await asyncio.gather(
                rollstore.advance(a, mid, "fw", 0, 20, 3, False),
                rollstore.advance(b, mid, "fw", 0, 20, 3, False),
            )
            assert sorted(won) == [False, True]
            assert not await rollstore.advance(a, mid, "fw", 0, 20, 4, False)  # stale
            row = await rollstore.get(b, mid, "fw")
            assert (row["wave"], row["wave_size"]) == (1, 20)
            # both saw the failures: one pauses it
            won = await asyncio.gather(
                *(rollstore.transition(s, mid, "fw", ("running",), "paused", 5) for s in stores)
            )
            assert sorted(won) == [False, True]
            # a stale advance after the pause changes nothing either
            assert not await rollstore.advance(b, mid, "fw", 1, 60, 6, False)
            row = await rollstore.get(a, mid, "fw")
            assert (row["state"], row["wave"]) == ("paused", 1)
            whats = [e["what"].split(" (")[0] for e in await rollstore.events(a, mid, "fw")]
            assert whats == ["paused", "wave 1", "start wave 0"]
            # a download counted once per device, whichever instance served it
            srv = type("S", (), {"now": lambda self: 7})()
            for s in stores:
                srv.store = s
                await Took().record(srv, mid, "fw", "sn1")
            assert (await rollstore.counts(a, mid, "fw"))["took"] == 1
        finally:
            await _close(stores)

    asyncio.run(go())
