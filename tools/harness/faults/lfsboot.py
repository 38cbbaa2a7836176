"""A Pico W whose flash is a file: LittleFS2 (`os.VfsLfs2`, MicroPython's own LittleFS code) on
a block device that behaves like the RP2040's QSPI NOR flash, under the MicroPython unix port.

    micropython tools/harness/faults/lfsboot.py IMAGE format SECTORS BUNDLE
    micropython tools/harness/faults/lfsboot.py IMAGE boot [CUT MODE EVENTS]
    micropython tools/harness/faults/lfsboot.py IMAGE inspect

Run from the repository root, with host_tests/fakes (machine, network) on MICROPYPATH and
EXOPROV_FAKE_HW set (hwkit.make_hw). The flash (class Flash): 4 KiB erase sectors, programs
of any length inside one sector, erase before write enforced as NOR flash does it (a program
can only clear bits: a byte not erased first keeps old & new, and the program is logged as a
`violation`), backed by IMAGE. LittleFS is mounted at /flash with the rp2 port's geometry
(progsize 256, the flash page).

- format: a fresh file system of SECTORS sectors holding the factory state of a device in
  the field: BUNDLE (docs/bundle-format.md) unpacked into app_a by boards/rp2.py, confirmed.
- boot: one start of the Pico: main.py (boards/rp2_boot.py) with EXOPROV_ROOT=/flash, which
  starts the current bundle (its app.py runs the agent on EXOPROV_CONFIG). Every program and
  erase of the flash is one line of EVENTS; at operation CUT (0-based, -1 never) the power
  goes: MODE `before` dies before the operation, `torn` lets half of it land (the first half
  of a program, rounded to pages; the first half of a sector erased) and then dies. The death
  is SIGKILL: no `finally`, no file close, no LittleFS sync runs after it.
- inspect: mount (no cut) and print one JSON line: the record as boards/rp2.py loads it, the
  pointer file, and for each bundle directory its `.bundle` digest and the sha256 of every
  file in it; {"mount": "..."} when the file system does not mount.
"""

import os
import sys

sys.path.insert(0, ".")  # the fakes come first on MICROPYPATH (tools/harness/mpunix.py)

SECTOR = 4096
PAGE = 256
MOUNT = "/flash"


def _die():
    os.system("kill -9 $PPID")  # MicroPython has no os._exit: SIGKILL from a child shell
    while True:
        pass


class Flash:
    """The block device protocol of MicroPython's VFS (readblocks, writeblocks, ioctl), the
    extended form LittleFS uses: offsets inside a block, erase through ioctl(6)."""

    def __init__(self, path, cut=-1, mode="before", events=None):
        self.f = open(path, "r+b")
        self.f.seek(0, 2)
        self.sectors = self.f.tell() // SECTOR
        self.cut, self.mode, self.events = cut, mode, events
        self.n = 0

    def _op(self, label):
        n = self.n
        self.n += 1
        if self.events:
            with open(self.events, "a") as f:
                f.write(label + "\n")
        return n == self.cut

    def _put(self, pos, data):
        self.f.seek(pos)
        self.f.write(data)

    def readblocks(self, block, buf, off=0):
        self.f.seek(block * SECTOR + off)
        n = self.f.readinto(buf)
        if n != len(buf):
            raise OSError(5)

    def writeblocks(self, block, buf, off=None):
        if off is None:  # the basic protocol: whole sectors, each erased first
            mv = memoryview(buf)
            for i in range(len(buf) // SECTOR):
                self.ioctl(6, block + i)
                self.writeblocks(block + i, mv[i * SECTOR : (i + 1) * SECTOR], 0)
            return 0
        if block >= self.sectors or off + len(buf) > SECTOR:
            raise OSError(22)  # a program never crosses a sector
        pos = block * SECTOR + off
        cut = self._op("prog %d %d %d" % (block, off, len(buf)))
        self.f.seek(pos)
        old = self.f.read(len(buf))
        data = bytes(buf)
        if old != b"\xff" * len(old):
            with open(self.events or "/dev/null", "a") as f:
                f.write("violation prog %d %d %d\n" % (block, off, len(buf)))
            # NOR: a program clears bits only (MicroPython has no zip(strict=))
            data = bytes(old[i] & data[i] for i in range(len(data)))
        if cut:
            if self.mode == "torn":
                half = (len(data) // 2) // PAGE * PAGE or len(data) // 2
                self._put(pos, data[:half])
            _die()
        self._put(pos, data)
        return 0

    def ioctl(self, op, arg):
        if op == 5:  # block size
            return SECTOR
        if op == 4:  # block count
            return self.sectors
        if op == 6:  # erase
            if arg >= self.sectors:
                return -22
            if self._op("erase %d" % arg):
                if self.mode == "torn":
                    self._put(arg * SECTOR, b"\xff" * (SECTOR // 2))
                _die()
            self._put(arg * SECTOR, b"\xff" * SECTOR)
            return 0
        return 0  # init 1, deinit 2, sync 3


def mount(flash):
    vfs = os.VfsLfs2(flash, progsize=PAGE)
    os.mount(vfs, MOUNT)


def _sha(path):
    import hashlib
    from binascii import hexlify

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1024)
            if not b:
                break
            h.update(b)
    return hexlify(h.digest()).decode()


def _files(path, rel, out):
    for entry in os.ilistdir(path):
        name = entry[0]
        full = path + "/" + name
        if entry[1] == 0x4000:
            _files(full, rel + name + "/", out)
        else:
            out[rel + name] = _sha(full)


def inspect(image):
    import json

    from boards.rp2 import Board

    try:
        mount(Flash(image))
    except OSError as e:
        print(json.dumps({"mount": repr(e)}))
        return 0
    b = Board({"state_dir": MOUNT})
    rec = b.load()
    try:
        with open(MOUNT + "/app.ptr") as f:
            ptr = f.read()
    except OSError:
        ptr = None
    dirs = {}
    for entry in os.ilistdir(MOUNT):
        if entry[1] == 0x4000:
            files = {}
            _files(MOUNT + "/" + entry[0], "", files)
            dirs[entry[0]] = files
    got = {"record": rec.decode() if rec is not None else None, "ptr": ptr, "dirs": dirs}
    print(json.dumps(got))
    return 0


def format_(image, sectors, bundle):
    from boards.rp2 import Board

    with open(image, "wb") as f:
        for _ in range(sectors):
            f.write(b"\xff" * SECTOR)
    flash = Flash(image)
    os.VfsLfs2.mkfs(flash, progsize=PAGE)
    mount(flash)
    with open(bundle, "rb") as f:
        data = f.read()
    b = Board({"state_dir": MOUNT})
    b.slot_begin(len(data))
    b.slot_write(0, data)
    b.slot_finish(len(data))
    b.slot_apply()
    b._set_ptr("app_a", "-", "ok")  # a device in the field: its bundle confirmed long ago
    b.slot_erase()
    os.umount(MOUNT)
    return 0


def boot(image, cut, mode, events):
    mount(Flash(image, cut, mode, events))
    from boards import rp2_boot

    return rp2_boot.main() or 0


def main(argv):
    image, cmd = argv[0], argv[1]
    if cmd == "format":
        return format_(image, int(argv[2]), argv[3])
    if cmd == "inspect":
        return inspect(image)
    cut, mode, events = -1, "before", None
    if len(argv) > 2:
        cut, mode, events = int(argv[2]), argv[3], argv[4]
    return boot(image, cut, mode, events)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
