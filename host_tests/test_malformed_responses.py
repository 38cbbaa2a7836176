"""Every malformed response in host_tests/malformed/corpus.py ends in the agent's
ProtocolError, fed whole and one byte at a time, on CPython and on the MicroPython unix port.
No other exception, no hang (the fake socket bounds bytes and time)."""

import subprocess
import sys
from pathlib import Path

import pytest
from knownbugs import check, param

from tools.harness.mpunix import MICROPYTHON

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tests" / "malformed"))

import corpus  # noqa: E402
import run_corpus  # noqa: E402

NAMES = [name for name, _ in corpus.CASES]
MODES = ("whole", "bytewise")

# (interpreter or "*", case) -> why agent/http.py does not pass it today; strict, so a fix
# turns it into a failure to be removed from here, and a key naming no case is refused
# (host_tests/knownbugs.py).
KNOWN = check({}, [(i, n) for i in ("cpython", "micropython") for n in NAMES])


def _param(interp, name, mode):
    return param(KNOWN, interp, name, name, mode, id=f"{name}-{mode}")


def test_corpus_is_large_enough_and_names_unique():
    assert len(NAMES) >= 60
    assert len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("name,mode", [_param("cpython", n, m) for n in NAMES for m in MODES])
def test_cpython(name, mode):
    response = dict(corpus.CASES)[name]
    assert run_corpus.run_case(response, mode == "bytewise") == "protocol"


@pytest.fixture(scope="module")
def mp_results():
    proc = subprocess.run(
        [MICROPYTHON, "host_tests/malformed/run_corpus.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    results = {}
    for line in proc.stdout.splitlines():
        name, mode, outcome = line.split(" ", 2)
        results[(name, mode)] = outcome
    assert results, f"micropython run printed nothing: {proc.stderr[-2000:]}"
    return results


@pytest.mark.parametrize("name,mode", [_param("micropython", n, m) for n in NAMES for m in MODES])
def test_micropython(mp_results, name, mode):
    assert mp_results.get((name, mode)) == "protocol"
