"""Fake of MicroPython's `esp32` module: Partition (OTA) and NVS, backed by _fakehw.

Follows ports/esp32/esp32_partition.c and esp32_nvs.c of MicroPython and ESP-IDF's OTA rules:
- errors are OSError(-esp_err) like check_esp_err(): ESP_ERR_NVS_NOT_FOUND -> -0x1102,
  a missing partition or no OTA partitions -> ENOENT, an erase not on 4096-byte sectors ->
  ESP_ERR_INVALID_SIZE (-0x104), an image set_boot() cannot validate -> -0x1503;
- writeblocks(block, buf) erases the sectors then writes; writeblocks(block, buf, offset)
  writes only. Stricter than real NOR flash (which silently ANDs the bits), writing over bytes
  that are not erased raises OSError(EIO) so a missing erase is caught;
- the bootloader (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE) runs once per process, at import:
  an entry in state "new" boots and becomes "pending"; an entry still "pending" at the next
  boot (never confirmed) becomes "aborted" and the previous image boots instead.
- Partition objects have no __eq__, like the real ones: compare info()[4] labels.
"""

import errno

import _fakehw as hw

_BLOCK = 4096
_MAGIC = 0xE9  # esp_image_header_t.magic (ESP_IMAGE_HEADER_MAGIC)

_ESP_FAIL = 1  # check_esp_err() raises OSError(-code)
_ERR_INVALID_ARG = -0x102
_ERR_INVALID_SIZE = -0x104
_ERR_NOT_FOUND = -0x105
_ERR_NVS_NOT_FOUND = -0x1102
_ERR_NVS_TYPE_MISMATCH = -0x1104
_ERR_NVS_KEY_TOO_LONG = -0x1109
_ERR_NVS_INVALID_LENGTH = -0x110C
_ERR_OTA_VALIDATE_FAILED = -0x1503

_TYPE_APP = 0
_TYPE_DATA = 1
_DEFAULT_TABLE = {"factory": False, "ota": 2, "app_size": 256 * 1024, "rollback": True}
_ERASED_BLOCK = b"\xff" * _BLOCK


def _err(code, name):
    return OSError(code, name)


# -- partition table and flash files -------------------------------------------------------

_cfg = hw.read_json("partitions.json", None) or {}
for _k in _DEFAULT_TABLE:
    _cfg.setdefault(_k, _DEFAULT_TABLE[_k])
_N_OTA = int(_cfg["ota"])
_APP_SIZE = int(_cfg["app_size"])
_ROLLBACK = bool(_cfg["rollback"])

_table = {}  # label -> (type, subtype, addr, size)
_order = []
_addr = 0x10000
if _cfg["factory"]:
    _table["factory"] = (_TYPE_APP, 0x00, _addr, _APP_SIZE)
    _order.append("factory")
    _addr += _APP_SIZE
for _i in range(_N_OTA):
    _table["ota_%d" % _i] = (_TYPE_APP, 0x10 + _i, _addr, _APP_SIZE)
    _order.append("ota_%d" % _i)
    _addr += _APP_SIZE
_table["nvs"] = (_TYPE_DATA, 0x02, 0x9000, 0x6000)
_table["otadata"] = (_TYPE_DATA, 0x00, 0xF000, 0x2000)
_order += ["nvs", "otadata"]
_FIRST_APP = "factory" if _cfg["factory"] else "ota_0"


def _flash_path(label):
    return hw.path(label + ".bin")


