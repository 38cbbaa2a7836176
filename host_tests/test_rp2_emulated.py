"""The agent on the real rp2 firmware, run instruction by instruction by rp2040js.

The EXOPROV_PICO_PPP firmware (`exoprov build --firmware rp2`, the agent frozen in) boots in
the emulator (tools/harness/rp2emu) from a flash image kept in a file; its UART1 carries PPP to
a user-space peer and a TUN device in a network namespace of the test's own, relayed to the
real server on loopback. The whole story: first boot (LittleFS formatted), provisioning
through the raw REPL, activation, a signed 256 KiB application bundle downloaded in Range
requests, verified, staged on LittleFS, applied, reset into it, confirmed; then regenerate and
re-activation. Power cuts at flash erase/program operations of an update (a sample here, all
of them in `make powercut`) restart from the image and always boot a whole bundle.
"""

import json

import pytest

from tools.harness import rp2emu

_why = rp2emu.missing() or rp2emu.ppp_missing()
pytestmark = pytest.mark.skipif(
    _why is not None,
    reason=f"{_why} (EXOPROV_MICROPYTHON=... EXOPROV_RP2040_BOOTROM=... make test)",
)
if _why is None:
    from tools.harness.rp2emu import powercut
    from tools.harness.rp2emu.ppp import PppPeer
    from tools.harness.rp2emu.story import Story

KIB = 1024
BUNDLE = 256 * KIB


@pytest.fixture(scope="module")
def fw():
    return rp2emu.firmware(say=print)


@pytest.fixture
def peer(server):
    p = PppPeer(forward=[server.port]).start()
    yield p
    p.close()


def test_whole_story_on_the_emulated_pico(fw, server, peer, tmp_path, record_property):
    st = Story(server)
    flash = tmp_path / "flash.img"
    sn = st.sn("sn-pico-1")
    line = st.upload(st.bundle(BUNDLE))
    _, figures = st.provision(flash, fw, st.config(sn, [line]), measure=True)

    # activation, a download in Range requests, verify, stage, apply, reset into the bundle
    rc, pico = st.power_on(flash, peer)
    log = pico.text()
    assert rc == rp2emu.RC_RESET, log[-3000:]
    assert "exoprov factory application" in log
    assert "-> active" in log and "signature of firmware-2 by fw verified" in log, log[-3000:]
    assert "progress firmware-2 %d / %d" % (BUNDLE, BUNDLE) in log, log[-3000:]
    assert "restarting into the new content" in log
    ranges = [x for x in log.splitlines() if "progress firmware-2" in x]  # one per Range GET
    assert len(ranges) == BUNDLE // (64 * KIB), ranges
    start, active = pico.lines[0], pico.line_at("-> active")
    figures.update(powercut.figures(pico))
    figures["mhz"] = pico.exit["mhz"]

    # the bundle starts whole and the agent confirms it
    rc, pico = st.power_on(flash, peer)
    log = pico.text()
    assert rc == 0, log[-3000:]
    assert "exoprov bundle 2.0 running, payload whole" in log, log[-3000:]
    assert "update firmware-2 confirmed" in log, log[-3000:]

    # a new CIK on the server: the old one is refused, the device activates again
    st.enable(sn)
    rc, pico = st.power_on(flash, peer)
    log = pico.text()
    assert rc == 0, log[-3000:]
    assert "exoprov bundle 2.0 running, payload whole" in log, log[-3000:]
    assert "CIK refused (401)" in log and "-> active" in log, log[-3000:]
    assert "up to date" in log
    print("FIGURES", json.dumps(figures), "range requests", len(ranges), start, active)
    record_property("figures", json.dumps(figures))


def test_power_cuts_during_an_update_sample(fw, server, peer, tmp_path):
    """Three cuts (before an erase, torn through a program, the last operation before the
    reset) of one flow with a small bundle; `make powercut` runs every operation."""
    res = powercut.run(fw, server, peer, tmp_path, size=8 * KIB, sample=3, say=print)
    assert res["total"] >= 3 and res["ok"] == res["total"], res["failures"]


def test_exoprov_deploy_through_mpremote_on_a_pty(fw, tmp_path):
    """`exoprov deploy` (mpremote) against the emulated Pico's UART REPL on a pty."""
    import os
    import pty
    import subprocess
    import sys
    import threading
    import tty

    from tools.harness.rp2emu.__main__ import relay

    flash = tmp_path / "flash.img"
    master, slave = pty.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    picos, stop = [], threading.Event()

    def power():  # the board: powered on again after each reset, from the same flash
        image = fw
        while not stop.is_set():
            pico = rp2emu.Pico(flash, image, stdout=subprocess.PIPE)
            image = None
            picos.append(pico)
            if relay(pico, master) != rp2emu.RC_RESET:
                return

    t = threading.Thread(target=power, daemon=True)
    t.start()
    mpremote = [sys.executable, "-m", "mpremote", "connect", port]
    try:
        for _ in range(30):  # until the REPL answers (boot, LittleFS formatted)
            r = subprocess.run([*mpremote, "exec", "print(7 * 6)"], capture_output=True,
                               text=True, timeout=60)  # fmt: skip
            if "42" in r.stdout:
                break
        assert "42" in r.stdout, r.stdout + r.stderr
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps({"server": "http://10.0.0.1:8080", "vendor": "v",
                                   "model": "m", "net": "ppp"}))  # fmt: skip
        r = subprocess.run(
            [sys.executable, "-m", "exoprov.cli", "deploy", "--board", "rp2", "--port", port,
             "--out", str(tmp_path / "build"), str(cfg)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert r.returncode == 0 and f"deployed to rp2 on {port}" in r.stdout, r.stdout + r.stderr
        code = "import os, json; print(sorted(os.listdir('/')), open('/app.ptr').read().split(),"
        code += " json.load(open('/config.json'))['net'])"
        for _ in range(10):  # the board resets after the copy: wait for it again (a Ctrl-C
            try:  # that comes while it boots is lost, as on a board: mpremote waits, try again)
                r = subprocess.run([*mpremote, "exec", code], capture_output=True, text=True,
                                   timeout=30)  # fmt: skip
            except subprocess.TimeoutExpired:
                continue
            if "app.ptr" in r.stdout:
                break
        # what deploy copied, and the record the agent (main.py) wrote once it started
        files = "['app.ptr', 'config.json', 'exoprov.rec', 'lib', 'main.py']"
        assert f"{files} ['-', '-', 'ok'] ppp" in r.stdout, r.stdout + r.stderr
        assert len(picos) >= 2  # deploy reset the Pico, which came up again
    finally:
        stop.set()
        for pico in picos:
            pico.stop()
        t.join(30)
        os.close(master)
        os.close(slave)
