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
    """The same sliding minute kept in the database (table act_fails), so that the workers of
    `--workers N` and the instances sharing one database count an address together. The
    same SQL on both engines; called outside any transaction (a failure is recorded
    whatever became of the request's)."""

    _CLEAN_EVERY = 1000

    def __init__(self, engine, limit, clock):
        self.db = engine
        self.limit = limit  # 0 = no limit
        self.clock = clock  # wall time: shared between processes
        self._n = 0

    async def retry_after(self, address):
        """Seconds to wait before `address` may try again, or 0 if it may now."""
        if not self.limit:
            return 0
        now = self.clock()
        rows = await self.db.all(
            "SELECT ts FROM act_fails WHERE address = ? AND ts > ? ORDER BY ts DESC LIMIT ?",
            address,
            now - WINDOW,
            self.limit,
        )
        if len(rows) < self.limit:
            return 0
        (oldest,) = rows[-1]
        return max(1, math.ceil(oldest + WINDOW - now))

    async def failed(self, address):
        if not self.limit:
            return
        now = self.clock()
        await self.db.run("INSERT INTO act_fails (address, ts) VALUES (?, ?)", address, now)
        self._n += 1
        if self._n % self._CLEAN_EVERY == 0:
            await self.db.run("DELETE FROM act_fails WHERE ts <= ?", now - WINDOW)
        else:
            await self.db.run(
                "DELETE FROM act_fails WHERE address = ? AND ts <= ?", address, now - WINDOW
            )
