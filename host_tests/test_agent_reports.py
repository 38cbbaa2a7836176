"""The agent's status reports through the alias interface, with the fake server:
what each start, activation and update step tells, and that a report never decides anything."""

import os

import pytest
from agentkit import FakeBoard, FakeProvision, Reset, response

from agent import compat
from agent import fsm as F
from agent.api import Api
from agent.http import Conn

CFG = {"sn": "sn-1", "firmware_prefix": "firmware", "chunk": 8192}
ALIAS = "/onep:v1/stack/alias"


def make(srv=None, board=None, **cfg):
    srv = srv or FakeProvision()
    board = board or FakeBoard()
    api = Api(Conn("h", 80, False, 30000, board.ticks_ms, connect=srv), "v", "m")
    return srv, board, F.Fsm(board, api, dict(CFG, **cfg))


def reports(srv):
    """The alias writes in order, as dicts (parse_qs drops empty values)."""
    return [r[2] for r in srv.requests if r[1] == ALIAS]


def test_activation_reports_the_whole_status_once():
    srv, board, m = make()
    m.rec["inst"] = {"id": None, "ver": "1.0", "sha": None, "ts": 0}
    assert m.run(once=True) == F.OK
    assert reports(srv) == [{"state": "active", "version": "1.0", "boots": "1", "rollbacks": "0"}]
    srv.requests.clear()
    assert make(srv, board)[2].run(once=True) == F.OK  # each start: one report
    assert reports(srv) == [{"state": "active", "version": "1.0", "boots": "2", "rollbacks": "0"}]


def test_update_steps_progress_at_most_once_per_ten_percent():
    srv, board, m = make()
    data = os.urandom(200_000)  # 25 ranges of 8 KiB: 4 % each
    srv.add("firmware-1", data, version="2.0", ts=1700000123)
    with pytest.raises(Reset):
        m.run(once=True)
    got = reports(srv)
    assert got[0]["state"] == "active" and "version" not in got[0]
    assert got[1] == {
        "state": "downloading",
        "target": "2.0",
        "progress": "0",
        "boots": "1",
        "rollbacks": "0",
    }
    steps = [int(r["progress"]) for r in got[2:-1]]
    assert all(r.keys() == {"progress"} for r in got[2:-1])  # progress alone: a few bytes
    assert steps == list(range(10, 100, 10))
    assert got[-1]["state"] == "applied" and got[-1]["target"] == "2.0"
    srv.requests.clear()
    assert make(srv, board)[2].run(once=True) == F.OK
    assert reports(srv) == [
        {
            "state": "active",
            "version": "2.0",
            "content": "firmware-1:1700000123",
            "boots": "2",
            "rollbacks": "0",
        }
    ]


def test_resumed_download_reports_from_where_it_is():
    srv, board, m = make()
    srv.add("firmware-1", os.urandom(100_000), version="2.0")
    seen = []

    def cut(method, q, hdrs):  # the 7th range (48 KiB) never comes
        if hdrs.get("range", "").startswith("bytes=49152-"):
            seen.append(1)
            return response(503)

    srv.faults.append(cut)
    assert m.run(once=True) == F.FAIL
    got = reports(srv)
    assert got[-1]["state"] == "failed" and got[-1]["error"].startswith("ApiError(503")
    srv.faults.clear()
    srv.requests.clear()
    with pytest.raises(Reset):
        make(srv, board)[2].run(once=True)
    got = reports(srv)
    assert got[1]["state"] == "downloading" and got[1]["progress"] == "40"
    assert [r["progress"] for r in got[2:-1]] == ["50", "60", "70", "80", "90"]


