"""Resumable, verified download of one content id into the board's slot.

The journal in the record (store.py) is advanced only after the slot holds the bytes, so a
reset resumes where it stopped; the written prefix is re-hashed from the slot on resume.
"""

import hashlib

from agent.compat import log
from agent.http import AgentError, ProtocolError


class Refused(AgentError):
    """Content that must not be applied (no digest, or a digest that does not match)."""


def _vkey(v):
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return None


def newer(a, b):
    """Is a newer than b? Both (version or None, updated timestamp); b may be None."""
    if b is None:
        return True
    if a[0] and b[0]:
        ka, kb = _vkey(a[0]), _vkey(b[0])
        return ka > kb if ka is not None and kb is not None else a[0] > b[0]
    return a[1] > b[1]


def pick(api, cik, ids, rec):
    """The newest content among ids that is newer than the installed one, or None.
    -> (id, size, updated, sha256 or None, version or None)"""
    inst = rec["inst"]
    cur = (inst.get("ver"), inst.get("ts") or 0) if inst else None
    best = None
    for cid in ids:
        _ct, size, ts, meta = api.info(cik, cid)
        cand = (cid, size, ts, meta.get("sha256"), meta.get("version"))
        if rec["bad"] == "%s:%d" % (cid, ts):
            continue
        if newer((cand[4], ts), cur) and (
            best is None or newer((cand[4], ts), (best[4], best[2]))
        ):
            best = cand
    return best


def download(api, board, rec, cand, mv, save, chunk, unverified=False):
    """Download cand into the slot, verify it, apply it. Raises on any failure; returns
    the pending record (already saved) once board.slot_apply() succeeded."""
    cid, size, ts, sha, ver = cand
    if sha is None:
        if not unverified:
            raise Refused("content %s has no sha256 in its meta" % cid)
        log("warning: content", cid, "has no digest; allowed by allow_unverified")
    elif len(sha) != 64:
        raise Refused("content %s: malformed sha256" % cid)
    cik = rec["cik"]
    board.slot_begin(size)
    h = hashlib.sha256()
    j = rec["j"]
    off = 0
    if j and j["id"] == cid and j["size"] == size and j["ts"] == ts and j["sha"] == sha:
        off = _rehash(board, h, mv, j["off"])
        log("resuming", cid, "at", off, "/", size)
    if not off:
        j = {"id": cid, "size": size, "ts": ts, "sha": sha, "ver": ver, "etag": None, "off": 0}
        rec["j"] = j
        save()
        board.slot_erase()
        h = hashlib.sha256()
        log("downloading", cid, "version", ver, "size", size)
    resumed = off > 0
    conn = api.conn
    buf = len(mv)
    while off < size:
        last = min(off + chunk, size) - 1
        etag = api.fetch(cik, cid, off, last, size, j["etag"])
        while off <= last:
            want = min(buf, last + 1 - off)
            got = 0
            while got < want:  # fill the buffer: slot writes are whole blocks but the last
                n = conn.readinto(mv[got:want])
                if not n:
                    raise ProtocolError("body shorter than asked")
                got += n
            board.slot_write(off, mv[:got])
            h.update(mv[:got])
            off += got
        if not conn.at_end():
            conn.close()
            raise ProtocolError("body longer than asked")
        j["off"], j["etag"] = off, etag
        save()
        log("progress", cid, off, "/", size)
    board.slot_finish(size)
    from binascii import hexlify

    got = hexlify(h.digest()).decode()
    rec["j"] = None
    if sha is not None and got != sha:
        if resumed:  # the slot may have lost bytes the journal counted: start again from zero
            save()
            raise ProtocolError("digest mismatch after resume; restarting the download")
        rec["bad"] = "%s:%d" % (cid, ts)
        save()
        raise Refused("content %s: sha256 mismatch, refused" % cid)
    rec["pend"] = {"id": cid, "ver": ver, "sha": got, "ts": ts, "boots": 0}
    save()
    try:
        board.slot_apply()
    except BaseException:
        rec["pend"] = None
        save()
        raise
    log("applied", cid, "version", ver)
    return rec["pend"]


def _rehash(board, h, mv, end):
    # Re-read what the journal says is in the slot; a short read means it is not: restart.
    off = 0
    while off < end:
        n = board.slot_read(off, mv[: min(len(mv), end - off)])
        if not n or n < 0:
            return 0
        h.update(mv[:n])
        off += n
    return off
