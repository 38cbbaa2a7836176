"""Run the emulated Pico by hand, its REPL on a pty for mpremote / `exoprov deploy`.

    python -m tools.harness.rp2emu FLASH.img [--firmware firmware.bin] [--ppp-forward PORT]

Prints the pty's path (`console /dev/pts/N`), then relays the Pico's UART0 to it until the
Pico resets (it is powered on again, from the same flash image) or Ctrl-C. With
--ppp-forward, the Pico's modem link gets the PPP peer and 10.0.0.1:PORT reaches the
host's 127.0.0.1:PORT. Needs what tools/harness/rp2emu/__init__.py says (env vars).
"""

import argparse
import os
import pty
import select
import sys
import threading
import tty

from . import RC_RESET, Pico, missing


def relay(pico, master):
    """Copy the console both ways until the Pico stops."""

    def from_pico():
        while True:
            data = pico.proc.stdout.read1(65536)
            if not data:
                return
            os.write(master, data)

    t = threading.Thread(target=from_pico, daemon=True)
    t.start()
    while pico.proc.poll() is None:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:
                continue
            try:
                pico.write(data)
            except OSError:  # it has just reset: what was typed meanwhile is lost, as on a board
                break
    t.join(5)
    return pico.proc.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="rp2emu", description=__doc__.split("\n")[0])
    ap.add_argument("flash")
    ap.add_argument("--firmware")
    ap.add_argument("--ppp-forward", type=int, action="append", default=[])
    args = ap.parse_args(argv)
    why = missing()
    if why:
        print(f"rp2emu: {why}", file=sys.stderr)
        return 2
    peer = None
    if args.ppp_forward:
        from .ppp import PppPeer

        peer = PppPeer(forward=args.ppp_forward).start()
    master, slave = pty.openpty()
    tty.setraw(slave)
    print(f"console {os.ttyname(slave)}", flush=True)
    fw = args.firmware
    try:
        while True:
            pico = Pico(args.flash, fw, ppp=peer.port if peer else None, stdout=-1)
            fw = None  # flashed once; a reset powers on from the image
            rc = relay(pico, master)
            print(f"rp2emu: the Pico stopped (rc {rc})", flush=True)
            if rc != RC_RESET:
                return 0 if rc == 0 else 1
    except KeyboardInterrupt:
        pico.stop()
        return 0
    finally:
        if peer:
            peer.close()


if __name__ == "__main__":
    sys.exit(main())
