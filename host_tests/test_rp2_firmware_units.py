"""The pieces of the rp2 firmware build and of the emulated Pico that run without the
MicroPython tree, the toolchain or the emulator: the UF2 writer, board lookup and one-line
build errors, the PPP peer's framing and negotiation, deploy's configuration for a PPP Pico."""

import json
import socket
import struct

import pytest
from exoprov import build, deploy

from tools.harness.rp2emu import ppp


def test_uf2_blocks_cover_the_image_at_the_flash_base():
    data = bytes(range(256)) * 3 + b"tail"
    img = build.uf2(data)
    assert len(img) == 4 * 512
    got = b""
    for n in range(4):
        blk = img[n * 512 : (n + 1) * 512]
        magic0, magic1, flags, addr, size, num, total, family = struct.unpack_from("<8I", blk)
        assert (magic0, magic1, struct.unpack_from("<I", blk, 508)[0]) == (
            0x0A324655, 0x9E5D5157, 0x0AB16F30,
        )  # fmt: skip
        assert flags == 0x2000 and family == 0xE48BFF56  # the RP2040's family id
        assert (addr, size, num, total) == (0x10000000 + 256 * n, 256, n, 4)
        got += blk[32 : 32 + size]
    assert got[: len(data)] == data and got[len(data) :] == bytes(256 - 4)


def test_the_projects_rp2_board_is_found_and_an_unknown_one_named(tmp_path):
    assert (
        build.rp2_board_dir(tmp_path, "EXOPROV_PICO_PPP") == build.RP2_BOARDS / "EXOPROV_PICO_PPP"
    )
    with pytest.raises(build.BuildError, match="no rp2 board NOPE .*EXOPROV_PICO_PPP"):
        build.rp2_board_dir(tmp_path, "NOPE")


