"""agent.updater and agent.store with the fake board and the in-process fake server."""

import hashlib
import json
import os

import pytest
from agentkit import FakeBoard, FakeProvision, Reset, response

from agent import config, store, updater
from agent.api import Api, ApiError
from agent.http import Conn, ProtocolError

BLOCK = 4096


def setup(size=20000, **add):
    srv = FakeProvision()
    data = os.urandom(size)
    srv.add("firmware-a", data, **add)
    board = FakeBoard()
    rec = store.new()
    rec["cik"], rec["state"] = srv.cik, "active"
    api = Api(Conn("h", 80, False, 5000, None, connect=srv), "v", "m")
    return srv, board, rec, api, data


def run(srv, board, rec, api, chunk=8192, unverified=False, retries=3):
    cand = updater.pick(api, rec["cik"], api.list(rec["cik"], "firmware"), rec)
    mv = memoryview(bytearray(BLOCK))
    cfg = dict(config.defaults(), chunk=chunk, allow_unverified=unverified, verify_retries=retries)
    return updater.download(api, board, rec, cand, mv, lambda: store.save(board, rec), cfg)


def ranges(srv):
    return [r[3]["range"] for r in srv.requests if "range" in r[3]]


# -- store --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [None, b"", b"{", b"[]", b'{"state": "weird"}', b"\xff\xfe", b'{"state": 5}']
)
def test_missing_or_corrupt_record_is_unprovisioned(raw):
    rec = store.load(FakeBoard(record=raw))
    assert rec == store.new()


def test_record_round_trip_and_bad_cik_dropped():
    b = FakeBoard()
    rec = store.new()
    rec.update(state="active", cik="k" * 40)
    rec["n"]["act"] = 1
    store.save(b, rec)
    assert store.load(b) == rec and b.saves == 1
    b.record = json.dumps(dict(rec, cik="short")).encode()
    assert store.load(b)["state"] == "unprov" and store.load(b)["cik"] is None


# -- pick ---------------------------------------------------------------------------------


def test_pick_newest_version_above_installed():
    srv, board, rec, api, _ = setup(version="1.0")
    srv.add("firmware-b", b"b", version="1.10")
    srv.add("firmware-c", b"c", version="1.9", ts=1800000000)
    srv.add("other", b"o", version="9.0")
    ids = api.list(rec["cik"], "firmware")
    assert updater.pick(api, rec["cik"], ids, rec)[0] == "firmware-b"  # 1.10 > 1.9 > none
    rec["inst"] = {"id": "firmware-b", "ver": "1.10", "ts": 1}
    assert updater.pick(api, rec["cik"], ids, rec) is None
    rec["inst"] = {"id": None, "ver": "1.2", "ts": 0}
    assert updater.pick(api, rec["cik"], ids, rec)[0] == "firmware-b"


def test_pick_by_timestamp_without_versions_and_skips_bad():
    srv, board, rec, api, _ = setup()
    srv.add("firmware-b", b"b", ts=1700000500)
    ids = api.list(rec["cik"], "firmware")
    assert updater.pick(api, rec["cik"], ids, rec)[0] == "firmware-b"
    rec["bad"] = "firmware-b:1700000500"
    assert updater.pick(api, rec["cik"], ids, rec)[0] == "firmware-a"
    rec["inst"] = {"id": "firmware-a", "ver": None, "ts": 1700000000}
    assert updater.pick(api, rec["cik"], ids, rec) is None


# -- download -----------------------------------------------------------------------------


def test_download_verify_apply_block_aligned():
    srv, board, rec, api, data = setup(20000)
    run(srv, board, rec, api)
    pend = rec["pend"]
    assert board.installed == data
    assert ranges(srv) == ["bytes=0-8191", "bytes=8192-16383", "bytes=16384-19999"]
    assert board.writes == 5  # 4 whole blocks + the 3616-byte tail (FakeBoard asserts it)
    assert pend["sha"] == hashlib.sha256(data).hexdigest()
    saved = store.load(board)
    assert saved["pend"] == pend and saved["j"]["off"] == 20000  # kept until confirmed
    assert ("apply",) in board.log


