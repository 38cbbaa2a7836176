"""Real agents (CPython and the MicroPython unix port) under a staged rollout: the bad image's
first wave pauses the rollout by what the agents report, and the other devices never download
a byte of it (counted on the server); a good image then reaches all of them wave by wave."""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from agentkit import run_agent
from test_agent_integration import Fleet, installed

from tools.server import rollpolicy

N = 36  # every third a MicroPython agent


@pytest.fixture
def fleet(server):
    f = Fleet(server, server.add_vendor())
    yield f
    f.s.close()


def _roll(fleet, cid, action=None, **body):
    url = f"/exoprov/v1/model/{fleet.model}/rollouts/{cid}"
    r = fleet.s.post(f"{url}/{action}", json=body) if action else fleet.s.get(url)
    assert r.status_code == 200, r.text
    return r.json()


def _held(fleet, cid, data, sha=None, version="2"):
    _roll(fleet, cid, "hold")
    url = f"/provision/manage/content/{fleet.model}/"
    meta = f"sha256={sha or hashlib.sha256(data).hexdigest()}&version={version}"
    fleet.ok(fleet.s.post(url, data={"id": cid, "meta": meta}))
    hdrs = {"Content-Type": "application/octet-stream"}
    fleet.ok(fleet.s.post(url + cid, data=data, headers=hdrs))


def _run_all(agents, only=None, parallel=4):
    """One poll of each agent (in serial-number order when parallel=1)."""
    chosen = [a for a in agents if only is None or a["sn"] in only]

    def one(a):
        r = run_agent(a["interp"], a["cfg"], timeout=120)
        assert r.returncode in (0, 3, 6), (a["sn"], a["interp"], r.returncode, r.stderr[-800:])
        return r

    if parallel == 1:
        return [one(a) for a in chosen]
    with ThreadPoolExecutor(parallel) as ex:
        return list(ex.map(one, chosen))


def test_bad_wave_pauses_and_the_rest_never_download_it(fleet, tmp_path):
    agents = []
    for i in range(N):
        sn = fleet.sn(f"ra{i:03d}")
        d = tmp_path / sn
        d.mkdir()
        interp = "micropython" if i % 3 == 2 else "cpython"
        # verify_retries 0: a bad image is refused after one whole download, then reported
        cfg = fleet.config(d, sn, version="1", verify_retries=0)
        agents.append({"sn": sn, "dir": d, "interp": interp, "cfg": cfg})
    _run_all(agents)  # activation, and "active" on 1
    bad = os.urandom(150_000)  # 3 Range requests of 64 KiB each
    _held(fleet, "firmware-bad", bad, sha="0" * 64)
    st = _roll(fleet, "firmware-bad", "start", waves="25,100", min_devices=3, max_failures=50)
    inside = sorted(a["sn"] for a in agents if rollpolicy.in_wave("firmware-bad", a["sn"], 25))
    assert st["wave_size"] == len(inside) and len(inside) >= 5
    assert {a["interp"] for a in agents if a["sn"] in inside} == {"cpython", "micropython"}
    # the first wave's agents poll one after the other: three take the image and refuse it
    _run_all(agents, only=inside, parallel=1)
    st = _roll(fleet, "firmware-bad")
    assert st["state"] == "paused", st
    assert st["took"] == 3 and st["counts"] == {"refused": 3}, st
    # every agent polls twice more: nobody new downloads a byte of it
    _run_all(agents)
    _run_all(agents)
    st = _roll(fleet, "firmware-bad")
    assert st["state"] == "paused" and st["took"] == 3
    took = sorted(inside)[:3]  # the server's count above: these three, and only them
    for a in agents:
        assert installed(a["dir"]) is None
        stage = list((a["dir"] / "install").glob("*"))
        assert (stage != []) == (a["sn"] in took), (a["sn"], stage)
    # abort it; a good image then reaches every agent wave by wave
    _roll(fleet, "firmware-bad", "abort")
    good = os.urandom(70_000)
    _held(fleet, "firmware-good", good)
    _roll(fleet, "firmware-good", "start", waves="25,100", success=100)
    for _ in range(4):
        _run_all(agents)
        if _roll(fleet, "firmware-good")["state"] == "done":
            break
    _run_all(agents)  # the last wave's agents confirm and report active on it
    st = _roll(fleet, "firmware-good")
    assert st["state"] == "done" and st["counts"] == {"active": N}, st
    assert all(installed(a["dir"]) == good for a in agents)
