"""MicroPython unix port: the file-based simulator board used by tests (MicroPython os API).

Storage is `<state_dir>/state.json` (temp file + rename); the slot is a staging file next to
`install_path`, renamed into place on apply with the previous copy kept as `.prev`.
MicroPython's os has no fsync: durability is the kernel's (this board simulates, linux.py is
the one for real gateways).
"""

import os
import sys
import time


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Board:
    name = "unix"
    block = 4096  # the journal's resume points: chunk is a multiple of it
    buffer = 1024  # download buffer: any size works on a file (see config.board)

    def __init__(self, config):
        d = config.get("state_dir")
        if not d or type(d) is not str:
            raise ValueError("state_dir: missing (a directory for the agent's state)")
        d = d.rstrip("/") or "/"
        if not _exists(d):
            try:
                os.mkdir(d)
            except OSError:
                raise OSError("state_dir: cannot create %s" % d)
        self.path = d + "/state.json"
        self.install = config.get("install_path") or d + "/installed.bin"
        i = self.install.rfind("/")
        if i > 0 and not _exists(self.install[:i]):
            raise OSError("install_path: directory %s does not exist" % self.install[:i])
        self.stage = self.install + ".new"
        self.prev = self.install + ".prev"
        self._f = None

    # -- storage
    def load(self):
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except OSError:
            return None

    def save(self, data):
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, self.path)  # rename(2) replaces the old record atomically

    # -- slot
    def _close(self):
        f, self._f = self._f, None
        if f:
            f.close()

    def slot_begin(self, size):
        self._close()
        if not _exists(self.stage):
            open(self.stage, "wb").close()
        self._f = open(self.stage, "r+b")  # keeps what is there: a download resumes

    def slot_erase(self):
        self._close()
        self._f = open(self.stage, "w+b")

    def slot_write(self, offset, buf):
        self._f.seek(offset)
        self._f.write(buf)

    def slot_read(self, offset, buf):
        self._f.seek(offset)
        return self._f.readinto(buf) or 0

    def slot_finish(self, size):
        self._close()
        if os.stat(self.stage)[6] != size:
            raise OSError("slot: staged image is not %d bytes" % size)

    def slot_apply(self):
        self._close()
        if _exists(self.install):
            os.rename(self.install, self.prev)  # two renames: fine for a simulator
        os.rename(self.stage, self.install)

    def slot_confirm(self):
        # The staged file is renamed by slot_apply(): still there, the apply never happened
        # (a reset came first). The previous copy stays as .prev for a manual rollback.
        if _exists(self.stage):
            raise OSError("slot: the new content was never applied")

    def slot_rollback(self):
        if _exists(self.prev):
            os.rename(self.prev, self.install)
        elif _exists(self.install):
            os.remove(self.install)

    # -- network, clock, identity
    def network_up(self, timeout_ms):
        pass

    def ticks_ms(self):
        return time.ticks_ms()

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def time(self):
        return int(time.time())

    def unique_id(self):
        try:
            with open("/etc/machine-id") as f:
                return f.read().strip()
        except OSError:
            raise OSError("sn: no /etc/machine-id; set sn in the configuration")

    def reset(self):
        sys.exit(3)
