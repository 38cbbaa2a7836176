"""The third-party source trees the harnesses and tests build from, and the cached frozen
firmware: a MicroPython unix-port binary with agent/ and boards/unix.py frozen in, built by
`exoprov build --firmware unix` (for host_tests/firmwarekit.py and `make powercut`).

The trees stay outside the repository; the environment names them:

    EXOPROV_MICROPYTHON  a MicroPython checkout (a clone of a release tag of
                         micropython/micropython) or its release tarball
    EXOPROV_MPLIB        a micropython-lib checkout (micropython/micropython-lib): the
                         `requests` baseline of `make bench`

    micropython_tree()     -> Path or None (unset); a name that does not exist is an error
    mplib_requests()       -> the `requests` package folder of EXOPROV_MPLIB, or None
    skip_line(what)        -> the one line a test or harness step says when the tree is unset
    frozen_build(bits=32)  -> Path of the binary; cached in the temp dir under a key made of
                              agent/, boards/, manifest.py, tools/build.py and the tree's
                              identity, so a rerun with nothing changed is instant
"""

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = "EXOPROV_MICROPYTHON"
MPLIB_ENV = "EXOPROV_MPLIB"


class TreeError(Exception):
    pass


def _named(env):
    value = os.environ.get(env, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.exists():
        raise TreeError(f"{env}={value}: no such file or directory")
    return path.resolve()


def micropython_tree():
    """The MicroPython tree (checkout or tarball) EXOPROV_MICROPYTHON names, or None."""
    return _named(ENV)


def mplib_requests():
    """micropython-lib's `requests` package folder in the EXOPROV_MPLIB checkout, or None."""
    lib = _named(MPLIB_ENV)
    if lib is None:
        return None
    for pkg in (lib / "python-ecosys" / "requests" / "requests", lib / "requests"):
        if (pkg / "__init__.py").is_file():
            return pkg
    raise TreeError(f"{MPLIB_ENV}={lib}: not a micropython-lib checkout "
                    "(no python-ecosys/requests/requests/__init__.py)")  # fmt: skip


def skip_line(what, cmd="make test", env=ENV, tree="MicroPython"):
    return f"{what} needs a {tree} tree outside the repository ({env}=DIR {cmd})"


def _tree_identity(src):
    """Bytes that change when the tree's sources do: a tarball's sha256; a git checkout's HEAD
    and its uncommitted changes; else the version header."""
    if src.is_file():
        return hashlib.sha256(src.read_bytes()).digest()
    git = ["git", "-C", str(src)]
    head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True)
    if head.returncode == 0:
        dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"],
                               capture_output=True)  # fmt: skip
        return head.stdout + dirty.stdout
    return (src / "py" / "mpconfig.h").read_bytes()


def source_key(src, bits=32):
    h = hashlib.sha256(b"bits=%d\n%s\n" % (bits, str(src).encode()))
    h.update(_tree_identity(Path(src)))
    files = [ROOT / "manifest.py", ROOT / "tools" / "build.py"]
    for pkg in ("agent", "boards"):
        files += sorted((ROOT / pkg).glob("*.py"))
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def frozen_build(bits=32, src=None, say=lambda *a: None):
    """The binary built from src (default: EXOPROV_MICROPYTHON), cached."""
    from exoprov.build import build_firmware

    src = src or micropython_tree()
    if src is None:
        raise TreeError(f"{ENV} is not set: no MicroPython tree to build the firmware from")
    cache = Path(tempfile.gettempdir()) / f"exoprov-firmware-{source_key(src, bits)}"
    binary = cache / f"micropython{bits}"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    part = cache / f".{binary.name}.{os.getpid()}"
    build_firmware("unix", src, bits, "unix", part, say=say)
    os.replace(part, binary)  # another process building the same key lands the same file
    return binary
