"""What the web app remembers by itself: traffic samples for the last hour and a bounded log."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

HISTORY_SECONDS = 3600.0
SAMPLE_EVERY = 10.0
LOG_SIZE = 500


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # the router's clock (monotonic seconds)
    wall: float
    bytes_lan: int
    bytes_wan: int
    drops: int


@dataclass(frozen=True, slots=True)
class Rate:
    t: float
    wall: float
    lan_bps: float  # bits per second, LAN -> internet
    wan_bps: float
    drops_ps: float


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


class TrafficHistory:
    """Counter samples from periodic status reads; rates between neighbours for the graph."""

    def __init__(self, span: float = HISTORY_SECONDS, every: float = SAMPLE_EVERY,
                 wall: Callable[[], float] = time.time) -> None:
        self.span = span
        self.every = every
        self.wall = wall
        self._samples: deque[Sample] = deque()
        self._lock = threading.Lock()

    def add(self, t: float, status: Mapping[str, Any]) -> None:
        counters = status.get("counters")
        counters = counters if isinstance(counters, Mapping) else {}
        drops = status.get("drops")
        total_drops = sum(_int(v) for v in drops.values()) if isinstance(drops, Mapping) else 0
        sample = Sample(t, self.wall(), _int(counters.get("bytes_from_lan")), _int(counters.get("bytes_from_wan")),
                        total_drops)
        with self._lock:
            if self._samples and t - self._samples[-1].t < self.every * 0.5:
                return  # a burst of page views must not crowd out the hour
            if self._samples and (t < self._samples[-1].t or sample.bytes_lan < self._samples[-1].bytes_lan):
                self._samples.clear()  # a restarted counter or clock: start again
            self._samples.append(sample)
            while self._samples and t - self._samples[0].t > self.span:
                self._samples.popleft()

    def due(self, t: float) -> bool:
        with self._lock:
            return not self._samples or t - self._samples[-1].t >= self.every

    def rates(self) -> list[Rate]:
        with self._lock:
            samples = list(self._samples)
        out = []
        for a, b in zip(samples, samples[1:], strict=False):
            dt = b.t - a.t
            if dt <= 0:
                continue
            out.append(Rate(b.t, b.wall, 8 * max(0, b.bytes_lan - a.bytes_lan) / dt,
                            8 * max(0, b.bytes_wan - a.bytes_wan) / dt, max(0, b.drops - a.drops) / dt))
        return out


@dataclass(frozen=True, slots=True)
class LogEntry:
    ts: float  # Unix time
    kind: str  # login, login-failed, refused, switch, reload, token, logout, tunnel, ...
    text: str
    source: str | None = None


class EventLog:
    """The newest LOG_SIZE admin events, in memory (the usage database keeps tunnel history)."""

    def __init__(self, size: int = LOG_SIZE, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self._entries: deque[LogEntry] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, kind: str, text: str, source: str | None = None) -> None:
        with self._lock:
            self._entries.append(LogEntry(self.wall(), kind, text, source))

    def newest_first(self) -> list[LogEntry]:
        with self._lock:
            return list(reversed(self._entries))
