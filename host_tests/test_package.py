"""The package as a user gets it: `python -m build` makes a wheel and an sdist that
pass `twine check`; the wheel holds one import package, `exoprov`, and nothing of the
development harnesses; installed into a fresh virtual environment (no source tree on the path)
it runs `exoprov --version`, `exoprov demo` and `exoprov agent` against its own server.

The wheel is built once for this module and installed once (pip fetches the dependencies from
the package index, ~20 s; its cache makes later runs faster)."""

import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest
from agentkit import MICROPYTHON, ROOT

VERSION = configparser.ConfigParser()
VERSION.read(ROOT / "setup.cfg")
VERSION = VERSION["metadata"]["version"]
_LISTEN = re.compile(r"listening on (http://[0-9.]+:\d+)")


def _run(cmd, timeout=300, **kw):
    r = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw
    )
    assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-2000:])
    return r


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """`python -m build` of this checkout: {"wheel": Path, "sdist": Path}; the wheel is the one
    build makes from the sdist, as a user building from a downloaded sdist gets it."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", out, ROOT], cwd=out)
    (wheel,) = out.glob("exoprov-*.whl")
    (sdist,) = out.glob("exoprov-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory):
    """A fresh virtual environment (no system site-packages) with the wheel installed, an
    environment without this checkout on any path, and a cwd outside the repository."""
    home = tmp_path_factory.mktemp("user")
    env_dir = home / "venv"
    _run([sys.executable, "-m", "venv", env_dir], cwd=home)
    bindir = env_dir / "bin"
    pip = [bindir / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, dist["wheel"]], cwd=home)
    # micropython for `exoprov demo`: found on PATH, as `make run` users have it
    tools = home / "path"
    tools.mkdir()
    (tools / "micropython").symlink_to(MICROPYTHON)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EXOPROV_", "PYTHON", "VIRTUAL_ENV", "MICROPY"))
    }
    env.update(HOME=str(home), PATH=f"{bindir}:{tools}:/usr/bin:/bin")
    return {"bin": bindir, "env": env, "cwd": home}


def _exoprov(venv, *args, timeout=120, check=True, **kw):
    cmd = [str(venv["bin"] / "exoprov"), *map(str, args)]
    env = {**venv["env"], **kw.pop("env", {})}
    r = subprocess.run(
        cmd, cwd=venv["cwd"], env=env, capture_output=True, text=True, timeout=timeout, **kw
    )
    if check:
        assert r.returncode == 0, (args, r.stdout[-3000:], r.stderr[-3000:])
    return r


def test_wheel_holds_one_import_package_without_harnesses(dist):
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"exoprov", f"exoprov-{VERSION}.dist-info"}
    info = zipfile.ZipFile(dist["wheel"])
    top_level = info.read(f"exoprov-{VERSION}.dist-info/top_level.txt").decode().split()
    assert top_level == ["exoprov"]
    for want in (
        "exoprov/cli.py",
        "exoprov/demo.py",
        "exoprov/build.py",
        "exoprov/deploy.py",
        "exoprov/monitor.py",
        "exoprov/server/app.py",
        "exoprov/server/byteranges.py",
        "exoprov/server/snranges.py",
        "exoprov/server/ui/templates/base.html",
        "exoprov/fleet/cli.py",
        "exoprov/fleet/commands/sn.py",
        "exoprov/agent/main.py",
        "exoprov/boards/linux.py",
        "exoprov/boards/unix.py",
    ):
        assert want in names, want
    assert not [n for n in names if "/harness/" in n or "host_tests" in n or "/tests/" in n]
    assert not [n for n in names if n.startswith(("tools/", "agent/", "boards/"))]


def test_sdist_builds_the_same_wheel_as_the_tree(dist, tmp_path):
    """A wheel built straight from the tree holds exactly the files of the one built from the
    sdist: nothing the package needs is missing from the sdist. (Built from a copy: setuptools
    would leave build/ in the checkout, and a stale build/lib there ends up in wheels.)"""
    tree = tmp_path / "tree"
    junk = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "node_modules")
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*junk), symlinks=True)
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path, tree], cwd=tmp_path)
    (direct,) = tmp_path.glob("exoprov-*.whl")
    want = sorted(zipfile.ZipFile(direct).namelist())
    assert sorted(zipfile.ZipFile(dist["wheel"]).namelist()) == want
    with tarfile.open(dist["sdist"]) as t:
        members = t.getnames()
    assert f"exoprov-{VERSION}/setup.cfg" in members
    assert not [m for m in members if "/tools/harness/" in m]


def test_twine_check_passes(dist):
    r = _run([sys.executable, "-m", "twine", "check", "--strict", dist["wheel"], dist["sdist"]])
    assert r.stdout.count("PASSED") == 2, r.stdout


def test_installed_version_and_no_stray_top_level_packages(venv):
    r = _exoprov(venv, "--version")
    assert r.stdout == f"exoprov {VERSION}\n"
    probe = (
        "import importlib.util as u, exoprov, json; "
        "print(json.dumps([exoprov.__file__] + "
        "[bool(u.find_spec(n)) for n in ('tools', 'agent', 'boards', 'exoprov.harness')]))"
    )
    r = _run([venv["bin"] / "python", "-c", probe], cwd=venv["cwd"], env=venv["env"])
    where, *found = json.loads(r.stdout)
    assert where.startswith(str(venv["bin"].parent)) and "site-packages" in where
    assert found == [False, False, False, False]


def test_installed_demo_runs_end_to_end(venv):
    r = _exoprov(venv, "demo", timeout=240)
    site = venv["bin"].parent / "lib"
    assert f"MICROPYPATH={site}" in r.stdout and "site-packages/exoprov " in r.stdout
    assert "Done: activated, firmware applied and confirmed" in r.stdout, r.stdout[-2000:]


def test_installed_build_compiles_the_agent_and_boards(venv, tmp_path):
    """`exoprov build` finds agent/ and boards/ inside the installed package (its ROOT)."""
    r = _exoprov(venv, "build", "--out", tmp_path / "mpy")
    for mpy in ("agent/main.mpy", "agent/fsm.mpy", "boards/esp32.mpy", "boards/rp2.mpy"):
        assert (tmp_path / "mpy" / mpy).stat().st_size > 0, mpy
    assert "total esp32" in r.stdout


class _Server:
    """`exoprov server` of the installed package on a free loopback port."""

    def __init__(self, venv, workdir):
        self.db = workdir / "exoprov.db"
        cmd = [venv["bin"] / "exoprov", "server", "--db", self.db, "--host", "127.0.0.1"]
        self.log = open(workdir / "server.log", "w")
        self.proc = subprocess.Popen(
            [str(c) for c in [*cmd, "--port", "0"]],
            cwd=venv["cwd"],
            env=venv["env"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        line = self.proc.stdout.readline()
        m = _LISTEN.search(line)
        if not m:
            self.stop()
            raise AssertionError(f"server did not start: {line!r}")
        self.url = m.group(1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


def test_installed_agent_activates_updates_and_confirms(venv, tmp_path):
    """The gateway story from the wheel alone: its server, `exoprov admin`, `exoprov fleet`,
    then `exoprov agent` on CPython with the linux board: activate, download, apply (exit 3:
    restart), then confirm the new version on the next start."""
    srv = _Server(venv, tmp_path)
    try:
        r = _exoprov(venv, "admin", "add-vendor", "pkgvendor", "--db", srv.db)
        vendor = json.loads(r.stdout)
        fleet = {"EXOPROV_SERVER": srv.url, "EXOPROV_CIK": vendor["cik"]}
        image = os.urandom(100_000)
        (tmp_path / "fw.bin").write_bytes(image)
        for args in (
            ("model", "create", "gw", "--rid", vendor["rid"]),
            ("sn", "add", "gw", "GW-1"),
            ("sn", "enable", "gw", "GW-1", "--owner", vendor["rid"]),
            ("content", "upload", "gw", "firmware-2", tmp_path / "fw.bin", "--version", "2.0"),
        ):
            r = _exoprov(venv, "fleet", *args, env=fleet)
            assert vendor["cik"] not in r.stdout + r.stderr
        state = tmp_path / "state"
        cfg = {
            "server": srv.url,
            "vendor": "pkgvendor",
            "model": "gw",
            "sn": "GW-1",
            "board": "linux",
            "state_dir": str(state),
            "install_path": str(tmp_path / "installed.bin"),
            "version": "1.0",
            "once": True,
        }
        (tmp_path / "agent.json").write_text(json.dumps(cfg))
        r = _exoprov(venv, "agent", tmp_path / "agent.json", check=False)
        assert r.returncode == 3, r.stderr[-3000:]  # applied: the board restarts
        assert "activating -> active" in r.stderr
        assert "board linux" in r.stderr
        got = (tmp_path / "installed.bin").read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(image).digest()
        r = _exoprov(venv, "agent", tmp_path / "agent.json")
        assert "confirmed" in r.stderr
        saved = json.loads((state / "state.json").read_text())
        assert saved["state"] == "active" and saved["inst"]["ver"] == "2.0"
        r = _exoprov(venv, "fleet", "sn", "info", "gw", "GW-1", "--json", env=fleet)
        assert json.loads(r.stdout)[0]["status"] == "activated"
    finally:
        srv.stop()
