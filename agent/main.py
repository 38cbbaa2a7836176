"""Wiring: configuration + board -> state machine. The only module that knows boards."""

import sys

from agent import compat
from agent.api import Api
from agent.fsm import Fsm
from agent.http import Conn, parse_url

_REQ = "required"
# key, type, default (_REQ: must be given; None: optional). Boards read their own keys
# (state_dir, install_path, apply_cmd, wifi_*) and name them in their errors.
_SPEC = (
    ("server", str, _REQ),
    ("vendor", str, _REQ),
    ("model", str, _REQ),
    ("sn", str, None),
    ("board", str, "unix" if sys.implementation.name == "micropython" else "linux"),
    ("firmware_prefix", str, "firmware"),
    ("once", bool, False),
    ("ca_file", str, None),
    ("allow_unverified", bool, False),
    ("version", str, None),
    ("poll", int, 3600),
    ("retry", int, 900),
    ("timeout", int, 30),
    ("chunk", int, 65536),
    ("buffer", int, 4096),
    ("max_boots", int, 3),
    ("report", bool, True),
    ("log", int, 1),
)


class BadConfig(Exception):
    pass


def config(path):
    """Read and check CONFIG.json; BadConfig('key: why') on the first problem."""
    import json

    try:
        with open(path) as f:
            cfg = json.load(f)
    except OSError:
        raise BadConfig("%s: cannot be read" % path)
    except ValueError:
        raise BadConfig("%s: not valid JSON" % path)
    if not isinstance(cfg, dict):
        raise BadConfig("%s: must be a JSON object" % path)
    for key, typ, default in _SPEC:
        v = cfg.get(key)
        if v is None:
            if default is _REQ:
                raise BadConfig(key + ": missing")
            cfg[key] = default
        elif type(v) is not typ or (typ is str and not v):
            raise BadConfig(
                "%s: must be a %s" % (key, "non-empty string" if typ is str else typ.__name__)
            )
        elif typ is int and v <= 0:
            raise BadConfig(key + ": must be positive")
    try:
        tls = parse_url(cfg["server"])[0]
    except ValueError as e:
        raise BadConfig("server: %s" % e)
    if tls and not cfg["ca_file"] and sys.implementation.name == "micropython":
        raise BadConfig("ca_file: required for https under MicroPython")
    if cfg["chunk"] % cfg["buffer"]:
        raise BadConfig("chunk: must be a multiple of buffer")
    return cfg


def _board(cfg):
    try:
        mod = __import__("boards." + cfg["board"], None, None, ("Board",))
    except ImportError:
        raise BadConfig("board: no board module %r" % cfg["board"])
    try:
        board = mod.Board(cfg)
    except (ValueError, OSError) as e:
        raise BadConfig(str(e.args[-1] if e.args else e))
    if cfg["buffer"] % board.block:
        raise BadConfig("buffer: must be a multiple of the board block (%d)" % board.block)
    return board


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: exoprov agent CONFIG.json", file=sys.stderr)
        return 2
    try:
        cfg = config(argv[0])
        board = _board(cfg)
        if not cfg["sn"]:
            cfg["sn"] = board.unique_id()
    except BadConfig as e:
        print("exoprov-agent: bad configuration:", e, file=sys.stderr)
        return 2
    compat.level = cfg["log"]
    tls, host, port = parse_url(cfg["server"])
    conn = Conn(host, port, tls, cfg["timeout"] * 1000, board.ticks_ms)
    conn.ca = cfg["ca_file"]
    fsm = Fsm(board, Api(conn, cfg["vendor"], cfg["model"]), cfg)
    if cfg["version"] and fsm.rec["inst"] is None:
        fsm.rec["inst"] = {"id": None, "ver": cfg["version"], "sha": None, "ts": 0}
    compat.log("board", board.name, "sn", cfg["sn"], "server", cfg["server"])
    try:
        return fsm.run(cfg["once"])
    except KeyboardInterrupt:
        compat.log("interrupted")
        return 130
    finally:
        conn.close()