def test_complete_journal_is_applied_again_without_download():
    srv, board, rec, api, data = setup(20000)
    run(srv, board, rec, api)
    rec["pend"] = None  # the next start found the new content not running
    srv.requests.clear()
    board.log.clear()
    run(srv, board, rec, api)
    assert ranges(srv) == [] and board.log[-1] == ("apply",)
    assert ("erase",) not in board.log and board.installed == data


@pytest.mark.parametrize("step", [1, 7, 4095])
def test_split_reads_still_fill_whole_blocks(step):
    srv, board, rec, api, data = setup(9000)
    srv.step = step
    run(srv, board, rec, api, chunk=BLOCK)
    assert board.installed == data and board.writes == 3


def test_resume_after_reset_rehashes_written_prefix():
    srv, board, rec, api, data = setup(40000)
    # a reset (power cut) right after the 3rd range reached the slot and the journal
    board.fail_save_at = 4  # save 1: journal created; 2, 3: ranges 1-2; 4: range 3
    with pytest.raises(Reset):
        run(srv, board, rec, api)
    rec = store.load(board)
    assert rec["j"]["off"] == 16384
    board.fail_save_at = None
    srv.requests.clear()
    run(srv, board, rec, api)
    assert board.installed == data
    assert ranges(srv)[0] == "bytes=16384-24575"  # range 3 again: its journal step was lost
    assert board.log.count(("erase",)) == 1  # resumed, not restarted


def test_resume_with_lost_slot_bytes_restarts_not_refuses():
    srv, board, rec, api, data = setup(20000)
    board.fail_save_at = 3
    with pytest.raises(Reset):
        run(srv, board, rec, api)
    rec = store.load(board)
    board.fail_save_at = None
    board.slot[100] ^= 0xFF  # the slot lost what the journal counted
    with pytest.raises(ProtocolError, match="after resume"):
        run(srv, board, rec, api)
    assert rec["j"]["off"] == 0 and rec["j"]["mm"] == 0 and rec["bad"] is None  # not counted
    run(srv, board, rec, api)
    assert board.installed == data


def test_content_changed_between_runs_restarts_from_zero():
    srv, board, rec, api, data = setup(20000)
    board.fail_save_at = 3
    with pytest.raises(Reset):
        run(srv, board, rec, api)
    rec = store.load(board)
    board.fail_save_at = None
    new = os.urandom(20000)
    srv.add("firmware-a", new, ts=1700000100)
    srv.requests.clear()
    run(srv, board, rec, api)
    assert board.installed == new and ranges(srv)[0] == "bytes=0-8191"
    assert board.log.count(("erase",)) == 2


def test_content_replaced_mid_download_aborts_then_restarts():
    srv, board, rec, api, data = setup(20000)
    new = os.urandom(20000)

    def replace(method, q, hdrs):
        if hdrs.get("range") == "bytes=8192-16383" and srv.contents["firmware-a"]["data"] == data:
            srv.add("firmware-a", new, ts=1700000200)  # same size, new ETag: If-Range -> 200
        return None

    srv.faults.append(replace)
    with pytest.raises(updater.ProtocolError):
        run(srv, board, rec, api)
    assert board.installed == b"" and ("apply",) not in board.log
    run(srv, board, rec, api)
    assert board.installed == new


