"""The flows' idle timers: a wheel of one-second buckets, visited only when due.

A flow sits in the bucket of its deadline (``Flow.bucket``); traffic only moves ``Flow.last``, so
a packet costs no timer work. When a bucket comes due, each of its flows is either expired or
put in the bucket of its new deadline. A flow that leaves its bucket early (removed, or its
timeout shortened) leaves a stale entry behind; stale entries are counted and purged as soon as
they outnumber the live flows, so a removed flow is never kept alive until its old deadline
(memory stays proportional to the flow limit whatever the rate of new flows).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from natpass.nat.table import Flow

_SLACK = 1024  # stale entries tolerated beyond the live count before a purge


class TimerWheel:
    """Deadline buckets of flows; ``live`` is the number of flows scheduled (the table size)."""

    __slots__ = ("_buckets", "_heap", "_stale")

    def __init__(self) -> None:
        self._buckets: dict[int, list[Flow]] = {}
        self._heap: list[int] = []
        self._stale = 0

    def schedule(self, f: Flow, deadline: float, live: int) -> None:
        """Put ``f`` in the bucket of ``deadline`` (moving it if it was elsewhere)."""
        b = int(deadline) + 1
        lst = self._buckets.get(b)
        if lst is None:
            lst = self._buckets[b] = []
            heapq.heappush(self._heap, b)
        old = f.bucket
        if old is lst:
            return
        if old is not None:
            self._left(live)
        lst.append(f)
        f.bucket = lst

    def forget(self, f: Flow, live: int) -> None:
        """``f`` is removed from the table: its entry goes stale (purged soon, see above)."""
        if f.bucket is not None:
            f.bucket = None
            self._left(live)

    def _left(self, live: int) -> None:
        self._stale += 1
        if self._stale > live + _SLACK:
            for lst in self._buckets.values():
                lst[:] = [f for f in lst if f.bucket is lst]
            self._stale = 0

    def due(self, now: float) -> Iterator[Flow]:
        """Flows whose bucket came due by ``now``, taken out of the wheel; the caller expires
        each or schedules it again."""
        heap = self._heap
        buckets = self._buckets
        while heap and heap[0] <= now:
            lst = buckets.pop(heapq.heappop(heap))
            for f in lst:
                if f.bucket is not lst:
                    self._stale -= 1
                    continue
                f.bucket = None
                yield f

    def entries(self) -> int:
        """Entries held, stale ones included (for tests and status)."""
        return sum(len(lst) for lst in self._buckets.values())

    def __len__(self) -> int:
        """Buckets held."""
        return len(self._buckets)