def _init_flash():
    # A fresh board: every app partition erased, the first one holding the flashed image.
    for label in _order:
        if _table[label][0] != _TYPE_APP or hw.exists(label + ".bin"):
            continue
        with open(_flash_path(label), "wb") as f:
            for _ in range(_table[label][3] // _BLOCK):
                f.write(_ERASED_BLOCK)
        if label == _FIRST_APP:
            with open(_flash_path(label), "r+b") as f:
                f.write(bytes([_MAGIC]) + b" factory image v0")


def _read(label, addr, buf):
    with open(_flash_path(label), "rb") as f:
        f.seek(addr)
        n = f.readinto(buf)
    for i in range(n or 0, len(buf)):
        buf[i] = 0xFF


def _write(label, addr, data):
    with open(_flash_path(label), "r+b") as f:
        f.seek(addr)
        f.write(data)


def _check_erased(label, addr, n):
    old = bytearray(n)
    _read(label, addr, old)
    if old != b"\xff" * n:
        for i in range(n):
            if old[i] != 0xFF:
                break
        raise OSError(
            errno.EIO, "fake flash: write over unerased byte at %s+0x%x" % (label, addr + i)
        )


# -- otadata and the bootloader ------------------------------------------------------------


def _otadata():
    ents = hw.read_json("otadata.json", None)
    return ents if ents else [None, None]


def _save_otadata(ents, what):
    m = hw.op(what)
    hw.write_json("otadata.json", ents)
    if m != hw.OK:
        hw.cut()


def _valid(e):
    return e is not None and e["state"] not in ("invalid", "aborted")


def _active(ents):
    # bootloader_common_get_active_otadata(): the valid entry with the highest seq (tie: 0)
    best = None
    for i in (0, 1):
        if _valid(ents[i]) and (best is None or ents[i]["seq"] > ents[best]["seq"]):
            best = i
    return best


def _label_of(seq):
    return "ota_%d" % ((seq - 1) % _N_OTA)


def _image_ok(label):
    b = bytearray(1)
    _read(label, 0, b)
    return b[0] == _MAGIC


def _boot():
    ents = _otadata()
    chosen = None
    note = "otadata empty"
    while _N_OTA:
        i = _active(ents)
        if i is None:
            break
        e = ents[i]
        label = _label_of(e["seq"])
        if _ROLLBACK and e["state"] == "pending":
            # booted once and never confirmed: abort it, fall back to the other entry
            e["state"] = "aborted"
            hw.write_json("otadata.json", ents)
            hw.log("rollback %s aborted" % label)
            continue
        if not _image_ok(label):
            e["state"] = "invalid"
            hw.write_json("otadata.json", ents)
            hw.log("invalid image %s" % label)
            continue
        if _ROLLBACK and e["state"] == "new":
            e["state"] = "pending"
            hw.write_json("otadata.json", ents)
        chosen, note = label, e["state"]
        break
    if chosen is None:
        chosen = _FIRST_APP
    hw.log("boot %s %s" % (chosen, note))
    with open(hw.path("running"), "w") as f:
        f.write(chosen)
    return chosen


def _boot_label():
    i = _active(_otadata())
    if i is None or not _N_OTA:
        return _FIRST_APP
    return _label_of(_otadata()[i]["seq"])


# -- Partition ---------------------------------------------------------------------------


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = _TYPE_APP
    TYPE_DATA = _TYPE_DATA

    def __init__(self, id, block_size=_BLOCK):
        if isinstance(id, int):
            if id == 0:
                label = _boot_label()
            elif id == 1:
                label = _RUNNING
            else:
                raise ValueError
        else:
            label = id
            if label not in _table:
                raise OSError(errno.ENOENT)
        if block_size != _BLOCK:
            raise ValueError("fake: only 4096-byte blocks")
        self._label = label
        self._info = _table[label]

    @staticmethod
    def find(type=_TYPE_APP, subtype=0xFF, label=None, block_size=_BLOCK):
        out = []
        for name in _order:
            t = _table[name]
            if t[0] == type and subtype in (0xFF, t[1]) and label in (None, name):
                out.append(Partition(name, block_size))
        return out

    def info(self):
        t = self._info
        return (t[0], t[1], t[2], t[3], self._label, False)

    def __repr__(self):
        t = self._info
        return "<Partition type=%u, subtype=%u, address=%u, size=%u, label=%s, encrypted=0>" % (
            t[0],
            t[1],
            t[2],
            t[3],
            self._label,
        )

    def _range(self, addr, n):
        if addr > self._info[3]:
            raise _err(_ERR_INVALID_ARG, "ESP_ERR_INVALID_ARG")
        if addr + n > self._info[3]:
            raise _err(_ERR_INVALID_SIZE, "ESP_ERR_INVALID_SIZE")

    def readblocks(self, block, buf, offset=0):
        addr = block * _BLOCK + offset
        self._range(addr, len(buf))
        _read(self._label, addr, buf)

    def _erase(self, addr, n):
        if addr % _BLOCK:
            raise _err(_ERR_INVALID_ARG, "ESP_ERR_INVALID_ARG")
        if n % _BLOCK:
            raise _err(_ERR_INVALID_SIZE, "ESP_ERR_INVALID_SIZE")
        self._range(addr, n)
        for a in range(addr, addr + n, _BLOCK):
            m = hw.op("erase %s+0x%x" % (self._label, a))
            _write(self._label, a, _ERASED_BLOCK)
            if m != hw.OK:
                hw.cut()

    def writeblocks(self, block, buf, offset=None):
        addr = block * _BLOCK
        if offset is None:
            self._erase(addr, len(buf))
        else:
            addr += offset
        n = len(buf)
        self._range(addr, n)
        _check_erased(self._label, addr, n)
        m = hw.op("write %s+0x%x" % (self._label, addr))
        if m == hw.CUT_TORN:
            n //= 2
        _write(self._label, addr, bytes(buf[:n]) if n < len(buf) else buf)
        if m != hw.OK:
            hw.cut()

    def ioctl(self, cmd, arg):
        if cmd in (1, 2, 3):  # INIT, DEINIT, SYNC
            return 0
        if cmd == 4:  # BLOCK_COUNT
            return self._info[3] // _BLOCK
        if cmd == 5:  # BLOCK_SIZE
            return _BLOCK
        if cmd == 6:  # BLOCK_ERASE
            self._erase(arg * _BLOCK, _BLOCK)
            return 0
        return None

    def set_boot(self):
        # esp_ota_set_boot_partition(): validate the image, then write the next otadata entry
        if self._info[0] != _TYPE_APP:
            raise _err(_ERR_INVALID_ARG, "ESP_ERR_INVALID_ARG")
        if not _image_ok(self._label):
            raise _err(_ERR_OTA_VALIDATE_FAILED, "ESP_ERR_OTA_VALIDATE_FAILED")
        hw.log("set_boot %s" % self._label)
        if self._label == "factory":
            _save_otadata([None, None], "otadata erase")
            return
        idx = self._info[1] - 0x10
        ents = _otadata()
        a = _active(ents)
        state = "new" if _ROLLBACK else "undefined"
        if a is None:
            ents[0] = {"seq": idx + 1, "state": state}
        else:
            seq, i = ents[a]["seq"], 0
            while seq > (idx + 1) % _N_OTA + i * _N_OTA:
                i += 1
            ents[1 - a] = {"seq": (idx + 1) % _N_OTA + i * _N_OTA, "state": state}
        _save_otadata(ents, "otadata %s" % self._label)

    def get_next_update(self):
        # esp_ota_get_next_update_partition(): the OTA slot after this one, never itself
        otas = [n for n in _order if n.startswith("ota_")]
        if not otas:
            raise OSError(errno.ENOENT)
        if self._label in otas:
            nxt = otas[(otas.index(self._label) + 1) % len(otas)]
        else:
            nxt = otas[0]
        if nxt == self._label:
            raise OSError(errno.ENOENT)
        return Partition(nxt)

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        if not _ROLLBACK:
            raise _err(_ERR_NOT_FOUND, "ESP_ERR_NOT_FOUND")
        ents = _otadata()
        a = _active(ents)
        if a is None or not _RUNNING.startswith("ota_"):
            raise _err(_ESP_FAIL, "ESP_FAIL")  # "Running firmware is factory"
        if ents[a]["state"] == "pending" and _label_of(ents[a]["seq"]) == _RUNNING:
            ents[a]["state"] = "valid"
            hw.log("confirm %s" % _RUNNING)
            _save_otadata(ents, "otadata valid")


# -- NVS -------------------------------------------------------------------------------------

_pending = []  # [(namespace, key, value)] in the order set, until commit()


def _committed():
    return hw.read_json("nvs.json", None) or {}


class NVS:
    def __init__(self, namespace):
        if len(namespace) > 15:
            raise _err(_ERR_NVS_KEY_TOO_LONG, "ESP_ERR_NVS_KEY_TOO_LONG")
        self._ns = namespace

    def _key(self, key):
        if len(key) > 15:
            raise _err(_ERR_NVS_KEY_TOO_LONG, "ESP_ERR_NVS_KEY_TOO_LONG")
        return key

    def _set(self, key, value):
        self._key(key)
        hw.op("nvs set %s" % key)  # a cut here loses the uncommitted value
        _pending.append((self._ns, key, value))

    def _get(self, key):
        self._key(key)
        for ns, k, v in reversed(_pending):  # noqa: B007 (v is used after the loop)
            if ns == self._ns and k == key:
                break
        else:
            v = _committed().get(self._ns, {}).get(key)
        if v is None:
            raise _err(_ERR_NVS_NOT_FOUND, "ESP_ERR_NVS_NOT_FOUND")
        return v

    def set_i32(self, key, value):
        self._set(key, ["i32", int(value)])

    def get_i32(self, key):
        v = self._get(key)
        if v[0] != "i32":
            raise _err(_ERR_NVS_TYPE_MISMATCH, "ESP_ERR_NVS_TYPE_MISMATCH")
        return v[1]

    def set_blob(self, key, value):
        if isinstance(value, str):
            value = value.encode()
        self._set(key, ["blob", bytes(value).hex()])

    def get_blob(self, key, buf):
        if not isinstance(buf, (bytearray, memoryview)):
            raise TypeError("object with buffer protocol required")
        v = self._get(key)
        if v[0] != "blob":
            raise _err(_ERR_NVS_TYPE_MISMATCH, "ESP_ERR_NVS_TYPE_MISMATCH")
        data = bytes.fromhex(v[1])
        if len(buf) < len(data):
            raise _err(_ERR_NVS_INVALID_LENGTH, "ESP_ERR_NVS_INVALID_LENGTH")
        buf[: len(data)] = data
        return len(data)

    def erase_key(self, key):
        self._get(key)
        self._set(key, None)

    def commit(self):
        # each key lands on its own (an NVS entry write is atomic), in the order they were set
        global _pending
        while _pending:
            ns, k, v = _pending[0]
            m = hw.op("nvs commit %s" % k)
            data = _committed()
            space = data.setdefault(ns, {})
            if v is None:
                space.pop(k, None)
            else:
                space[k] = v
            hw.write_json("nvs.json", data)
            _pending = _pending[1:]
            if m != hw.OK:
                hw.cut()


HEAP_DATA = 4
HEAP_EXEC = 1

_init_flash()
_RUNNING = _boot()
