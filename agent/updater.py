"""Resumable, verified download of one content id into the board's slot, and what follows
the apply: confirmed at the next start that reaches the server, or rolled back.

The journal in the record (store.py) is advanced only after the slot holds the bytes, so a
reset resumes where it stopped, re-hashing the written prefix from the slot.
"""

from .compat import log
from .http import AgentError, ProtocolError
from .store import key


class Refused(AgentError):
    """Content that must not be applied: no digest or a wrong one, no valid signature, or an
    older version without rollback=1."""


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
    """The newest content among ids (skipping the refused one), or None when it is the same
    version as the installed one. Older than the installed one, it is returned as well, for
    check() to refuse (or allow, with rollback=1).
    -> (id, size, updated, sha256 or None, version or None, meta)"""
    inst = rec["inst"]
    cur = (inst.get("ver"), inst.get("ts") or 0) if inst else None
    best = None
    for cid in ids:
        size, ts, meta = api.info(cik, cid)[1:]
        c = (cid, size, ts, meta.get("sha256"), meta.get("version"), meta)
        if rec["bad"] != key(cid, ts):
            if best is None or newer((c[4], ts), (best[4], best[2])):
                best = c
    if best and (newer((best[4], best[2]), cur) or newer(cur, (best[4], best[2]))):
        return best
    return None


def message(model, cid, ver, size, sha, rollback):
    """The bytes a content's signature covers (README, "Signed firmware")."""
    return (
        "exoprov-fw-v1\n%s\n%s\n%s\n%d\n%s\n%s\n" % (model, cid, ver, size, sha, rollback)
    ).encode()


def check(cand, rec, cfg):
    """Refuse, before a byte is fetched: a version older than the installed one unless the
    meta says rollback=1; with `pubkeys` configured, content without a version or without a
    valid signature (meta sig=<128 hex>, key=<name>) over message().
    -> cand without its meta (which need not stay in the heap during the download)"""
    cid, size, ts, sha, ver, meta = cand
    rb = "1" if meta.get("rollback") == "1" else "0"
    inst = rec["inst"]
    if inst and rb == "0" and newer((inst.get("ver"), inst.get("ts") or 0), (ver, ts)):
        got = (cid, ver or ts, inst.get("ver") or inst.get("ts"))
        raise Refused("%s: %s is older than the installed %s: no downgrade" % got)
    keys = cfg["pubkeys"]
    if not keys:
        return cand[:5]
    name = meta.get("key")
    if not ver or not sha:
        raise Refused("%s: signed content needs a version and a sha256" % cid)
    if name not in keys:
        raise Refused("%s: not signed by a key in pubkeys (key=%s)" % (cid, name))
    import sys
    from binascii import unhexlify

    from . import sig  # only with pubkeys: a board without them never loads it

    try:
        s = unhexlify(meta.pop("sig", None) or "")  # popped: its hex is not live in the check
    except ValueError:
        s = b""
    s = sig.verify(keys[name], message(cfg["model"], cid, ver, size, sha, rb), s)
    # Forget the module: its constants would stay in a small board's heap for the download.
    sys.modules.pop(sig.__name__, None)
    delattr(sys.modules[__name__[:-8]], "sig")  # the package: "agent" or "exoprov.agent"
    if not s:
        raise Refused("%s: bad signature (key %s)" % (cid, name))
    log("signature of", cid, "by", name, "verified")
    return cand[:5]


def download(api, board, rec, cand, mv, save, cfg):
    """Download cand into the slot in Range requests of cfg["chunk"] bytes through the buffer
    mv, verify size and sha256, save the pending update, apply it. Raises on any failure. A
    digest mismatch is fetched again from zero (by the next call: the caller backs off) up
    to cfg["verify_retries"] times, then the content is refused until it changes. Without a
    sha256 only with cfg["allow_unverified"]."""
    import hashlib

    cid, size, ts, sha, ver = cand[:5]
    if not sha and not cfg["allow_unverified"]:
        raise Refused("%s has no sha256 in its meta" % cid)
    if sha and len(sha) != 64:
        raise Refused("%s: malformed sha256" % cid)
    board.slot_begin(size)
    h = hashlib.sha256()
    j = rec["j"]
    if j and (j["id"], j["size"], j["ts"], j["sha"]) != (cid, size, ts, sha):
        j = None
    off = 0
    if j:
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
        # mm: digest mismatches of this content so far (kept across restarts from zero)
        mm = j.get("mm", 0) if j else 0
        j = rec["j"] = {"id": cid, "size": size, "ts": ts, "sha": sha, "etag": None, "off": 0}
        j["mm"] = mm
        save()
        board.slot_erase()
        log("downloading", cid, "version", ver, "size", size)
    resumed = off
    conn, chunk = api.conn, cfg["chunk"]
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
        # Corruption in transit or on a proxy, or a slot that lost bytes the journal counted
        # (after a resume: not counted): start again from zero, a bounded number of times.
        j["off"], j["etag"], j["mm"] = 0, None, j.get("mm", 0) + (not resumed)
        retries = cfg["verify_retries"]
        if j["mm"] > retries:
            discard(rec, cid, ts, False)
            save()
            raise Refused("%s: sha256 mismatch, refused (fetches: %d)" % (cid, j["mm"]))
        save()
        why = "after resume" if resumed else "%d of %d" % (j["mm"], retries)
        raise ProtocolError("sha256 mismatch (%s): fetching again from zero" % why)
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
        discard(rec, cid, ts, False)  # the board refused this image: not again
        save()
        raise
    log("applied", cid, "version", ver)


def discard(rec, cid, ts, rb):
    """Forget the journal and any pending update of content cid, and skip this version of
    it until it changes; rb: it was applied and is given up (a rollback is counted)."""
    rec["pend"] = rec["j"] = None
    rec["bad"] = key(cid, ts)
    if rb:
        rec["n"]["rb"] = rec["n"].get("rb", 0) + 1


def boot(board, rec, most, save):
    """A start with an applied update not yet confirmed: count it; after `most` such starts
    the update never reached the server: refuse it, save, roll the slot back.
    -> True when rolled back."""
    p = rec["pend"]
    if not p:
        return False
    p["boots"] = p.get("boots", 0) + 1
    if p["boots"] <= most:
        return False
    log("update", p["id"], "never confirmed: rolling back")
    discard(rec, p["id"], p["ts"], True)
    save()  # before the slot goes back: a reset in between must not apply it again
    board.slot_rollback()
    return True


def confirm(board, rec, most):
    """The first start with an applied update that reached the server: keep the new content
    if it runs (it becomes `inst`). If it does not (a reset before or during apply, or the
    bootloader went back), the journal still holds the complete image, which the next
    download() applies again without fetching it, up to `most` times; then it is refused.
    The caller saves. -> True when given up (a rollback)."""
    p, rec["pend"] = rec["pend"], None
    try:
        board.slot_confirm()
    except OSError as e:
        j = rec["j"] or {}
        j["tries"] = j.get("tries", 0) + 1
        log("update", p["id"], "is not running:", e.args[-1])
        if rec["j"] and j["tries"] < most:
            return False
        discard(rec, p["id"], p["ts"], True)
        return True
    rec["inst"] = {"id": p["id"], "ver": p["ver"], "sha": p["sha"], "ts": p["ts"]}
    rec["j"] = None
    rec["n"]["upd"] = rec["n"].get("upd", 0) + 1
    log("update", p["id"], "confirmed")
    return False
