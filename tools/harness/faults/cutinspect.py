"""Inspect a fake ESP32 (MicroPython): which image it boots and the record it holds.

    EXOPROV_FAKE_HW=<copy of the board dir> micropython cutinspect.py CONFIG SIZE

Run on a copy of the board directory: importing the fake `esp32` runs its bootloader (it
decides what boots, and may abort an unconfirmed image), exactly as the next start would.
Prints one JSON line: {"sha": sha256 of the first SIZE bytes of the partition that boots,
"running": its label, "record": the stored record or null}.
"""

import hashlib
import json
import sys

sys.path.insert(0, ".")  # the fakes come first on MICROPYPATH (tools/harness/mpunix.py)

from binascii import hexlify  # noqa: E402

import esp32  # noqa: E402

from boards.esp32 import Board  # noqa: E402


def main(argv):
    with open(argv[0]) as f:
        cfg = json.load(f)
    size = int(argv[1])
    p = esp32.Partition(esp32.Partition.RUNNING)
    buf = bytearray(4096)
    h = hashlib.sha256()
    off = 0
    while off < size:
        n = min(4096, size - off)
        mv = memoryview(buf)[:n]
        p.readblocks(off // 4096, mv)
        h.update(mv)
        off += n
    data = Board(cfg).load()
    rec = json.loads(data) if data else None
    out = {"sha": hexlify(h.digest()).decode(), "running": p.info()[4], "record": rec}
    print(json.dumps(out))


main(sys.argv[1:])
