"""agent/main.py: configuration errors (one line naming the key, exit 2) on both interpreters."""

import json
import subprocess
import sys

import pytest
from agentkit import INTERPS, ROOT, run_agent

BASE = {"server": "http://127.0.0.1:9", "vendor": "v", "model": "m", "sn": "s"}


@pytest.mark.parametrize("interp", INTERPS)
@pytest.mark.parametrize(
    "change,key",
    [
        ({"vendor": None}, "vendor"),
        ({"server": "ftp://x"}, "server"),
        ({"server": "http://h/p"}, "server"),
        ({"model": ""}, "model"),
        ({"once": "yes"}, "once"),
        ({"poll": 0}, "poll"),
        ({"min_rate": -1}, "min_rate"),
        ({"min_rate": 1.5}, "min_rate"),
        ({"chunk": 5000}, "chunk"),
        ({"buffer": 1000, "chunk": 3000}, "buffer"),
        ({"buffer": 1024, "chunk": 2048}, "chunk"),  # the board's block is 4096
        ({"board": "nosuch"}, "board"),
        ({"state_dir": None}, "state_dir"),
    ],
)
def test_bad_config_one_line_exit_2(tmp_path, interp, change, key):
    cfg = dict(BASE, state_dir=str(tmp_path / "st"), once=True)
    for k, v in change.items():
        if v is None:
            cfg.pop(k)
        else:
            cfg[k] = v
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    r = run_agent(interp, path, timeout=30)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exoprov-agent: bad configuration: " + key)


@pytest.mark.parametrize("interp", INTERPS)
def test_unreadable_and_not_json(tmp_path, interp):
    r = run_agent(interp, tmp_path / "missing.json", timeout=30)
    assert r.returncode == 2 and "cannot be read" in r.stderr
    (tmp_path / "c.json").write_text("{nope")
    r = run_agent(interp, tmp_path / "c.json", timeout=30)
    assert r.returncode == 2 and "not valid JSON" in r.stderr


def test_https_needs_ca_under_micropython(tmp_path):
    cfg = dict(BASE, server="https://h", state_dir=str(tmp_path / "st"))
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    r = run_agent("micropython", tmp_path / "c.json", timeout=30)
    assert r.returncode == 2 and "ca_file: required" in r.stderr


def test_exoprov_agent_entry_point_and_usage(tmp_path):
    cfg = dict(BASE, server="http://127.0.0.1:1", state_dir=str(tmp_path / "st"), once=True)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    r = subprocess.run(
        [sys.executable, "-m", "exoprov.cli", "agent", str(tmp_path / "c.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1 and "state unprov -> activating" in r.stderr
    assert "retrying in 2 s after" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "exoprov.cli", "agent"], cwd=ROOT, capture_output=True, timeout=30
    )
    assert r.returncode == 2 and b"usage" in r.stderr


def test_buffer_is_the_boards_unless_configured():
    import types

    from agent import config

    class Board:
        name, block, buffer = "b", 4096, 1024

        def __init__(self, cfg):
            pass

    mod = types.SimpleNamespace(Board=Board)
    for given, want in ((None, 1024), (512, 512), (8192, 8192)):
        cfg = {"buffer": given, "chunk": 65536, "sn": "s"}
        config.board(cfg, mod)
        assert cfg["buffer"] == want
    for given, chunk, key in (
        (3000, 6000, "buffer"),
        (1024, 2048, "chunk"),
        (8192, 12288, "chunk"),
    ):
        with pytest.raises(config.BadConfig, match="^" + key):
            config.board({"buffer": given, "chunk": chunk, "sn": "s"}, mod)


def test_defaults_are_what_load_fills_in(tmp_path):
    from agent import config

    given = {"server": "http://127.0.0.1:9", "vendor": "v", "model": "m"}
    (tmp_path / "c.json").write_text(json.dumps(given))
    cfg = config.load(str(tmp_path / "c.json"))
    assert cfg == dict(config.defaults(), **given, _url=(False, "127.0.0.1", 9))
    assert not config.defaults().keys() & given.keys()  # required keys have no default
