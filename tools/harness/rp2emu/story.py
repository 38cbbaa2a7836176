"""The emulated Pico's story, shared by host_tests/test_rp2_emulated.py and the power-cut driver:
a fresh model on the real server, a signed application bundle, a blank Pico provisioned
through its raw REPL, and power-ons until the agent is done.

    st = Story(server)                 # a ServerProcess (tools/harness/launch.py) or the tests'
    line = st.upload(st.bundle(256 * 1024))
    pico, figures = st.provision(flash, fw, st.config(sn, [line]), measure=True)
    rc, pico = st.power_on(flash, peer)  # 3: it reset (applied), 0: the agent ended (once)
"""

import hashlib
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

import requests
from exoprov import build
from exoprov.fleet import signing

from . import RC_RESET, ROOT, Pico
from .ppp import HOST_IP

KIB = 1024
_n = itertools.count(int(time.time()) % 100000)
BOOT = (ROOT / "boards" / "rp2_boot.py").read_text()
# The factory application for the emulated Pico: rp2_app's job (the frozen agent on
# /config.json), plus the lowest gc.mem_free() seen at every board call. /app.py comes before
# the frozen `app` on sys.path; the agent stays the frozen one.
FACTORY = """import gc
import boards.rp2 as b
low = [gc.mem_free()]
def _wrap(f, last=False):
    def w(*a):
        low[0] = min(low[0], gc.mem_free())
        if last:
            print("exoprov mem_free low", low[0])
        return f(*a)
    return w
for n in ("load", "save", "slot_begin", "slot_write", "slot_read", "slot_finish",
          "slot_apply", "slot_confirm", "network_up"):
    setattr(b.Board, n, _wrap(getattr(b.Board, n)))
b.Board.reset = _wrap(b.Board.reset, True)
def main():
    print("exoprov factory application")
    from agent.main import main as run
    try:
        return run(["/config.json"])
    finally:
        print("exoprov mem_free low", low[0])
"""
# The bundle's application: checks its own payload (a bundle must start whole), says so.
APP2 = """def main():
    import hashlib
    h = hashlib.sha256()
    with open(__file__.rsplit("/", 1)[0] + "/data/blob.bin", "rb") as f:
        while True:
            b = f.read(1024)
            if not b:
                break
            h.update(b)
    ok = "".join("%%02x" %% x for x in h.digest()) == %r
    print("exoprov bundle 2.0 running, payload", "whole" if ok else "BROKEN")
    from agent.main import main as run
    return run(["/config.json"])
"""
MEASURE = """import gc, hashlib, time
from agent import sig
pub = bytes.fromhex(%r)
sg = bytes.fromhex(%r)
msg = bytes.fromhex(%r)
t = time.ticks_us(); ok = sig._verify(pub, msg, sg); t1 = time.ticks_us()
buf = bytearray(4096)
h = hashlib.sha256()
t2 = time.ticks_us()
for i in range(64):
    h.update(buf)
t3 = time.ticks_us()
gc.collect()
print("MEASURE", ok, time.ticks_diff(t1, t), time.ticks_diff(t3, t2), gc.mem_free())
"""


def ed25519_sample():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    k = Ed25519PrivateKey.generate()
    msg = os.urandom(100)
    pub = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return pub.hex(), k.sign(msg).hex(), msg.hex()


