"""Resumable, verified download of one content id into the board's slot.

The journal in the record (store.py) is advanced only after the slot holds the bytes, so a
reset resumes where it stopped, re-hashing the written prefix from the slot.
"""

from .compat import log
from .http import AgentError, ProtocolError


class Refused(AgentError):
    """Content that must not be applied: no digest, or one that does not match."""


def newer(a, b):
    """Is a newer than b? Each (version or None, updated timestamp); b may be None.
    Versions compare as dotted numbers when both are, else as strings; without two versions
    the updated timestamps decide."""
    if b is None:
        return True
    if a[0] and b[0]:
        try:
            return [int(x) for x in a[0].split(".")] > [int(x) for x in b[0].split(".")]
        except ValueError:
            return a[0] > b[0]
    return a[1] > b[1]


def pick(api, cik, ids, rec):
    """The newest content among ids newer than the installed one, or None.
    -> (id, size, updated, sha256 or None, version or None)"""
    inst = rec["inst"]
    cur = inst and (inst.get("ver"), inst.get("ts") or 0)
    best = None
    for cid in ids:
        size, ts, meta = api.info(cik, cid)[1:]
        c = (cid, size, ts, meta.get("sha256"), meta.get("version"))
        if rec["bad"] != "%s:%d" % (cid, ts) and newer((c[4], ts), cur):
            if best is None or newer((c[4], ts), (best[4], best[2])):
                best = c
    return best


def download(api, board, rec, cand, mv, save, chunk, unverified=False):
    """Download cand into the slot in Range requests of `chunk` bytes through the buffer mv,
    verify size and sha256, save the pending update, apply it. Raises on any failure."""
    import hashlib

    cid, size, ts, sha, ver = cand
    if not sha and not unverified:
        raise Refused("%s has no sha256 in its meta" % cid)
    if sha and len(sha) != 64:
        raise Refused("%s: malformed sha256" % cid)
    board.slot_begin(size)
    h = hashlib.sha256()
    j = rec["j"]
    off = 0
    if j and (j["id"], j["size"], j["ts"], j["sha"]) == (cid, size, ts, sha):
        while off < j["off"]:  # re-hash what the journal says the slot holds
            n = board.slot_read(off, mv[: min(len(mv), j["off"] - off)])
            if n <= 0:
                off = 0  # it does not: start again
                break
            h.update(mv[:n])
            off += n
    if off:
        log("resuming", cid, "at", off, "/", size)
    else:
        h = hashlib.sha256()
        j = rec["j"] = {"id": cid, "size": size, "ts": ts, "sha": sha, "etag": None, "off": 0}
        save()
        board.slot_erase()
        log("downloading", cid, "version", ver, "size", size)
    resumed = off
    conn = api.conn
    while off < size:
        last = min(off + chunk, size) - 1
        etag = api.fetch(rec["cik"], cid, off, last, size, j["etag"])
        while off <= last:
            want = min(len(mv), last + 1 - off)
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
    if sha and got != sha:
        rec["j"] = None
        if resumed:  # the slot may have lost bytes the journal counted: restart from zero
            save()
            raise ProtocolError("digest mismatch after resume; restarting")
        rec["bad"] = "%s:%d" % (cid, ts)
        save()
        raise Refused("%s: sha256 mismatch, refused" % cid)
    if not sha:
        log("warning:", cid, "applied unverified (allow_unverified)")
    # Saved before slot_apply(): after a reset at any point from here, the next start finds
    # `pend` and slot_confirm() tells whether the new content runs. The journal stays until
    # then: if it does not run, the complete slot is re-hashed and applied again, not fetched.
    rec["pend"] = {"id": cid, "ver": ver, "sha": got, "ts": ts, "boots": 0}
    save()
    try:
        board.slot_apply()
    except Exception:  # not BaseException: an interrupt is not the board refusing the image
        rec["pend"] = rec["j"] = None
        rec["bad"] = "%s:%d" % (cid, ts)  # the board refused this image: not again
        save()
        raise
    log("applied", cid, "version", ver)
