"""Small pieces shared by the passthrough helpers: address text, byte access, the context check."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from natpass.nat.config import Limits, NatConfig, Timeouts
from natpass.nat.helper import Helper, HelperContext
from natpass.packets.ipv4 import OFF_DST, OFF_SRC, addr_to_str
from natpass.packets.rewrite import set_address

SEQ_MASK = 0xFFFFFFFF  # TCP sequence numbers wrap at 2**32 (RFC 9293 3.4)
HALF_SEQ = 0x80000000


def ip_text(addr: bytes) -> str:
    return addr_to_str(addr)


def src_of(buf: bytearray) -> bytes:
    return bytes(buf[OFF_SRC:OFF_SRC + 4])


def dst_of(buf: bytearray) -> bytes:
    return bytes(buf[OFF_DST:OFF_DST + 4])


def u16(buf: bytes | bytearray, off: int) -> int:
    return (buf[off] << 8) | buf[off + 1]


def u32(buf: bytes | bytearray, off: int) -> int:
    return int.from_bytes(buf[off:off + 4], "big")


def need_ctx(ctx: HelperContext | None) -> HelperContext:
    """The bound context; a helper used before ``Engine`` bound it is a programming error."""
    if ctx is None:
        raise RuntimeError("passthrough helper used before Engine.bind()")
    return ctx


# What a helper keeps when the config leaves the flow table unbounded (``0``): helper state is fed
# by packets and must stay bounded whatever a peer sends.
DEFAULT_PER_HOST: Final = Limits().max_flows_per_host
DEFAULT_TOTAL: Final = Limits().max_flows
LRU_GRANULARITY: Final = 1.0  # seconds: recency finer than this does not reorder entries


@dataclass(frozen=True, slots=True)
class StateLimit:
    """How many entries of one kind of helper state a LAN host may hold, and all hosts together."""

    per_host: int
    total: int

    def __post_init__(self) -> None:
        if not 0 < self.per_host <= self.total:
            raise ValueError(f"bad helper state limit {self.per_host}/{self.total}")

    @classmethod
    def like_flows(cls, limits: Limits) -> StateLimit:
        """One entry is worth one flow: ``max_flows_per_host`` per host, ``max_flows`` in all
        (the flow table's defaults where the config leaves it unbounded)."""
        total = limits.max_flows or DEFAULT_TOTAL
        per_host = min(limits.max_flows_per_host or DEFAULT_PER_HOST, total)
        return cls(per_host, total)


class Owned(Protocol):
    """An entry of helper state: the LAN host it belongs to."""

    @property
    def lan(self) -> bytes: ...


K = TypeVar("K", bound=Hashable)
E = TypeVar("E", bound=Owned)


class HostLru(Generic[K, E]):
    """Helper state owned by LAN hosts, bounded like the flow table.

    A host at its ``per_host`` limit forgets its own least recently used entry to make room. When
    all hosts together reach ``total``, the entry goes from the host holding the most entries (the
    adding host's own when it holds as many as any other): a host's state is pushed out by another
    host only when it holds more entries than that host, so a host flooding new state never
    evicts the few tunnels of another. Recency is kept to ``LRU_GRANULARITY`` (``touch``) so that
    per-packet refreshes stay cheap. ``on_evict(key, entry, now)`` is called after an entry was
    pushed out (it is already gone from the table)."""

    def __init__(self, limit: StateLimit, on_evict: Callable[[K, E, float], None]) -> None:
        self.limit = limit
        self._on_evict = on_evict
        self._entries: dict[K, E] = {}
        self._order: dict[bytes, dict[K, float]] = {}  # host -> key -> time filed, oldest first
        self._sizes: dict[int, dict[bytes, None]] = {}  # n -> hosts holding n entries
        self._largest = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)

    def get(self, key: K) -> E | None:
        return self._entries.get(key)

    def values(self) -> list[E]:
        """A snapshot: callers may remove entries while walking it."""
        return list(self._entries.values())

    def items(self) -> list[tuple[K, E]]:
        return list(self._entries.items())

    def hosts(self) -> int:
        return len(self._order)

    def held_by(self, host: bytes) -> int:
        order = self._order.get(host)
        return len(order) if order is not None else 0

    def _resize(self, host: bytes, old: int, new: int) -> None:
        if old:
            bucket = self._sizes[old]
            del bucket[host]
            if not bucket:
                del self._sizes[old]
        if new:
            self._sizes.setdefault(new, {})[host] = None
            if new > self._largest:
                self._largest = new
        while self._largest and self._largest not in self._sizes:
            self._largest -= 1  # sizes change by one at a time: the next largest is close

    def add(self, key: K, entry: E, now: float) -> None:
        """Insert (or replace) ``entry``, evicting as the limits say."""
        if key in self._entries:
            self.pop(key)
        host = entry.lan
        held = self.held_by(host)
        if held >= self.limit.per_host:
            self._evict(host, now)
            held -= 1
        while len(self._entries) >= self.limit.total:
            victim = host if held and held >= self._largest else next(iter(self._sizes[self._largest]))
            self._evict(victim, now)
            if victim == host:
                held -= 1
        self._entries[key] = entry
        order = self._order.get(host)
        if order is None:
            order = self._order[host] = {}
        order[key] = now
        self._resize(host, held, held + 1)

    def _evict(self, host: bytes, now: float) -> None:
        key = next(iter(self._order[host]))
        entry = self.pop(key)
        assert entry is not None
        self.evicted += 1
        self._on_evict(key, entry, now)

    def touch(self, key: K, host: bytes, now: float) -> None:
        """``key`` (of ``host``) was used at ``now``: it becomes the host's most recent entry."""
        order = self._order.get(host)
        if order is not None:
            filed = order.get(key)
            if filed is not None and now - filed >= LRU_GRANULARITY:
                del order[key]
                order[key] = now

    def pop(self, key: K) -> E | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        host = entry.lan
        order = self._order[host]
        del order[key]
        n = len(order)
        if not n:
            del self._order[host]
        self._resize(host, n + 1, n)
        return entry

    def clear(self) -> None:
        self._entries.clear()
        self._order.clear()
        self._sizes.clear()
        self._largest = 0

    def set_limit(self, limit: StateLimit, now: float) -> None:
        """New limits (a reload): entries beyond them are evicted at once, as ``add`` would."""
        self.limit = limit
        for host in list(self._order):
            while self.held_by(host) > limit.per_host:
                self._evict(host, now)
        while len(self._entries) > limit.total:
            self._evict(next(iter(self._sizes[self._largest])), now)


def cap(table: dict[Any, Any], limit: int) -> None:
    """Forget the oldest entries (dicts keep insertion order) beyond ``limit``: helper tables
    fed by packets must stay bounded whatever a peer sends."""
    while len(table) > limit:
        del table[next(iter(table))]


# Address rewrites of GRE, ESP and AH packets: the one implementation in natpass.packets.
set_ip_addr = set_address


class SwitchedHelper(Helper):
    """What the three helpers share: their timeouts, their own counters (each also handed to
    ``ctx.count``), and a switch flip that tears tunnel state down only when on turns off."""

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        super().__init__()
        self.timeouts = timeouts or Timeouts()
        self._counters: dict[str, int] = {}

    def _count(self, name: str, n: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + n
        if self.ctx is not None:
            self.ctx.count(name, n)

    def reconfigure(self, config: NatConfig, now: float) -> None:
        # Expiry reads self.timeouts each time, so live tunnels follow the new values at once.
        self.timeouts = config.timeouts

    def set_enabled(self, on: bool, now: float) -> int:
        was = self.enabled
        self.enabled = on
        return self.tear_down(now) if was and not on else 0

    def tear_down(self, now: float) -> int:
        """Forget every tunnel (the switch went off); returns how many were torn down."""
        return 0
