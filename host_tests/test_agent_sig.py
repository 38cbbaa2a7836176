"""agent/sig.py (Ed25519, RFC 8032 vectors, the pure-Python path against `cryptography`),
the `pubkeys` configuration, and updater.check() (signatures, no downgrades) on fake content.
The pure-Python check and the configuration also run under the MicroPython unix port."""

import base64
import hashlib
import json
import os
import subprocess
import sys

import pytest
from agentkit import MICROPYTHON, ROOT, FakeProvision
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from exoprov.fleet import signing

from agent import config, sig, store, updater
from agent.api import Api
from agent.http import Conn

# RFC 8032 7.1: TEST 1, 2, 3 and SHA(abc): (secret key, public key, message, signature)
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]
L = (1 << 252) + 27742317777372353535851937790883648493


def raw_pub(key):
    return base64.b64decode(signing.public_line("k", key).split(":")[1])


def cases():
    """(pub, msg, sig, expected) hex triples: the RFC vectors, random multi-block messages,
    and forgeries a verifier must refuse (every field tampered, S + L, non-canonical R)."""
    out = []
    rnd = [os.urandom(n) for n in (1, 64, 111, 112, 127, 128, 200, 1000)]
    keys = [Ed25519PrivateKey.generate() for _ in rnd]
    good = [(pk, m, s) for _, pk, m, s in RFC8032]
    good += [(raw_pub(k).hex(), m.hex(), k.sign(m).hex()) for k, m in zip(keys, rnd, strict=True)]
    for pk, m, s in good:
        out.append((pk, m, s, True))
        b = bytes.fromhex(s)
        for i in (0, 31, 32, 63):  # R and S, first and last byte
            out.append((pk, m, (b[:i] + bytes([b[i] ^ 1]) + b[i + 1 :]).hex(), False))
        out.append((pk, (bytes.fromhex(m) + b"x").hex(), s, False))
        p = bytearray.fromhex(pk)
        p[3] ^= 4
        out.append((p.hex(), m, s, False))
        big = int.from_bytes(b[32:], "little") + L  # same point, S not reduced: malleable
        out.append((pk, m, (b[:32] + big.to_bytes(32, "little")).hex(), False))
    pk, m, s = good[0]
    out.append((pk, m, s[:-2], False))  # 63 bytes
    out.append((pk[:-2], m, s, False))  # a 31-byte key
    out.append(("ff" * 32, m, s, False))  # y >= p: no point
    return out


CASES = cases()


def test_rfc8032_vectors_pure_and_library():
    for sk, pk, m, s in RFC8032:
        k = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(sk))
        assert raw_pub(k).hex() == pk and k.sign(bytes.fromhex(m)).hex() == s
        args = bytes.fromhex(pk), bytes.fromhex(m), bytes.fromhex(s)
        assert sig._verify(*args) and sig.verify(*args)


def test_pure_and_library_agree_on_good_and_forged():
    for pk, m, s, want in CASES:
        args = bytes.fromhex(pk), bytes.fromhex(m), bytes.fromhex(s)
        assert sig._verify(*args) is want, (pk, m, s)
        assert sig.verify(*args) is want, (pk, m, s)


