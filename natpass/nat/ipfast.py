"""Cached translations of established GRE calls and ESP SAs (the helpers' fast path).

A helper that has bound one direction of a PPTP call (GRE v1, keyed by Call ID) or a raw-ESP SA
(keyed by SPI) installs an :class:`IpFast` entry through ``ctx.ip_fast_path``; the engine's
established path then translates later packets of that direction with one dict lookup, an
address write, a precomputed RFC 1624 delta and, for inbound GRE, the LAN side's Call ID, without
calling the helper. The entry records when it was last used and how many packets it carried;
the helper folds both into its own state (idle timeouts, least-recently-used order, counters)
before it reads them, at least once a second on its ``tick``.

The entries are derived state: the helper removes them when the call or SA ends or changes, the
engine drops all of a helper's entries when its switch flips and all of them on a reload, and
the helper installs them again on the next packet that takes its slow path. They are never saved
across a restart.

Keys (bytes sliced out of the packet): ESP, source + destination address + SPI (bytes 12..24 of
a packet with a 20-byte header); GRE v1, source + destination address + the key's Call ID
(bytes 12..20 and 26..28).
"""

from __future__ import annotations

from typing import Final

from natpass.packets.checksum import combine, delta

PROTO_GRE: Final = 47
PROTO_ESP: Final = 50
FAST_PROTOCOLS: Final = (PROTO_GRE, PROTO_ESP)
TTL_DEC_DELTA: Final = 0xFEFF  # RFC 1624 delta of the (TTL, protocol) word for a TTL decrement


class IpFast:
    """One direction of a call or SA: what the engine writes, and what it saw since the last fold."""

    __slots__ = ("proto", "from_lan", "key", "addr", "ipd", "ident", "last", "packets", "live")

    def __init__(self, proto: int, from_lan: bool, key: bytes, addr: bytes, ipd: int,
                 ident: bytes | None, now: float) -> None:
        self.proto = proto
        self.from_lan = from_lan
        self.key = key
        self.addr = addr  # the new source (outbound) or destination (inbound) address
        self.ipd = ipd  # RFC 1624 delta of the IPv4 header checksum (address + TTL)
        self.ident = ident  # inbound GRE: the LAN side's Call ID (2 bytes); else None
        self.last = now
        self.packets = 0  # carried by the fast path since the helper's last fold
        self.live = True  # False once removed (the helper then installs a new one)

    def take_packets(self) -> int:
        """The packets counted since the last call (the helper adds them to its counters)."""
        n, self.packets = self.packets, 0
        return n


class IpFastTable:
    """The four dicts the engine's established path reads: (outbound, inbound) x (GRE, ESP)."""

    def __init__(self) -> None:
        self.out_gre: dict[bytes, IpFast] = {}
        self.in_gre: dict[bytes, IpFast] = {}
        self.out_esp: dict[bytes, IpFast] = {}
        self.in_esp: dict[bytes, IpFast] = {}

    def _dict(self, proto: int, from_lan: bool) -> dict[bytes, IpFast]:
        if proto == PROTO_GRE:
            return self.out_gre if from_lan else self.in_gre
        return self.out_esp if from_lan else self.in_esp

    def __len__(self) -> int:
        return len(self.out_gre) + len(self.in_gre) + len(self.out_esp) + len(self.in_esp)

    def install(self, proto: int, from_lan: bool, src: bytes, dst: bytes, ident: int,
                new_addr: bytes, new_ident: int | None, now: float) -> IpFast:
        """Cache the translation of packets ``src`` -> ``dst`` with this SPI / Call ID (replacing
        any entry of that key); ``new_addr`` replaces the source (outbound) or destination."""
        if proto not in FAST_PROTOCOLS:
            raise ValueError(f"no fast path for IP protocol {proto}")
        if proto == PROTO_ESP:
            if not 0 < ident <= 0xFFFFFFFF:
                raise ValueError(f"bad SPI {ident}")
            key = bytes(src) + bytes(dst) + ident.to_bytes(4, "big")
        else:
            if not 0 <= ident <= 0xFFFF:
                raise ValueError(f"bad Call ID {ident}")
            key = bytes(src) + bytes(dst) + ident.to_bytes(2, "big")
        old_addr = bytes(src) if from_lan else bytes(dst)
        new_addr = bytes(new_addr)
        ipd = combine(delta(old_addr, new_addr), TTL_DEC_DELTA)
        out_ident = None
        if new_ident is not None and proto == PROTO_GRE and not from_lan:
            out_ident = new_ident.to_bytes(2, "big")
        e = IpFast(proto, from_lan, key, new_addr, ipd, out_ident, now)
        d = self._dict(proto, from_lan)
        old = d.get(key)
        if old is not None:
            old.live = False
        d[key] = e
        return e

    def remove(self, e: IpFast) -> None:
        """Forget ``e`` (if it is still the entry of its key)."""
        d = self._dict(e.proto, e.from_lan)
        if d.get(e.key) is e:
            del d[e.key]
        e.live = False

    def clear(self, protocols: tuple[int, ...] = FAST_PROTOCOLS) -> int:
        """Forget every entry of these protocols; returns how many."""
        n = 0
        for proto in protocols:
            if proto not in FAST_PROTOCOLS:
                continue
            for from_lan in (True, False):
                d = self._dict(proto, from_lan)
                for e in d.values():
                    e.live = False
                n += len(d)
                d.clear()
        return n


__all__ = ["FAST_PROTOCOLS", "IpFast", "IpFastTable"]
