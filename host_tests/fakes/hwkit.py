"""CPython side of the fake hardware: set up a board directory, run MicroPython on it, inspect.

hw = make_hw(tmp, chip="esp32", ota=2)       # a fresh board (see _fakehw.py for the files)
r = run_program(hw, "board_esp32", "stored")  # one boot: host_tests/mpy_programs/*.py
events(hw), nvs(hw), flash(hw, "ota_1"), arm(hw, at, mode)
"""

import json
import shutil
import subprocess
from pathlib import Path

from host_tests.agentkit import Fleet as AgentFleet
from tools.harness import mpunix
from tools.harness.mpunix import MICROPYTHON, ROOT

_count = [0]


def make_hw(tmp, chip="esp32", ota=2, factory=False, app_size=64 * 1024, rollback=True, **kw):
    """A fresh fake board under tmp/hw. kw: networks={ssid: pw}, join_ms, dhcp_ms, unique_id."""
    hw = Path(tmp) / "hw"
    hw.mkdir(parents=True, exist_ok=True)
    table = {"factory": factory, "ota": ota, "app_size": app_size, "rollback": rollback}
    (hw / "partitions.json").write_text(json.dumps(table))
    wlan = {"chip": chip, "networks": kw.get("networks", {"lab": "pw-lab"})}
    wlan["join_ms"] = kw.get("join_ms", 20)
    wlan["dhcp_ms"] = kw.get("dhcp_ms", 20)
    (hw / "wlan.json").write_text(json.dumps(wlan))
    uid = kw.get("unique_id", "e6614c311b4d2a2f" if chip == "cyw43" else "246f28a1b2c3")
    (hw / "machine.json").write_text(json.dumps({"unique_id": uid}))
    return hw


def mp_env(hw, path=()):
    """The environment of one boot of board `hw`: the fakes, `path`, the repository."""
    return mpunix.mp_env(*path, fakes=True, EXOPROV_FAKE_HW=hw)


def run_program(hw, program, scenario, *args, path=(), env=None, timeout=60):
    """One boot of board `hw` running a scenario of host_tests/mpy_programs/`program`.py."""
    e = mp_env(hw, path)
    e.update(env or {})
    return mpunix.run_program(program, scenario, *args, env=e, timeout=timeout)


def run_mp(hw, code, path=(), env=None, timeout=60, args=()):
    """Run `code` (a script) under the MicroPython unix port as one boot of board `hw`."""
    _count[0] += 1
    script = Path(hw).parent / f"script{_count[0]}.py"
    script.write_text(code)
    e = mp_env(hw, path)
    e.update(env or {})
    return subprocess.run(
        [MICROPYTHON, str(script), *map(str, args)],
        env=e,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def out(r):
    """The last stdout line of a run as JSON (scripts end with print(json.dumps(...)))."""
    assert r.returncode == 0, r.stderr + r.stdout
    return json.loads(r.stdout.strip().splitlines()[-1])


def events(hw):
    try:
        return (Path(hw) / "events.log").read_text().splitlines()
    except FileNotFoundError:
        return []


def nvs(hw):
    try:
        return json.loads((Path(hw) / "nvs.json").read_text())
    except FileNotFoundError:
        return {}


def flash(hw, label):
    return (Path(hw) / f"{label}.bin").read_bytes()


def running(hw):
    return (Path(hw) / "running").read_text()


def arm(hw, at, mode="before", match=""):
    """Cut the power at persistent operation `at` (1-based) of the next boot, counting only
    operations whose label starts with `match` ("nvs commit", "write ota_1", ...)."""
    cfg = {"at": at, "mode": mode, "match": match}
    (Path(hw) / "power.json").write_text(json.dumps(cfg))


def app_image(size, tag=b"v"):
    """An ESP32 app image: 0xe9 magic, then a pattern that differs per tag."""
    body = (tag * (size // len(tag) + 1))[: size - 1]
    return b"\xe9" + body


# -- the agent on a fake board against the real server ----------------------------------------


class Fleet(AgentFleet):
    """The agent's Fleet (host_tests/agentkit.py) with a board's configuration."""

    prefix = "board"

    def config(self, path, sn, board, **kw):
        cfg = {
            "server": self.server.url,
            "vendor": self.vendor["vendor"],
            "model": self.model,
            "sn": sn,
            "board": board,
            "wifi_ssid": "lab",
            "wifi_password": "pw-lab",
            "once": True,
            "version": "1",
            "chunk": 16384,
            "timeout": 10,
        }
        cfg.update(kw)
        Path(path).write_text(json.dumps(cfg))
        return Path(path)


def run_esp32_agent(hw, config, timeout=60):
    """One boot of a fake ESP32 running `micropython -m agent CONFIG` (boards/esp32.py)."""
    return subprocess.run(
        [MICROPYTHON, "-m", "agent", str(config)],
        env=mp_env(hw),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rp2_device(tmp):
    """-> (hw, fs root, factory dir) for a fake Pico W."""
    hw = make_hw(tmp, chip="cyw43")
    fs = Path(tmp) / "fs"
    fs.mkdir(exist_ok=True)
    factory = Path(tmp) / "factory"
    factory.mkdir(exist_ok=True)
    shutil.copy(mpunix.PROGRAMS / "rp2_factory_app.py", factory / "app.py")
    return hw, fs, factory


def run_rp2_main(dev, config, cut=None, timeout=60):
    """One start of a fake Pico W: main.py (boards/rp2_boot.py), bundles or the factory app."""
    hw, fs, factory = dev
    env = mp_env(hw, (factory,))
    env.update(EXOPROV_ROOT=str(fs), EXOPROV_CONFIG=str(config))
    if cut:
        env["EXOPROV_CUT"] = cut
    return subprocess.run(
        [MICROPYTHON, str(ROOT / "boards" / "rp2_boot.py")],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
