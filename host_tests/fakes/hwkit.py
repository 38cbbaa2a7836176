"""CPython side of the fake hardware: set up a board directory, run MicroPython on it, inspect.

hw = make_hw(tmp, chip="esp32", ota=2)       # a fresh board (see _fakehw.py for the files)
r = run_mp(hw, "from boards.esp32 import Board\\n...")   # one boot of the board
events(hw), nvs(hw), flash(hw, "ota_1"), arm(hw, at, mode)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

FAKES = Path(__file__).resolve().parent
ROOT = FAKES.parent.parent
MICROPYTHON = str(Path(sys.executable).parent / "micropython")
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
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(str(p) for p in (FAKES, *path, ROOT))
    env["EXOPROV_FAKE_HW"] = str(hw)
    return env


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


def arm(hw, at, mode="before"):
    """Cut the power at persistent operation `at` (1-based) of the next boot."""
    (Path(hw) / "power.json").write_text(json.dumps({"at": at, "mode": mode}))


def app_image(size, tag=b"v"):
    """An ESP32 app image: 0xe9 magic, then a pattern that differs per tag."""
    body = (tag * (size // len(tag) + 1))[: size - 1]
    return b"\xe9" + body
