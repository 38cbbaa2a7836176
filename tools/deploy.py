"""`exoprov deploy`: copy the compiled agent, a board module and a configuration to a board.

    exoprov deploy --board esp32|rp2 --port PORT [--out build] [--mpremote CMD]
                   [--mpy-cross PATH] [--dry-run] CONFIG.json

Compiles agent/ and boards/ (tools/build.py), lays out the board's file system under
OUT/deploy-BOARD/ and copies it with mpremote, then resets the board:

    /lib/agent/*.mpy  /lib/boards/__init__.mpy  /lib/boards/BOARD.mpy  /config.json  /main.py
    rp2 also: /lib/app.mpy (the factory application) and /app.ptr ("- - ok": start it)

On an esp32 main.py runs the agent; on an rp2 main.py is boards/rp2_boot.py, which starts the
current application bundle. The configuration gets "board" set to BOARD; a "ca_file" that
exists on this machine is copied to the board's root and the configuration points there.
mpremote comes from --mpremote, $EXOPROV_MPREMOTE, PATH, or beside this Python.
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from exoprov import build

PROG = "exoprov deploy"
BOARDS = ("esp32", "rp2")
ESP32_MAIN = """# main.py written by `exoprov deploy`: run the agent on /config.json
from agent.main import main

main(["/config.json"])
"""


class DeployError(Exception):
    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def read_config(path, board):
    """CONFIG.json -> dict with "board" set; DeployError(code 2) naming the problem."""
    try:
        cfg = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DeployError(f"{path}: no such file", 2) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DeployError(f"{path}: cannot be read ({e.__class__.__name__})", 2) from None
    except ValueError:
        raise DeployError(f"{path}: not valid JSON", 2) from None
    if not isinstance(cfg, dict):
        raise DeployError(f"{path}: must be a JSON object", 2)
    if cfg.get("board", board) != board:
        raise DeployError(f"{path}: board is {cfg['board']!r}, not {board!r}", 2)
    # a Pico whose network is a PPP modem (boards/rp2.py, "net": "ppp") has no Wi-Fi to name
    wifi = () if board == "rp2" and cfg.get("net") == "ppp" else ("wifi_ssid",)
    for key in ("server", "vendor", "model", *wifi):
        if not isinstance(cfg.get(key), str) or not cfg[key]:
            raise DeployError(f"{path}: {key}: missing", 2)
    if cfg["server"].startswith("https:") and not cfg.get("ca_file"):
        raise DeployError(f"{path}: ca_file: required for https under MicroPython", 2)
    cfg["board"] = board
    return cfg


def find_mpremote(explicit=None):
    for cand in (explicit, os.environ.get("EXOPROV_MPREMOTE")):
        if cand:
            argv = shlex.split(cand)
            if argv and shutil.which(argv[0]):
                return [shutil.which(argv[0]), *argv[1:]]
            raise DeployError(f"mpremote not found: {cand}")
    found = shutil.which("mpremote")
    if found:
        return [found]
    beside = Path(sys.executable).parent / "mpremote"
    if beside.exists():
        return [str(beside)]
    raise DeployError("mpremote not found (pip install mpremote, or pass --mpremote CMD)")


def stage(board, cfg, out, mpy_cross):
    """Compile and lay out the board's file system under out/deploy-BOARD; -> that path."""
    out = Path(out)
    sizes = build.compile_all(out, mpy_cross)
    dest = out / f"deploy-{board}"
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "lib").mkdir(parents=True)
    for src, on_board in build.board_files(board, sizes):
        target = dest / "lib" / on_board
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / src, target)
    ca = cfg.get("ca_file")
    if ca and Path(ca).is_file():
        # a CA certificate on this machine: it goes to the board's root with the config
        shutil.copyfile(ca, dest / Path(ca).name)
        cfg = dict(cfg, ca_file="/" + Path(ca).name)
    (dest / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    if board == "rp2":
        shutil.copyfile(build.ROOT / "boards" / "rp2_boot.py", dest / "main.py")
        (dest / "app.ptr").write_text("- - ok\n")
    else:
        (dest / "main.py").write_text(ESP32_MAIN)
    os.chmod(dest / "config.json", 0o600)  # it holds the Wi-Fi password
    return dest


def commands(mpremote, port, dest, board):
    """The mpremote invocations, one per step: directories, then files per directory, reset."""
    conn = [*mpremote, "connect", port]
    groups = {}
    for path in sorted(dest.rglob("*")):
        if path.is_file():
            rel = path.relative_to(dest)
            groups.setdefault(rel.parent.as_posix(), []).append(str(path))
    dirs = sorted(d for d in groups if d != ".")
    parents = sorted({p.as_posix() for d in dirs for p in Path(d).parents if p.name} | set(dirs))
    mkdirs = "import os\nfor d in %r:\n try:\n  os.mkdir(d)\n except OSError:\n  pass" % (
        tuple(parents),
    )
    cmds = [[*conn, "exec", mkdirs]]
    for d in dirs:
        cmds.append([*conn, "fs", "cp", *groups[d], f":{d}/"])
    for src in groups.get(".", []):
        cmds.append([*conn, "fs", "cp", src, ":" + Path(src).name])
    cmds.append([*conn, "reset"])
    return cmds


def run(cmds, say=print):
    for cmd in cmds:
        say("$ " + shlex.join(cmd))
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except OSError as e:
            raise DeployError(f"cannot run {cmd[0]}: {e.strerror}") from None
        except subprocess.TimeoutExpired:
            raise DeployError(f"{' '.join(cmd[-2:])}: mpremote timed out") from None
        if r.returncode:
            lines = (r.stderr or r.stdout).strip().splitlines()
            why = lines[-1] if lines else ""
            raise DeployError(f"mpremote failed (exit {r.returncode}): {why}")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"{self.prog}: {message}\n")
        sys.exit(2)


def main(argv=None):
    ap = _Parser(prog=PROG, description="copy the agent to a board with mpremote")
    ap.add_argument("--board", required=True, choices=BOARDS)
    ap.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0 or COM3")
    ap.add_argument("--out", default="build", help="build directory (default: build)")
    ap.add_argument("--mpremote", help="mpremote command (default: from PATH)")
    ap.add_argument("--mpy-cross", help="the mpy-cross executable")
    ap.add_argument("--dry-run", action="store_true", help="build and print, copy nothing")
    ap.add_argument("config", metavar="CONFIG.json")
    args = ap.parse_args(argv)
    try:
        cfg = read_config(args.config, args.board)
        mpremote = find_mpremote(args.mpremote)
        dest = stage(args.board, cfg, args.out, build.find_mpy_cross(args.mpy_cross))
        cmds = commands(mpremote, args.port, dest, args.board)
        if args.dry_run:
            for cmd in cmds:
                print("$ " + shlex.join(cmd))
            return 0
        run(cmds)
    except build.BuildError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return 1
    except DeployError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return e.code
    print(f"deployed to {args.board} on {args.port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
