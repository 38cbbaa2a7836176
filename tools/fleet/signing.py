"""Ed25519 signing keys and content signatures (`fleet key generate`, `content upload --sign`).

NAME.key  the private key: a line `exoprov-key: NAME` then PKCS#8 PEM (OpenSSL reads it as it
          is), mode 0600. It stays with the vendor: the server never sees it.
NAME.pub  one line `NAME:<base64 of the 32-byte public key>`: an entry of the agent's `pubkeys`.

The signature covers agent.updater.message(): model, content id, version, size, sha256 and the
rollback flag, so that none of them can be changed on the server, nor a signature replayed on
another model or content id.
"""

import base64
import os
import re
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..agent.updater import message

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
# The agent reads meta values as they are (no percent-decoding): a signed version must be
# left alone by the percent-encoding of format_meta().
_VERSION = re.compile(r"[A-Za-z0-9._~-]{1,64}\Z")
_HEAD = "exoprov-key: "


class SigningError(ValueError):
    """A key file or name that cannot be used; args[0] is one line for the user."""


def check_name(name):
    if not _NAME.match(name):
        raise SigningError(f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return name


def public_line(name, key):
    """The NAME.pub line of a private key."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{name}:{base64.b64encode(raw).decode()}"


def generate(name, directory="."):
    """Write NAME.key (0600) and NAME.pub in directory; refuses to overwrite either.
    -> (key path, pub path, the public line)."""
    check_name(name)
    d = Path(directory)
    kpath, ppath = d / f"{name}.key", d / f"{name}.pub"
    for p in (kpath, ppath):
        if p.exists():
            raise SigningError(f"{p}: exists; not overwritten")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(kpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(f"{_HEAD}{name}\n".encode() + pem)
    line = public_line(name, key)
    fd = os.open(ppath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(line + "\n")
    return kpath, ppath, line


def load(path):
    """NAME.key -> (name, private key). The name is the file's `exoprov-key:` line (else the
    file name without .key, for a PEM made by openssl genpkey -algorithm ed25519)."""
    path = Path(path)
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as e:
        raise SigningError(f"{path}: {e.strerror or e}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningError(f"{path}: readable by others; chmod 600 it")
    first = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    name = first[len(_HEAD) :].strip() if first.startswith(_HEAD) else path.stem
    check_name(name)
    try:
        key = serialization.load_pem_private_key(data, None)
    except (ValueError, TypeError):
        raise SigningError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path}: not an Ed25519 key")
    return name, key


def sign(name, key, model, cid, version, size, sha256, rollback=False):
    """-> the meta fields to store beside sha256 and version: sig, key (and rollback=1)."""
    if not version or not _VERSION.match(version):
        raise SigningError(
            "signed content needs --version, of letters, digits, '.', '_', '~' or '-'"
        )
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise SigningError("sha256 must be 64 lowercase hex digits")
    for what, v in (("model", model), ("content id", cid)):
        if not v or "\n" in v:
            raise SigningError(f"{what} {v!r} cannot be signed")
    rb = "1" if rollback else "0"
    sig = key.sign(message(model, cid, version, size, sha256, rb))
    return {"sig": sig.hex(), "key": name, **({"rollback": "1"} if rollback else {})}
