"""The server's secret key (`--secret-key-file`): lookup hashes and sealed secrets.

What the database keeps of a credential is either a lookup hash or a sealed value, so that a
copy of the database (file, WAL, dump, backup) gives away no usable credential:

- Lookup hashes are plain SHA-256. Every credential the server checks (CIKs, vendor tokens,
  dashboard session ids, jsonp tokens) is 160 bits or more from `secrets`, so a digest cannot
  be turned back into the credential by guessing, and a key would add nothing; keeping the
  key out of lookups also lets the key rotate without the credentials (an activated device's
  CIK is known to nobody but the device).
- What the Provision API must show again (a vendor's token for `GET
  /provision/admin/auth/<id>`, a vendor's CIK for `exoprov admin add-vendor --if-missing`) is
  sealed: AES-256-GCM under the key, with the row it belongs to as associated data (a sealed
  value copied into another row does not open there). A device's CIK is never stored: it is
  drawn at its activation and only its hash is kept.

The key file holds one key per line (base64url of 32 bytes), the first one sealing; the others
only open what they sealed before a rotation (`exoprov admin rotate-secret-key`). It is created
0600 at first start when missing. A sealed value names its key: `s1.<key id>.<base64url of
nonce + ciphertext>`, which neither a hex credential nor anything written by an earlier release
can look like.
"""

import base64
import binascii
import hashlib
import os
import secrets

PREFIX = "s1."
_KEY_BYTES = 32
_NONCE_BYTES = 12


class SecretKeyError(Exception):
    """A key file that cannot be used (missing key, bad line, wrong mode), or a sealed value
    whose key is not in it. The message names the file, never a key."""


def lookup_hash(secret):
    """The digest a credential is looked up by (see the module docstring for why unkeyed)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def is_sealed(value):
    return isinstance(value, str) and value.startswith(PREFIX)


def sealed_with(value):
    """The key id a sealed value names ('' when it is not one)."""
    return value[len(PREFIX) :].split(".", 1)[0] if is_sealed(value) else ""


def key_id(key):
    return hashlib.sha256(b"exoprov secret key id\0" + key).hexdigest()[:12]


def _b64(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_key():
    return secrets.token_bytes(_KEY_BYTES)


class Keyring:
    """The keys of one key file: `seal` with the first, `open` with whichever sealed."""

    def __init__(self, keys, path=None):
        if not keys:
            raise SecretKeyError(f"secret key file {path}: no key in it")
        self.path = path
        self.keys = list(keys)
        self._by_id = {key_id(k): k for k in self.keys}
        self._mtime = _mtime(path)

    @property
    def current_id(self):
        return key_id(self.keys[0])

    @property
    def ids(self):
        return list(self._by_id)

    def _fresh(self):
        """Another process (`exoprov admin rotate-secret-key`) may have rewritten the file
        while this server runs: take its keys before sealing, or when a value names a key
        this ring does not have."""
        if self.path is None or _mtime(self.path) == self._mtime:
            return
        other = read(self.path)
        self.keys, self._by_id, self._mtime = other.keys, other._by_id, other._mtime

    def seal(self, plaintext, context):
        """`plaintext` (str) sealed for the row named by `context` (str)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._fresh()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        data = AESGCM(self.keys[0]).encrypt(nonce, plaintext.encode(), context.encode())
        return f"{PREFIX}{self.current_id}.{_b64(nonce + data)}"

    def open(self, sealed, context):
        """The plaintext of `sealed` (as sealed for `context`); SecretKeyError when its key is not
        in the file or it was not sealed for this row."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not is_sealed(sealed):
            raise SecretKeyError("not a sealed value")
        try:
            kid, body = sealed[len(PREFIX) :].split(".", 1)
            raw = _unb64(body)
        except (ValueError, binascii.Error):
            raise SecretKeyError("malformed sealed value")
        if kid not in self._by_id:
            self._fresh()
        key = self._by_id.get(kid)
        if key is None:
            raise SecretKeyError(f"secret key file {self.path} lacks key {kid}")
        try:
            data = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise SecretKeyError("sealed value does not open (altered, or sealed for another row)")
        return data.decode()


def _mtime(path):
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def read(path):
    """The Keyring of an existing key file; SecretKeyError if it is unusable."""
    path = str(path)
    try:
        with open(path) as f:
            text = f.read()
        st = os.stat(path)
    except OSError as exc:
        raise SecretKeyError(f"secret key file {path}: {exc.strerror}")
    if st.st_mode & 0o077:
        raise SecretKeyError(
            f"secret key file {path} is mode {st.st_mode & 0o777:04o}: others may read it; "
            "chmod 600 it"
        )
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = _unb64(line)
        except (ValueError, binascii.Error):
            key = b""
        if len(key) != _KEY_BYTES:
            raise SecretKeyError(f"secret key file {path}: line {n} is not a key")
        keys.append(key)
    return Keyring(keys, path)


def write(path, keys, replace=True):
    """Replace the key file with `keys` (first seals) atomically: a new 0600 file renamed over
    the old one and synced, so that a crash leaves either the old or the new file whole.
    replace=False: FileExistsError when there is a file already (two servers starting at
    once on one database must not each make their own key)."""
    path = str(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    text = "# exoprov secret key: back it up apart from the database; first line seals\n"
    text += "".join(_b64(k) + "\n" for k in keys)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        _unlink(tmp)
    _sync_dir(path)
    return Keyring(list(keys), path)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _sync_dir(path):
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path, create=True):
    """The Keyring of `path`; a new key file (0600, its directory 0700 when made here) when
    it is missing and `create`."""
    path = str(path)
    if not os.path.exists(path):
        if not create:
            raise SecretKeyError(f"secret key file {path} does not exist")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700, exist_ok=True)
        try:
            return write(path, [new_key()], replace=False)
        except FileExistsError:  # another worker or instance made it meanwhile
            pass
    return read(path)


def default_path(db):
    """Where the key lives unless `--secret-key-file` or $EXOPROV_SECRET_KEY_FILE says: beside
    a SQLite file (`<db>.key`); for PostgreSQL, in the user's configuration directory, which
    every instance on this host shares (instances on other hosts need a copy)."""
    env = os.environ.get("EXOPROV_SECRET_KEY_FILE")
    if env:
        return env
    text = str(db)
    if text.startswith(("postgresql://", "postgres://")):
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(
            os.path.expanduser("~"), ".config"
        )
        return os.path.join(base, "exoprov", "secret.key")
    return text + ".key"


class Sealing:
    """What both storage engines share of the key: `store.keys` (a Keyring, set when the
    server or an admin command opens the store) seals what a row must show again."""

    keys = None

    def sealed(self, value, context):
        if value is None:
            return None
        if self.keys is None:
            raise SecretKeyError("no secret key loaded")
        return self.keys.seal(value, context)

    def opened(self, value, context):
        if value is None:
            return None
        if self.keys is None:
            raise SecretKeyError("no secret key loaded")
        return self.keys.open(value, context)
