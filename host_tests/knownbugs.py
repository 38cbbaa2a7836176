"""Open bugs a table of cases still shows: `KNOWN` maps a case to why it fails today.

Strict both ways, and no stale excuses: a failure not in KNOWN fails, a case in KNOWN that
passes fails too (the fix must remove it from KNOWN), and a KNOWN key that names no case of
the table is refused when the tests are collected (a renamed case must not leave an entry
that silently excuses nothing). Keys are (interpreter, case name); "*" is any interpreter.
Used by test_powercut.py, test_faults.py and test_malformed_responses.py; this module's own
behaviour is checked by test_knownbugs.py with a KNOWN that is not empty.
"""

import pytest


def stale(known, cases):
    """KNOWN keys that name no (interpreter, name) of `cases`."""
    names = {n for _i, n in cases}
    return sorted(k for k in known if k not in cases and not (k[0] == "*" and k[1] in names))


def check(known, cases):
    """Raise (at collection) when a KNOWN key names no case."""
    bad = stale(known, cases)
    if bad:
        raise ValueError(f"KNOWN names cases that do not exist: {bad}")
    return known


def reason(known, interp, name):
    return known.get((interp, name)) or known.get(("*", name))


def param(known, interp, name, *values, id=None):
    """pytest.param(*values) for one case, a strict xfail when KNOWN lists it."""
    why = reason(known, interp, name)
    marks = [pytest.mark.xfail(reason=why, strict=True)] if why else []
    return pytest.param(*values, marks=marks, id=id)


def split(failures, known, interp):
    """Failure lines of one run against KNOWN substrings (keys (interp, text)):
    -> (failures no KNOWN entry explains, KNOWN texts for `interp` that no failure shows)."""
    texts = [t for i, t in known if i in (interp, "*")]
    unexplained = [f for f in failures if not any(t in f for t in texts)]
    fixed = [t for t in texts if not any(t in f for f in failures)]
    return unexplained, fixed
