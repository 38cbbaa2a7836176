"""Secrets at rest: the key attached to the store at start, what a database still holds in
clear sealed or dropped, the key rotated, file modes.

A database written by an earlier release holds vendor CIKs, vendor tokens and the CIKs of
enabled, not yet activated devices in clear (`clients.secret`, `tokens.secret`). At every
start, `prepare` seals the first two under the key and drops the third (its device draws a
new CIK at activation), then has the engine rewrite its files (SQLite: VACUUM and a WAL
checkpoint that truncates; PostgreSQL: VACUUM FULL of the two tables), so that no old page
keeps a plaintext. Each row is changed only if it still holds what was read, so that two
instances starting at once on one database do not seal a value twice.
"""

import os

from . import secretkey
from .secretkey import SecretKeyError

_BATCH = 500  # rows per transaction: other processes on the database are held back briefly


async def prepare(store, key_path, seal=True):
    """Attach the key of `key_path` to `store` (creating the file when missing and nothing
    in the database is sealed yet); with `seal`, seal or drop what is still in clear.
    Returns how many rows were changed. SecretKeyError when the key file does not hold a key
    the database was sealed with."""
    rows = await store.secret_rows()
    used = {secretkey.sealed_with(r[5]) for r in rows} - {""}
    if used and not os.path.exists(key_path):
        raise SecretKeyError(
            f"secret key file {key_path} does not exist, and the database holds secrets "
            f"sealed with key {', '.join(sorted(used))}: give --secret-key-file"
        )
    keys = secretkey.load(key_path, create=True)
    missing = used - set(keys.ids)
    if missing:
        raise SecretKeyError(
            f"secret key file {key_path} lacks key {', '.join(sorted(missing))} the database "
            "was sealed with"
        )
    store.keys = keys
    if not seal:
        return 0
    changed = 0
    clear = [r for r in rows if not secretkey.is_sealed(r[5])]
    for at in range(0, len(clear), _BATCH):
        async with store.tx():
            for table, k1, k2, kind, state, secret in clear[at : at + _BATCH]:
                changed += await _seal_row(store, keys, table, k1, k2, kind, state, secret)
    if changed:
        await store.scrub()
    return changed


async def _seal_row(store, keys, table, k1, k2, kind, state, secret):
    if table == "tokens":
        new = keys.seal(secret, f"token:{k1}:{k2}")
        return await store.put_secret(table, k1, k2, secret, new)
    if kind == "vendor":
        new = keys.seal(secret, "client:" + k1)
        return await store.put_secret(table, k1, k2, secret, new)
    # a device's CIK not yet handed out: forgotten; its activation draws another
    return await store.put_secret(table, k1, k2, secret, None, drop_cik=state == "notactivated")


async def rotate(store, key_path):
    """`exoprov admin rotate-secret-key`: a new key seals, every sealed value is sealed again
    under it, and the old key leaves the file. Safe to run while servers run and to crash
    in: the file first holds both keys (new first: servers pick it up before they seal
    again), then the rows are resealed, then the file holds the new key only. Returns
    (rows resealed, old key ids, new key id)."""
    old = secretkey.read(key_path)
    new_key = secretkey.new_key()
    both = secretkey.write(key_path, [new_key] + old.keys)
    store.keys = both
    total = 0
    for _ in range(10):  # again while a running server sealed with an old key meanwhile
        n = 0
        old_rows = [
            r
            for r in await store.secret_rows()
            if secretkey.is_sealed(r[5]) and secretkey.sealed_with(r[5]) != both.current_id
        ]
        for at in range(0, len(old_rows), _BATCH):
            async with store.tx():
                for table, k1, k2, _kind, _state, secret in old_rows[at : at + _BATCH]:
                    ctx = f"token:{k1}:{k2}" if table == "tokens" else "client:" + k1
                    fresh = both.seal(both.open(secret, ctx), ctx)
                    n += await store.put_secret(table, k1, k2, secret, fresh)
        total += n
        if n == 0:
            break
    await store.scrub()
    store.keys = secretkey.write(key_path, [new_key])
    return total, old.ids, store.keys.current_id


def tighten(db, blobs_dir=None):
    """Files of an existing SQLite database made before the server's umask was 077 (its
    -wal and -shm take the database file's mode): only the owner may read them."""
    for path in (str(db), f"{db}-wal", f"{db}-shm"):
        _chmod(path, 0o600)
    if blobs_dir:
        _chmod(str(blobs_dir), 0o700)


def _chmod(path, mode):
    try:
        st = os.stat(path)
    except OSError:
        return
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        os.chmod(path, mode)
