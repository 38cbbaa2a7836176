"""The server's secret key file and the sealing of what the database must show again."""

import os
import stat

import pytest

from tools.server import secretkey
from tools.server.secretkey import SecretKeyError


def test_a_missing_key_file_is_created_0600_in_a_0700_directory(tmp_path):
    old = os.umask(0o022)
    try:
        keys = secretkey.load(tmp_path / "conf" / "secret.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "conf" / "secret.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "conf").st_mode) == 0o700
    again = secretkey.load(tmp_path / "conf" / "secret.key")
    assert again.keys == keys.keys and len(keys.keys[0]) == 32
    assert list(tmp_path.joinpath("conf").iterdir()) == [tmp_path / "conf" / "secret.key"]


def test_sealed_values_open_only_for_their_row_and_key(tmp_path):
    keys = secretkey.load(tmp_path / "k")
    secret = "ab" * 20
    sealed = keys.seal(secret, "token:rid:t1")
    assert secretkey.is_sealed(sealed) and secret not in sealed
    assert secretkey.sealed_with(sealed) == keys.current_id
    assert keys.open(sealed, "token:rid:t1") == secret
    assert keys.seal(secret, "token:rid:t1") != sealed  # a fresh nonce each time
    with pytest.raises(SecretKeyError):
        keys.open(sealed, "token:rid:t2")  # copied into another row
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SecretKeyError):
        keys.open(tampered, "token:rid:t1")
    other = secretkey.Keyring([secretkey.new_key()])
    with pytest.raises(SecretKeyError) as err:
        other.open(sealed, "token:rid:t1")
    assert secret not in str(err.value)
    assert not secretkey.is_sealed(secret)


def test_a_ring_of_two_keys_seals_with_the_first_and_opens_with_both(tmp_path):
    path = tmp_path / "k"
    first = secretkey.load(path)
    old = first.seal("x" * 40, "client:r")
    both = secretkey.write(path, [secretkey.new_key()] + first.keys)
    assert both.open(old, "client:r") == "x" * 40
    assert secretkey.sealed_with(both.seal("y", "c")) == both.current_id != first.current_id
    # a ring that was loaded before the file changed picks up the new key when it seals
    assert secretkey.sealed_with(first.seal("z", "c")) == both.current_id


def test_a_key_file_others_may_read_is_refused(tmp_path):
    path = tmp_path / "k"
    secretkey.load(path)
    os.chmod(path, 0o644)
    with pytest.raises(SecretKeyError) as err:
        secretkey.read(path)
    assert "chmod 600" in str(err.value)
    path.write_text("not a key\n")
    os.chmod(path, 0o600)
    with pytest.raises(SecretKeyError):
        secretkey.read(path)


def test_lookup_hash_is_sha256():
    import hashlib

    assert secretkey.lookup_hash("abc") == hashlib.sha256(b"abc").hexdigest()
