"""RP2040 / Pico W board (MicroPython): LittleFS storage, A/B application bundles, CYW43 Wi-Fi
or a PPP modem on a UART.

Stock MicroPython cannot replace its own firmware on an RP2040, so the slot updates the
application: the content is a bundle (docs/bundle-format.md) staged in `app.stage`, checked,
unpacked into the inactive one of `app_a`/`app_b` through a temporary directory and an atomic
rename, and made current by rewriting the pointer file `app.ptr` ("<cur> <prev> <state>", also
written with temp + rename). The previous bundle stays for rollback; `-` names the factory
application in /lib. main.py (boards/rp2_boot.py) starts the current bundle and falls back
when it fails to start or resets before it is confirmed.

The network is Wi-Fi (Pico W) unless the configuration says `"net": "ppp"`: then a cellular
or serial modem speaking PPP on a UART (`ppp_uart`, default 1 on GP4/GP5, `ppp_tx`, `ppp_rx`,
`ppp_baud`, optional `ppp_user`/`ppp_password` for PAP) carries lwIP's `network.PPP`; the
firmware must have it (tools/firmware/rp2/EXOPROV_PICO_PPP). A modem that needs AT commands
to dial is expected to be in data mode already.

All files live under the configuration's `state_dir` (default "/"). LittleFS (the rp2 default
file system) renames atomically and replaces an existing target; FAT would not.
"""

import hashlib
import os
import struct
import time

import machine
from micropython import const

_BLOCK = const(4096)  # LittleFS block on the Pico's flash; the journal resumes on its multiples
_HDR = const(16)  # record: b"XR", seq u32 (unused here), length u16, digest 8 bytes
_MAX_RECORD = const(4000)
_B_FIXED = const(40)  # bundle: magic 4, count u16, header length u16, sha256 32
_B_MAGIC = b"EXB1"
_B_MAX_HEADER = const(8192)
_ENOENT = const(2)
_ENOSPC = const(28)
_EINVAL = const(22)
_ETIMEDOUT = const(110)
_EPERM = const(1)
_S_IFDIR = const(0x4000)

# CYW43 link status as returned by WLAN.status() on the Pico W (cyw43_tcpip_link_status(),
# exported as network.STAT_* by extmod/modnetwork.c): unlike the ESP32 (1000/1001/1010, 20x)
# these are small and negative on failure, and 2 (joined, DHCP not done) has no STAT_ name.
_LINK_UP = const(3)
_LINK_FAIL = const(-1)
_LINK_NONET = const(-2)
_LINK_BADAUTH = const(-3)
# CYW43 power saving drops incoming packets on a busy link: turn it off (0xa11140 is the
# value the Raspberry Pi "Connecting to the Internet with Pico W" guide uses; newer firmware
# names it WLAN.PM_NONE).
_PM_NONE = const(0xA11140)
# After a failed join (-1/-2) the driver stays in that state and does not retry by itself.
_REJOIN_MS = const(3000)
# network.PPP.status() (extmod/network_ppp_lwip.c): 0 inactive, 1 active, 3 connecting,
# 4 connected, and minus lwIP's PPPERR_* code after a failure (its state 2, error).
_PPP_CONNECTING = const(3)
_PPP_CONNECTED = const(4)
_PPP_AUTHFAIL = const(-7)  # PPPERR_AUTHFAIL: the peer refused the PAP credentials
# The PPP object lives as long as the firmware runs: its finaliser would hang up the link.
_ppp = None


def _digest(head, data):
    h = hashlib.sha256(head)
    h.update(data)
    return h.digest()[:8]


def _hex(b):
    return "".join("%02x" % x for x in b)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _rmtree(path):
    try:
        mode = os.stat(path)[0]
    except OSError:
        return
    if mode & _S_IFDIR:
        for entry in os.ilistdir(path):
            _rmtree(path + "/" + entry[0])
        os.rmdir(path)
    else:
        os.remove(path)


def _write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
    os.rename(tmp, path)


def _check_name(name):
    # bundle paths: relative, "/"-separated, no "..", nothing outside the bundle directory
    if not name or name[0] == "/" or "\\" in name:
        return False
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return False
    return True


