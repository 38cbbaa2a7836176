"""The host end of the emulated Pico's modem link: a user-space PPP peer bridged to a TUN device.

This machine has no /dev/ppp (no pppd), so the peer is here: HDLC-like framing with the FCS
(RFC 1662), LCP and IPCP (RFC 1661, 1332), enough for lwIP's PPP client in MicroPython's
`network.PPP`. IP packets go to a TUN device that lives in a network namespace of the peer's
own (one thread of this process calls unshare(CLONE_NEWNET); the others stay in the host's),
so the kernel's TCP/IP answers the device and nothing leaves this machine:

    device 10.0.0.2 --PPP over UART1--> tun0 10.0.0.1 [namespace] --relay--> 127.0.0.1:PORT

Each port in `forward` is listened on at 10.0.0.1 inside the namespace and relayed to the
same port on the host's loopback, where the server runs. Needs root (or CAP_NET_ADMIN and
CAP_SYS_ADMIN) and /dev/net/tun.

    peer = PppPeer(forward=[8080]); peer.start()   # peer.port: where the runner connects
    ...; peer.close()
"""

import ctypes
import fcntl
import os
import select
import socket
import struct
import subprocess
import threading

DEVICE_IP = "10.0.0.2"
HOST_IP = "10.0.0.1"
_CLONE_NEWNET = 0x40000000
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_LCP, _IPCP, _IP = 0xC021, 0x8021, 0x0021
_CONF_REQ, _CONF_ACK, _CONF_NAK, _CONF_REJ = 1, 2, 3, 4
_TERM_REQ, _TERM_ACK, _PROTO_REJ, _ECHO_REQ, _ECHO_REP = 5, 6, 8, 9, 10


def _fcs_table():
    table = []
    for b in range(256):
        v = b
        for _ in range(8):
            v = (v >> 1) ^ 0x8408 if v & 1 else v >> 1
        table.append(v)
    return table


_FCS = _fcs_table()


def fcs16(data, fcs=0xFFFF):
    for b in data:
        fcs = (fcs >> 8) ^ _FCS[(fcs ^ b) & 0xFF]
    return fcs


def frame(proto, payload):
    """-> one HDLC frame: address, control, protocol, payload, FCS; every control byte
    escaped (the default ACCM, which this peer never negotiates away)."""
    body = b"\xff\x03" + struct.pack(">H", proto) + payload
    body += struct.pack("<H", fcs16(body) ^ 0xFFFF)
    out = bytearray(b"\x7e")
    for b in body:
        if b < 0x20 or b in (0x7D, 0x7E):
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    out.append(0x7E)
    return bytes(out)


class Deframer:
    """Bytes from the link -> complete (protocol, payload) pairs; bad FCS dropped."""

    def __init__(self):
        self.buf = bytearray()
        self.esc = False
        self.bad = 0

    def feed(self, data):
        out = []
        for b in data:
            if b == 0x7E:
                if len(self.buf) >= 4:
                    got = self._frame(bytes(self.buf))
                    if got:
                        out.append(got)
                self.buf.clear()
                self.esc = False
            elif b == 0x7D:
                self.esc = True
            else:
                self.buf.append(b ^ 0x20 if self.esc else b)
                self.esc = False
        return out

    def _frame(self, raw):
        if fcs16(raw) != 0xF0B8:
            self.bad += 1
            return None
        raw = raw[:-2]
        if raw[:2] == b"\xff\x03":  # address and control, unless compressed away (ACFC)
            raw = raw[2:]
        if raw[0] & 1:  # protocol field compressed to one byte (PFC)
            return raw[0], raw[1:]
        return (raw[0] << 8) | raw[1], raw[2:]


def _options(data):
    opts, pos = [], 0
    while pos + 2 <= len(data):
        kind, length = data[pos], data[pos + 1]
        if length < 2:
            break
        opts.append((kind, data[pos + 2 : pos + length]))
        pos += length
    return opts


