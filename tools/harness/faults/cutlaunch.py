"""Power-cut launcher: run the agent with its board wrapped in a write-counting proxy.

Runs unchanged under CPython and the MicroPython unix port (from the repository root):

    python      tools/harness/faults/cutlaunch.py CONFIG.json CUT MODE EVENTS
    micropython tools/harness/faults/cutlaunch.py CONFIG.json CUT MODE EVENTS

It replaces `agent.main._board` so that the board `main` builds is wrapped, then calls the
agent's own `main` (nothing in agent/ is edited). Every call that changes persistent bytes
(`save`, `slot_erase`, `slot_write`, `slot_finish`, `slot_apply`, `slot_confirm`,
`slot_rollback`) is appended to the EVENTS file, one line each. At call number CUT (0-based,
-1: never) the process dies with SIGKILL, as a power cut would end it: MODE `before` dies
instead of the call (a `slot_write` is torn first: its block is written with the second half
garbage), MODE `after` dies right after the call returned. No `finally`, no `except` in the
agent runs after the cut.
"""

import os
import sys

if os.getenv("EXOPROV_FROZEN"):  # a firmware with agent/ frozen in: its own agent first
    sys.path.append(".")
else:
    sys.path.insert(0, ".")
# the fake ESP32's modules come first on MICROPYPATH (tools/harness/mpunix.py)

_WRITES = ("save", "slot_erase", "slot_write", "slot_finish", "slot_apply", "slot_confirm")
_WRITES += ("slot_rollback",)


def _die():
    try:
        os._exit(77)  # CPython: no cleanup of any kind
    except AttributeError:
        # MicroPython has no os._exit; SIGKILL from a child shell to its parent (us).
        os.system("kill -9 $PPID")
        while True:
            pass


def _label(name, args):
    if name == "save":
        try:
            import json

            rec = json.loads(args[0])
            j = rec.get("j")
            extra = rec.get("state", "?") + (",cik" if rec.get("cik") else "")
            if j:
                extra += ",j=%d" % j.get("off", 0)
            if rec.get("pend"):
                extra += ",pend"
            return "save(%s)" % extra
        except (ValueError, TypeError, AttributeError):
            return "save(?)"
    if name == "slot_write":
        return "slot_write(%d,%d)" % (args[0], len(args[1]))
    return name


class Cutter:
    def __init__(self, board, cut, mode, events):
        self._b = board
        self._cut = cut
        self._mode = mode
        self._events = events
        self._n = 0

    def __getattr__(self, name):
        attr = getattr(self._b, name)
        if name not in _WRITES:
            return attr

        def call(*args):
            n = self._n
            self._n += 1
            with open(self._events, "a") as f:
                f.write(_label(name, args) + "\n")
            if n == self._cut and self._mode == "before":
                if name == "slot_write" and len(args[1]) > 1:
                    buf = bytearray(args[1])
                    half = len(buf) // 2
                    buf[half:] = b"\xa5" * (len(buf) - half)
                    attr(args[0], memoryview(buf))
                _die()
            r = attr(*args)
            if n == self._cut:
                _die()
            return r

        return call


def main(argv):
    cfg, cut, mode, events = argv[0], int(argv[1]), argv[2], argv[3]
    from tools.harness.faults.hook import wrap_board

    m = wrap_board(lambda board: Cutter(board, cut, mode, events))
    return m.main([cfg])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
