"""Signed firmware and no downgrades, the agent against the real server on both
interpreters: content signed with `exoprov.fleet.signing` (what `content upload --sign`
writes), refused or applied by the agent configured with `pubkeys`."""

import hashlib
import os

import pytest
from agentkit import INTERPS, run_agent
from exoprov.fleet import signing
from test_agent_integration import Fleet, installed, state

from agent.updater import message


class Key:
    def __init__(self, tmp, name):
        self.name = name
        self.path, _, self.line = signing.generate(name, tmp)
        self.key = signing.load(self.path)[1]

    def meta(self, model, cid, data, ver, rollback=False, **over):
        sha = hashlib.sha256(data).hexdigest()
        f = {"sha256": sha, "version": ver}
        f.update(signing.sign(self.name, self.key, model, cid, ver, len(data), sha, rollback))
        f.update(over)
        return "&".join(f"{k}={v}" for k, v in f.items())


@pytest.fixture
def fleet(server):
    f = Fleet(server, server.add_vendor())
    yield f
    f.close()


@pytest.fixture
def keys(tmp_path):
    d = tmp_path / "keys"
    d.mkdir()
    return Key(d, "rel-1"), Key(d, "rel-2"), Key(d, "evil")


def put(fleet, cid, data, meta):
    url = f"/provision/manage/content/{fleet.model}/"
    fleet.s.delete(url + cid)
    fleet.ok(fleet.s.post(url, data={"id": cid, "meta": meta}))
    hdrs = {"Content-Type": "application/octet-stream"}
    fleet.ok(fleet.s.post(url + cid, data=data, headers=hdrs))


def reported(fleet, tmp):
    with fleet.server.session(cik=state(tmp)["cik"]) as dev:
        return dev.get("/onep:v1/stack/alias?state&error").text


def config(fleet, tmp, sn, *keys, **kw):
    return fleet.config(tmp, fleet.sn(sn), pubkeys=[k.line for k in keys], **kw)


@pytest.mark.parametrize("interp", INTERPS)
def test_right_key_applied_then_confirmed(fleet, keys, tmp_path, interp):
    data = os.urandom(100_000)
    put(fleet, "firmware-2", data, keys[0].meta(fleet.model, "firmware-2", data, "2.0"))
    cfg = config(fleet, tmp_path, "sn-ok", keys[0], version="1.0")
    r = run_agent(interp, cfg)
    assert r.returncode == 3, r.stderr
    assert "signature of firmware-2 by rel-1 verified" in r.stderr
    assert installed(tmp_path) == data
    assert run_agent(interp, cfg).returncode == 0
    assert state(tmp_path)["inst"]["ver"] == "2.0"


def _forgeries(fleet, keys, data):
    """(what, content id, blob, meta, the refusal's words): each a way a server (or whoever
    holds its database) could try to get content past a device that has rel-1's key."""
    m, k1, evil = fleet.model, keys[0], keys[2]
    other = os.urandom(len(data))
    return [
        ("wrong key", evil.meta(m, "firmware-2", data, "2.0"), data, "not signed by a key"),
        ("wrong key named rel-1", evil.meta(m, "firmware-2", data, "2.0", key="rel-1"), data,
         "bad signature"),
        ("another model's signature", k1.meta("model-x", "firmware-2", data, "2.0"), data,
         "bad signature"),
        ("another content id's signature", k1.meta(m, "firmware-1", data, "2.0"), data,
         "bad signature"),
        ("blob changed, sha256 meta to match",
         k1.meta(m, "firmware-2", data, "2.0", sha256=hashlib.sha256(other).hexdigest()), other,
         "bad signature"),
        ("meta changed: version", k1.meta(m, "firmware-2", data, "2.0", version="3.0"), data,
         "bad signature"),
        ("meta changed: unsigned", "sha256=" + hashlib.sha256(data).hexdigest() + "&version=2.0",
         data, "not signed by a key"),
    ]  # fmt: skip


