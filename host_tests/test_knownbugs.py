"""host_tests/knownbugs.py on a KNOWN that is not empty: the bookkeeping the fault, power-cut
and malformed-response tables rely on reports a fixed bug, an unexplained failure and a stale
entry."""

import pytest
from knownbugs import check, param, reason, split, stale

CASES = [("cpython", "a"), ("cpython", "b"), ("micropython", "a"), ("micropython", "b")]


def test_an_entry_naming_no_case_is_refused():
    known = {("cpython", "a"): "bug 1", ("*", "b"): "bug 2", ("micropython", "gone"): "old"}
    assert stale(known, CASES) == [("micropython", "gone")]
    with pytest.raises(ValueError, match="gone"):
        check(known, CASES)
    assert check({("*", "a"): "x"}, CASES) == {("*", "a"): "x"}


def test_a_known_case_is_a_strict_xfail_and_others_run_plainly():
    known = {("cpython", "a"): "bug 1", ("*", "b"): "bug 2"}
    assert reason(known, "micropython", "b") == "bug 2"
    assert reason(known, "micropython", "a") is None
    (mark,) = param(known, "cpython", "a", 1, 2, id="x").marks
    assert mark.name == "xfail" and mark.kwargs == {"reason": "bug 1", "strict": True}
    assert not param(known, "micropython", "a", 1, 2).marks


def test_split_reports_unexplained_failures_and_fixed_entries():
    known = {("cpython", "save(active"): "bug 1", ("micropython", "slot_apply"): "bug 2"}
    failures = ["before save(active,cik): record lost", "after slot_write(0): mixed image"]
    unexplained, fixed = split(failures, known, "cpython")
    assert unexplained == ["after slot_write(0): mixed image"]
    assert fixed == []
    unexplained, fixed = split(failures[:1], known, "micropython")
    assert unexplained == failures[:1] and fixed == ["slot_apply"]
    assert split([], {}, "cpython") == ([], [])
