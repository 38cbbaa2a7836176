"""The state machine: unprovisioned -> activating -> active -> expired / retry.

It decides and sleeps; the exchanges are api's, the bytes are updater's and the board's.
Every transition is saved before it is acted on.
"""

from agent import store, updater
from agent.api import Conflict, Forbidden, NotFound, Unauthorized
from agent.compat import const, log
from agent.http import AgentError

# Exit codes of a `once` run (main returns them).
OK = const(0)  # active and up to date
FAIL = const(1)  # network, server or protocol trouble: try again later
RESET = const(3)  # board.reset() returned (hosts exit with 3 from inside reset())
EXPIRED = const(4)  # 409: not enabled, already activated, or the window expired
CONFIG = const(5)  # 404 / 403: this serial number or vendor/model pair is wrong
REFUSED = const(6)  # an update was refused (digest missing or wrong)

_MIN = const(2000)  # backoff: 2 s doubling to 10 min (issue 3)
_MAX = const(600000)


def _jitter(ms):
    from random import getrandbits

    return ms // 2 + (ms // 2) * getrandbits(8) // 255


class Fsm:
    def __init__(self, board, api, cfg):
        self.board, self.api, self.cfg = board, api, cfg
        self.rec = store.load(board)
        self.backoff = _MIN
        # One download buffer for the whole run, allocated before the heap fragments.
        self.mv = memoryview(bytearray(cfg.get("buffer", 4096)))

    def save(self):
        store.save(self.board, self.rec)

    def start(self):
        """Book-keeping of one start: count it, roll back an update that never came up."""
        rec = self.rec
        store.count(rec, "boot")
        if rec["state"] == "activating" and rec["cik"] is None:
            log("an activation was interrupted before its CIK was stored; if the server now")
            log("answers 409, regenerate this serial number on the server (enable=true)")
        p = rec["pend"]
        if p:
            p["boots"] = p.get("boots", 0) + 1
            if p["boots"] > self.cfg.get("max_boots", 3):
                log("update", p["id"], "never confirmed: rolling back")
                rec["pend"] = None
                rec["bad"] = "%s:%d" % (p["id"], p["ts"])
                store.count(rec, "rb")
                self.save()
                self.board.slot_rollback()
        self.save()

    def _set(self, state):
        if self.rec["state"] != state:
            log("state", self.rec["state"], "->", state)
            self.rec["state"] = state
        self.save()

    def _report(self, *pairs):
        if self.cfg.get("report", True) and self.rec["cik"]:
            try:
                self.api.report(self.rec["cik"], *pairs)
            except (OSError, AgentError) as e:
                log("report not sent:", type(e).__name__)

    def _retry(self, e):
        log("retrying in", self.backoff // 1000, "s after", type(e).__name__, e)
        wait = _jitter(self.backoff)
        self.backoff = min(self.backoff * 2, _MAX)
        return FAIL, wait

    def step(self):
        """One decision. -> (exit code, ms to wait) or None to go on at once."""
        rec, cfg = self.rec, self.cfg
        long = cfg.get("retry", 900) * 1000
        fresh = rec["cik"] is None
        try:
            self.board.network_up(cfg.get("timeout", 30) * 1000)
            if rec["cik"] is None:
                self._set("activating")
                try:
                    rec["cik"] = self.api.activate(cfg["sn"])
                except Conflict:
                    log("activation refused (409): not enabled, already activated or expired")
                    self._set("expired")
                    return EXPIRED, long
                except (NotFound, Forbidden) as e:
                    log("configuration error: the server answered", e.status, "to activation")
                    log("(404: serial number unknown, 403: invalid vendor/model pair)")
                    self._set("unprov")
                    return CONFIG, long
                store.count(rec, "act")
                self._set("active")
                self._report(("state", "active"))
            return self._active()
        except Unauthorized as e:
            if fresh:  # refused right after activating: not a regenerate, do not loop
                rec["cik"] = None
                self._set("unprov")
                return self._retry(e)
            # In active, 401 means the CIK was regenerated or disabled: forget it, activate again.
            log("CIK refused (401): activating again")
            rec["cik"] = None
            self._set("unprov")
            return None
        except updater.Refused as e:
            log("update refused:", e)
            return REFUSED, cfg.get("poll", 3600) * 1000
        except (OSError, AgentError) as e:
            return self._retry(e)

    def _active(self):
        rec, cfg = self.rec, self.cfg
        ids = self.api.list(rec["cik"], cfg.get("firmware_prefix", "firmware"))
        self.backoff = _MIN
        p = rec["pend"]
        if p:  # the new content came up and reached the server: keep it
            self.board.slot_confirm()
            rec["inst"] = {"id": p["id"], "ver": p["ver"], "sha": p["sha"], "ts": p["ts"]}
            rec["pend"] = None
            store.count(rec, "upd")
            log("update", p["id"], "confirmed")
            self.save()
            self._report(("state", "active"), ("version", p["ver"] or p["ts"]))
        cand = updater.pick(self.api, rec["cik"], ids, rec)
        if cand is None:
            log("up to date")
            return OK, cfg.get("poll", 3600) * 1000
        updater.download(
            self.api,
            self.board,
            rec,
            cand,
            self.mv,
            self.save,
            cfg.get("chunk", 65536),
            cfg.get("allow_unverified", False),
        )
        self._report(("state", "applied"), ("version", cand[4] or cand[2]))
        log("restarting into the new content")
        self.board.reset()
        return RESET, 0

    def run(self, once=False):
        self.start()
        while True:
            r = self.step()
            if r is None:
                continue
            if once:
                return r[0]
            self.board.sleep_ms(r[1])
