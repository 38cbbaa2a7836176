"""`exoprov fleet key generate` and `content upload --sign/--rollback` against the real server,
and the agent (both interpreters) taking what they wrote: NAME.pub into `pubkeys`."""

import hashlib
import os
import stat

import pytest
from agentkit import INTERPS, agent_config, run_agent
from conftest import exoprov
from exoprov.fleet.client import Client, parse_meta
from exoprov.fleet.signing import load

from agent import sig
from agent.updater import message


@pytest.fixture
def env(server, vendor, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    e = {k: v for k, v in os.environ.items() if not k.startswith("EXOPROV_")}
    e.update(HOME=str(home), EXOPROV_SERVER=server.url, EXOPROV_CIK=vendor["cik"])
    e["EXOPROV_OWNER"] = vendor["rid"]
    return e


def fleet(env, *args, rc=0):
    r = exoprov("fleet", *args, check=False, env=env)
    assert r.returncode == rc, (r.returncode, r.stdout, r.stderr)
    if rc:
        assert r.stderr.strip().splitlines()[-1].startswith("exoprov: ")
    return r


def test_key_generate_files_modes_no_overwrite_no_credentials(tmp_path):
    bare = {k: v for k, v in os.environ.items() if not k.startswith("EXOPROV_")}
    bare["HOME"] = str(tmp_path)  # no config, no credentials: none needed
    r = fleet(bare, "key", "generate", "rel-1", "--dir", tmp_path)
    key, pub = tmp_path / "rel-1.key", tmp_path / "rel-1.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    line = pub.read_text()
    assert line.endswith("\n") and line.count("\n") == 1 and line.startswith("rel-1:")
    assert line.strip() in r.stdout and "PRIVATE" not in r.stdout + r.stderr
    assert key.read_text().startswith("exoprov-key: rel-1\n-----BEGIN PRIVATE KEY-----")
    before = key.read_bytes()
    r = fleet(bare, "key", "generate", "rel-1", "--dir", tmp_path, rc=2)
    assert "exists; not overwritten" in r.stderr and key.read_bytes() == before
    r = fleet(bare, "key", "generate", "bad name", "--dir", tmp_path, rc=2)
    assert "key name" in r.stderr


def _setup(env, tmp_path, name="rel-1"):
    fleet(env, "key", "generate", name, "--dir", tmp_path)
    model = "sig" + os.urandom(4).hex()
    fleet(env, "model", "create", model, "--code", "tmpl")
    data = os.urandom(40_000)
    (tmp_path / "app.bin").write_bytes(data)
    return model, data


def test_upload_sign_writes_a_signature_the_agent_accepts(env, server, vendor, tmp_path):
    model, data = _setup(env, tmp_path)
    keyfile = tmp_path / "rel-1.key"
    r = fleet(env, "content", "upload", model, "firmware-2", tmp_path / "app.bin",
              "--version", "2.0", "--sign", keyfile)  # fmt: skip
    assert "signed with rel-1" in r.stdout
    with Client(server.url, cik=vendor["cik"]) as c:
        meta = parse_meta(c.content_info(model, "firmware-2").meta)
        sha = hashlib.sha256(data).hexdigest()
        assert meta["sha256"] == sha and meta["version"] == "2.0" and meta["key"] == "rel-1"
        pub = load(keyfile)[1].public_key().public_bytes_raw()
        msg = message(model, "firmware-2", "2.0", len(data), sha, "0")
        assert sig._verify(pub, msg, bytes.fromhex(meta["sig"]))
        # re-uploaded without --sign: the old signature does not stay with the new file
        (tmp_path / "app.bin").write_bytes(data[:-1])
        fleet(env, "content", "upload", model, "firmware-2", tmp_path / "app.bin",
              "--version", "2.0")  # fmt: skip
        meta = parse_meta(c.content_info(model, "firmware-2").meta)
        assert "sig" not in meta and "key" not in meta


def test_upload_sign_refusals_before_the_server(env, server, vendor, tmp_path):
    model, _ = _setup(env, tmp_path)
    up = ("content", "upload", model, "firmware-2", tmp_path / "app.bin")
    r = fleet(env, *up, "--sign", tmp_path / "rel-1.key", rc=2)  # no version
    assert "signed content needs --version" in r.stderr
    r = fleet(env, *up, "--version", "2.0+x", "--sign", tmp_path / "rel-1.key", rc=2)
    assert "signed content needs --version" in r.stderr
    os.chmod(tmp_path / "rel-1.key", 0o644)
    r = fleet(env, *up, "--version", "2.0", "--sign", tmp_path / "rel-1.key", rc=2)
    assert "readable by others" in r.stderr
    r = fleet(env, *up, "--version", "2.0", "--sign", tmp_path / "rel-1.pub", rc=2)
    assert "readable by others" in r.stderr or "not an unencrypted PEM" in r.stderr
    with Client(server.url, cik=vendor["cik"]) as c:
        assert c.content_list(model) == []  # nothing was created


@pytest.mark.parametrize("interp", INTERPS)
def test_cli_signed_upload_rotation_and_rollback_on_the_agent(env, server, vendor, tmp_path,
                                                               interp):  # fmt: skip
    model, data = _setup(env, tmp_path)
    fleet(env, "key", "generate", "rel-2", "--dir", tmp_path)
    fleet(env, "sn", "add", model, "sn-1")
    fleet(env, "sn", "enable", model, "sn-1")
    pubs = [(tmp_path / f"rel-{i}.pub").read_text().strip() for i in (1, 2)]
    dev = tmp_path / "dev"
    cfg = agent_config(dev, server, vendor=vendor["vendor"], model=model, sn="sn-1",
                       once=True, version="1.0", pubkeys=pubs)  # fmt: skip
    up = ("content", "upload", model)
    fleet(env, *up, "firmware-2", tmp_path / "app.bin", "--version", "2.0",
          "--sign", tmp_path / "rel-2.key")  # fmt: skip
    r = run_agent(interp, cfg)
    assert r.returncode == 3 and "by rel-2 verified" in r.stderr, r.stderr
    assert run_agent(interp, cfg).returncode == 0
    # a rollback to 1.5: the newer content withdrawn, the older one signed with --rollback
    old = os.urandom(30_000)
    (tmp_path / "old.bin").write_bytes(old)
    fleet(env, "content", "delete", model, "firmware-2")
    fleet(env, *up, "firmware-1", tmp_path / "old.bin", "--version", "1.5",
          "--sign", tmp_path / "rel-1.key")  # fmt: skip
    r = run_agent(interp, cfg)
    assert r.returncode == 6 and "no downgrade" in r.stderr, r.stderr
    fleet(env, *up, "firmware-1", tmp_path / "old.bin", "--version", "1.5", "--rollback",
          "--sign", tmp_path / "rel-1.key")  # fmt: skip
    r = run_agent(interp, cfg)
    assert r.returncode == 3 and "by rel-1 verified" in r.stderr, r.stderr
    assert (dev / "install" / "fw.bin").read_bytes() == old
