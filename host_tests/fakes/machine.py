"""Fake of MicroPython's `machine` module: unique_id() and reset() (see _fakehw).

unique_id() gives the bytes of machine.json's "unique_id" (hex), else 6 fixed bytes like an
ESP32's MAC. reset() logs the reset and ends the process with status 3 (the device restarts;
the test starts the next "boot").
"""

import _fakehw as hw

_cfg = hw.read_json("machine.json", None) or {}


def unique_id():
    return bytes.fromhex(_cfg.get("unique_id", "246f28a1b2c3"))


def reset():
    hw.log("reset")
    raise SystemExit(3)


def soft_reset():
    reset()


def idle():
    pass


def freq():
    return 240000000
