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
