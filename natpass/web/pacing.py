"""Request pacing per source address (the web app shares the interpreter with the packet loop)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

REQUESTS_PER_S = 20.0  # per source address; a page view is three requests
REQUEST_BURST = 40


class Pacer:
    """At most ``rate`` requests per second per source address after a burst of ``burst`` (GCRA):
    a request over the budget waits for its slot, and is refused (429) when that is more than
    ``max_wait`` away. Waiting costs the router nothing, so a hammering client gets slower, not
    more of the router's CPU (the web app shares the interpreter with the packet loop)."""

    def __init__(self, rate: float = REQUESTS_PER_S, burst: int = REQUEST_BURST, max_wait: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, limit: int = 4096) -> None:
        self.interval = 1.0 / rate
        self.tau = burst * self.interval
        self.max_wait = max_wait
        self.clock = clock
        self.limit = limit
        self._tat: OrderedDict[str, float] = OrderedDict()

    def delay(self, source: str) -> float | None:
        """Seconds this request must wait (0: none), or None when it is to be refused."""
        now = self.clock()
        tat = max(self._tat.pop(source, now), now)
        wait = tat - now - self.tau
        if wait > self.max_wait:
            self._tat[source] = tat
            return None
        self._tat[source] = tat + self.interval
        while len(self._tat) > self.limit:
            self._tat.popitem(last=False)
        return max(0.0, wait)