@pytest.mark.parametrize(
    "fault",
    [
        lambda q, h: response(200, b"x" * 20000),
        lambda q, h: response(206, b"x" * 8192, {"Content-Range": "bytes 1-8192/20000"}),
        lambda q, h: response(206, b"x" * 8192, {"Content-Range": "bytes 0-8191/20001"}),
        lambda q, h: response(206, b"x" * 8193, {"Content-Range": "bytes 0-8191/20000"}),
        lambda q, h: response(
            206,
            b"2001\r\n" + b"x" * 8193 + b"\r\n0\r\n\r\n",
            {"Content-Range": "bytes 0-8191/20000", "Transfer-Encoding": "chunked"},
        ),
        lambda q, h: response(500, b"oops"),
    ],
)
def test_bad_second_range_aborts_and_keeps_journal(fault):
    srv, board, rec, api, data = setup(20000)
    calls = []

    def f(method, q, hdrs):
        if "range" in hdrs:
            calls.append(1)
            if len(calls) == 2:
                return fault(q, hdrs).replace(b"bytes 0-8191", b"bytes 8192-16383")
        return None

    srv.faults.append(f)
    with pytest.raises((ProtocolError, updater.AgentError)):
        run(srv, board, rec, api)
    saved = store.load(board)
    assert saved["j"]["off"] == 8192 and ("apply",) not in board.log
    assert bytes(board.slot[:8192]) == data[:8192]


def test_digest_mismatch_fetched_again_then_refused_and_remembered():
    srv, board, rec, api, data = setup(10000)
    srv.contents["firmware-a"]["meta"] = "sha256=" + "0" * 64
    for n in (1, 2):  # fetched again from zero, each time in full
        srv.requests.clear()
        with pytest.raises(ProtocolError, match="mismatch \\(%d of 2\\): fetching again" % n):
            run(srv, board, rec, api, retries=2)
        assert ranges(srv)[0] == "bytes=0-8191" and len(ranges(srv)) == 2
        saved = store.load(board)
        assert saved["j"]["off"] == 0 and saved["j"]["mm"] == n and saved["bad"] is None
    with pytest.raises(updater.Refused, match=r"sha256 mismatch, refused \(fetches: 3\)"):
        run(srv, board, rec, api, retries=2)
    assert ("apply",) not in board.log and rec["bad"] == "firmware-a:1700000000"
    assert store.load(board)["bad"] == rec["bad"] and rec["j"] is None
    assert updater.pick(api, rec["cik"], ["firmware-a"], rec) is None
    assert board.log.count(("erase",)) == 3


def test_digest_mismatch_count_starts_over_for_changed_content():
    srv, board, rec, api, data = setup(10000)
    srv.contents["firmware-a"]["meta"] = "sha256=" + "0" * 64
    with pytest.raises(ProtocolError):
        run(srv, board, rec, api, retries=1)
    srv.add("firmware-a", data, ts=1700000100)  # re-uploaded, right digest this time
    run(srv, board, rec, api, retries=1)
    assert board.installed == data and rec["j"]["mm"] == 0


def test_no_retries_refuses_at_the_first_mismatch():
    srv, board, rec, api, data = setup(10000)
    srv.contents["firmware-a"]["meta"] = "sha256=" + "0" * 64
    with pytest.raises(updater.Refused, match=r"fetches: 1\)"):
        run(srv, board, rec, api, retries=0)


def test_no_digest_refused_unless_allowed():
    srv, board, rec, api, data = setup(5000, digest=False)
    with pytest.raises(updater.Refused):
        run(srv, board, rec, api)
    assert board.writes == 0
    run(srv, board, rec, api, unverified=True)
    assert board.installed == data


def test_apply_refused_clears_pending_and_is_not_retried():
    srv, board, rec, api, _ = setup(5000)
    board.fail_apply = True
    with pytest.raises(OSError):
        run(srv, board, rec, api)
    saved = store.load(board)
    assert saved["pend"] is None and saved["j"] is None
    assert updater.pick(api, rec["cik"], ["firmware-a"], saved) is None


def test_slot_too_small_raises_before_any_write():
    srv, board, rec, api, _ = setup(5000)
    board.capacity = 4096
    with pytest.raises(OSError):
        run(srv, board, rec, api)
    assert board.writes == 0