class PppPeer:
    def __init__(self, forward=(), log=None):
        self.forward = list(forward)
        self.log = log or (lambda line: None)
        self.port = None
        self.ip_up = threading.Event()
        self._stop = threading.Event()
        self._link = None
        self._tun = None
        self._threads = []
        self._socks = []
        self._listen = []
        self._id = 0
        self._lcp_up = self._ipcp_sent = False
        self._wlock = threading.Lock()

    # -- set-up ----------------------------------------------------------------------------

    def start(self):
        ready = threading.Event()
        err = []
        t = threading.Thread(target=self._netns, args=(ready, err), daemon=True)
        t.start()
        ready.wait(30)
        if err or not ready.is_set():
            raise OSError(err[0] if err else "ppp: network namespace set-up timed out")
        # threads inherit the namespace of the thread that starts them: the relays start
        # here, in the host's, so that their connections reach the host's loopback
        for s, port in self._listen:
            self._spawn(self._accept_relay, s, port)
        srv = socket.create_server(("127.0.0.1", 0))
        self._socks.append(srv)
        self.port = srv.getsockname()[1]
        self._spawn(self._accept_link, srv)
        return self

    def _netns(self, ready, err):
        """This thread alone enters a new network namespace: the TUN device and the listening
        sockets made here belong to it; the relays' outgoing sockets (other threads) do not."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(_CLONE_NEWNET):
                raise OSError(ctypes.get_errno(), "ppp: unshare(CLONE_NEWNET) refused (root?)")
            self._tun = os.open("/dev/net/tun", os.O_RDWR)
            fcntl.ioctl(self._tun, _TUNSETIFF, struct.pack("16sH", b"tun0", _IFF_TUN | _IFF_NO_PI))
            for cmd in (
                ["ip", "link", "set", "lo", "up"],
                ["ip", "addr", "add", HOST_IP, "peer", DEVICE_IP, "dev", "tun0"],
                ["ip", "link", "set", "tun0", "up"],
            ):
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode:
                    raise OSError(f"ppp: {' '.join(cmd)}: {r.stderr.strip()}")
            for port in self.forward:
                s = socket.create_server((HOST_IP, port))
                self._socks.append(s)
                self._listen.append((s, port))
        except OSError as e:
            err.append(str(e))
        ready.set()
        self._stop.wait()  # keep the namespace's first thread until the end

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def close(self):
        self._stop.set()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        if self._link is not None:
            try:
                self._link.close()
            except OSError:
                pass
        if self._tun is not None:
            try:
                os.close(self._tun)
            except OSError:
                pass
            self._tun = None

    # -- the relays to the host's loopback ------------------------------------------------------

    def _accept_relay(self, srv, port):
        while not self._stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", port), timeout=10)
                up.settimeout(None)
            except OSError:
                conn.close()
                continue
            self._spawn(self._pipe, conn, up)
            self._spawn(self._pipe, up, conn)

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s, how in ((b, socket.SHUT_WR), (a, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass

    # -- the link ---------------------------------------------------------------------------

    def _accept_link(self, srv):
        """One emulator run at a time: each restart of the device connects again."""
        tun_t = None
        while not self._stop.is_set():
            try:
                link, _ = srv.accept()
            except OSError:
                return
            link.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            old, self._link = self._link, link
            if old is not None:
                old.close()
            self._lcp_up = self._ipcp_sent = False
            self.ip_up.clear()
            if tun_t is None:
                tun_t = threading.Thread(target=self._from_tun, daemon=True)
                tun_t.start()
            self._spawn(self._from_link, link)

    def _send(self, proto, payload):
        link = self._link
        if link is None:
            return
        with self._wlock:
            try:
                link.sendall(frame(proto, payload))
            except OSError:
                pass

    def _from_tun(self):
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self._tun], [], [], 0.5)
                if r:
                    pkt = os.read(self._tun, 65536)
                    if self.ip_up.is_set():
                        self._send(_IP, pkt)
            except (OSError, TypeError, ValueError):
                return

    def _from_link(self, link):
        de = Deframer()
        while not self._stop.is_set():
            try:
                data = link.recv(65536)
            except OSError:
                return
            if not data:
                return
            for proto, payload in de.feed(data):
                self._packet(proto, payload)

    def _packet(self, proto, data):
        if proto == _IP:
            if self._tun is not None:
                try:
                    os.write(self._tun, data)
                except OSError:
                    pass
        elif proto == _LCP:
            self._lcp(data)
        elif proto == _IPCP:
            self._ipcp(data)
        elif self._lcp_up:  # IPv6CP, CCP...: not spoken here
            self._id = (self._id + 1) & 0xFF
            body = struct.pack(">H", proto) + data
            self._send(_LCP, struct.pack(">BBH", _PROTO_REJ, self._id, 4 + len(body)) + body)

    def _lcp(self, data):
        if len(data) < 4:
            return
        code, ident, length = struct.unpack(">BBH", data[:4])
        body = data[4:length]
        if code == _CONF_REQ:
            # accept whatever the device asks for (ACCM, magic number, PFC, ACFC, MRU): the
            # deframer reads compressed headers, and this end always escapes every control byte
            self._send(_LCP, struct.pack(">BBH", _CONF_ACK, ident, 4 + len(body)) + body)
            self._id = (self._id + 1) & 0xFF
            self._send(_LCP, struct.pack(">BBH", _CONF_REQ, self._id, 4))  # no options
        elif code == _CONF_ACK:
            self._lcp_up = True
            self.log("ppp: LCP up")
        elif code == _TERM_REQ:
            self._send(_LCP, struct.pack(">BBH", _TERM_ACK, ident, 4))
            self._lcp_up = False
            self.ip_up.clear()
        elif code == _ECHO_REQ:
            reply = struct.pack(">I", 0) + body[4:]
            self._send(_LCP, struct.pack(">BBH", _ECHO_REP, ident, 4 + len(reply)) + reply)

    def _ipcp(self, data):
        if len(data) < 4:
            return
        code, ident, length = struct.unpack(">BBH", data[:4])
        body = data[4:length]
        if code == _CONF_REQ:
            nak, rej = b"", b""
            want = socket.inet_aton(DEVICE_IP)
            dns = socket.inet_aton(HOST_IP)
            for kind, val in _options(body):
                if kind == 3:  # IP-Address
                    if val != want:
                        nak += bytes((3, 6)) + want
                elif kind in (129, 131):  # primary, secondary DNS
                    if val != dns:
                        nak += bytes((kind, 6)) + dns
                else:
                    rej += bytes((kind, 2 + len(val))) + val
            if rej:
                self._send(_IPCP, struct.pack(">BBH", _CONF_REJ, ident, 4 + len(rej)) + rej)
            elif nak:
                self._send(_IPCP, struct.pack(">BBH", _CONF_NAK, ident, 4 + len(nak)) + nak)
            else:
                self._send(_IPCP, struct.pack(">BBH", _CONF_ACK, ident, 4 + len(body)) + body)
                self.ip_up.set()
                self.log("ppp: IPCP up, device %s" % DEVICE_IP)
            if not self._ipcp_sent:
                self._ipcp_sent = True
                self._id = (self._id + 1) & 0xFF
                opt = bytes((3, 6)) + socket.inet_aton(HOST_IP)
                self._send(_IPCP, struct.pack(">BBH", _CONF_REQ, self._id, 4 + len(opt)) + opt)
        elif code == _TERM_REQ:
            self._send(_IPCP, struct.pack(">BBH", _TERM_ACK, ident, 4))
            self.ip_up.clear()
