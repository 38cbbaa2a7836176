"""The README's `sh` blocks, run in order as a user would, against a real server.

Blocks fenced as `text` are not run here: `make run` / `make test` (test_demo.py and CI),
`exoprov server` (test_server_cli.py), deploy and monitor on real ports (test_build_deploy.py
with a fake mpremote, test_monitor.py with loop:// and a pty), systemctl.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

FENCE = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)
DEFAULT_URL = "http://127.0.0.1:8080"


def sh_blocks():
    return FENCE.findall((ROOT / "README.md").read_text())


def test_readme_has_the_documented_sh_blocks():
    text = "\n".join(sh_blocks())
    for cmd in ("admin add-vendor", "fleet sn add", "fleet sn enable", "fleet content upload"):
        assert "exoprov " + cmd in text
    assert "exoprov agent agent.json" in text and "exoprov build" in text


def test_readme_sh_blocks_run(make_server, tmp_path):
    srv = make_server()
    vendor = srv.add_vendor("acme")
    work = tmp_path / "work"
    (work / "build").mkdir(parents=True)
    (work / "build" / "app.bin").write_bytes(os.urandom(70000))
    (work / "line3.csv").write_text("sn,extra\n00002000,line 3 box 1\n00002001,line 3 box 2\n")
    env = dict(os.environ)
    env.update(
        PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
        HOME=str(tmp_path),
        EXOPROV_SERVER=srv.url,
        EXOPROV_CIK=vendor["cik"],
        EXOPROV_OWNER=vendor["rid"],
        PYTHONPATH=str(ROOT),
        MICROPYPATH=str(ROOT),
    )
    for block in sh_blocks():
        script = block.replace(DEFAULT_URL, srv.url)
        r = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, f"{script}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
        assert vendor["cik"] not in r.stdout + r.stderr or "add-vendor" in script
    # what the blocks did, seen from the outside
    assert (work / "check.bin").read_bytes() == (work / "build" / "app.bin").read_bytes()
    assert (work / "state" / "firmware.bin").read_bytes() == (work / "check.bin").read_bytes()
    status = (work / "status.csv").read_text()
    assert "00002000,notactivated" in status and "00001000,notactivated" in status
    assert any(p.name.endswith(".mpy") for p in (work / "build").rglob("*"))
