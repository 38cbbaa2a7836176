"""The emulated Pico: the project's rp2 firmware run by rp2040js (node), its flash in a file.

    fw = firmware()                       # cached `exoprov build --firmware rp2` (UF2, .bin)
    pico = Pico(flash, fw, ppp=peer.port) # one power-on: node runner.mjs (one process)
    pico.expect(b">>> "); pico.raw_exec("print(1)"); pico.wait()  # -> exit code (3: reset)

What it needs, each from the environment (`missing()` names what is not there):
  EXOPROV_MICROPYTHON     a MicroPython tree (v1.28) with the rp2 port's submodules
  EXOPROV_RP2040_BOOTROM  the RP2040 boot ROM: a 16 KiB binary, or demo/bootrom.ts of the
                          rp2040js repository (Raspberry Pi's code: never in this repository)
  EXOPROV_RP2_BUILD       optional: the build folder to keep (default: one per tree in the
                          temp dir), so that a change rebuilds only what it touches
  node + npm, cmake, arm-none-eabi-gcc; rp2040js is installed by `npm install` here
  (package.json pins it) into node_modules/, git-ignored.
"""

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
BOARD = "EXOPROV_PICO_PPP"
VARIANT = "UART"  # the UART console: USB CDC costs three times the cycles in the emulator
HZ = 125_000_000  # the Pico's clk_sys; the runner counts 8 ns per cycle
FS_BASE = 2 * 1024 * 1024 - 1408 * 1024  # MICROPY_HW_FLASH_STORAGE_BASE of a 2 MiB Pico
RC_RESET, RC_CUT = 3, 77
_LINE = re.compile(rb"rp2emu: line (\d+) (\d+) (.*)")
_OP = re.compile(rb"rp2emu: op (\d+) (\w+) (\d+) (\d+) (\d+)")
_EXIT = re.compile(
    rb"rp2emu: exit cycles=(\d+) sim_s=([\d.]+) wall_s=([\d.]+) mhz=([\d.]+) busy_mhz=([\d.]+)"
)


def missing():
    """-> a one-line reason the emulated Pico cannot run here, or None."""
    mp = os.environ.get("EXOPROV_MICROPYTHON")
    rom = os.environ.get("EXOPROV_RP2040_BOOTROM")
    if not mp or not rom:
        return (
            "the emulated Pico needs EXOPROV_MICROPYTHON (a MicroPython tree with the rp2 "
            "port's submodules) and EXOPROV_RP2040_BOOTROM (rp2040js's demo/bootrom.ts)"
        )
    if not (Path(mp) / "lib" / "pico-sdk" / "README.md").is_file():
        return f"EXOPROV_MICROPYTHON={mp}: lib/pico-sdk is not checked out"
    if not Path(rom).is_file():
        return f"EXOPROV_RP2040_BOOTROM={rom}: no such file"
    for tool in ("node", "npm", "cmake", "arm-none-eabi-gcc"):
        if not shutil.which(tool):
            return (
                f"{tool} not found (the emulated Pico needs node, npm, cmake, gcc-arm-none-eabi)"
            )
    return None


def ppp_missing():
    """-> why the PPP peer cannot run here (it needs root and /dev/net/tun), or None."""
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun: the emulated Pico's PPP peer needs a TUN device"
    if os.geteuid() != 0:
        return "the emulated Pico's PPP peer needs root (a network namespace and a TUN device)"
    return None


def node_modules():
    """Install rp2040js (the version package.json pins) next to the runner, once."""
    if not (HERE / "node_modules" / "rp2040js" / "package.json").is_file():
        r = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if r.returncode:
            raise RuntimeError(f"npm install rp2040js failed: {r.stderr.strip()[-300:]}")
    return HERE / "node_modules"


