"""`exoprov demo` (behind `make run`) end to end, and stopped with Ctrl-C half-way."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
_DB = re.compile(r"\(database (\S+)/exoprov\.db\)")
_URL = re.compile(r"server: (http://127\.0\.0\.1:\d+)")


def _demo(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "exoprov.cli", "demo", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kw,
    )


def _gone(url):
    try:
        requests.get(url + "/ip", timeout=2)
    except requests.ConnectionError:
        return True
    return False


def test_demo_end_to_end():
    p = _demo("--keep")
    try:
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err + out
    assert err == ""
    steps = [ln for ln in out.splitlines() if re.match(r"\[\d+\] ", ln)]
    assert len(steps) == 10
    for text in (
        "* state unprov -> activating",
        "* state activating -> active",
        "applied firmware-1.0.0 version 1.0.0",
        "installed firmware.bin: 196608 bytes, identical to firmware-1.0.0",
        "update firmware-1.0.0 confirmed",
        "CIK refused (401): activating again",
        "Done: activated, firmware applied and confirmed, re-activated",
    ):
        assert text in out, text
    # order of the story: activation before the regenerate, re-activation after it
    assert out.index("activating -> active") < out.index("regenerates the CIK")
    assert out.rindex("activating -> active") > out.index("CIK refused (401)")

    work = Path(_DB.search(out).group(1))
    try:
        cik = json.loads((work / "device" / "state.json").read_text())["cik"]
        assert len(cik) == 40 and cik not in out
        rids = set(re.findall(r"rid ([0-9a-f]{40})", out))
        assert set(re.findall(r"\b[0-9A-Za-z]{40}\b", out)) <= rids  # no CIK anywhere
        assert _gone(_URL.search(out).group(1))  # the server was stopped
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False, timeout=30)


def test_demo_stops_everything_on_ctrl_c():
    p = _demo()
    seen = ""
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            seen += line
            if line.startswith("[5] "):
                break
        assert "[5] " in seen, seen
        os.kill(p.pid, signal.SIGINT)
        rest, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = seen + rest
    assert p.returncode == 130, err
    assert "interrupted: stopping the agent and the server" in out
    assert _gone(_URL.search(out).group(1))
    assert not Path(_DB.search(out).group(1)).exists()


@pytest.mark.parametrize("args,rc", [(["--help"], 0), (["--bogus"], 2)])
def test_demo_arguments(args, rc):
    r = subprocess.run(
        [sys.executable, "-m", "exoprov.cli", "demo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == rc
