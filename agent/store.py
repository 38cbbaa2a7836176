"""The persisted record: one JSON document saved atomically through the board.

Keys (short, the record lives in NVS on small boards):
  state  "unprov" | "activating" | "active" | "expired"
  cik    the device CIK or None
  n      counters: activations, updates, rollbacks, boots
  inst   installed content: {"id", "ver", "sha", "ts"} or None
  j      update journal: {"id", "size", "ts", "sha", "ver", "etag", "off"} or None
  pend   applied, not yet confirmed: like inst plus "boots"
  bad    "id:ts" of content refused (digest mismatch), not tried again until it changes
A missing or corrupt record means unprovisioned; it never raises.
"""

import json


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


def load(board):
    rec = new()
    try:
        data = board.load()
        got = json.loads(data) if data else None
    except (ValueError, TypeError, OSError):  # corrupt or unreadable: start unprovisioned
        got = None
    if isinstance(got, dict) and got.get("state") in ("unprov", "activating", "active", "expired"):
        for k in rec:
            if k in got:
                rec[k] = got[k]
        if not isinstance(rec["n"], dict):
            rec["n"] = new()["n"]
        cik = rec["cik"]
        if cik is not None and (not isinstance(cik, str) or len(cik) != 40):
            rec["cik"] = None
            rec["state"] = "unprov"
    return rec


def save(board, rec):
    board.save(json.dumps(rec).encode())


def count(rec, key):
    rec["n"][key] = rec["n"].get(key, 0) + 1
