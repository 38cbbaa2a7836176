"""Feed every malformed response to agent/http.py; one result line per case and mode.

Runs unchanged under CPython and the MicroPython unix port:

    micropython host_tests/malformed/run_corpus.py      (from the repository root)

Each case is played whole and one byte per read through a fake socket, answering a GET whose
body is then read to the end with a 4 KiB cap. Output lines: `<name> <mode> <outcome>`, where
outcome is `protocol` (the agent's ProtocolError: what every case must give), `accepted`
(no error at all), `hang` (kept reading an endless stream or past the deadline), or
`other:<ExceptionType>`.
"""

import sys

sys.path.insert(0, "host_tests/malformed")
sys.path.insert(0, ".")

import corpus  # noqa: E402
import fakesock  # noqa: E402

from agent import http  # noqa: E402

try:
    from time import ticks_ms
except ImportError:
    import time

    def ticks_ms():
        return int(time.monotonic() * 1000)


CAP = 4096
DEADLINE_MS = 5000


def run_case(response, bytewise):
    sock = fakesock.FakeSock(response, bytewise=bytewise, deadline_ms=DEADLINE_MS)

    def connect(host, port, tls, timeout_ms, ca=None):
        return sock

    conn = http.Conn("device.test", 80, False, DEADLINE_MS, ticks_ms, connect=connect)
    try:
        conn.request("GET", "/x")
        conn.read_all(CAP)
        return "accepted"
    except http.ProtocolError:
        return "protocol"
    except fakesock.Hang:
        return "hang"
    except Exception as exc:
        return "other:" + type(exc).__name__
    finally:
        conn.close()


def main():
    for name, response in corpus.CASES:
        for mode in ("whole", "bytewise"):
            print(name, mode, run_case(response, mode == "bytewise"))


if __name__ == "__main__":
    main()