def test_content_gone_is_not_found():
    srv, board, rec, api, _ = setup(5000)
    cand = updater.pick(api, rec["cik"], ["firmware-a"], rec)
    del srv.contents["firmware-a"]
    with pytest.raises(ApiError, match="404"):
        mv = memoryview(bytearray(BLOCK))
        updater.download(api, board, rec, cand, mv, lambda: 0, dict(config.defaults(), chunk=8192))


def test_fsm_backs_off_between_refetches_then_refuses_and_reports():
    from agent import fsm as F

    srv, board, rec, api, data = setup(10000)
    srv.contents["firmware-a"]["meta"] = "sha256=" + "0" * 64
    board.record = json.dumps(rec).encode()
    cfg = dict(config.defaults(), sn="s", chunk=8192, buffer=BLOCK, verify_retries=2)
    m = F.Fsm(board, api, cfg)
    m.start()
    got = [m.step() for _ in range(4)]
    assert [g[0] for g in got] == [F.FAIL, F.FAIL, F.REFUSED, F.OK]
    assert 1000 <= got[0][1] <= 2000 and 2000 <= got[1][1] <= 4000  # backoff doubles
    assert [r for r in ranges(srv) if r.startswith("bytes=0-")] == ["bytes=0-8191"] * 3
    assert ("apply",) not in board.log and board.state()["bad"] == "firmware-a:1700000000"
    alias = [r[2] for r in srv.requests if r[1] == "/onep:v1/stack/alias"]
    assert any(
        a.get("state") == "refused" and "sha256 mismatch, refused" in a.get("error", "")
        for a in alias
    ), alias


# -- after the apply: confirmed at the next start that reaches the server, or rolled back --


def pending(journal=True):
    rec = store.new()
    rec["pend"] = {"id": "firmware-a", "ver": "2.0", "sha": "ab" * 32, "ts": 7, "boots": 0}
    rec["j"] = {"id": "firmware-a", "off": 4096} if journal else None
    return rec


def test_boot_counts_starts_then_rolls_back_after_saving():
    board, rec, saved = FakeBoard(), pending(), []

    def save():
        saved.append((json.loads(json.dumps(rec)), list(board.log)))

    assert not updater.boot(board, rec, 2, save) and not updater.boot(board, rec, 2, save)
    assert rec["pend"]["boots"] == 2 and not saved and not board.log
    assert updater.boot(board, rec, 2, save)  # the third start: it never came up
    assert board.log == [("rollback",)]
    (got, log), *more = saved
    assert not more and log == []  # saved before the slot went back
    assert got["pend"] is None and got["j"] is None and got["n"]["rb"] == 1
    assert got["bad"] == store.key("firmware-a", 7) == "firmware-a:7"
    assert not updater.boot(board, rec, 2, save)  # nothing pending: nothing counted


def test_confirm_keeps_the_running_content():
    board, rec = FakeBoard(), pending()
    assert not updater.confirm(board, rec, 3)
    assert rec["inst"] == {"id": "firmware-a", "ver": "2.0", "sha": "ab" * 32, "ts": 7}
    assert rec["pend"] is None and rec["j"] is None and rec["n"]["upd"] == 1
    assert board.log == [("confirm",)]


def test_confirm_not_running_keeps_the_journal_then_gives_up():
    board, rec = FakeBoard(), pending()

    def old_image():
        raise OSError("running the old image")

    board.slot_confirm = old_image
    p = rec["pend"]
    for tries in (1, 2):  # download() applies it again from the journal in between
        rec["pend"] = dict(p)
        assert not updater.confirm(board, rec, 3)
        assert rec["pend"] is None and rec["j"]["tries"] == tries and rec["bad"] is None
    rec["pend"] = dict(p)
    assert updater.confirm(board, rec, 3)
    assert rec["j"] is None and rec["bad"] == "firmware-a:7" and rec["inst"] is None
    assert rec["n"] == {"act": 0, "upd": 0, "rb": 1, "boot": 0}
    rec = pending(journal=False)  # nothing to apply again: given up at once
    assert updater.confirm(board, rec, 3) and rec["n"]["rb"] == 1
