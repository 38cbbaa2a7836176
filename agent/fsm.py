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
    # Heap (tools/harness/heapflow.py): step() keeps its branches inline, as each helper
    # method stays in the heap for the whole run (three of them: +0.25 KiB in every way
    # bisected). Run from .mpy, every name is also a qstr in the heap: with the signature
    # check loaded the agent's names nearly fill a qstr pool (296 of 300, 64-bit unix port),
    # and a few new names cost a new pool, 3.6 KiB.

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
        rec["n"]["boot"] = rec["n"].get("boot", 0) + 1
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
                self._set("activating")
                try:
                    rec["cik"] = self.api.activate(cfg["sn"])
                except ApiError as e:
                    st = e.args[0]
                    if st == 409:
                        log("activation refused (409): not enabled, already activated or expired")
                        self._set("expired")
                        return EXPIRED, cfg["retry"] * 1000
                    if st == 404 or st == 403:
                        log("configuration error: activation answered", st)
                        log("(404: serial number unknown, 403: invalid vendor/model pair)")
                        self._set("unprov")
                        return CONFIG, cfg["retry"] * 1000
                    raise
                rec["n"]["act"] = rec["n"].get("act", 0) + 1
                self._set("active")
                self.said = False  # each activation is told (after the list below)
            ids = self.api.list(rec["cik"], cfg["firmware_prefix"])
            if rec["pend"]:  # this start reached the server: keep the new content if it runs
                if updater.confirm(self.board, rec, cfg["max_boots"]):
                    self.say = "rolledback"
                self.save()
            if not self.said:  # this start or activation, with what runs after the above
                self.said = True
                self._report(self.say)
            c = updater.pick(self.api, rec["cik"], ids, rec)
            ids = None  # not held through the signature check and the download (heap)
            if c:
                c = updater.check(c, rec, cfg)  # downgrade, signature: refused before a download
                j = rec["j"]
                self.pct = j["off"] // (j["size"] // 10 + 1) if j and j["id"] == c[0] else 0
                self._report("downloading", ("target", c[4] or c[2]), ("progress", self.pct * 10))
                updater.download(self.api, self.board, rec, c, self.mv, self._saved, cfg)
                self.pct = 10
                self._report("applied", ("target", c[4] or c[2]))
                log("restarting into the new content")
                self.board.reset()
                return RESET, 0
            log("up to date")
            if self.err or self.told:  # a failure or refusal was told: it is behind us
                self._report("active")
            self.backoff = _MIN  # a whole pass worked: failures start over from 2 s
            return OK, cfg["poll"] * 1000
        except updater.Refused as e:
            log("update refused:", e.args[0])
            err = e.args[0][:_ERR]
            if err != self.told:  # a downgrade still offered is refused at every poll
                self.err = err
                if self._report("refused"):
                    self.told = err
            return REFUSED, cfg["poll"] * 1000
        except (OSError, AgentError) as e:
            self.pct, self.err = 10, repr(e)[:_ERR]
            if isinstance(e, ApiError) and e.args[0] == 401:
                # In active, 401 means the CIK was regenerated or disabled: activate again;
                # refused right after activating, it backs off (below) instead of looping.
                if not fresh:
                    log("CIK refused (401): activating again")
                rec["cik"] = None
                self._set("unprov")
                if not fresh:
                    return None
            elif fresh and not rec["cik"] and not self.api.sent():
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
