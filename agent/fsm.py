"""The state machine: unprovisioned -> activating -> active -> expired / retry.

It decides and sleeps; exchanges are api's, bytes are updater's and the board's. Every
transition is saved before it is acted on.
"""

from . import compat, store, updater
from .api import ApiError
from .compat import const, log
from .http import AgentError

# Exit codes of a `once` run (main returns them).
OK = const(0)  # active and up to date
FAIL = const(1)  # network, server or protocol trouble: try again later
RESET = const(3)  # board.reset() returned (hosts exit with 3 from inside reset())
EXPIRED = const(4)  # 409: not enabled, already activated, or the window expired
CONFIG = const(5)  # 404 / 403: this serial number or vendor/model pair is wrong
REFUSED = const(6)  # an update was refused (digest, signature or a downgrade)

_MIN = const(2000)  # backoff: 2 s doubling to 10 min, with jitter
_MAX = const(600000)
_ERR = const(60)  # the reported error is cut to this many characters


class Fsm:
    # step() dispatches to activate, update, refused and failed: no leading underscore, as
    # these strings are interned already (a procedure, report states). Run from .mpy, every
    # new name is a qstr in the heap, and with the signature check loaded the agent's names
    # nearly fill a qstr pool (297 of 300, 64-bit unix port): a few more cost a new pool,
    # 3.6 KiB of the heap (tools/harness/heapflow.py).

    def __init__(self, board, api, cfg, mv=None):
        self.board, self.api, self.cfg = board, api, cfg
        self.rec = store.load(board)
        self.backoff = _MIN
        # Reports: said = this start's status went out; say = the state it names;
        # pct = the last progress step (tens of percent) reported; err = an error not yet told;
        # told = the refusal told last (the same one at every poll is told once).
        self.said, self.say, self.pct, self.err, self.told = False, "active", 10, None, None
        # One download buffer for the whole run (main allocates it before the heap fragments).
        self.mv = mv or memoryview(bytearray(cfg["buffer"]))

    def save(self):
        store.save(self.board, self.rec)

    def _set(self, state):
        if self.rec["state"] != state:
            log("state", self.rec["state"], "->", state)
            self.rec["state"] = state
        self.save()

    def _report(self, state, *more):
        # Best-effort status through the alias interface: never needed for success (api
        # gives it a short deadline), and a failure is only logged at level 2. With a state:
        # the whole status (what runs, counters, an error not yet told), else only `more`.
        rec = self.rec
        if not rec["cik"] or not self.cfg["report"]:
            return False
        if state:
            i, n = rec["inst"] or {}, rec["n"]
            more = (
                (
                    ("state", state),
                    ("version", i.get("ver") or i.get("ts") or ""),
                    ("content", store.key(i["id"], i["ts"]) if i.get("id") else ""),
                    ("boots", n.get("boot", 0)),
                    ("rollbacks", n.get("rb", 0)),
                )
                + more
                + ((("error", self.err),) if self.err else ())
            )
        try:
            self.api.report(rec["cik"], *more)
            if state:
                self.err = self.told = None
            return True
        except (OSError, AgentError) as e:
            if compat.level > 1:
                log("report not sent:", repr(e))
            return False

    def _saved(self):
        # updater's save() after each range: progress at most once per 10 %, and no more
        # progress in this download once a report failed. off // (size // 10 + 1) is the
        # tens of percent without a product that could outgrow a small int.
        self.save()
        j = self.rec["j"]
        p = j["off"] // (j["size"] // 10 + 1) if j else 10
        if self.pct < p < 10:
            self.pct = p
            if not self._report(None, ("progress", p * 10)):
                self.pct = 10

    def start(self):
        """Book-keeping of one start: count it, roll back an update that never came up."""
        rec = self.rec
        store.count(rec, "boot")
        if rec["state"] == "activating" and not rec["cik"]:
            log("an activation was interrupted before its CIK was stored: if the server")
            log("answers 409, regenerate this serial number there (enable=true)")
        if updater.boot(self.board, rec, self.cfg["max_boots"], self.save):
            self.say = "rolledback"
        self.save()

    def step(self):
        """One decision. -> (exit code, ms to wait), or None to go on at once."""
        rec, cfg = self.rec, self.cfg
        fresh = not rec["cik"]
        try:
            self.board.network_up(cfg["timeout"] * 1000)
            if fresh:
                r = self.activate()
                if r:
                    return r
            ids = self.api.list(rec["cik"], cfg["firmware_prefix"])
            if rec["pend"]:  # this start reached the server: keep the new content if it runs
                if updater.confirm(self.board, rec, cfg["max_boots"]):
                    self.say = "rolledback"
                self.save()
            if not self.said:  # this start or activation, with what runs after the above
                self.said = True
                self._report(self.say)
            c = updater.pick(self.api, rec["cik"], ids, rec)
            if c:
                return self.update(c)
            log("up to date")
            if self.err or self.told:  # a failure or refusal was told: it is behind us
                self._report("active")
            self.backoff = _MIN  # a whole pass worked: failures start over from 2 s
            return OK, cfg["poll"] * 1000
        except updater.Refused as e:
            return self.refused(e)
        except (OSError, AgentError) as e:
            return self.failed(e, fresh)

    def activate(self):
        """POST /provision/activate with the state saved first. -> None once active, else
        (exit code, ms to wait) for an answer that only a change on the server can alter."""
        rec, retry = self.rec, self.cfg["retry"] * 1000
        self._set("activating")
        try:
            rec["cik"] = self.api.activate(self.cfg["sn"])
        except ApiError as e:
            st = e.args[0]
            if st == 409:
                log("activation refused (409): not enabled, already activated or expired")
                self._set("expired")
                return EXPIRED, retry
            if st == 404 or st == 403:
                log("configuration error: activation answered", st)
                log("(404: serial number unknown, 403: invalid vendor/model pair)")
                self._set("unprov")
                return CONFIG, retry
            raise
        store.count(rec, "act")
        self._set("active")
        self.said = False  # each activation is told (after the list, in step)

    def update(self, cand):
        """cand from updater.pick(): check it, download it, apply it, reset (which returns
        only on hosts that exit from reset()). -> (RESET, 0)"""
        rec = self.rec
        c = updater.check(cand, rec, self.cfg)  # downgrade, signature: refused before a download
        j = rec["j"]
        self.pct = j["off"] // (j["size"] // 10 + 1) if j and j["id"] == c[0] else 0
        self._report("downloading", ("target", c[4] or c[2]), ("progress", self.pct * 10))
        updater.download(self.api, self.board, rec, c, self.mv, self._saved, self.cfg)
        self.pct = 10
        self._report("applied", ("target", c[4] or c[2]))
        log("restarting into the new content")
        self.board.reset()
        return RESET, 0

    def refused(self, e):
        """An update refused (updater.Refused e): told once, tried again at the next poll."""
        log("update refused:", e.args[0])
        err = e.args[0][:_ERR]
        if err != self.told:  # a downgrade still offered is refused at every poll
            self.err = err
            if self._report("refused"):
                self.told = err
        return REFUSED, self.cfg["poll"] * 1000

    def failed(self, e, activating):
        """A step that raised e (network, server or protocol trouble); activating: it began
        without a CIK. -> (FAIL, ms of backoff with jitter), or None to activate again."""
        rec = self.rec
        self.pct, self.err = 10, repr(e)[:_ERR]
        if isinstance(e, ApiError) and e.args[0] == 401 and not activating:
            # In active, 401 means the CIK was regenerated or disabled: activate again.
            log("CIK refused (401): activating again")
            rec["cik"] = None
            self._set("unprov")
            return None
        if isinstance(e, ApiError) and e.args[0] == 401:
            rec["cik"] = None  # refused right after activating: back off, do not loop
            self._set("unprov")
        elif activating and not rec["cik"] and not self.api.sent():
            self._set("unprov")  # the activation never left: nothing can have been lost
        elif not isinstance(e, OSError):
            # The server answered (an error status, a malformed answer): tell it now;
            # after network trouble the error goes with the next status that gets out.
            self._report("failed")
        log("retrying in", self.backoff // 1000, "s after", repr(e))
        from random import getrandbits

        wait = self.backoff // 2 + (self.backoff // 2) * getrandbits(8) // 255
        self.backoff = min(self.backoff * 2, _MAX)
        return FAIL, wait

    def run(self, once=False):
        self.start()
        while True:
            r = self.step()
            if r is None:
                continue
            if once:
                return r[0]
            self.board.sleep_ms(r[1])
