"""IPv4 fragments through the NAT (RFC 4787 REQ-14, RFC 791 section 3.2).

Only the first fragment carries the TCP/UDP/ICMP header, so the engine translates it like any
packet and records how (:class:`FragEntry`, keyed by source, destination, IP ID, protocol and
side); later fragments of that datagram copy the recorded addresses. A later fragment that comes
before its first fragment is held (a copy) until the first arrives, then all leave together.
Both tables are bounded by ``limits.max_fragments`` (oldest pushed out first: an evicted held
fragment is a ``fragment-evicted`` drop) and live ``timeouts.fragment`` seconds (a held fragment
that never sees its first is a ``fragment-timeout`` drop). :func:`fragment` splits a packet larger
than the WAN MTU.
"""

from __future__ import annotations

from natpass.packets.checksum import adjust, internet_checksum
from natpass.packets.ipv4 import FLAG_DF as IP_DF
from natpass.packets.ipv4 import FLAG_MF as IP_MF
from natpass.packets.ipv4 import FRAG_OFFSET_MASK as IP_OFFSET
from natpass.packets.ipv4 import iter_options

HeldFragment = tuple[float, bool, bytearray]  # (arrival time, from LAN, packet copy)


def fragment_key(buf: bytearray, from_lan: bool) -> bytes:
    """Source, destination, IP ID, protocol and side: one datagram seen from one side."""
    return bytes(buf[12:20]) + bytes(buf[4:6]) + bytes((buf[9], from_lan))


class FragEntry:
    """How the first fragment of a datagram was translated; later fragments copy it."""

    __slots__ = ("code", "addrs", "adj", "created")

    def __init__(self, code: int, addrs: bytes, adj: int, created: float) -> None:
        self.code = code
        self.addrs = addrs  # the translated source + destination addresses
        self.adj = adj  # RFC 1624 adjustment of the IP checksum (addresses and TTL)
        self.created = created

    def apply(self, buf: bytearray) -> None:
        """Translate a later fragment (its TTL checked > 1 by the caller)."""
        buf[12:20] = self.addrs
        buf[8] -= 1
        adjust(buf, 10, self.adj)


class Fragments:
    """First-fragment entries and held later fragments, both bounded and expiring."""

    __slots__ = ("entries", "held", "held_count", "limit", "lifetime")

    def __init__(self, limit: int, lifetime: float) -> None:
        self.entries: dict[bytes, FragEntry] = {}
        self.held: dict[bytes, list[HeldFragment]] = {}
        self.held_count = 0
        self.limit = limit  # 0: unbounded
        self.lifetime = lifetime

    def first(self, key: bytes, entry: FragEntry) -> tuple[list[HeldFragment] | None, bool]:
        """Record a translated first fragment; returns the fragments held for it (to release)
        and whether an older entry was pushed out to make room."""
        entries = self.entries
        evicted = False
        if self.limit and len(entries) >= self.limit and key not in entries:
            del entries[next(iter(entries))]  # its later fragments will be held, then time out
            evicted = True
        entries[key] = entry
        held = self.held.pop(key, None)
        if held:
            self.held_count -= len(held)
        return held, evicted

    def hold(self, key: bytes, from_lan: bool, buf: bytearray, now: float) -> int:
        """Keep a copy of a later fragment whose first has not come; returns how many held
        fragments were pushed out to stay within the limit (0 or 1)."""
        evicted = 0
        if self.limit and self.held_count >= self.limit:
            for k, lst in self.held.items():
                lst.pop(0)
                self.held_count -= 1
                evicted = 1
                if not lst:
                    del self.held[k]
                break
        self.held.setdefault(key, []).append((now, from_lan, bytearray(buf)))
        self.held_count += 1
        return evicted

    def expire(self, now: float) -> int:
        """Forget what is older than the lifetime; returns how many held fragments timed out.
        Both dicts are in creation order, so only the expired head is visited."""
        t = self.lifetime
        entries = self.entries
        while entries:
            k = next(iter(entries))
            if entries[k].created + t > now:
                break
            del entries[k]
        timed_out = 0
        held = self.held
        while held:
            k = next(iter(held))
            lst = held[k]
            if lst[0][0] + t > now:
                break
            del held[k]
            timed_out += len(lst)
        self.held_count -= timed_out
        return timed_out


def fragment(buf: bytearray, mtu: int) -> list[bytearray]:
    """Split the IPv4 packet ``buf`` into fragments of at most ``mtu`` bytes (RFC 791 3.2)."""
    ihl = (buf[0] & 0x0F) * 4
    total = buf[2] << 8 | buf[3]
    ff = buf[6] << 8 | buf[7]
    base = (ff & IP_OFFSET) * 8
    more = ff & IP_MF
    payload = bytes(buf[ihl:total])
    first_hdr = bytes(buf[:ihl])
    # Later fragments carry only the options whose copied flag (bit 0x80) is set (RFC 791).
    opts = bytearray()
    for kind, off, olen in iter_options(buf, 20, ihl):
        if kind & 0x80:
            opts += buf[off:off + olen]
    while len(opts) % 4:
        opts.append(0)
    later_hdr = bytearray(first_hdr[:20])
    later_hdr[0] = 0x40 | ((20 + len(opts)) // 4)
    later_hdr += opts
    out: list[bytearray] = []
    pos = 0
    hdr = first_hdr
    while pos < len(payload):
        hl = len(hdr)
        room = (mtu - hl) & ~7
        if room <= 0:
            raise ValueError("MTU too small to fragment")
        chunk = payload[pos:pos + room]
        last = pos + len(chunk) >= len(payload)
        frag = bytearray(hdr) + chunk
        t = len(frag)
        frag[2] = t >> 8
        frag[3] = t & 0xFF
        off = (base + pos) // 8
        flags = (ff & IP_DF) | (0 if last and not more else IP_MF)
        v = flags | off
        frag[6] = v >> 8
        frag[7] = v & 0xFF
        frag[10] = 0
        frag[11] = 0
        c = internet_checksum(frag[:hl])
        frag[10] = c >> 8
        frag[11] = c & 0xFF
        out.append(frag)
        pos += len(chunk)
        hdr = bytes(later_hdr)
    return out
