"""Bounded sample of the server fuzzer (tools/harness/fuzz_server.py; `make fuzz` runs 100 000):
generated requests across every procedure, the committed seeds first; zero 5xx, no crash,
no traceback in the server log. Also a small run of the load test (`make load` runs the
1 000 / 200 device version)."""

import pytest

from tools.harness import fuzz_server, loadtest
from tools.harness.faults.realserver import RealServer

SAMPLE = 3000


@pytest.fixture(scope="module")
def fuzzed():
    with RealServer("--activation-limit", "0") as srv:
        ctx = fuzz_server.setup(srv.url, srv.add_vendor("fuzzvendor"))
        # derandomized: the same sample every run (the full run explores)
        stats = fuzz_server.run(srv, ctx, SAMPLE, derandomize=True, log=lambda *a: None)
        yield srv, ctx, stats, srv.alive(), srv.log_text()


def test_fuzz_sample_no_5xx(fuzzed):
    _srv, _ctx, stats, _alive, _log = fuzzed
    assert stats.sent >= SAMPLE
    assert stats.bad == []
    fivexx = {k: v for k, v in stats.by_status.items() if isinstance(k, int) and k >= 500}
    assert fivexx == {}


def test_fuzz_sample_reaches_the_handlers(fuzzed):
    # a fuzzer that only ever got 404/405 would prove nothing about the procedures
    _srv, _ctx, stats, _alive, _log = fuzzed
    assert stats.by_status.get(200, 0) >= 50
    assert stats.by_status.get(400, 0) >= 50


def test_fuzz_sample_no_crash(fuzzed):
    _srv, _ctx, _stats, alive, log = fuzzed
    assert alive
    assert "Traceback" not in log


def test_small_load_run_without_errors():
    res = loadtest.run(devices=60, downloads=12, size=256 * 1024, log=lambda *a: None)
    assert res["errors"] == []
    assert res["activated"] == 60
    assert res["downloaded"] == 12
    assert res["server_alive"]