@pytest.mark.parametrize("interp", INTERPS)
def test_forged_content_refused_and_reported(fleet, keys, tmp_path, interp):
    data = os.urandom(30_000)
    cfg = config(fleet, tmp_path, "sn-forged", keys[0], version="1.0")
    for i, (what, meta, blob, words) in enumerate(_forgeries(fleet, keys, data)):
        put(fleet, "firmware-2", blob, meta)
        r = run_agent(interp, cfg)
        assert r.returncode == 6, (what, r.stderr)
        assert f"update refused: firmware-2: {words}" in r.stderr, (what, r.stderr)
        assert "downloading" not in r.stderr and installed(tmp_path) is None, what
        if i == 0:
            assert "state=refused" in reported(fleet, tmp_path)
            assert "error=firmware-2" in reported(fleet, tmp_path)
    # the same content, signed right: applied (nothing was remembered against it)
    put(fleet, "firmware-2", data, keys[0].meta(fleet.model, "firmware-2", data, "2.0"))
    assert run_agent(interp, cfg).returncode == 3 and installed(tmp_path) == data


@pytest.mark.parametrize("interp", INTERPS)
def test_downgrade_refused_signed_rollback_accepted(fleet, keys, tmp_path, interp):
    k1 = keys[0]
    old = os.urandom(20_000)
    cfg = config(fleet, tmp_path, "sn-down", k1, version="2.0")
    # an old image, properly signed in its day: a replay, refused
    put(fleet, "firmware-1", old, k1.meta(fleet.model, "firmware-1", old, "1.9"))
    r = run_agent(interp, cfg)
    assert r.returncode == 6, r.stderr
    assert "firmware-1: 1.9 is older than the installed 2.0: no downgrade" in r.stderr
    assert installed(tmp_path) is None and "downloading" not in r.stderr
    # rollback=1 added by the server: not in what was signed
    put(fleet, "firmware-1", old, k1.meta(fleet.model, "firmware-1", old, "1.9") + "&rollback=1")
    r = run_agent(interp, cfg)
    assert r.returncode == 6 and "bad signature" in r.stderr, r.stderr
    # the vendor signs the rollback: applied
    put(fleet, "firmware-1", old, k1.meta(fleet.model, "firmware-1", old, "1.9", rollback=True))
    r = run_agent(interp, cfg)
    assert r.returncode == 3, r.stderr
    assert installed(tmp_path) == old
    assert run_agent(interp, cfg).returncode == 0
    assert state(tmp_path)["inst"]["ver"] == "1.9"


@pytest.mark.parametrize("interp", INTERPS)
def test_downgrade_refused_without_pubkeys(fleet, tmp_path, interp):
    old = os.urandom(10_000)
    fleet.content("firmware-1", old, version="1.10")
    cfg = fleet.config(tmp_path, fleet.sn("sn-down2"), version="1.9.2")
    r = run_agent(interp, cfg)  # 1.10 > 1.9.2: an upgrade
    assert r.returncode == 3 and installed(tmp_path) == old, r.stderr
    other = tmp_path / "other"
    cfg = fleet.config(other, fleet.sn("sn-down3"), version="1.10.0")
    r = run_agent(interp, cfg)  # 1.10 < 1.10.0
    assert r.returncode == 6 and "1.10 is older than the installed 1.10.0" in r.stderr
    assert installed(other) is None


@pytest.mark.parametrize("interp", INTERPS)
def test_key_rotation(fleet, keys, tmp_path, interp):
    k1, k2 = keys[0], keys[1]
    d2, d3 = os.urandom(20_000), os.urandom(20_000)
    cfg = config(fleet, tmp_path, "sn-rot", k1, k2, version="1.0")
    put(fleet, "firmware-2", d2, k2.meta(fleet.model, "firmware-2", d2, "2.0"))  # the new key
    r = run_agent(interp, cfg)
    assert r.returncode == 3 and "by rel-2 verified" in r.stderr, r.stderr
    assert run_agent(interp, cfg).returncode == 0 and installed(tmp_path) == d2
    put(fleet, "firmware-3", d3, k1.meta(fleet.model, "firmware-3", d3, "3.0"))  # the old one
    r = run_agent(interp, cfg)
    assert r.returncode == 3 and "by rel-1 verified" in r.stderr, r.stderr
    assert installed(tmp_path) == d3


def test_message_is_the_documented_bytes():
    got = message("sensor-v2", "firmware-1.4.0", "1.4.0", 123, "ab" * 32, "0")
    want = b"exoprov-fw-v1\nsensor-v2\nfirmware-1.4.0\n1.4.0\n123\n" + b"ab" * 32 + b"\n0\n"
    assert got == want
