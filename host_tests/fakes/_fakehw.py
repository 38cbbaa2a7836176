"""Shared state of the fake hardware: a directory that survives "resets" (process restarts).

Plain MicroPython (runs in the unix port with this folder on MICROPYPATH). The directory is
named by the EXOPROV_FAKE_HW environment variable (else by the `fake_dir` key of the first
CONFIG.json on the command line); everything a fake persists lives there:

  partitions.json  esp32 partition table: {"factory": bool, "ota": n, "app_size": bytes,
                   "rollback": bool}
  <label>.bin      esp32 flash contents of one partition (erased bytes are 0xff)
  otadata.json     esp32 otadata: the two select entries [{"seq": n, "state": s} | null]
  nvs.json         esp32 NVS, committed values only
  wlan.json        network behaviour: {"chip": "esp32"|"cyw43", "networks": {ssid: pw},
                   "join_ms": n, "dhcp_ms": n}
  machine.json     {"unique_id": "<hex>"}
  power.json       an armed power cut: {"at": n, "mode": "before"|"after"|"torn",
                   "match": "label prefix"} (count only operations whose label starts so)
  events.log       one line per boot, set_boot, confirm, reset and power cut

A power cut is counted in persistent operations (NVS set/commit of one key, flash erase or
write, otadata write). When operation `at` comes, "before" cuts before it lands, "after" lets it
land, "torn" lands half of a flash write; then the hardware is dead (no further write lands) and
PowerCut (a SystemExit, exit status 137) unwinds the process, like a power cut ends a device.
"""

import json
import os

OK = 0
CUT_BEFORE = 1
CUT_AFTER = 2
CUT_TORN = 3
_MODES = {"before": CUT_BEFORE, "after": CUT_AFTER, "torn": CUT_TORN}


def _find_dir():
    # EXOPROV_FAKE_HW, else the "fake_dir" key of the first CONFIG.json on the command line
    # (how tools/harness/powercut.py names it)
    d = os.getenv("EXOPROV_FAKE_HW")
    if d:
        return d
    import sys

    for arg in sys.argv:
        if arg.endswith(".json"):
            try:
                with open(arg) as f:
                    d = json.load(f).get("fake_dir")
            except (OSError, ValueError, AttributeError):
                d = None
            if d:
                try:
                    os.mkdir(d)
                except OSError:
                    pass
                return d
    raise ImportError("fake hardware: set EXOPROV_FAKE_HW (or fake_dir in CONFIG.json)")


DIR = _find_dir()

_ops = 0
_matched = 0
_dead = False
_armed = None


class PowerCut(SystemExit):
    pass


def path(name):
    return DIR + "/" + name


def exists(name):
    try:
        os.stat(path(name))
        return True
    except OSError:
        return False


def read_json(name, default=None):
    try:
        with open(path(name)) as f:
            return json.load(f)
    except OSError:
        return default


def write_json(name, obj):
    # The fake's own bookkeeping is atomic (temp + rename); faults are injected explicitly.
    tmp = path(name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.rename(tmp, path(name))


def log(line):
    with open(path("events.log"), "a") as f:
        f.write(line + "\n")


def arm(at, mode="before", match=""):
    """Cut the power at the `at`-th persistent operation from now (1 = the next one) whose
    label starts with `match`."""
    global _armed
    _armed = (_matched + at, _MODES[mode], match)


def _load_armed():
    global _armed
    cfg = read_json("power.json")
    if cfg:
        _armed = (int(cfg["at"]), _MODES[cfg.get("mode", "before")], cfg.get("match", ""))


def op(what):
    """Called before every persistent operation; returns OK or one of the CUT_* modes."""
    global _ops, _matched, _dead
    if _dead:
        raise PowerCut(137)
    _ops += 1
    if _armed is None or not what.startswith(_armed[2]):
        return OK
    _matched += 1
    if _matched != _armed[0]:
        return OK
    _dead = True
    try:
        os.remove(path("power.json"))
    except OSError:
        pass
    log("powercut %d %s" % (_ops, what))
    if _armed[1] == CUT_BEFORE:
        raise PowerCut(137)
    return _armed[1]


def cut():
    raise PowerCut(137)


def ops():
    return _ops


_load_armed()
