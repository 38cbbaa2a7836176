"""agent.fsm: every transition, with the fake board, fake clock and in-process fake server."""

import os

import pytest
from agentkit import FakeBoard, FakeProvision, Reset, response

from agent import config, store
from agent import fsm as F
from agent.api import Api
from agent.http import Conn

# what config.load() fills in, over a partial configuration
CFG = dict(config.defaults(), sn="sn-1", model="m", chunk=8192, buffer=4096)


def make(srv=None, board=None, **cfg):
    srv = srv or FakeProvision()
    board = board or FakeBoard()
    api = Api(Conn("h", 80, False, 5000, board.ticks_ms, connect=srv), "v", "m")
    return srv, board, F.Fsm(board, api, dict(CFG, **cfg))


def paths(srv):
    return [
        r[1] + ("?info" if "info" in r[2] else "?id" if "id" in r[2] else "") for r in srv.requests
    ]


def test_first_activation_persists_before_acting():
    srv, board, m = make()
    seen = []

    def spy(method, q, hdrs):
        if method == "POST" and "sn" in q:
            seen.append((board.state()["state"], q["sn"], q["vendor"], q["model"]))

    srv.faults.append(spy)
    assert m.run(once=True) == F.OK
    assert seen == [("activating", "sn-1", "v", "m")]
    rec = board.state()
    assert rec["state"] == "active" and rec["cik"] == srv.cik and rec["n"]["act"] == 1
    # the activation is reported after the list (see test_agent_reports.py)
    assert paths(srv) == ["/provision/activate", "/provision/download", "/onep:v1/stack/alias"]


def test_restart_with_stored_cik_does_not_activate():
    srv, board, m = make()
    m.run(once=True)
    srv.requests.clear()
    _, _, m2 = make(srv, board)
    assert m2.run(once=True) == F.OK
    assert paths(srv) == ["/provision/download", "/onep:v1/stack/alias"]  # the start's report
    assert board.state()["n"]["boot"] == 2


@pytest.mark.parametrize(
    "status,code,state",
    [(409, F.EXPIRED, "expired"), (404, F.CONFIG, "unprov"), (403, F.CONFIG, "unprov")],
)
def test_activation_refusals(status, code, state):
    srv, board, m = make(retry=60)
    srv.activation = status
    m.start()
    assert m.step() == (code, 60000)
    assert board.state()["state"] == state and board.state()["cik"] is None


@pytest.mark.parametrize("fault", ["oserror", 500, 503, "garbage"])
def test_backoff_with_jitter_doubles_to_ten_minutes(fault):
    srv, board, m = make()

    def f(method, q, hdrs):
        return (
            b"NOT HTTP\r\n\r\n"
            if fault == "garbage"
            else response(fault if fault != "oserror" else 500)
        )

    if fault == "oserror":
        srv = None

        def refuse(*a):
            raise OSError("refused")

        m.api.conn._connect = refuse
    else:
        srv.faults.append(f)
    m.start()
    waits = [m.step() for _ in range(12)]
    assert all(code == F.FAIL for code, _ in waits)
    nominal = [min(2000 * 2**i, 600000) for i in range(12)]
    for (_, w), n in zip(waits, nominal, strict=True):
        assert n // 2 <= w <= n
    assert nominal[-1] == 600000
    # a request that never left cannot have activated anything; the others may have
    assert board.state()["state"] == ("unprov" if fault == "oserror" else "activating")


def test_success_resets_backoff():
    srv, board, m = make()
    srv.faults.append(lambda *a: response(503) if len(srv.requests) < 4 else None)
    m.start()
    for _ in range(3):
        assert m.step()[0] == F.FAIL
    assert m.backoff == 16000
    assert m.step()[0] == F.OK and m.backoff == 2000


def test_401_in_active_forgets_cik_and_reactivates():
    srv, board, m = make()
    m.run(once=True)
    old = srv.cik
    srv.valid = {"n" * 40}  # regenerate: the old CIK stops working
    srv.cik, srv.activation = "n" * 40, 200
    _, _, m2 = make(srv, board)
    assert m2.run(once=True) == F.OK
    rec = board.state()
    assert rec["cik"] == "n" * 40 != old and rec["n"]["act"] == 2


def test_disabled_401_then_409_is_expired():
    srv, board, m = make()
    m.run(once=True)
    srv.valid = set()
    _, _, m2 = make(srv, board)
    assert m2.run(once=True) == F.EXPIRED
    assert board.state()["state"] == "expired" and board.state()["cik"] is None


def test_401_right_after_activation_backs_off_instead_of_looping():
    srv, board, m = make()
    srv.valid = set()
    m.start()
    code, wait = m.step()
    assert code == F.FAIL and wait >= 1000
    assert board.state()["state"] == "unprov"


def test_interrupted_activation_is_explained(capsys):
    board = FakeBoard()
    rec = store.new()
    rec["state"] = "activating"
    store.save(board, rec)
    srv, board, m = make(board=board)
    srv.activation = 409
    assert m.run(once=True) == F.EXPIRED
    err = capsys.readouterr().err
    assert "regenerate this serial number" in err and srv.cik not in err


