"""CPython gateway board (Raspberry Pi or any Linux): private file storage, atomic file slot.

- Storage: `<state_dir>/state.json`, 0600 in a 0700 directory; temp file, fsync, rename,
  fsync of the directory. Loosened permissions are refused (the record holds the CIK).
- Slot: `<install_path>.new` is written and fsynced, then `os.replace`d onto `install_path`;
  the previous file is kept as `<install_path>.prev` (hard link) for rollback. An optional
  `apply_cmd` (string, split like a shell would, or a list) runs with the new path as its last
  argument (hand the image to RAUC/SWUpdate, restart a service...); if it fails the previous
  file is put back.
"""

import os
import shlex
import subprocess
import sys
import time


def _fsync_dir(path):
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Board:
    name = "linux"
    block = 4096  # the journal's resume points: chunk is a multiple of it
    buffer = 4096  # download buffer (a gateway has the memory)
    cpuinfo = "/proc/cpuinfo"
    machine_id = "/etc/machine-id"

    def __init__(self, config):
        d = config.get("state_dir")
        if not d or not isinstance(d, str):
            raise ValueError("state_dir: missing (a directory for the agent's state)")
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
        except OSError as e:
            raise OSError("state_dir: cannot create %s (%s)" % (d, e.strerror))
        self.path = os.path.join(d, "state.json")
        for p, want in ((d, 0o700), (self.path, 0o600)):
            try:
                mode = os.stat(p).st_mode & 0o777
            except FileNotFoundError:
                continue
            if mode & 0o077:
                raise OSError(
                    "state_dir: %s has mode %03o, refusing to keep a CIK there (chmod %03o %s)"
                    % (p, mode, want, p)
                )
        self.install = config.get("install_path") or os.path.join(d, "installed.bin")
        self.stage = self.install + ".new"
        self.prev = self.install + ".prev"
        cmd = config.get("apply_cmd")
        if isinstance(cmd, str):
            cmd = shlex.split(cmd)
        if cmd is not None and (not cmd or not all(isinstance(c, str) for c in cmd)):
            raise ValueError("apply_cmd: must be a command string or a list of strings")
        self.apply_cmd = cmd
        self.apply_timeout = config.get("apply_timeout", 600)
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
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _fsync_dir(self.path)

    # -- slot
    def _close(self):
        f, self._f = self._f, None
        if f:
            f.close()

    def slot_begin(self, size):
        self._close()
        os.makedirs(os.path.dirname(os.path.abspath(self.install)), exist_ok=True)
        st = os.statvfs(os.path.dirname(os.path.abspath(self.install)))
        have = os.path.getsize(self.stage) if os.path.exists(self.stage) else 0
        if st.f_bavail * st.f_frsize < size - have:
            raise OSError("slot: no room for %d bytes next to %s" % (size, self.install))
        fd = os.open(self.stage, os.O_RDWR | os.O_CREAT, 0o600)  # keeps bytes: resumable
        self._f = os.fdopen(fd, "r+b", buffering=0)

    def slot_erase(self):
        self._f.truncate(0)

    def slot_write(self, offset, buf):
        self._f.seek(offset)
        while buf:
            buf = buf[self._f.write(buf) :]

    def slot_read(self, offset, buf):
        self._f.seek(offset)
        return self._f.readinto(buf) or 0

    def slot_finish(self, size):
        self._f.truncate(size)
        os.fsync(self._f.fileno())
        self._close()

    def slot_apply(self):
        self._close()
        had = os.path.exists(self.install)
        if had:
            if os.path.exists(self.prev):
                os.remove(self.prev)
            os.link(self.install, self.prev)  # the old inode survives the replace below
        os.replace(self.stage, self.install)
        _fsync_dir(self.install)
        if not self.apply_cmd:
            return
        try:
            r = subprocess.run(
                list(self.apply_cmd) + [self.install], timeout=self.apply_timeout, check=False
            )
            bad = r.returncode != 0 and "exit code %d" % r.returncode
        except (OSError, subprocess.TimeoutExpired) as e:
            bad = type(e).__name__
        if bad:
            self.slot_rollback()
            raise OSError("apply_cmd failed (%s); previous content restored" % bad)

    def slot_confirm(self):
        # The staged file is renamed by slot_apply(): still there, the apply never happened
        # (a reset came first). The previous copy stays as .prev for a manual rollback.
        if os.path.exists(self.stage):
            raise OSError("slot: the new content was never applied")

    def slot_rollback(self):
        if os.path.exists(self.prev):
            os.replace(self.prev, self.install)
        elif os.path.exists(self.install):
            os.remove(self.install)  # there was nothing before the update
        _fsync_dir(self.install)

    # -- network, clock, identity
    def network_up(self, timeout_ms):
        pass  # the OS brings the network up (systemd: After=network-online.target)

    def ticks_ms(self):
        return int(time.monotonic() * 1000)

    def sleep_ms(self, ms):
        time.sleep(ms / 1000)

    def time(self):
        return int(time.time())

    def unique_id(self):
        try:
            with open(self.cpuinfo) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k.strip() == "Serial" and v.strip().strip("0"):
                        return v.strip().lower()  # Raspberry Pi SoC serial
        except OSError:
            pass
        try:
            with open(self.machine_id) as f:
                mid = f.read().strip()
        except OSError:
            mid = ""
        if not mid:
            raise OSError("sn: no Raspberry Pi serial or /etc/machine-id; set sn in the config")
        return mid

    def reset(self):
        sys.exit(3)
