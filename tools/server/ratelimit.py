"""Failed activation attempts per source address, in a sliding minute."""

import collections
import math

WINDOW = 60.0
_MAX_ADDRESSES = 10000


class Limiter:
    def __init__(self, limit, clock):
        self.limit = limit  # 0 = no limit
        self.clock = clock
        self._fails = collections.OrderedDict()  # address -> deque of times

    def retry_after(self, address):
        """Seconds to wait before `address` may try again, or 0 if it may now."""
        if not self.limit:
            return 0
        times = self._fails.get(address)
        if not times:
            return 0
        now = self.clock()
        while times and times[0] <= now - WINDOW:
            times.popleft()
        if not times:
            del self._fails[address]
            return 0
        if len(times) < self.limit:
            return 0
        return max(1, math.ceil(times[0] + WINDOW - now))

    def failed(self, address):
        if not self.limit:
            return
        times = self._fails.pop(address, None) or collections.deque(maxlen=self.limit)
        times.append(self.clock())
        self._fails[address] = times  # most recently failing address last
        while len(self._fails) > _MAX_ADDRESSES:
            self._fails.popitem(last=False)


class SharedLimiter:
    """The same sliding minute kept in the SQLite file (table act_fails), so that the
    workers of `--workers N` and instances sharing one database file count an address
    together. Its own connection: a failure is recorded whatever the request's transaction."""

    _CLEAN_EVERY = 1000

    def __init__(self, path, limit, clock):
        import sqlite3

        self.limit = limit
        self.clock = clock  # wall time: shared between processes
        self._n = 0
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS act_fails (address TEXT NOT NULL, ts REAL NOT NULL)"
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS act_fails_a ON act_fails(address, ts)")

    def close(self):
        self.db.close()

    def retry_after(self, address):
        if not self.limit:
            return 0
        now = self.clock()
        rows = self.db.execute(
            "SELECT ts FROM act_fails WHERE address = ? AND ts > ? ORDER BY ts DESC LIMIT ?",
            (address, now - WINDOW, self.limit),
        ).fetchall()
        if len(rows) < self.limit:
            return 0
        return max(1, math.ceil(rows[-1][0] + WINDOW - now))

    def failed(self, address):
        if not self.limit:
            return
        now = self.clock()
        self.db.execute("INSERT INTO act_fails (address, ts) VALUES (?, ?)", (address, now))
        self._n += 1
        if self._n % self._CLEAN_EVERY == 0:
            self.db.execute("DELETE FROM act_fails WHERE ts <= ?", (now - WINDOW,))
        else:
            self.db.execute(
                "DELETE FROM act_fails WHERE address = ? AND ts <= ?", (address, now - WINDOW)
            )