def test_pure_sha512_matches_hashlib():
    for n in (0, 1, 55, 111, 112, 127, 128, 129, 239, 240, 256, 1000):
        d = os.urandom(n)
        assert sig._sha512(d) == hashlib.sha512(d).digest(), n
        # the message in parts (as _verify hashes R, A and M), split across block boundaries
        for cut in {0, n // 3, n - 1 if n else 0}:
            parts = (d[:cut], memoryview(d)[cut : cut + 100], d[cut + 100 :])
            assert sig._sha512(*parts) == hashlib.sha512(d).digest(), (n, cut)


def test_verify_without_cryptography_falls_back_to_pure(tmp_path):
    # a CPython without the package: the import fails, the pure check answers
    (tmp_path / "cryptography").mkdir()
    (tmp_path / "cryptography" / "__init__.py").write_text("raise ImportError('absent')\n")
    pk, m, s, _ = CASES[0]
    code = (
        "import sys; sys.path[:0] = [%r, %r]\nfrom agent import sig\n"
        "a = bytes.fromhex(%r), bytes.fromhex(%r), bytes.fromhex(%r)\n"
        "bad = a[0], a[1] + b'x', a[2]\n"
        "print(sig.verify(*a), sig.verify(*bad), 'cryptography.hazmat' in sys.modules)"
    ) % (str(tmp_path), str(ROOT), pk, m, s)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["True", "False", "False"], r.stderr


MP_SCRIPT = r"""
import sys, json, hashlib
from binascii import hexlify, unhexlify as u
from agent import sig, config
assert not hasattr(hashlib, "sha512")  # the point of the pure SHA-512
data = json.load(open(sys.argv[1]))
for pk, m, s, want in data["cases"]:
    assert sig.verify(u(pk), u(m), u(s)) is want, (pk, m, s)
for m, d in data["sha"]:
    assert sig._sha512(u(m)) == u(d), m
    m = u(m)
    assert sig._sha512(m[:5], memoryview(m)[5:130], m[130:]) == u(d), m
for lines, want in data["pubkeys"]:
    try:
        got = {k: hexlify(v).decode() for k, v in config.pubkeys(lines).items()}
    except config.BadConfig as e:
        got = e.args[0]
    assert got == want, (lines, got, want)
print("ok", len(data["cases"]))
"""

GOOD_LINE = "rel-2026.a_b:" + "A" * 43 + "="  # 32 zero bytes
KEY2 = bytes(range(32))
PUBKEYS = [
    ([GOOD_LINE], {"rel-2026.a_b": "00" * 32}),
    (
        [GOOD_LINE, "new:" + base64.b64encode(KEY2).decode()],
        {"rel-2026.a_b": "00" * 32, "new": KEY2.hex()},
    ),
    (["nocolon"], "pubkeys: each must be 'NAME:<base64 of 32 bytes>'"),
    ([":" + "A" * 43 + "="], "pubkeys: each must be 'NAME:<base64 of 32 bytes>'"),
    (["a b:" + "A" * 43 + "="], "pubkeys: each must be 'NAME:<base64 of 32 bytes>'"),
    (["k:" + "A" * 40 + "=="], "pubkeys: each must be 'NAME:<base64 of 32 bytes>'"),
    (["k:" + "A" * 42 + "!="], "pubkeys: each must be 'NAME:<base64 of 32 bytes>'"),
    (["k:" + "A" * 44], "pubkeys: each must be 'NAME:<base64 of 32 bytes>'"),
    ([5], "pubkeys: each must be 'NAME:<base64 of 32 bytes>'"),
    ([GOOD_LINE, GOOD_LINE], "pubkeys: rel-2026.a_b given twice"),
    ([], "pubkeys: empty (leave it out to accept unsigned content)"),
]


def _pubkeys(lines):
    try:
        return {k: v.hex() for k, v in config.pubkeys(lines).items()}
    except config.BadConfig as e:
        return e.args[0]


def test_pubkeys_lines_checked():
    for lines, want in PUBKEYS:
        assert _pubkeys(lines) == want, lines


def test_micropython_verify_sha512_and_pubkeys(tmp_path):
    sha = [(m.hex(), hashlib.sha512(m).hexdigest()) for m in map(os.urandom, (0, 111, 112, 300))]
    data = {"cases": CASES, "sha": sha, "pubkeys": PUBKEYS}
    (tmp_path / "d.json").write_text(json.dumps(data))
    (tmp_path / "t.py").write_text(MP_SCRIPT)
    env = dict(os.environ, MICROPYPATH=f"{ROOT}:.frozen")
    r = subprocess.run(
        [MICROPYTHON, str(tmp_path / "t.py"), str(tmp_path / "d.json")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0 and r.stdout.split() == ["ok", str(len(CASES))], r.stderr


@pytest.mark.parametrize(
    "extra,err",
    [
        ({"pubkeys": "k:abc"}, "pubkeys: must be a list"),
        ({"pubkeys": [GOOD_LINE], "allow_unverified": True}, "allow_unverified: cannot be"),
        ({"verify_retries": -1}, "verify_retries: must not be negative"),
    ],
)
def test_config_keys(tmp_path, extra, err):
    cfg = {"server": "http://h", "vendor": "v", "model": "m", **extra}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    with pytest.raises(config.BadConfig, match=err):
        config.load(str(tmp_path / "c.json"))


def test_config_defaults_and_zero_retries(tmp_path):
    (tmp_path / "c.json").write_text('{"server": "http://h", "vendor": "v", "model": "m"}')
    cfg = config.load(str(tmp_path / "c.json"))
    assert cfg["pubkeys"] is None and cfg["verify_retries"] == 3
    (tmp_path / "c.json").write_text(
        json.dumps(
            {
                "server": "http://h",
                "vendor": "v",
                "model": "m",
                "verify_retries": 0,
                "pubkeys": [GOOD_LINE],
            }
        )  # fmt: skip
    )
    cfg = config.load(str(tmp_path / "c.json"))
    assert cfg["verify_retries"] == 0 and cfg["pubkeys"] == {"rel-2026.a_b": bytes(32)}


# -- updater.check: signatures and downgrades, on the in-process fake server ---------------


class Keys:
    def __init__(self, *names):
        self.k = {n: Ed25519PrivateKey.generate() for n in names}

    def cfg(self, *names, model="m"):
        return dict(config.defaults(), model=model, pubkeys={n: raw_pub(self.k[n]) for n in names})

    def meta(self, name, cid, data, ver, model="m", rollback=False, size=None, over=()):
        """The meta `content upload --sign` writes; `over` then changes fields of it."""
        sha = hashlib.sha256(data).hexdigest()
        size = len(data) if size is None else size
        f = {"sha256": sha, "version": ver}
        f.update(signing.sign(name, self.k[name], model, cid, ver, size, sha, rollback))
        f.update(over)
        return "&".join("%s=%s" % kv for kv in f.items() if kv[1] is not None)


def fake(inst=None):
    srv = FakeProvision()
    rec = store.new()
    rec["cik"], rec["state"], rec["inst"] = srv.cik, "active", inst
    api = Api(Conn("h", 80, False, 5000, None, connect=srv), "v", "m")
    return srv, rec, api


def put(srv, cid, data, meta, ts=1700000000):
    srv.contents[cid] = {"data": data, "ts": ts, "meta": meta}


def cand(api, rec):
    return updater.pick(api, rec["cik"], api.list(rec["cik"], "firmware"), rec)


def check(api, rec, cfg):
    c = cand(api, rec)
    updater.check(c, rec, cfg)
    return c


DATA = b"image-2.0" * 1000


def test_right_key_passes_and_is_verified_by_sig():
    keys = Keys("a")
    srv, rec, api = fake()
    put(srv, "firmware-2", DATA, keys.meta("a", "firmware-2", DATA, "2.0"))
    assert check(api, rec, keys.cfg("a"))[:5] == (
        "firmware-2", len(DATA), 1700000000, hashlib.sha256(DATA).hexdigest(), "2.0"
    )  # fmt: skip


@pytest.mark.parametrize(
    "case,match",
    [
        ("wrong key, same name", "bad signature"),
        ("unknown key name", "not signed by a key in pubkeys"),
        ("no signature", "not signed by a key in pubkeys"),
        ("signature not hex", "bad signature"),
        ("other model replayed", "bad signature"),
        ("other content id replayed", "bad signature"),
        ("blob changed, sha256 meta to match", "bad signature"),
        ("version changed", "bad signature"),
        ("size changed", "bad signature"),
        ("rollback=1 added", "bad signature"),
        ("no version", "needs a version"),
    ],
)
def test_forged_or_replayed_refused(case, match):
    keys = Keys("a", "evil")
    srv, rec, api = fake({"id": "firmware-1", "ver": "1.0", "ts": 1})
    m = keys.meta
    other = b"evil" * 100
    meta = {
        "wrong key, same name": lambda: m("evil", "firmware-2", DATA, "2.0", over={"key": "a"}),
        "unknown key name": lambda: m("evil", "firmware-2", DATA, "2.0"),
        "no signature": lambda: m("a", "firmware-2", DATA, "2.0", over={"sig": None, "key": None}),
        "signature not hex": lambda: m("a", "firmware-2", DATA, "2.0", over={"sig": "zz" * 64}),
        "other model replayed": lambda: m("a", "firmware-2", DATA, "2.0", model="m2"),
        "other content id replayed": lambda: m("a", "firmware-9", DATA, "2.0"),
        "blob changed, sha256 meta to match": lambda: m(
            "a", "firmware-2", DATA, "2.0", over={"sha256": hashlib.sha256(other).hexdigest()}
        ),
        "version changed": lambda: m("a", "firmware-2", DATA, "2.0", over={"version": "2.1"}),
        "size changed": lambda: m("a", "firmware-2", DATA, "2.0", size=len(DATA) - 1),
        "rollback=1 added": lambda: m("a", "firmware-2", DATA, "2.0", over={"rollback": "1"}),
        "no version": lambda: "sha256=" + hashlib.sha256(DATA).hexdigest(),
    }[case]()
    put(srv, "firmware-2", other if case.startswith("blob") else DATA, meta)
    with pytest.raises(updater.Refused, match=match):
        check(api, rec, keys.cfg("a"))
    assert srv.requests[-1][2].get("info")  # refused on the meta: nothing fetched


def test_key_rotation_either_configured_key():
    keys = Keys("old", "new")
    srv, rec, api = fake()
    put(srv, "firmware-2", DATA, keys.meta("new", "firmware-2", DATA, "2.0"))
    check(api, rec, keys.cfg("old", "new"))
    with pytest.raises(updater.Refused, match="not signed by a key"):
        check(api, rec, keys.cfg("old"))
    put(srv, "firmware-2", DATA, keys.meta("old", "firmware-2", DATA, "2.0"))
    check(api, rec, keys.cfg("old", "new"))
    with pytest.raises(updater.Refused, match="not signed by a key"):
        check(api, rec, keys.cfg("new"))


@pytest.mark.parametrize("signed", [False, True])
def test_downgrade_refused_unless_rollback(signed):
    keys = Keys("a")
    cfg = keys.cfg("a") if signed else dict(config.defaults(), model="m")
    srv, rec, api = fake({"id": "firmware-2", "ver": "2.0", "ts": 1700000500})
    old = b"old" * 100
    meta = keys.meta("a", "firmware-1", old, "1.9.9")
    put(srv, "firmware-1", old, meta if signed else meta.split("&sig=")[0])
    c = cand(api, rec)
    assert c[0] == "firmware-1"  # the only content offered, older: picked to be refused
    with pytest.raises(updater.Refused, match="1.9.9 is older than the installed 2.0"):
        updater.check(c, rec, cfg)
    meta = keys.meta("a", "firmware-1", old, "1.9.9", rollback=True)
    put(srv, "firmware-1", old, meta if signed else "sha256=%s&version=1.9.9&rollback=1" % (
        hashlib.sha256(old).hexdigest()))  # fmt: skip
    check(api, rec, cfg)  # allowed
    put(srv, "firmware-2", DATA, keys.meta("a", "firmware-2", DATA, "2.0"))
    assert cand(api, rec) is None  # the installed version is back on offer: up to date


def test_versions_compare_as_dotted_numbers():
    n = updater.newer
    assert n(("1.10.0", 0), ("1.9.2", 9)) and not n(("1.9.2", 9), ("1.10.0", 0))
    assert n(("2", 0), ("1.99", 0)) and n(("1.0.1", 0), ("1.0", 0))
    assert not n(("1.0", 5), ("1.0", 1))  # same version: not newer, whatever the time
    assert n(("1.0-rc2", 0), ("1.0-rc1", 0))  # a non-numeric part: compared as text
    assert n((None, 5), ("1.0", 1))  # without two versions, the upload times decide


def test_sig_module_imported_only_with_pubkeys():
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from agent import updater\n"
        "c = ('firmware-2', 5, 1, 'a' * 64, '2.0', {})\n"
        "updater.check(c, {'inst': None}, {'model': 'm', 'pubkeys': None})\n"
        "print('agent.sig' in sys.modules)"
    ) % str(ROOT)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", r.stderr