def test_refused_and_rolled_back_are_reported():
    srv, board, m = make()
    srv.add("firmware-1", b"x" * 100, digest=False)
    assert m.run(once=True) == F.REFUSED
    last = reports(srv)[-1]
    assert last["state"] == "refused" and "no sha256" in last["error"]
    srv, board, m = make()
    srv.add("firmware-1", os.urandom(5000), version="2.0")
    with pytest.raises(Reset):
        m.run(once=True)
    srv.faults.append(lambda *a: response(503))  # the new image never reaches the server
    for _ in range(3):
        assert make(srv, board, max_boots=3)[2].run(once=True) == F.FAIL
    srv.faults.clear()
    srv.requests.clear()
    assert make(srv, board, max_boots=3)[2].run(once=True) == F.OK
    first = reports(srv)[0]
    assert first["state"] == "rolledback" and first["rollbacks"] == "1"
    assert first["boots"] == "5"


def test_a_refusal_at_every_poll_is_told_once_and_its_end_too():
    srv, board, m = make()
    m.rec["inst"] = {"id": None, "ver": "3.0", "sha": None, "ts": 0}
    srv.add("firmware-1", b"old" * 100, version="2.0")  # older than what runs: no downgrade
    m.start()
    assert m.step()[0] == F.REFUSED
    last = reports(srv)[-1]
    assert last["state"] == "refused" and "2.0 is older than the installed 3.0" in last["error"]
    srv.requests.clear()
    for _ in range(3):  # the same content at every poll: checked (info), not told again
        assert m.step()[0] == F.REFUSED
    assert reports(srv) == [] and any("/provision/download" in r[1] for r in srv.requests)
    srv.add("firmware-1", b"older" * 100, version="1.0")  # another refusal: told
    assert m.step()[0] == F.REFUSED
    assert [r["state"] for r in reports(srv)] == ["refused"]
    assert "1.0 is older" in reports(srv)[0]["error"]
    del srv.contents["firmware-1"]  # the operator took it away: up to date, and told so
    srv.requests.clear()
    assert m.step()[0] == F.OK
    assert [(r["state"], "error" in r) for r in reports(srv)] == [("active", False)]
    srv.requests.clear()
    assert m.step()[0] == F.OK and reports(srv) == []


def test_error_after_network_trouble_goes_with_the_next_status():
    srv, board, m = make()
    m.run(once=True)
    srv, board, m = make(srv, board)
    connect = m.api.conn._connect

    def refuse(*a):
        raise OSError("connection refused")

    m.start()
    m.api.conn._connect = refuse
    assert m.step()[0] == F.FAIL
    m.api.conn._connect = connect
    srv.requests.clear()
    assert m.step()[0] == F.OK
    assert reports(srv) == [
        {
            "state": "active",
            "boots": "2",
            "rollbacks": "0",
            "error": "OSError('connection refused')",
        }
    ]
    srv.requests.clear()
    assert m.step()[0] == F.OK and reports(srv) == []  # told once, nothing more while idle


@pytest.mark.parametrize(
    "answer",
    [response(500, b"no"), b"", b"HTTP/1.1 2", response(200, b"not 204")],
    ids=["500", "closed", "malformed", "200"],
)
def test_failing_reports_never_fail_an_update(answer, capsys, monkeypatch):
    monkeypatch.setattr(compat, "level", 2)  # a failed report is logged at level 2 only
    srv, board, m = make()
    data = os.urandom(100_000)
    srv.add("firmware-1", data, version="2.0")
    srv.faults.append(lambda method, q, h: answer if method == "POST" and "sn" not in q else None)
    with pytest.raises(Reset):
        m.run(once=True)
    assert board.installed == data
    # start, downloading, one progress (then progress stops trying), applied
    assert len(reports(srv)) == 4
    assert m.api.conn._timeout == 30000  # the short report deadline was only borrowed
    assert make(srv, board)[2].run(once=True) == F.OK
    assert board.state()["inst"]["ver"] == "2.0"
    err = capsys.readouterr().err
    assert err.count("report not sent") == 5 and srv.cik not in err  # 4 + the confirming start


def test_reports_off():
    srv, board, m = make(report=False)
    srv.add("firmware-1", os.urandom(50_000), version="2.0")
    with pytest.raises(Reset):
        m.run(once=True)
    assert reports(srv) == []