def source_key(mp):
    h = hashlib.sha256()
    files = [ROOT / "manifest.py", ROOT / "tools" / "build.py"]
    for pkg in ("agent", "boards"):
        files += sorted((ROOT / pkg).glob("*.py"))
    files += sorted((ROOT / "tools" / "firmware" / "rp2" / BOARD).iterdir())
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    head = subprocess.run(["git", "-C", str(mp), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    h.update(head.encode())
    return h.hexdigest()[:16]


def firmware(mp=None, say=lambda *a: None):
    """The EXOPROV_PICO_PPP (UART) firmware with the agent frozen in: -> Path of its .bin.
    Cached in the temp dir by the sha256 of what goes into it; the build folder is kept
    (per tree), so a change rebuilds only what it touches."""
    from exoprov.build import build_rp2

    mp = Path(mp or os.environ["EXOPROV_MICROPYTHON"]).resolve()
    tmp = Path(tempfile.gettempdir())
    out = tmp / f"exoprov-rp2-fw-{source_key(mp)}" / "firmware.uf2"
    if not out.with_suffix(".bin").exists():
        tree = hashlib.sha256(str(mp).encode()).hexdigest()[:8]
        keep = os.environ.get("EXOPROV_RP2_BUILD") or tmp / f"exoprov-rp2-build-{tree}"
        build_rp2(mp, BOARD, out, say=say, variant=VARIANT, build_dir=keep)
    return out.with_suffix(".bin")


def bootrom():
    return os.environ["EXOPROV_RP2040_BOOTROM"]


class Pico:
    """One power-on of the emulated Pico, until it resets, is cut or is stopped."""

    def __init__(self, flash, fw=None, ppp=None, cut_op=None, torn=False, cut_cycles=None,
                 max_seconds=None, quiet_ops=False, stdin=None, stdout=None):  # fmt: skip
        cmd = ["node", str(HERE / "runner.mjs"), "--bootrom", bootrom(), "--flash", str(flash)]
        cmd += ["--stamp"]
        if fw:
            cmd += ["--firmware", str(fw)]
        if ppp:
            cmd += ["--ppp", f"127.0.0.1:{ppp}"]
        if cut_op:
            cmd += ["--cut-op", str(cut_op)] + (["--torn"] if torn else [])
        if cut_cycles:
            cmd += ["--cut-cycles", str(cut_cycles)]
        if max_seconds:
            cmd += ["--max-seconds", str(max_seconds)]
        if quiet_ops:
            cmd += ["--quiet-ops"]
        node_modules()
        self.out = bytearray()  # the console (UART0)
        self.lines = []  # (cycles, sim_us, text) per console line
        self.ops = []  # (n, kind, addr, length, cycles) per flash erase/program
        self.exit = None  # {cycles, sim_s, wall_s, mhz}
        self.err = []
        self._cv = threading.Condition()
        self.proc = subprocess.Popen(
            cmd, stdin=stdin or subprocess.PIPE, stdout=stdout or subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self._threads = [threading.Thread(target=self._read_err, daemon=True)]
        if stdout is None:
            self._threads.append(threading.Thread(target=self._read_out, daemon=True))
        for t in self._threads:
            t.start()

    def _read_out(self):
        while True:
            data = self.proc.stdout.read1(65536)
            if not data:
                break
            with self._cv:
                self.out += data
                self._cv.notify_all()

    def _read_err(self):
        for raw in self.proc.stderr:
            raw = raw.rstrip(b"\n")
            with self._cv:
                m = _LINE.match(raw)
                if m:
                    self.lines.append((int(m[1]), int(m[2]), m[3].decode("latin1")))
                elif m := _OP.match(raw):
                    self.ops.append((int(m[1]), m[2].decode(), int(m[3]), int(m[4]), int(m[5])))
                elif m := _EXIT.match(raw):
                    self.exit = dict(cycles=int(m[1]), sim_s=float(m[2]), wall_s=float(m[3]),
                                     mhz=float(m[4]), busy_mhz=float(m[5]))  # fmt: skip
                else:
                    self.err.append(raw.decode("latin1"))
                self._cv.notify_all()

    def text(self):
        return self.out.decode("latin1")

    def expect(self, what, timeout=300, start=0):
        """Wait for bytes `what` on the console (after offset start); -> offset after it.
        Raises TimeoutError (with the console's tail) or EOFError when the Pico stopped."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                i = self.out.find(what, start)
                if i >= 0:
                    return i + len(what)
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._threads):
                    raise EOFError(f"the Pico stopped (rc {self.proc.returncode}) before "
                                   f"{what!r}: ...{self.text()[-1500:]}")  # fmt: skip
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {what!r} in {timeout} s: ...{self.text()[-1500:]}")
                self._cv.wait(min(left, 0.5))

    def write(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def raw_exec(self, code, timeout=120):
        """Run code through the raw REPL's paste mode with its flow control, as mpremote does;
        -> (stdout, stderr) text."""
        self.write(b"\r\x03\x03")
        time.sleep(0.2)
        start = len(self.out)
        self.write(b"\x01")
        start = self.expect(b"raw REPL; CTRL-B to exit\r\n>", timeout, start)
        self.write(b"\x05A\x01")
        start = self.expect(b"R\x01", timeout, start)
        with self._cv:
            while len(self.out) < start + 2:
                self._cv.wait(1)
            window = int.from_bytes(self.out[start : start + 2], "little")
        start += 2
        src, sent, credit = code.encode(), 0, window
        deadline = time.monotonic() + timeout
        while sent < len(src):
            with self._cv:
                while True:
                    grants = self.out[start:].count(b"\x01")
                    if self.out.find(b"\x04", start) >= 0:
                        raise RuntimeError("raw paste: the device ended the transfer")
                    if grants or credit:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError("raw paste: no flow-control credit")
                    self._cv.wait(0.5)
                start = len(self.out)
            credit += grants * window
            n = min(credit, len(src) - sent)
            self.write(src[sent : sent + n])
            sent += n
            credit -= n
        self.write(b"\x04")
        start = self.expect(b"\x04", timeout, start)  # the end of the code acknowledged
        end = self.expect(b"\x04>", timeout, start)
        out, _, err = self.out[start : end - 2].decode("latin1").partition("\x04")
        self.write(b"\x02")
        return out, err

    def wait(self, timeout=600):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        for t in self._threads:
            t.join(10)
        return rc

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self._threads:
            t.join(10)

    def line_at(self, text):
        """-> (cycles, sim_us) of the first console line containing text, or None."""
        with self._cv:
            for cyc, us, line in self.lines:
                if text in line:
                    return cyc, us
        return None
