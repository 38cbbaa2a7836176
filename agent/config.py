"""CONFIG.json: read, check, fill defaults. Imported by main for startup only, then dropped
(its code would otherwise stay in a small board's heap for the whole run)."""

import sys

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
    ("min_rate", int, 512),
    ("chunk", int, 65536),
    ("buffer", int, None),  # None: the board's own (Board.buffer)
    ("max_boots", int, 3),
    ("verify_retries", int, 3),
    ("pubkeys", list, None),
    ("report", bool, True),
    ("log", int, 1),
)


_NAME = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


class BadConfig(Exception):
    """args[0]: 'key: why', printed as one line by main."""


def defaults():
    """Every optional key with its default: what load() fills in (tests build partial
    configurations on it)."""
    return {k: d for k, _, d in _SPEC if d is not _REQ}


def parse_url(url):
    """'http://host:port' -> (tls, host, port); ValueError for anything else."""
    tls = url.startswith("https://")
    if not tls and not url.startswith("http://"):
        raise ValueError("must start with http:// or https://")
    rest = url[8 if tls else 7 :].rstrip("/")
    if not rest or "/" in rest or "@" in rest:
        raise ValueError("must be scheme://host[:port] without a path")
    host, port = rest, 443 if tls else 80
    i = rest.rfind(":")
    if i > 0 and "]" not in rest[i:]:
        host, port = rest[:i], int(rest[i + 1 :])
    return tls, host.strip("[]"), port


def load(path):
    """Read and check CONFIG.json -> dict with defaults and "_url" = (tls, host, port)."""
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
        elif typ is int and (v < 0 or not v and key[0] not in "mv"):  # min_rate, verify_retries
            raise BadConfig(key + (": must not be negative" if v < 0 else ": must be positive"))
    try:
        cfg["_url"] = parse_url(cfg["server"])
    except ValueError as e:
        raise BadConfig("server: %s" % e)
    if cfg["_url"][0] and not cfg["ca_file"] and sys.implementation.name == "micropython":
        raise BadConfig("ca_file: required for https under MicroPython")
    if cfg["pubkeys"] is not None:
        cfg["pubkeys"] = pubkeys(cfg["pubkeys"])
        if cfg["allow_unverified"]:
            raise BadConfig("allow_unverified: cannot be combined with pubkeys")
    return cfg


def pubkeys(lines):
    """["NAME:<base64 of 32 bytes>", ...] (the lines of `exoprov fleet key generate`'s
    NAME.pub) -> {name: key bytes}. Names are letters, digits, '.', '_' and '-'."""
    from binascii import a2b_base64, b2a_base64

    keys = {}
    for line in lines:
        name, _, b64 = line.partition(":") if type(line) is str else ("", "", "")
        try:
            key = a2b_base64(b64)
        except ValueError:  # binascii.Error on CPython
            key = b""
        # MicroPython's a2b_base64 skips what is not base64: compare the round trip as well
        ok = len(key) == 32 and b2a_base64(key).strip() == b64.encode()
        if not ok or not name or name.strip(_NAME):
            raise BadConfig("pubkeys: each must be 'NAME:<base64 of 32 bytes>'")
        if name in keys:
            raise BadConfig("pubkeys: %s given twice" % name)
        keys[name] = key
    if not keys:
        raise BadConfig("pubkeys: empty (leave it out to accept unsigned content)")
    return keys


def board(cfg, mod):
    """mod.Board(cfg) (main imported the board module), with the board-dependent checks."""
    try:
        b = mod.Board(cfg)
    except (ValueError, OSError) as e:
        raise BadConfig(str(e.args[-1] if e.args else e))
    # Slot writes are buffer-sized pieces (the last one shorter) and the journal advances by
    # whole chunks, so a resume starts on a block (a flash sector: erased by its first write).
    buf = cfg["buffer"] = cfg["buffer"] or b.buffer
    blk = b.block
    if blk % buf and buf % blk:
        raise BadConfig("buffer: must divide the board block (%d) or be a multiple of it" % blk)
    if cfg["chunk"] % buf or cfg["chunk"] % blk:
        raise BadConfig("chunk: must be a multiple of buffer and of the board block (%d)" % blk)
    if not cfg["sn"]:
        try:
            cfg["sn"] = b.unique_id()
        except OSError as e:
            raise BadConfig(str(e.args[-1] if e.args else e))
    return b
