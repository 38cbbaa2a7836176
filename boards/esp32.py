"""ESP32 board (MicroPython): NVS storage, A/B OTA partitions with rollback, Wi-Fi station.

Storage keeps two generations of the record in one NVS namespace (keys "r0", "r1"), each with
a sequence number and a digest: a save writes the older generation, so a power cut during it
leaves the newer one intact. The slot is the OTA partition after the running one; the image
is written in 4096-byte flash sectors and booted through the ESP-IDF bootloader, which rolls
back by itself if the new image resets before it is confirmed.

Needs a firmware with an OTA partition table (e.g. ESP32_GENERIC-OTA) and, for automatic
rollback, CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE. Deployed as `boards/esp32.mpy` so that the
`import esp32` below gets the built-in module, not this file.
"""

import hashlib
import struct
import time

import esp32
import machine
from micropython import const

_BLOCK = const(4096)  # flash sector: esp_partition_erase_range() granularity
_MAGIC_IMAGE = const(0xE9)  # esp_image_header_t.magic, checked by set_boot() too
_HDR = const(16)  # b"XR", seq u32, length u16, digest 8 bytes
_MAX_RECORD = const(4000)
_IOCTL_ERASE = const(6)  # os.AbstractBlockDev BLOCK_ERASE
_ENOENT = const(2)
_ENOSPC = const(28)
_ETIMEDOUT = const(110)
_EINVAL = const(22)
# Partition.mark_app_valid_cancel_rollback() raises OSError(-261) (ESP_ERR_NOT_FOUND) on a
# firmware built without CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE: nothing to confirm there.
_ERR_NO_ROLLBACK = const(-261)
_KEYS = ("r0", "r1")
_KEY_OTA = "ota"  # "<applied label> <previous label>" written by slot_apply()


def _digest(seq_len, data):
    h = hashlib.sha256(seq_len)
    h.update(data)
    return h.digest()[:8]