class Story:
    def __init__(self, server, vendor=None):
        self.server = server
        self.vendor = vendor or server.add_vendor("pico%d" % next(_n))
        self.s = requests.Session()
        self.s.headers["X-Exosite-CIK"] = self.vendor["cik"]
        self.model = "pico%d" % next(_n)
        self._keys = tempfile.TemporaryDirectory(prefix="exoprov-pico-keys-")  # gone with self
        self.keys = Path(self._keys.name)
        self._post("/provision/manage/model/", data={"model": self.model, "code": "tmpl"})

    def _post(self, path, **kw):
        r = self.s.post(self.server.url + path, timeout=60, **kw)
        if r.status_code not in (200, 204, 205):
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:200]}")
        return r

    def sn(self, sn):
        self._post(f"/provision/manage/model/{self.model}/", data={"sn": sn})
        self.enable(sn, owner=True)
        return sn

    def enable(self, sn, owner=False):
        """With owner: enable; without: regenerate (a new CIK; the old one gets 401)."""
        data = {"enable": "true"}
        if owner:
            data["owner"] = self.vendor["rid"]
        self._post(f"/provision/manage/model/{self.model}/{sn}", data=data)

    def status(self, sn):
        r = self.s.get(f"{self.server.url}/provision/manage/model/{self.model}/{sn}", timeout=60)
        return r.text.split(",")[0]

    @staticmethod
    def bundle(size):
        """-> an application bundle of exactly `size` bytes: APP2 and a random payload."""
        data = os.urandom(size)
        for _ in range(3):
            app = APP2 % hashlib.sha256(data).hexdigest()
            raw = build.make_bundle([("app.py", app.encode()), ("data/blob.bin", data)])
            if len(raw) == size:
                return raw
            data = data[: len(data) - (len(raw) - size)] if len(raw) > size else data
        raise AssertionError("bundle size did not converge")

    def upload(self, data, cid="firmware-2", version="2.0"):
        """Upload data as content cid signed by a fresh key `fw`; -> its pubkeys line."""
        if not (self.keys / "fw.key").exists():
            signing.generate("fw", self.keys)
        line = (self.keys / "fw.pub").read_text().strip()
        kname, key = signing.load(self.keys / "fw.key")
        sha = hashlib.sha256(data).hexdigest()
        meta = {"sha256": sha, "version": version}
        meta.update(signing.sign(kname, key, self.model, cid, version, len(data), sha))
        url = f"/provision/manage/content/{self.model}/"
        self._post(url, data={"id": cid, "meta": "&".join(f"{k}={v}" for k, v in meta.items())})
        self._post(url + cid, data=data, headers={"Content-Type": "application/octet-stream"})
        return line

    def config(self, sn, pubkeys):
        return {
            "server": f"http://{HOST_IP}:{self.server.port}",
            "vendor": self.vendor["vendor"],
            "model": self.model,
            "sn": sn,
            "board": "rp2",
            "net": "ppp",
            "version": "1.0",
            "once": True,
            "pubkeys": pubkeys,
            "timeout": 60,
            "retry": 5,
            "chunk": 64 * KIB,
        }

    @staticmethod
    def provision(flash, fw, cfg, measure=False):
        """First power-on of a blank Pico (the firmware formats LittleFS), then what `exoprov
        deploy` puts on a board whose firmware has the agent frozen in (/config.json, /main.py)
        written through the raw REPL, as mpremote does. -> (pico, figures)."""
        pico = Pico(flash, fw)
        try:
            pico.expect(b">>> ", timeout=900)
            files = {"/config.json": json.dumps(cfg), "/main.py": BOOT, "/app.py": FACTORY}
            # closed by `with`: MicroPython closes (and LittleFS commits) a file left open only
            # when a collection finalises it, which a reset does not wait for
            code = "".join(
                f"with open({k!r}, 'w') as f: f.write({v!r})\n" for k, v in files.items()
            )
            out, err = pico.raw_exec(code + "import os; print(sorted(os.listdir('/')))")
            if err or "'main.py'" not in out:
                raise RuntimeError(f"provisioning failed: {out} {err}")
            figures = {}
            if measure:
                out, err = pico.raw_exec(MEASURE % ed25519_sample())
                m = out.split("MEASURE", 1)[1].split() if "MEASURE" in out else None
                if err or not m or m[0] != "True":
                    raise RuntimeError(f"measure failed: {out} {err}")
                figures = {"verify_us": int(m[1]), "sha256_256k_us": int(m[2]),
                           "mem_free_idle": int(m[3])}  # fmt: skip
            pico.write(b"import machine; machine.reset()\r\n")
            rc = pico.wait(300)
            if rc != RC_RESET:
                raise RuntimeError(f"no reset (rc {rc}): {pico.err[-5:]}")
            return pico, figures
        finally:
            pico.stop()

    @staticmethod
    def power_on(flash, peer, timeout=1200, **kw):
        """One power-on with the modem link; -> (rc, pico): 3 when the Pico reset, 0 when
        the agent ended (once) and main.py gave way to the REPL, 77 when cut."""
        pico = Pico(flash, ppp=peer.port, **kw)
        try:
            pico.expect(b"\n>>> ", timeout=timeout)
            pico.stop()
            return 0, pico
        except EOFError:
            return pico.wait(30), pico
        finally:
            pico.stop()
