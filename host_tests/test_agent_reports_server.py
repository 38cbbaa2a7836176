"""The agent's reports against the real server, under CPython and the MicroPython
unix port: what the fleet status shows after each step, the progress history, and alias
writes that fail (500) or never answer (a hang) never failing an update."""

import os
import sqlite3
import time

import pytest
from agentkit import INTERPS, run_agent
from test_agent_integration import Fleet, installed, state

from tools.harness.reportcost import AliasProxy


@pytest.fixture
def fleet(server):
    f = Fleet(server, server.add_vendor())
    yield f
    f.close()


def status(fleet, sn):
    r = fleet.s.get(f"/exoprov/v1/model/{fleet.model}/status", params={"search": sn})
    assert r.status_code == 200, r.text
    return {d["sn"]: d for d in r.json()["devices"]}[sn]


def history(fleet, sn, alias):
    """Every value the device wrote to `alias`, oldest first (the server's own file)."""
    db = sqlite3.connect(fleet.server.db)
    try:
        rows = db.execute(
            "SELECT d.value FROM data d JOIN sns s ON s.client_rid = d.client_rid "
            "JOIN models m ON m.id = s.model_id WHERE m.name = ? AND s.sn = ? AND d.alias = ? "
            "ORDER BY d.id",
            (fleet.model, sn, alias),
        ).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]


@pytest.mark.parametrize("interp", INTERPS)
def test_reports_through_an_update(fleet, tmp_path, interp):
    sn = fleet.sn("sn-r")
    data = os.urandom(700_000)  # 11 ranges of 64 KiB
    fleet.content("firmware-2", data, version="2.0")
    cfg = fleet.config(tmp_path, sn, version="1.0")
    before = int(time.time())
    r = run_agent(interp, cfg)
    assert r.returncode == 3, r.stderr
    st = status(fleet, sn)
    assert st["state"] == "applied" and st["target"] == "2.0" and st["version"] == "1.0"
    assert st["progress"] is None and st["boots"] == 1 and st["rollbacks"] == 0
    assert st["last_seen"] >= before and st["address"] == "127.0.0.1"
    assert st["status"] == "activated" and st["error"] is None
    assert history(fleet, sn, "state") == ["active", "downloading", "applied"]
    assert history(fleet, sn, "progress") == [str(p) for p in range(0, 100, 10)]
    r = run_agent(interp, cfg)
    assert r.returncode == 0, r.stderr
    st = status(fleet, sn)
    ts = fleet.s.get(f"/provision/manage/content/{fleet.model}/firmware-2").text.split(",")[2]
    assert st["state"] == "active" and st["version"] == "2.0" and st["boots"] == 2
    assert st["content"] == f"firmware-2:{int(ts)}"
    assert state(tmp_path)["cik"] not in r.stderr


@pytest.mark.parametrize("interp", INTERPS)
@pytest.mark.parametrize("mode", ["500", "hang"])
def test_failing_alias_writes_never_fail_an_update(fleet, tmp_path, interp, mode):
    sn = fleet.sn("sn-f")
    data = os.urandom(300_000)
    fleet.content("firmware-3", data, version="3.0")
    proxy = AliasProxy(fleet.server.host, fleet.server.port, mode)
    try:
        cfg = fleet.config(tmp_path, sn, server=proxy.url, timeout=30)
        t0 = time.monotonic()
        r = run_agent(interp, cfg, timeout=120)
        took = time.monotonic() - t0
        assert r.returncode == 3, r.stderr
        assert installed(tmp_path) == data
        # start, downloading, the first progress step (then no more progress), applied
        assert proxy.alias == 4, proxy.alias
        print(f"\n{interp} {mode}: update with failing reports took {took:.1f} s")
        r = run_agent(interp, cfg, timeout=120)
        assert r.returncode == 0, r.stderr
        assert state(tmp_path)["inst"]["ver"] == "3.0"
    finally:
        proxy.close()
    assert status(fleet, sn)["state"] is None  # nothing got through
