"""Power cuts (tools/harness/powercut.py), bounded: on CPython with the linux board and in the
MicroPython unix port with the esp32 board on its fakes, the agent is killed at every store
save (before and after it, including between receiving the CIK and storing it), at apply and
confirm, and at a spread of slot writes of a 256 KiB update; after restarts the device holds
the old or the new image (never a mix), a whole CIK or none, ends up with the new image and
refetches at most one Range request. `make powercut` cuts at every write."""

import pytest
from knownbugs import split

from tools.harness import powercut

SAMPLE = 40

# (interpreter, text in the failure line) -> why the agent does not survive that cut today
# (host_tests/knownbugs.py: each must still fail, and nothing else may).
KNOWN = {}


@pytest.fixture(scope="module", params=["cpython", "micropython"])
def cut_run(request):
    ok, total, failures, stats = powercut.run(request.param, sample=SAMPLE, log=lambda *a: None)
    (st,) = stats.values()
    return ok, total, failures, split(failures, KNOWN, request.param), st


def test_sample_covers_every_store_save(cut_run):
    _ok, total, _failures, _known, st = cut_run
    assert total >= 30  # all saves, apply, confirm (before and after), plus slot writes
    labels = st["labels"]
    assert "before save(activating)" in labels
    # the cut between receiving the CIK and storing it
    assert "before save(active,cik)" in labels
    assert any(lb.startswith("before slot_write") for lb in labels)
    assert any(lb.startswith("after slot_apply") for lb in labels)


def test_lost_cik_recovered_by_regenerate(cut_run):
    # a CIK received but never stored cannot be fetched again (activation answers it once):
    # the agent must come back once the operator regenerates (`enable=true` on an enabled sn,
    # POST /provision/manage/model/<model>/<sn>: a new CIK, the activation window reopens)
    _ok, _total, _failures, _known, st = cut_run
    assert st["regens"] >= 1


def test_refetch_after_a_cut_is_at_most_one_range_request(cut_run):
    _ok, _total, _failures, _known, st = cut_run
    assert 0 <= st["max_refetch"] <= powercut.CHUNK


def test_every_cut_point_survived(cut_run):
    # every failure is a KNOWN open bug, and every KNOWN bug still fails (a fixed one must be
    # removed from KNOWN); host_tests/test_knownbugs.py checks `split` on a KNOWN not empty
    ok, total, failures, (unknown, fixed), _st = cut_run
    assert unknown == []
    assert fixed == []
    assert ok + len(failures) == total


def test_cut_points_of_a_full_update():
    labels = ["save(unprov)", "save(active,cik)", "slot_write(0,4096)", "slot_apply"]
    points = powercut.cut_points(labels)
    assert len(points) == 7  # "before" at each write, "after" too except for slot writes
    assert [p[1] for p in points if p[0] == 2] == ["before"]
    sample = powercut.pick_sample(points, 5)
    assert all(p in sample for p in points if not p[2].startswith("slot_write"))


def test_fake_esp32_hardware_cuts_sample():
    # the fake hardware cuts at every 24th of its own operations (erase, write, NVS set and
    # commit, otadata), before it and torn; `make powercut` sweeps every one
    ok, total, failures, stats = powercut.run("esp32-flash", flash_step=24, log=lambda *a: None)
    assert failures == []
    assert ok == total >= 10
