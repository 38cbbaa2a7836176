"""The persisted record: one JSON document saved atomically through the board.

Keys (short: the record lives in NVS on small boards):
  state  "unprov" | "activating" | "active" | "expired"
  cik    the device CIK or None
  n      counters: act(ivations), upd(ates), rb (rollbacks), boot
  inst   installed content {"id", "ver", "sha", "ts"} or None
  j      update journal {"id", "size", "ts", "sha", "etag", "off", "mm" (sha256 mismatches
         so far: updater.download), "tries" (applies that did not come up: updater.confirm)}
         or None
  pend   applied, not yet confirmed: like inst plus "boots"
  bad    key() of content refused or rolled back, skipped until it changes
A missing or corrupt record means unprovisioned; load() never raises.
"""

import json

_STATES = ("unprov", "activating", "active", "expired")


def new():
    return {
        "state": "unprov",
        "cik": None,
        "n": {"act": 0, "upd": 0, "rb": 0, "boot": 0},
        "inst": None,
        "j": None,
        "pend": None,
        "bad": None,
    }


def key(cid, ts):
    """One version of a content as "id:ts": what `bad` holds and a status report names."""
    return "%s:%d" % (cid, ts)


def load(board):
    rec = new()
    try:
        got = json.loads(board.load() or "null")
    except (ValueError, TypeError, OSError):  # corrupt or unreadable: unprovisioned
        got = None
    if isinstance(got, dict) and got.get("state") in _STATES and isinstance(got.get("n"), dict):
        for k in rec:
            rec[k] = got.get(k, rec[k])
        cik = rec["cik"]
        if cik is not None and (type(cik) is not str or len(cik) != 40):
            rec["cik"], rec["state"] = None, "unprov"
    return rec


def save(board, rec):
    board.save(json.dumps(rec).encode())
