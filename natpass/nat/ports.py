"""WAN port (and ICMP identifier) allocation: port preservation, the port range, helper wishes.

A WAN port is in use when a mapping holds it (the engine's per-protocol :class:`PortIndex` of
mappings by WAN endpoint, shared with this pool): no separate per-port set, so a mapping costs
no extra memory for it. The pool counts the ports used inside the range
per (protocol, WAN address), so a full range is known in O(1) (``ports-exhausted``).
"""

from __future__ import annotations

import random
from typing import Any

from natpass.nat.table import PortIndex

PORT_BYTES: tuple[bytes, ...] = tuple(p.to_bytes(2, "big") for p in range(65536))


class PortPool:
    """Free/used WAN ports per protocol and WAN address."""

    __slots__ = ("maps_wan", "in_range", "lo", "hi", "rng")

    def __init__(self, maps_wan: dict[int, PortIndex[Any]], lo: int, hi: int,
                 seed: int | None) -> None:
        self.maps_wan = maps_wan
        self.in_range: dict[tuple[int, bytes], int] = {}  # (proto, WAN address) -> ports used
        self.lo, self.hi = lo, hi
        self.rng = random.Random(seed)

    def set_range(self, lo: int, hi: int, seed: int | None) -> None:
        if not 0 < lo <= hi <= 65535:
            raise ValueError(f"bad port range {(lo, hi)}")
        self.lo, self.hi = lo, hi
        self.rng = random.Random(seed)

    def is_free(self, proto: int, wkey: bytes) -> bool:
        """``wkey`` (WAN address + port bytes) is held by no mapping."""
        mw = self.maps_wan.get(proto)
        return mw is None or wkey not in mw

    def count(self, proto: int, wan: bytes, port: int, n: int) -> None:
        """A port was taken (``n`` 1) or given back (-1)."""
        if self.lo <= port <= self.hi:
            k = (proto, wan)
            self.in_range[k] = self.in_range.get(k, 0) + n

    def alloc(self, proto: int, wan: bytes, preferred: int | None,
              preserve: int | None) -> int | None:
        """A free WAN port: ``preferred`` (a helper's wish), else ``preserve`` (port
        preservation, RFC 4787 REQ-3, only inside the port range as Linux masquerade with a
        range does), else random in the range (RFC 6056 algorithm 1: random start, linear
        probe); None when the range is full. Counted as used; the caller inserts the mapping.
        A helper's preferred port may lie outside
        the range (IKE's 500, L2TP's 1701: what their peers expect)."""
        pb = PORT_BYTES
        port: int | None = None
        lo, hi = self.lo, self.hi
        if preserve is not None and not lo <= preserve <= hi:
            preserve = None
        for p in (preferred, preserve):
            if p is not None and 0 < p <= 65535 and self.is_free(proto, wan + pb[p]):
                port = p
                break
        if port is None:
            size = hi - lo + 1
            if self.in_range.get((proto, wan), 0) >= size:
                return None
            p = lo + self.rng.randrange(size)
            for _ in range(size):
                if self.is_free(proto, wan + pb[p]):
                    port = p
                    break
                p = p + 1 if p < hi else lo
            if port is None:
                return None
        self.count(proto, wan, port, 1)
        return port
