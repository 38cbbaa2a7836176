"""The fake Pico W flash of tools/harness/faults/lfsboot.py behaves as NOR flash does
(host_tests/test_lfs_powercut.py). MICROPYPATH holds tools/harness/faults.

    micropython host_tests/mpy_programs/lfs_flash.py nor IMAGE EVENTS
"""

import scenario
from lfsboot import Flash


def nor(img, ev):
    with open(img, "wb") as f:
        f.write(b"\xff" * 8192)
    fl = Flash(img, events=ev)
    print(fl.ioctl(4, 0), fl.ioctl(5, 0))  # block count, block size
    fl.writeblocks(1, b"\x0f\xf0", 10)
    fl.writeblocks(1, b"\xf0\xff", 10)  # over bytes not erased: NOR keeps old & new
    buf = bytearray(2)
    fl.readblocks(1, buf, 10)
    print(buf.hex())
    fl.ioctl(6, 1)  # erase block 1
    fl.readblocks(1, buf, 10)
    print(buf.hex())


scenario.main(globals())
