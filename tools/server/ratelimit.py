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
