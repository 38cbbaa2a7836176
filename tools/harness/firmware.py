"""A MicroPython unix-port binary with agent/ and boards/unix.py frozen in, built by `exoprov
build --firmware unix` from the MicroPython 1.28 tarball in ../shared/micropython/ (beside the
repository, as in CI), for the tests (host_tests/firmwarekit.py) and `make powercut`.

    frozen_build(bits=32)  -> Path of the binary; cached in the temp dir under a key made of
                              the sha256 of agent/, boards/, manifest.py, tools/build.py and
                              the tarball, so a rerun with nothing changed is instant
"""

import hashlib
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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


def frozen_build(bits=32, tarball=TARBALL, say=lambda *a: None):
    from exoprov.build import build_firmware

    cache = Path(tempfile.gettempdir()) / f"exoprov-firmware-{source_key(tarball, bits)}"
    binary = cache / f"micropython{bits}"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    part = cache / f".{binary.name}.{os.getpid()}"
    build_firmware("unix", tarball, bits, "unix", part, say=say)
    os.replace(part, binary)  # another process building the same key lands the same file
    return binary