def test_update_applied_then_confirmed_on_next_start(capsys):
    srv, board, m = make()
    data = os.urandom(10000)
    srv.add("firmware-1", data, version="2.0")
    with pytest.raises(Reset):
        m.run(once=True)
    assert board.installed == data and board.state()["pend"]["id"] == "firmware-1"
    _, _, m2 = make(srv, board)
    assert m2.run(once=True) == F.OK
    rec = board.state()
    assert rec["pend"] is None and rec["inst"]["ver"] == "2.0" and rec["n"]["upd"] == 1
    assert board.log[-1] == ("confirm",)
    out = capsys.readouterr().err
    assert "confirmed" in out and "progress firmware-1 10000 / 10000" in out
    assert srv.cik not in out
    aliases = [r[2] for r in srv.requests if r[1] == "/onep:v1/stack/alias"]
    assert {"state": "active", "version": "2.0"}.items() <= aliases[-1].items()


def test_update_never_confirmed_is_rolled_back_and_not_retried():
    srv, board, m = make()
    srv.add("firmware-1", os.urandom(5000), version="2.0")
    with pytest.raises(Reset):
        m.run(once=True)
    srv.faults.append(lambda *a: response(503))  # the new image never reaches the server
    for _ in range(3):
        _, _, m2 = make(srv, board, max_boots=3)
        assert m2.run(once=True) == F.FAIL
    assert ("rollback",) not in board.log
    srv.faults.clear()
    _, _, m2 = make(srv, board, max_boots=3)
    assert m2.run(once=True) == F.OK  # 4th start: rolled back, bad content skipped
    rec = board.state()
    assert ("rollback",) in board.log and rec["n"]["rb"] == 1 and rec["pend"] is None
    assert rec["bad"].startswith("firmware-1:") and board.installed == b""


def test_refused_update_code():
    srv, board, m = make()
    srv.add("firmware-1", b"x" * 100, digest=False)
    assert m.run(once=True) == F.REFUSED
    assert board.writes == 0


def test_run_forever_sleeps_between_steps():
    srv, board, m = make(poll=5)
    sleeps = []

    def sleep(ms):
        sleeps.append(ms)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    board.sleep_ms = sleep
    srv.faults.append(lambda *a: response(503) if len(srv.requests) == 1 else None)
    with pytest.raises(KeyboardInterrupt):
        m.run()
    assert 1000 <= sleeps[0] <= 2000 and sleeps[1:] == [5000, 5000]


def test_report_failure_never_blocks():
    srv, board, m = make()
    srv.faults.append(lambda method, q, h: response(500) if "state" in q else None)
    assert m.run(once=True) == F.OK


def test_activation_that_never_left_is_not_reported_as_interrupted(capsys):
    srv, board, m = make()

    def refuse(*a):
        raise OSError("refused")

    m.api.conn._connect = refuse
    m.start()
    assert m.step()[0] == F.FAIL
    assert board.state()["state"] == "unprov"
    srv2, board, m2 = make(board=board)
    assert m2.run(once=True) == F.OK
    assert "interrupted" not in capsys.readouterr().err


def test_activation_answer_lost_leaves_activating_and_explains(capsys):
    srv, board, m = make()

    def cut(method, q, h):
        if method == "POST":
            srv.activation = 409  # the server handed the CIK out...
            return b"HTTP/1.1 200 OK\r\n"  # ...and the answer was cut

    srv.faults.append(cut)
    m.start()
    assert m.step()[0] == F.FAIL  # the server activated, the answer was cut: CIK lost
    assert board.state()["state"] == "activating"
    srv.faults.clear()
    _, _, m2 = make(srv, board)
    assert m2.run(once=True) == F.EXPIRED  # 409: only a regenerate recovers it
    assert "regenerate this serial number" in capsys.readouterr().err


def test_backoff_keeps_doubling_while_downloads_fail():
    srv, board, m = make()
    srv.add("firmware-1", os.urandom(5000), version="2.0")
    srv.faults.append(lambda method, q, h: response(503) if "range" in h else None)
    m.start()
    waits = [m.step() for _ in range(4)]
    assert [w[0] for w in waits] == [F.FAIL] * 4
    assert m.backoff == 32000  # list and info succeed each time, the download never does


def test_update_not_running_at_next_start_is_applied_again_from_the_slot():
    srv, board, m = make()
    data = os.urandom(10000)
    srv.add("firmware-1", data, version="2.0")
    with pytest.raises(Reset):
        m.run(once=True)
    fails = []

    def confirm():  # e.g. the bootloader went back to the old image
        board.log.append(("confirm",))
        if not fails:
            fails.append(1)
            raise OSError("running the old image")

    board.slot_confirm = confirm
    srv.requests.clear()
    _, _, m2 = make(srv, board)
    with pytest.raises(Reset):  # applied again, no byte fetched again
        m2.run(once=True)
    assert not [r for r in srv.requests if "range" in r[3]]
    assert board.log[-5:] == [
        ("confirm",),
        ("begin", 10000),
        ("finish", 10000),
        ("apply",),
        ("reset",),
    ]
    _, _, m3 = make(srv, board)
    assert m3.run(once=True) == F.OK
    rec = board.state()
    assert rec["inst"]["ver"] == "2.0" and rec["j"] is None and rec["pend"] is None


def test_update_never_running_gives_up_after_max_boots():
    srv, board, m = make(max_boots=2)
    srv.add("firmware-1", os.urandom(5000), version="2.0")

    def confirm():
        raise OSError("running the old image")

    board.slot_confirm = confirm
    with pytest.raises(Reset):
        m.run(once=True)
    with pytest.raises(Reset):
        make(srv, board, max_boots=2)[2].run(once=True)
    assert make(srv, board, max_boots=2)[2].run(once=True) == F.OK
    rec = board.state()
    assert rec["bad"].startswith("firmware-1:") and rec["j"] is None and rec["inst"] is None
    assert rec["n"]["rb"] == 1