def test_rp2_build_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "fw.uf2"
    rc = build.main(["--firmware", "rp2", "--micropython", str(tmp_path), "-o", str(out)])
    assert rc == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("not a MicroPython source tree (no py/mpconfig.h)")
    )
    mp = tmp_path / "mp"
    (mp / "py").mkdir(parents=True)
    (mp / "py" / "mpconfig.h").write_text("")
    (mp / "ports" / "unix").mkdir(parents=True)
    for sub in build.RP2_SUBMODULES:
        (mp / "lib" / sub).mkdir(parents=True)
    rc = build.main(["--firmware", "rp2", "--micropython", str(mp), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert "submodules not checked out: pico-sdk, tinyusb, lwip, mbedtls, micropython-lib" in err
    assert not out.exists()


def test_deploy_takes_a_ppp_pico_without_wifi(tmp_path):
    cfg = {"server": "http://10.0.0.1:8080", "vendor": "v", "model": "m", "net": "ppp"}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    assert deploy.read_config(path, "rp2")["board"] == "rp2"
    with pytest.raises(deploy.DeployError, match="wifi_ssid: missing"):
        deploy.read_config(path, "esp32")  # an ESP32's network is Wi-Fi


# -- the PPP peer, on a socket pair instead of the emulator's UART (no TUN needed) ------------


class Link:
    def __init__(self):
        self.peer = ppp.PppPeer()
        self.peer._link, self.dev = socket.socketpair()
        self.dev.settimeout(5)
        self.de = ppp.Deframer()
        self.got = []

    def send(self, proto, code, ident, body=b""):
        raw = ppp.frame(proto, struct.pack(">BBH", code, ident, 4 + len(body)) + body)
        for proto, payload in ppp.Deframer().feed(raw):
            self.peer._packet(proto, payload)

    def recv(self):
        while not self.got:
            self.got += self.de.feed(self.dev.recv(4096))
        return self.got.pop(0)


def test_ppp_frames_escape_control_bytes_and_check_the_fcs():
    raw = ppp.frame(0x0021, b"\x7e\x7d\x01abc")
    assert raw[0] == raw[-1] == 0x7E and b"\x7e" not in raw[1:-1] and b"\x01" not in raw
    de = ppp.Deframer()
    assert de.feed(raw) == [(0x0021, b"\x7e\x7d\x01abc")]
    bad = bytearray(raw)
    bad[5] ^= 0x40
    assert de.feed(bytes(bad)) == [] and de.bad == 1
    # address/control and protocol compressed away (ACFC, PFC), as lwIP sends once agreed
    body = b"\x21hello"
    body += struct.pack("<H", ppp.fcs16(body) ^ 0xFFFF)
    assert de.feed(b"\x7e" + body + b"\x7e") == [(0x21, b"hello")]


def test_ppp_peer_negotiates_lcp_then_gives_the_device_its_address():
    link = Link()
    opts = bytes.fromhex("0206000000000506be2e979107020802")  # ACCM magic PFC ACFC
    link.send(ppp._LCP, ppp._CONF_REQ, 1, opts)
    assert link.recv() == (ppp._LCP, struct.pack(">BBH", ppp._CONF_ACK, 1, 4 + len(opts)) + opts)
    proto, req = link.recv()
    assert proto == ppp._LCP and req[0] == ppp._CONF_REQ and req[2:4] == b"\x00\x04"
    link.send(ppp._LCP, ppp._CONF_ACK, req[1])
    assert link.peer._lcp_up
    # IPCP: 0.0.0.0 and DNS asked for -> Nak with ours; then Ack; then our own request
    ask = bytes((3, 6, 0, 0, 0, 0, 129, 6, 0, 0, 0, 0))
    link.send(ppp._IPCP, ppp._CONF_REQ, 1, ask)
    proto, nak = link.recv()
    assert (proto, nak[0]) == (ppp._IPCP, ppp._CONF_NAK)
    assert nak[4:] == bytes((3, 6, 10, 0, 0, 2, 129, 6, 10, 0, 0, 1))
    proto, ours = link.recv()
    assert (proto, ours[0], ours[4:]) == (ppp._IPCP, ppp._CONF_REQ, bytes((3, 6, 10, 0, 0, 1)))
    assert not link.peer.ip_up.is_set()
    link.send(ppp._IPCP, ppp._CONF_REQ, 2, nak[4:])
    proto, ack = link.recv()
    assert (proto, ack[0], ack[1]) == (ppp._IPCP, ppp._CONF_ACK, 2)
    assert link.peer.ip_up.is_set()
    # a protocol the peer does not speak (IPv6CP) is rejected, not ignored
    link.send(0x8057, ppp._CONF_REQ, 1, bytes.fromhex("010a0011223344556677"))
    proto, rej = link.recv()
    assert (proto, rej[0], rej[4:6]) == (ppp._LCP, ppp._PROTO_REJ, b"\x80\x57")
    # an IPCP option it does not know is rejected before anything is nakked
    link.send(ppp._IPCP, ppp._CONF_REQ, 3, bytes((2, 6, 0, 0x2D, 0x0F, 0x01, 3, 6, 0, 0, 0, 0)))
    proto, rej = link.recv()
    assert (proto, rej[0], rej[4:]) == (ppp._IPCP, ppp._CONF_REJ, bytes((2, 6, 0, 0x2D, 0x0F, 1)))


# -- boards/rp2.py with "net": "ppp", in the MicroPython unix port over a fake network.PPP ------

PPP_FAKE = """
import json, machine, network, time
calls = []

class Pin:
    def __init__(self, n):
        self.n = n

class UART:
    def __init__(self, n, baudrate, tx, rx, rxbuf):
        calls.append(["UART", n, baudrate, tx.n, rx.n, rxbuf])

class PPP:
    SEC_PAP = 1
    def __init__(self, stream):
        calls.append(["PPP"])
        self.st = 0
        self.plan = list(PLAN)
    def connect(self, **kw):
        calls.append(["connect", kw])
        self.st = 3
    def status(self):
        if self.st == 3 and self.plan:
            self.st = self.plan.pop(0)
        return self.st
    def isconnected(self):
        return self.st == 4

machine.UART, machine.Pin = UART, Pin
if HAVE_PPP:
    network.PPP = PPP
from boards.rp2 import Board
b = Board(CFG)
res = []
for _ in range(2):
    try:
        b.network_up(300)
        res.append("up")
    except OSError as e:
        res.append([e.args[0], e.args[1]])
print(json.dumps({"calls": calls, "res": res}))
"""


def ppp_run(tmp_path, plan, have=True, **cfg):
    from fakes.hwkit import make_hw, out, run_mp

    conf = {"state_dir": str(tmp_path), "net": "ppp", **cfg}
    head = f"PLAN = {plan!r}\nHAVE_PPP = {have!r}\nCFG = {json.dumps(conf)}\n"
    return out(run_mp(make_hw(tmp_path, chip="cyw43"), head + PPP_FAKE))


def test_ppp_network_comes_up_on_the_configured_uart_once(tmp_path):
    got = ppp_run(tmp_path, [3, 3, 4], ppp_uart=0, ppp_tx=12, ppp_rx=13, ppp_baud=9600)
    assert got["res"] == ["up", "up"]
    # one UART and one PPP for the board's life (its finaliser would hang up), dialled once
    assert got["calls"] == [["UART", 0, 9600, 12, 13, 2048], ["PPP"], ["connect", {}]]


def test_ppp_defaults_pap_and_a_failed_dial_retried(tmp_path):
    got = ppp_run(tmp_path, [-6, 4], ppp_user="u", ppp_password="p")  # PPPERR_CONNECT, then up
    assert got["res"] == ["up", "up"]
    pap = ["connect", {"security": 1, "user": "u", "key": "p"}]
    assert got["calls"] == [["UART", 1, 115200, 4, 5, 2048], ["PPP"], pap, pap]


def test_ppp_errors_are_one_line(tmp_path):
    got = ppp_run(tmp_path / "a", [-7], ppp_user="u")  # PPPERR_AUTHFAIL: terminal
    assert got["res"][0] == [1, "rp2: the PPP peer refused the credentials"]
    got = ppp_run(tmp_path / "b", [])  # connecting for ever
    assert got["res"][0] == [110, "rp2: PPP not up in 300 ms (status 3)"]
    got = ppp_run(tmp_path / "c", [4], have=False)
    assert got["res"][0] == [22, "rp2: this firmware has no network.PPP (net: ppp)"]
