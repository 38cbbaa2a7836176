"""Fake of MicroPython's `network` module: WLAN(STA_IF) for an ESP32 or a CYW43 (Pico W).

Behaviour comes from wlan.json in the fake hardware directory (see _fakehw):
{"chip": "esp32"|"cyw43", "networks": {"ssid": "password"}, "join_ms": 30, "dhcp_ms": 30}.

Status codes are the real ones: ESP32 (ports/esp32/network_wlan.c) STAT_IDLE 1000,
STAT_CONNECTING 1001, STAT_GOT_IP 1010, STAT_NO_AP_FOUND 201, STAT_WRONG_PASSWORD 202; CYW43
(extmod/modnetwork.c: the cyw43 link status) 0 down, 1 join, 2 no IP yet, 3 up, -1 fail,
-2 no network, -3 bad auth. On a CYW43, active() answers the link status (false until a join
starts) and connect() on an inactive interface raises OSError(EPERM); on an ESP32, connect()
while a previous attempt is still running raises "Wifi Internal Error".
"""

import errno
import time

import _fakehw as hw

STA_IF = 0
AP_IF = 1

_cfg = hw.read_json("wlan.json", None) or {}
_CHIP = _cfg.get("chip", "esp32")
_NETS = _cfg.get("networks", {})
_JOIN_MS = int(_cfg.get("join_ms", 30))
_DHCP_MS = int(_cfg.get("dhcp_ms", 30))

if _CHIP == "cyw43":
    STAT_IDLE = 0
    STAT_CONNECTING = 1
    STAT_GOT_IP = 3
    STAT_CONNECT_FAIL = -1
    STAT_NO_AP_FOUND = -2
    STAT_WRONG_PASSWORD = -3
    _NOIP = 2
else:
    STAT_IDLE = 1000
    STAT_CONNECTING = 1001
    STAT_GOT_IP = 1010
    STAT_BEACON_TIMEOUT = 200
    STAT_NO_AP_FOUND = 201
    STAT_WRONG_PASSWORD = 202
    STAT_ASSOC_FAIL = 203
    STAT_HANDSHAKE_TIMEOUT = 204
    _NOIP = STAT_CONNECTING

_country = "XX"


def country(cc=None):
    global _country
    if cc is None:
        return _country
    _country = cc


class WLAN:
    PM_NONE = 0xA11140
    PM_PERFORMANCE = 0x111022
    PM_POWERSAVE = 0xA11C82
    _ifs = {}

    def __new__(cls, interface=STA_IF):
        # like the real drivers: one object per interface
        if interface not in cls._ifs:
            obj = object.__new__(cls)
            obj._init(interface)
            cls._ifs[interface] = obj
        return cls._ifs[interface]

    def __init__(self, interface=STA_IF):
        pass

    def _init(self, interface):
        self._itf = interface
        self._up = False
        self._t0 = None
        self._ssid = None
        self._key = None
        self._cfg = {"pm": self.PM_PERFORMANCE}
        self.connects = 0

    def active(self, *args):
        if not args:
            if _CHIP == "cyw43":
                return self.status() != STAT_IDLE
            return self._up
        self._up = bool(args[0])
        if not self._up:
            self._t0 = None

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._up:
            if _CHIP == "cyw43":
                raise OSError(errno.EPERM)
            raise OSError("Wifi Not Started")
        if _CHIP != "cyw43" and self._t0 is not None and self.status() == STAT_CONNECTING:
            raise OSError("Wifi Internal Error")
        self._ssid, self._key = ssid, key
        self._t0 = time.ticks_ms()
        self.connects += 1
        hw.log("wlan connect %s" % ssid)

    def disconnect(self):
        self._t0 = None

    def status(self, *param):
        if param:
            if param[0] == "rssi":
                return -60
            raise ValueError("unknown status param")
        if self._t0 is None or not self._up:
            return STAT_IDLE
        dt = time.ticks_diff(time.ticks_ms(), self._t0)
        if dt < _JOIN_MS:
            return STAT_CONNECTING
        if self._ssid not in _NETS:
            return STAT_NO_AP_FOUND
        if _NETS[self._ssid] != (self._key or ""):
            return STAT_WRONG_PASSWORD
        if dt < _JOIN_MS + _DHCP_MS:
            return _NOIP
        return STAT_GOT_IP

    def isconnected(self):
        return self.status() == STAT_GOT_IP

    def config(self, *args, **kw):
        if args:
            if args[0] == "mac":
                return b"\x24\x6f\x28\x00\x00\x01"
            return self._cfg.get(args[0])
        self._cfg.update(kw)

    def ifconfig(self, *args):
        if self.isconnected():
            return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
