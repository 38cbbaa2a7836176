"""The rollout policy's pure functions (tools/server/rollpolicy.py): waves by a stable hash,
the advance and pause decisions, and what a report means to a rollout."""

import random

import pytest

from tools.server import rollpolicy as p

SNS = [f"{i:08d}" for i in range(20000)]


def test_waves_hold_about_their_share_and_grow_monotonically():
    for pct in (1, 5, 10, 50):
        n = sum(p.in_wave("fw-2", sn, pct) for sn in SNS)
        assert abs(n - len(SNS) * pct / 100) < len(SNS) * 0.01, (pct, n)
    assert all(p.in_wave("fw-2", sn, 100) for sn in SNS)
    # a device once in stays in: every wave holds the previous one
    for sn in SNS[:2000]:
        flags = [p.in_wave("fw-2", sn, w) for w in (1, 5, 10, 50, 100)]
        assert flags == sorted(flags)
        i = p.wave_of("fw-2", sn, [1, 5, 10, 50, 100])
        assert flags.index(True) == i


def test_membership_does_not_depend_on_the_order_of_polls():
    first = {sn for sn in SNS if p.in_wave("fw-2", sn, 5)}
    shuffled = SNS[:]
    random.Random(7).shuffle(shuffled)
    assert {sn for sn in shuffled if p.in_wave("fw-2", sn, 5)} == first
    # another content's first wave is other devices (salted by the content id)
    other = {sn for sn in SNS if p.in_wave("fw-3", sn, 5)}
    assert len(first & other) < len(first) * 0.2


def test_parse():
    assert p.parse_waves("1,10,50,100") == [1, 10, 50, 100]
    assert p.parse_waves("5,20") == [5, 20, 100]
    for bad in ("", "0,100", "50,10", "1,101", "x"):
        with pytest.raises(p.Invalid):
            p.parse_waves(bad)
    assert [p.parse_duration(d) for d in ("0", "30s", "10m", "2h", "1d", "45")] == [
        0,
        30,
        600,
        7200,
        86400,
        45,
    ]
    for bad in ("", "-1", "10 m", "1w", "1.5h"):
        with pytest.raises(p.Invalid):
            p.parse_duration(bad)
    assert p.parse_pct("2.5", "x") == 2.5
    with pytest.raises(p.Invalid):
        p.parse_pct("101", "x")


def test_pause_needs_min_devices_and_the_failure_share():
    assert not p.should_pause(0, 0, 1, 20)
    assert not p.should_pause(9, 9, 10, 20)  # fewer than --min-devices started
    assert p.should_pause(10, 2, 10, 20)  # 20 % of 10
    assert not p.should_pause(10, 1, 10, 20)
    assert p.should_pause(1, 1, 1, 100)
    assert not p.should_pause(100, 99, 1, 100)


def test_advance_needs_success_and_soak():
    # 100 devices in the wave, 95 % needed, 60 s of soak from t=1000
    assert not p.should_advance(100, 94, 95, 1000, 60, 2000)
    assert not p.should_advance(100, 95, 95, 1000, 60, 1059)
    assert p.should_advance(100, 95, 95, 1000, 60, 1060)
    assert p.should_advance(0, 0, 100, 1000, 0, 1000)  # an empty wave waits for nothing
    assert not p.should_advance(0, 0, 100, 1000, 30, 1010)


def test_device_state_from_reports():
    ds = p.device_state
    assert ds({"state": "active", "content": "fw-2:17"}, "fw-2", True) == "active"
    assert ds({"state": "active", "content": "fw-1:3"}, "fw-2", True) is None
    assert ds({"state": "rolledback", "content": "fw-1:3"}, "fw-2", True) == "rolledback"
    assert ds({"state": "rolledback", "content": "fw-1:3"}, "fw-2", False) is None
    assert ds({"state": "failed", "content": "fw-1:3"}, "fw-2", True) == "failed"
    refusal = {"state": "refused", "content": "fw-1:3", "error": "fw-2: bad signature (key k)"}
    assert ds(refusal, "fw-2", False) == "refused"  # before any download
    assert ds(refusal, "fw-20", False) is None  # another content's refusal
    assert ds(dict(refusal, error="fw-3: sha256 mismatch"), "fw-2", True) is None
    assert ds({"state": "refused", "content": "fw-1:3"}, "fw-2", True) == "refused"
    assert ds({"state": "refused", "content": "fw-1:3"}, "fw-2", False) is None
    # running the content: only "active" says something about it
    assert ds({"state": "refused", "content": "fw-2:9", "error": "fw-3: x"}, "fw-2", True) is None
    assert ds({"state": "failed", "content": "fw-2:9"}, "fw-2", True) is None
    assert ds({"state": "downloading", "content": "fw-1:3"}, "fw-2", True) == "started"
    assert ds({"state": "downloading"}, "fw-2", False) is None
