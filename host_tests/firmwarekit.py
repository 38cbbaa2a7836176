"""A MicroPython unix-port binary with agent/ and boards/unix.py frozen in, 32-bit (the pointer
size of ESP32 and RP2040), built once by `exoprov build --firmware unix` from the MicroPython
1.28 tarball in ../shared/micropython/ (beside the repository, as in CI).

    frozen_build(bits=32)  -> Path of the binary; cached in the temp dir under a key made of
                              the sha256 of agent/, boards/, manifest.py, tools/build.py and
                              the tarball, so a rerun with nothing changed is instant
    frozen_cmd(binary, config, heap=None)  -> (argv, env, cwd) to run the agent from it
    frozen32()             the 32-bit binary for a session-scoped fixture (fails, saying
                           why, when the sources are not beside the repository)

No MICROPYPATH is needed: agent and boards are found among the frozen modules (a stray
MICROPYPATH from the environment is removed so the tree's sources cannot shadow them).
"""

import hashlib
import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARBALL = ROOT.parent / "shared" / "micropython" / "micropython-1.28.0-min.tar.gz"


def source_key(tarball=TARBALL, bits=32):
    h = hashlib.sha256(b"bits=%d\n" % bits)
    files = [ROOT / "manifest.py", ROOT / "tools" / "build.py", Path(tarball)]
    for pkg in ("agent", "boards"):
        files += sorted((ROOT / pkg).glob("*.py"))
    for f in files:
        h.update(str(f.relative_to(ROOT) if f.is_relative_to(ROOT) else f.name).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def frozen_build(bits=32, tarball=TARBALL):
    from exoprov.build import build_firmware

    cache = Path(tempfile.gettempdir()) / f"exoprov-firmware-{source_key(tarball, bits)}"
    binary = cache / f"micropython{bits}"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    part = cache / f".{binary.name}.{os.getpid()}"
    build_firmware("unix", tarball, bits, "unix", part, say=lambda *a: None)
    os.replace(part, binary)  # another process building the same key lands the same file
    return binary


def frozen_cmd(binary, config, heap=None):
    env = dict(os.environ)
    env.pop("MICROPYPATH", None)
    argv = [str(binary)] + (["-X", f"heapsize={heap}"] if heap else [])
    return argv + ["-m", "agent", str(config)], env, str(Path(config).parent)


def frozen32():
    if not TARBALL.exists():
        pytest.fail(f"the MicroPython sources are missing: {TARBALL}")
    return frozen_build(32)