class Board:
    name = "rp2"
    block = _BLOCK
    buffer = 1024  # download buffer: slot_write() takes pieces of a block (see there)

    def __init__(self, config):
        self._cfg = config
        root = config.get("state_dir", "/").rstrip("/")
        self._root = root
        self._rec = root + "/exoprov.rec"
        self._stage = root + "/app.stage"
        self._ptr_path = root + "/app.ptr"
        self._f = None
        self._size = None

    # -- storage ---------------------------------------------------------------------------

    def load(self):
        try:
            with open(self._rec, "rb") as f:
                raw = f.read(_HDR + _MAX_RECORD + 1)
        except OSError:
            return None
        if len(raw) < _HDR or raw[0:2] != b"XR":
            return None
        length = struct.unpack_from("<H", raw, 6)[0]
        if _HDR + length != len(raw) or _digest(raw[2:8], raw[_HDR:]) != raw[8:_HDR]:
            return None
        return raw[_HDR:]

    def save(self, data):
        if len(data) > _MAX_RECORD:
            raise ValueError("rp2: record of %d bytes over %d" % (len(data), _MAX_RECORD))
        head = struct.pack("<IH", 0, len(data))
        _write_atomic(self._rec, b"XR" + head + _digest(head, data) + data)

    # -- content slot: an application bundle -------------------------------------------------

    def _file(self):
        if self._f is None:
            if not _exists(self._stage):
                open(self._stage, "wb").close()
            self._f = open(self._stage, "r+b")
        return self._f

    def _close(self):
        if self._f is not None:
            f, self._f = self._f, None
            f.close()

    def slot_begin(self, size):
        self._size = size
        try:
            have = os.stat(self._stage)[6]
        except OSError:
            have = 0
        st = os.statvfs(self._root or "/")
        free = st[0] * st[4]
        # the staged archive plus its unpacked copy must fit beside the current bundles
        need = max(size - have, 0) + size + 2 * _BLOCK
        if need > free:
            raise OSError(
                _ENOSPC, "rp2: bundle of %d bytes needs %d free, have %d" % (size, need, free)
            )
        self._file()

    def slot_erase(self):
        self._close()
        try:
            os.remove(self._stage)
        except OSError:
            pass

    def slot_write(self, offset, buf):
        f = self._file()
        f.seek(offset)
        f.write(buf)
        end = offset + len(buf)
        # LittleFS commits on sync: at each block's end (the journal advances by whole
        # blocks) and the image's, so a piece of a block costs no commit of its own.
        if not end % _BLOCK or end == self._size:
            f.flush()

    def slot_read(self, offset, buf):
        f = self._file()
        f.seek(offset)
        return f.readinto(buf) or 0

    def slot_finish(self, size):
        self._close()
        count, hlen, sha = self._header()
        total = self._check_payload(hlen, None)
        if hlen + total != size:
            raise ValueError("rp2: bundle is %d bytes, header says %d" % (size, hlen + total))

    def _header(self):
        with open(self._stage, "rb") as f:
            fixed = f.read(_B_FIXED)
            if len(fixed) < _B_FIXED or fixed[0:4] != _B_MAGIC:
                raise ValueError("rp2: not an application bundle")
            count, hlen = struct.unpack_from("<HH", fixed, 4)
            if hlen < _B_FIXED or hlen > _B_MAX_HEADER:
                raise ValueError("rp2: bad bundle header length %d" % hlen)
            table = f.read(hlen - _B_FIXED)
        entries = []
        pos = 0
        for _ in range(count):
            if pos + 5 > len(table):
                raise ValueError("rp2: bundle file table truncated")
            size, nlen = struct.unpack_from("<IB", table, pos)
            name = table[pos + 5 : pos + 5 + nlen].decode()
            pos += 5 + nlen
            if len(name) != nlen or not _check_name(name):
                raise ValueError("rp2: bad file name in bundle: %r" % name)
            entries.append((name, size))
        if pos != len(table):
            raise ValueError("rp2: bundle file table length mismatch")
        self._entries = entries
        return count, hlen, fixed[8:40]

    def _check_payload(self, hlen, dest):
        """Stream the payload (into files under dest when given); -> its length. Checks sha256."""
        sha = self._header()[2]
        h = hashlib.sha256()
        buf = bytearray(512)
        mv = memoryview(buf)
        total = 0
        with open(self._stage, "rb") as src:
            src.seek(hlen)
            for name, size in self._entries:
                out = None
                if dest is not None:
                    path = dest
                    parts = name.split("/")
                    for part in parts[:-1]:
                        path += "/" + part
                        if not _exists(path):
                            os.mkdir(path)
                    out = open(path + "/" + parts[-1], "wb")
                try:
                    left = size
                    while left:
                        n = src.readinto(mv[: min(left, 512)])
                        if not n:
                            raise ValueError("rp2: bundle truncated in %s" % name)
                        h.update(mv[:n])
                        if out is not None:
                            out.write(mv[:n])
                        left -= n
                finally:
                    if out is not None:
                        out.close()
                total += size
        if h.digest() != sha:
            raise ValueError("rp2: bundle sha256 mismatch")
        return total

    def _ptr(self):
        try:
            with open(self._ptr_path) as f:
                p = f.read().split()
        except OSError:
            p = ()
        return p if len(p) == 3 else ["-", "-", "ok"]

    def _set_ptr(self, cur, prev, state):
        _write_atomic(self._ptr_path, "%s %s %s\n" % (cur, prev, state))

    def _dir_sha(self, name):
        if name == "-":
            return None
        try:
            with open(self._root + "/" + name + "/.bundle") as f:
                return f.read().strip()
        except OSError:
            return None

    def _staged_sha(self):
        try:
            return _hex(self._header()[2])
        except (OSError, ValueError):
            return None

    def slot_apply(self):
        self._close()
        count, hlen, sha = self._header()
        staged = _hex(sha)
        cur, prev, state = self._ptr()
        if state != "failed" and self._dir_sha(cur) == staged:
            return  # applied already (a reset came before the caller recorded it)
        dest = "app_b" if cur == "app_a" else "app_a"
        if prev == dest:
            # forget the previous bundle before its directory goes, so that no power cut
            # leaves the pointer naming a half-replaced directory
            self._set_ptr(cur, "-", state)
        tmp = self._root + "/app_tmp"
        _rmtree(tmp)
        _rmtree(self._root + "/" + dest)
        os.mkdir(tmp)
        try:
            self._check_payload(hlen, tmp)
            with open(tmp + "/.bundle", "w") as f:
                f.write(staged)
        except Exception:
            _rmtree(tmp)
            raise
        os.rename(tmp, self._root + "/" + dest)
        self._set_ptr(dest, cur, "new")

    def slot_confirm(self):
        cur, prev, state = self._ptr()
        staged = self._staged_sha()
        if staged is None or self._dir_sha(cur) != staged or state not in ("trying", "ok"):
            raise OSError(_ENOENT, "rp2: the new bundle is not running (state %s)" % state)
        if state == "trying":
            self._set_ptr(cur, prev, "ok")

    def slot_rollback(self):
        cur, prev, state = self._ptr()
        staged = self._staged_sha()
        if staged is not None and self._dir_sha(cur) == staged:
            self._set_ptr(prev, cur, "failed")  # main.py starts `prev` from the next boot
        # else: never made current, or main.py already fell back

    # -- network, clock, identity -----------------------------------------------------------

    def network_up(self, timeout_ms):
        if self._cfg.get("net") == "ppp":
            return self._ppp_up(timeout_ms)
        import network

        wlan = network.WLAN(network.STA_IF)
        # CYW43 quirk: active() answers the link status, so it reads False on an interface
        # that is up but not joined; always switch it on rather than asking.
        wlan.active(True)
        if wlan.isconnected():
            return
        ssid = self._cfg.get("wifi_ssid")
        if not ssid:
            raise OSError(_EINVAL, "rp2: wifi_ssid missing from the configuration")
        cc = self._cfg.get("wifi_country")
        if cc and hasattr(network, "country"):
            network.country(cc)
        try:
            wlan.config(pm=getattr(wlan, "PM_NONE", _PM_NONE))
        except (ValueError, TypeError, OSError):
            pass
        key = self._cfg.get("wifi_password", "")
        t0 = time.ticks_ms()
        joined = None
        while True:
            now = time.ticks_ms()
            if joined is None:
                # connect() raises OSError(EPERM) on an interface that is not up yet
                wlan.connect(ssid, key)
                joined = now
            st = wlan.status()
            if st == _LINK_UP:
                return
            if st == _LINK_BADAUTH:
                # terminal: the access point refused the password; retrying will not help
                wlan.disconnect()
                raise OSError(_EPERM, "rp2: wifi %r refused the password" % ssid)
            if time.ticks_diff(now, t0) >= timeout_ms:
                wlan.disconnect()
                raise OSError(
                    _ETIMEDOUT, "rp2: wifi %r not up in %d ms (status %d)" % (ssid, timeout_ms, st)
                )
            if st in (_LINK_FAIL, _LINK_NONET) and time.ticks_diff(now, joined) >= _REJOIN_MS:
                wlan.disconnect()
                joined = None
            time.sleep_ms(50)

    def _ppp_up(self, timeout_ms):
        global _ppp
        import network

        if not hasattr(network, "PPP"):
            raise OSError(_EINVAL, "rp2: this firmware has no network.PPP (net: ppp)")
        cfg = self._cfg
        if _ppp is None:
            uart = machine.UART(
                cfg.get("ppp_uart", 1),
                baudrate=cfg.get("ppp_baud", 115200),
                tx=machine.Pin(cfg.get("ppp_tx", 4)),
                rx=machine.Pin(cfg.get("ppp_rx", 5)),
                rxbuf=2048,
            )
            _ppp = network.PPP(uart)
        ppp = _ppp
        if ppp.isconnected():
            return
        t0 = time.ticks_ms()
        while True:
            st = ppp.status()
            if st < _PPP_CONNECTING:  # never started, or failed (negative): dial (again)
                if st == _PPP_AUTHFAIL:
                    raise OSError(_EPERM, "rp2: the PPP peer refused the credentials")
                user = cfg.get("ppp_user")
                if user:
                    ppp.connect(security=ppp.SEC_PAP, user=user, key=cfg.get("ppp_password", ""))
                else:
                    ppp.connect()
            elif st == _PPP_CONNECTED and ppp.isconnected():
                return
            if time.ticks_diff(time.ticks_ms(), t0) >= timeout_ms:
                raise OSError(
                    _ETIMEDOUT, "rp2: PPP not up in %d ms (status %d)" % (timeout_ms, st)
                )
            time.sleep_ms(50)

    def ticks_ms(self):
        return time.ticks_ms()

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def time(self):
        t = time.time()
        return int(t) if t > 1700000000 else None  # the RTC starts at 2021-01-01 until NTP

    def unique_id(self):
        return _hex(machine.unique_id())  # the flash chip's 8-byte id

    def reset(self):
        self._close()
        machine.reset()
