"""agent.http and agent.api on a fake socket, run by the MicroPython unix port itself: the
parsing paths the integration tests do not reach (chunked, one-byte reads, caps, errors)."""

import subprocess

from agentkit import MICROPYTHON, ROOT

SCRIPT = r"""
import io
from agent.http import Conn, ProtocolError
from agent.api import Api, ApiError

class Sock:
    def __init__(self, data, step):
        self.rx, self.sent, self.step = io.BytesIO(data), bytearray(), step
    def write(self, b):
        self.sent.extend(b)
        return len(b)
    def readinto(self, b):
        return self.rx.readinto(memoryview(b)[: self.step])
    def close(self):
        pass

def api(data, step):
    socks = []
    def connect(host, port, tls, t, ca):
        if socks:
            raise OSError("no more")
        socks.append(Sock(data, step))
        return socks[0]
    return Api(Conn("h", 8080, False, 5000, None, connect), "v v", "m"), socks

CIK = "k" * 40
def resp(status, body, extra=b""):
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), extra) + body

for step in (1, 3, 256):
    a, s = api(resp(200, CIK.encode()), step)
    assert a.activate("s/1") == CIK
    assert bytes(s[0].sent) == (
        b"POST /provision/activate HTTP/1.1\r\nHost: h:8080\r\n"
        b"Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
        b"Content-Length: 29\r\n\r\nvendor=v%20v&model=m&sn=s%2F1"
    ), s[0].sent
    data = bytes(range(200))
    chunks = b"".join(b"%x\r\n" % len(data[i:i + 7]) + data[i:i + 7] + b"\r\n"
                      for i in range(0, 200, 7)) + b"0\r\nX-T: 1\r\n\r\n"
    head = b"HTTP/1.1 206 X\r\nContent-Range: bytes 0-199/200\r\nETag: \"e\"\r\n"
    a, s = api(head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks
               + resp(200, b"firmware-a\r\nx\r\nfirmware-b\n"), step)
    assert a.fetch(CIK, "fw", 0, 199, 200) == '"e"'
    buf, got = bytearray(64), bytearray()
    while True:
        n = a.conn.readinto(memoryview(buf))
        if not n:
            break
        got.extend(buf[:n])
    assert bytes(got) == data and a.conn.at_end()
    assert a.list(CIK, "firmware") == ["firmware-a", "firmware-b"]
    assert len(s) == 1

for raw, err in (
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 1100 + b"\r\n\r\n", ProtocolError),
    (b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * 33 + b"\r\n", ProtocolError),
    (b"NOPE\r\n\r\n", ProtocolError),
    (resp(200, b"x" * 9000), ProtocolError),
    (resp(409, b"no"), ApiError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", ProtocolError),
):
    a, s = api(raw, 5)
    try:
        a.list(CIK)
        raise AssertionError(raw[:40])
    except err as e:
        pass
a, s = api(resp(206, b"x" * 10, b"Content-Range: bytes 1-10/100\r\n"), 5)
try:
    a.fetch(CIK, "fw", 0, 9, 100)
    raise AssertionError("wrong start accepted")
except ProtocolError:
    pass
print("ok")
"""


def test_http_and_api_under_micropython(tmp_path):
    (tmp_path / "t.py").write_text(SCRIPT)
    r = subprocess.run(
        [MICROPYTHON, str(tmp_path / "t.py")],
        env={"MICROPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.stdout == "ok\n", r.stdout + r.stderr
