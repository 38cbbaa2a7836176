"""Wiring: configuration + board -> state machine. The only module that knows boards.

agent/config.py is imported for startup only and then dropped to free the heap."""

import sys

from .compat import const

# MicroPython: a collection after every 1/32 of the heap allocated, at least _GC bytes. The
# allocator takes the next free blocks after the last allocation until a collection, so
# without it the objects that stay (record, journal, headers, the CIK) end up scattered over
# the heap between garbage, and a small heap has room for the whole flow but not for its
# larger blocks (a record, a request): the full flow then needs about 2 KiB less. What it
# costs is time in the collector (a collection is quick on a small heap; the signature
# check, which makes the most garbage, takes about twice as long).
_GC = const(512)

# "agent" on a board, "exoprov.agent" in the installed package: boards/ sits beside it.
_PKG = __name__[: -len(".main")]
_BASE = _PKG[: -len("agent")]


def _drop(name):
    # Forget a module used only at startup so its code can be collected.
    sys.modules.pop(_PKG + "." + name, None)
    pkg = sys.modules.get(_PKG)
    if pkg is not None and hasattr(pkg, name):
        delattr(pkg, name)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    import gc

    if hasattr(gc, "threshold"):
        gc.threshold(max(_GC, (gc.mem_free() + gc.mem_alloc()) // 32))
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: exoprov agent CONFIG.json", file=sys.stderr)
        return 2
    from . import config

    try:
        cfg = config.load(argv[0])
        name = cfg["board"]
        try:
            mod = __import__(_BASE + "boards." + name, None, None, ("Board",))
        except ImportError:
            raise config.BadConfig("board: no board module %r" % name)
        # The download buffer (its size the board's unless configured) before the board
        # object, while the heap is still in one piece.
        mv = memoryview(bytearray(cfg["buffer"] or mod.Board.buffer))
        board = config.board(cfg, mod)
    except config.BadConfig as e:
        print("exoprov-agent: bad configuration:", e.args[0], file=sys.stderr)
        return 2
    config = None
    _drop("config")
    from . import compat
    from .api import Api
    from .fsm import Fsm
    from .http import Conn

    compat.level = cfg["log"]
    tls, host, port = cfg["_url"]
    conn = Conn(host, port, tls, cfg["timeout"] * 1000, board.ticks_ms)
    conn.ca, conn.min_rate = cfg["ca_file"], cfg["min_rate"]
    fsm = Fsm(board, Api(conn, cfg["vendor"], cfg["model"]), cfg, mv)
    if cfg["version"] and not fsm.rec["inst"]:
        fsm.rec["inst"] = {"id": None, "ver": cfg["version"], "sha": None, "ts": 0}
    compat.log("board", board.name, "sn", cfg["sn"], "server", cfg["server"])
    try:
        return fsm.run(cfg["once"])
    except KeyboardInterrupt:
        compat.log("interrupted")
        return 130
    finally:
        conn.close()
