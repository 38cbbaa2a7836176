"""A harness stopped from outside stops what it started (tools/harness/procs.py).

`make bench`'s server step (nginx static, 4 clusters of instances behind nginx, one of them
on an embedded PostgreSQL) is stopped mid-run by SIGTERM (as `kill`, `timeout` or a CI runner
sends it), `make load` on PostgreSQL by SIGINT (Ctrl-C), each sent to the harness process
alone. They run under host_tests/stopprobe.py, a child subreaper: the PostgreSQL that pg_ctl
detaches into a session of its own, the nginx masters and workers and the server instances
with their forked workers all stay below the probe, so whatever outlives the harness is seen
(and then killed by the probe, whatever the verdict).
"""

import json
import signal
import subprocess
import sys

import pytest
from conftest import ROOT

BENCH = [sys.executable, "-m", "tools.harness.bench", "--only", "server", "--size-mib", "2"]
LOAD = [sys.executable, "-m", "tools.harness.loadtest", "--db", "postgres", "--instances",
        "2", "--workers", "2", "--sns", "2000", "--devices", "1000", "--downloads", "200",
        "--size-kib", "256"]  # fmt: skip
# what runs before the signal goes: PostgreSQL, the nginx masters, the servers
RUNS = {
    "bench": (BENCH, "bin/postgres,nginx: master*5,exoprov.cli server*11"),
    "load": (LOAD, "bin/postgres,nginx: master,nginx: worker,exoprov.cli server*2"),
}


@pytest.mark.parametrize("harness,sig", [("bench", "SIGTERM"), ("load", "SIGINT")])
def test_harness_stopped_mid_run_leaves_nothing_running(harness, sig):
    cmd, want = RUNS[harness]
    probe = [sys.executable, "host_tests/stopprobe.py", sig, want, "240", "--", *cmd]
    r = subprocess.run(probe, cwd=ROOT, capture_output=True, text=True, timeout=500)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    before = "\n".join(res["before"])
    for name in ("bin/postgres", "nginx: master", "exoprov.cli server"):
        assert name in before, before  # the signal came mid-run, with all of it up
    assert res["after"] == [], res["stderr"]
    assert res["rc"] == 128 + getattr(signal, sig), res["stderr"]
    assert f"harness: stopped by {sig}" in res["stderr"]
