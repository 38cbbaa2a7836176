"""A harness stopped from outside stops what it started (tools/harness/procs.py).

`make load` on PostgreSQL is stopped mid-run by SIGTERM (as `kill`, `timeout` or a CI
runner sends it) and by SIGINT (Ctrl-C) sent to the harness process alone. It runs under
host_tests/stopprobe.py, a child subreaper: the embedded PostgreSQL, which pg_ctl detaches
into a session of its own, the nginx master and workers and the server instances with their
forked workers all stay below the probe, so whatever outlives the harness is seen (and then
killed by the probe, whatever the verdict).
"""

import json
import signal
import subprocess
import sys

import pytest
from conftest import ROOT

LOAD = [sys.executable, "-m", "tools.harness.loadtest", "--db", "postgres", "--instances",
        "2", "--workers", "2", "--sns", "2000", "--devices", "1000", "--downloads", "200",
        "--size-kib", "256"]  # fmt: skip
# running before the signal goes: PostgreSQL, nginx, the two instances (and their workers)
WANT = "bin/postgres,nginx: master,nginx: worker,exoprov.cli server*2"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_load_harness_stopped_mid_run_leaves_nothing_running(sig):
    probe = [sys.executable, "host_tests/stopprobe.py", sig, WANT, "180", "--", *LOAD]
    r = subprocess.run(probe, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    before = "\n".join(res["before"])
    for name in ("bin/postgres", "nginx: master", "exoprov.cli server"):
        assert name in before, before  # the signal came mid-run, with all of it up
    assert res["after"] == [], res["stderr"]
    assert res["rc"] == 128 + getattr(signal, sig), res["stderr"]
    assert f"harness: stopped by {sig}" in res["stderr"]