class Board:
    name = "esp32"
    block = _BLOCK
    # The download buffer: slot_write() takes pieces of a sector (the first one erases it),
    # so it need not be a whole 4 KiB sector of the heap.
    buffer = 1024

    def __init__(self, config):
        self._cfg = config
        self._nvs = esp32.NVS(config.get("nvs_namespace", "exoprov"))
        self._gen = None  # (index of the newest generation, its seq) once known
        self._target = None
        self._running = esp32.Partition(esp32.Partition.RUNNING).info()[4]
        if self._pending_ota()[0] != self._running:
            # Not running an unconfirmed update of ours: whatever runs is the known-good image
            # (first boot after esptool, or the old image after a rollback, which ESP-IDF's
            # set_boot() marks "new" again). Confirming is a no-op when it is already valid.
            self._mark_valid()

    # -- storage ---------------------------------------------------------------------------

    def _read_gen(self, i, buf):
        try:
            n = self._nvs.get_blob(_KEYS[i], buf)
        except OSError:  # ESP_ERR_NVS_NOT_FOUND (-0x1102), or a blob larger than buf
            return None
        if n < _HDR or buf[0:2] != b"XR":
            return None
        seq, length = struct.unpack_from("<IH", buf, 2)
        if _HDR + length != n:
            return None
        mv = memoryview(buf)
        if _digest(mv[2:8], mv[_HDR:n]) != bytes(mv[8:_HDR]):
            return None
        return seq

    def _scan(self):
        buf = bytearray(_HDR + _MAX_RECORD)
        best = None
        for i in (0, 1):
            seq = self._read_gen(i, buf)
            if seq is not None and (best is None or seq > best[1]):
                best = (i, seq)
        self._gen = best or (1, 0)  # nothing saved: the first save goes to "r0" with seq 1
        return best, buf

    def load(self):
        best, buf = self._scan()
        if best is None:
            return None
        self._read_gen(best[0], buf)  # buf holds the last generation read; reread the best
        length = struct.unpack_from("<H", buf, 6)[0]
        return bytes(buf[_HDR : _HDR + length])

    def save(self, data):
        if len(data) > _MAX_RECORD:
            raise ValueError("esp32: record of %d bytes over %d" % (len(data), _MAX_RECORD))
        if self._gen is None:
            self._scan()
        i, seq = 1 - self._gen[0], self._gen[1] + 1
        seq_len = struct.pack("<IH", seq, len(data))
        rec = b"XR" + seq_len + _digest(seq_len, data) + data
        self._nvs.set_blob(_KEYS[i], rec)
        self._nvs.commit()
        self._gen = (i, seq)

    # -- content slot: the next OTA partition ------------------------------------------------

    def _slot(self):
        if self._target is None:
            try:
                self._target = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
            except OSError:
                raise OSError(_ENOENT, "esp32: no OTA partitions in this firmware's table")
        return self._target

    def _pending_ota(self):
        buf = bytearray(40)
        try:
            n = self._nvs.get_blob(_KEY_OTA, buf)
        except OSError:
            return (None, None)
        parts = bytes(buf[:n]).decode().split()
        return (parts[0], parts[1]) if len(parts) == 2 else (None, None)

    def _mark_valid(self):
        try:
            esp32.Partition.mark_app_valid_cancel_rollback()
        except OSError as e:
            # -261: no rollback support in this build; ESP_FAIL: running the factory app
            return e.args[0]
        return 0

    def slot_begin(self, size):
        info = self._slot().info()
        if size > info[3]:
            raise OSError(
                _ENOSPC,
                "esp32: image of %d bytes over partition %s (%d)" % (size, info[4], info[3]),
            )

    def slot_erase(self):
        # Erasing block 0 is enough: it holds the image header, so the slot can no longer be
        # booted, and every slot_write() erases the sectors it writes (a full erase of a
        # 1.5 MB partition takes seconds).
        self._slot().ioctl(_IOCTL_ERASE, 0)

    def slot_write(self, offset, buf):
        p = self._slot()
        blk, rem = divmod(offset, _BLOCK)
        n = len(buf)
        if rem == 0 and n % _BLOCK == 0:
            p.writeblocks(blk, buf)  # the erasing form: sectors erased, then written
            return
        # a partial sector (the end of the image): erase each sector that starts inside the
        # range, then write without erasing (the sector holding `offset` was erased by the
        # write that began it)
        first = blk if rem == 0 else blk + 1
        for b in range(first, (offset + n + _BLOCK - 1) // _BLOCK):
            p.ioctl(_IOCTL_ERASE, b)
        p.writeblocks(blk, buf, rem)

    def slot_read(self, offset, buf):
        p = self._slot()
        n = min(len(buf), p.info()[3] - offset)
        if n <= 0:
            return 0
        blk, rem = divmod(offset, _BLOCK)
        p.readblocks(blk, memoryview(buf)[:n], rem)
        return n

    def slot_finish(self, size):
        b = bytearray(1)
        self._slot().readblocks(0, b, 0)
        if b[0] != _MAGIC_IMAGE:
            raise ValueError("esp32: not an app image (first byte 0x%02x, want 0xe9)" % b[0])

    def slot_apply(self):
        target = self._slot().info()[4]
        self._nvs.set_blob(_KEY_OTA, "%s %s" % (target, self._running))
        self._nvs.commit()
        try:
            self._target.set_boot()  # validates the image, then writes otadata
        except OSError as e:
            self._nvs.erase_key(_KEY_OTA)
            self._nvs.commit()
            raise OSError(e.args[0], "esp32: set_boot(%s) refused the image" % target)

    def slot_confirm(self):
        target = self._pending_ota()[0]
        if target != self._running:
            # the bootloader already went back: the new image reset before it was confirmed
            raise OSError(_ENOENT, "esp32: running %s, not the new image" % self._running)
        err = self._mark_valid()
        if err and err != _ERR_NO_ROLLBACK:
            raise OSError(err, "esp32: mark_app_valid_cancel_rollback failed")

    def slot_rollback(self):
        target, prev = self._pending_ota()
        if target == self._running and prev:
            esp32.Partition(prev).set_boot()  # back to the image that applied this one
        elif esp32.Partition(esp32.Partition.BOOT).info()[4] != self._running:
            esp32.Partition(esp32.Partition.RUNNING).set_boot()  # applied, not booted yet
        # else: the bootloader already rolled back; the running image is the previous one

    # -- network, clock, identity -----------------------------------------------------------

    def network_up(self, timeout_ms):
        import network

        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        if wlan.isconnected():
            return
        ssid = self._cfg.get("wifi_ssid")
        if not ssid:
            raise OSError(_EINVAL, "esp32: wifi_ssid missing from the configuration")
        # esp_wifi_connect() fails with "Wifi Internal Error" (ESP_ERR_WIFI_CONN) while an
        # earlier attempt is still running: stop it first.
        wlan.disconnect()
        wlan.connect(ssid, self._cfg.get("wifi_password", ""))
        t0 = time.ticks_ms()
        while not wlan.isconnected():
            # The ESP32 driver keeps retrying on its own (a wrong password often shows only
            # as STAT_CONNECTING), so the deadline is the only reliable way out.
            if time.ticks_diff(time.ticks_ms(), t0) >= timeout_ms:
                st = wlan.status()
                wlan.disconnect()
                raise OSError(
                    _ETIMEDOUT,
                    "esp32: wifi %r not up in %d ms (status %d)" % (ssid, timeout_ms, st),
                )
            time.sleep_ms(50)

    def ticks_ms(self):
        return time.ticks_ms()

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def time(self):
        t = time.time()
        return int(t) if t > 1700000000 else None  # the RTC starts at 2000-01-01 until NTP

    def unique_id(self):
        return "".join("%02x" % b for b in machine.unique_id())  # the base MAC, 6 bytes

    def reset(self):
        machine.reset()
