"""The NAT engine: NAPT of TCP, UDP and ICMP queries, pure (no I/O, injected clock).

Behaviour follows RFC 4787 (UDP), RFC 5382 (TCP) and RFC 5508 (ICMP): mapping and filtering
behaviours from the config, paired pooling, port preservation, idle timeouts with a timer wheel,
ICMP error translation, hairpinning, port forwards, fragments, table limits with early drop.

The established path (``process`` for a 20-byte header, non-fragment TCP/UDP packet of a known
flow, or an ICMP echo/timestamp of a known query) is written inline in one function: it slices
the flow key out of the bytearray, looks it up in one dict, writes the precomputed address/port
bytes and adds the precomputed RFC 1624 deltas. Everything else goes to :meth:`Engine._slow`.
The state and its life cycle live in :mod:`natpass.nat.state`; ports, timers, fragments, TCP
tracking, ICMP error translation and replay's far-end view in their own modules.
See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any, cast

from natpass.nat import verdict as V
from natpass.nat.config import SWITCHES, NatConfig
from natpass.nat.far_end import far_end_view
from natpass.nat.fragments import FragEntry, fragment, fragment_key
from natpass.nat.helper import FlowView, Helper
from natpass.nat.icmp_errors import (
    ICMP_ERROR_TYPES,
    ICMP_QUERY_REPLIES,
    ICMP_QUERY_REQUESTS,
    translate_error,
)
from natpass.nat.state import NatState
from natpass.nat.table import (
    DEAD,
    HAIRPIN,
    OUTBOUND,
    RELEASED,
    REPLIED,
    SLOW_IN,
    SLOW_OUT,
    Flow,
)
from natpass.packets.checksum import adjust, adjust_udp, combine, delta
from natpass.packets.icmp import (
    DEST_UNREACHABLE,
    FRAG_NEEDED,
    TIME_EXCEEDED,
    TTL_EXCEEDED_IN_TRANSIT,
    build_error,
    may_send_error_about,
)
from natpass.packets.ipproto import proto_name

DROP = V.DROP
TO_WAN = V.TO_WAN
TO_LAN = V.TO_LAN
REPLY = V.REPLY
MULTI = V.MULTI

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

# RFC 791 section 3.1 flags / fragment offset.
IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFSET = 0x1FFF

# RFC 793 section 3.1 control bits.
TCP_SYN_FIN_RST = 0x07

# RFC 1624 adjustments of the (TTL, protocol) word for a TTL decrement / increment.
TTL_DEC_DELTA = 0xFEFF
TTL_INC_DELTA = 0x0100

# version/IHL, total length, flags+offset, TTL, protocol, header checksum, then
# src+dst+ports (the flow key), then the TCP sequence number (bytes 24..28; unused for UDP/ICMP)
_FAST_HDR = struct.Struct("!BxH2xHBBH12sI").unpack_from
# TTL, protocol, header checksum written in one go
_TTL_CSUM = struct.Struct("!BBH").pack_into
# the same plus the source address (outbound translation: bytes 8..16 in one call)
_TTL_CSUM_SRC = struct.Struct("!BBH4s").pack_into
_KEY12 = struct.Struct("12s").unpack_from
# RFC 1812 5.2.2 / RFC 1071: a 20-byte header is valid when its 16-bit words sum to all ones in
# one's complement, i.e. to 0 modulo 0xFFFF. 2**16 = 1 (mod 0xFFFF), so summing it as five
# 32-bit words gives the same residue with fewer, cheaper steps than one 160-bit integer.
_WORDS5 = struct.Struct("!5I").unpack_from
_ID2 = struct.Struct("2s").unpack_from  # ICMP query identifier bytes


class Engine(NatState):
    """The NAT engine (see docs/ENGINE-API.md)."""

    def __init__(self, config: NatConfig, helpers: Sequence[Helper] = ()) -> None:
        super().__init__(config, helpers)
        # the hot path reads these dicts directly (the table never replaces them)
        self._out6: dict[bytes, Flow] = self.table.out[PROTO_TCP]  # type: ignore[assignment]
        self._out17: dict[bytes, Flow] = self.table.out[PROTO_UDP]  # type: ignore[assignment]
        self._in6: dict[bytes, Flow] = self.table.inb[PROTO_TCP]  # type: ignore[assignment]
        self._in17: dict[bytes, Flow] = self.table.inb[PROTO_UDP]  # type: ignore[assignment]
        self._out1: dict[bytes, Flow] = self.table.out[PROTO_ICMP]  # type: ignore[assignment]
        self._in1: dict[bytes, Flow] = self.table.inb[PROTO_ICMP]  # type: ignore[assignment]
        fast = self._ipfast
        self._fo47 = fast.out_gre
        self._fi47 = fast.in_gre
        self._fo50 = fast.out_esp
        self._fi50 = fast.in_esp
        self.reply: bytearray | None = None
        self.emitted: list[bytearray] = []
        # packets from LAN, bytes from LAN, packets from WAN, bytes from WAN (hot counters)
        self._hot = [0, 0, 0, 0]

    # ----------------------------------------------------------------------------- public API
    @property
    def counters(self) -> dict[str, int]:
        c = dict(self._counters)
        h = self._hot
        c["packets_from_lan"] = c.get("packets_from_lan", 0) + h[0]
        c["bytes_from_lan"] = c.get("bytes_from_lan", 0) + h[1]
        c["packets_from_wan"] = c.get("packets_from_wan", 0) + h[2]
        c["bytes_from_wan"] = c.get("bytes_from_wan", 0) + h[3]
        return c

    def drain_events(self) -> list[dict[str, Any]]:
        """Events logged by helpers since the last call (for the router's usage record)."""
        ev, self.events = self.events, []
        return ev

    def expire(self, now: float) -> None:
        """Run the timers up to ``now``."""
        self._tick(now)

    def flows(self) -> Iterator[FlowView]:
        return cast(Iterator[FlowView], iter(self.table))

    def status(self) -> dict[str, Any]:
        by_proto = {proto_name(p): n for p, n in self.table.by_proto().items()}
        return {
            "flows": {"total": len(self.table), "by_proto": by_proto},
            "mappings": sum(len(m) for m in self._maps_wan.values()),
            "fragments_held": self._frags.held_count,
            "drops": dict(self.drops),
            "counters": self.counters,
            "switches": {s: (self._helper_by_name[s].enabled if s in self._helper_by_name
                             else self.config.passthrough.get(s)) for s in SWITCHES},
            "helpers": {h.name: {"stats": h.stats(), "tunnels": h.tunnels()} for h in self._helpers},
        }

    def process(self, buf: bytearray, from_lan: bool, now: float) -> int:
        """Translate one IPv4 packet in place; returns a verdict code (natpass.nat.verdict)."""
        try:
            if now >= self._next_tick:
                self._tick(now)
            n = len(buf)
            # Fast path: 20-byte header, not a fragment, TTL > 1, TCP or UDP, known flow, no
            # SYN/FIN/RST. One unpack gives the header fields and the flow key (addresses+ports).
            if n >= 40 or (n >= 28 and buf[9] != 6):
                b0, total, ff, ttl, proto, ipck, key, seq = _FAST_HDR(buf, 0)
                if (proto == 1 and b0 == 0x45 and total == n and not ff & 0x3FFF and ttl > 1
                        and not sum(_WORDS5(buf, 0)) % 0xFFFF):
                    # ICMP echo / timestamp of a known query flow: the identifier is the port
                    typ = buf[20]
                    if from_lan:
                        if typ == 8 or typ == 13:
                            f = self._out1.get(key[0:8] + _ID2(buf, 24)[0])
                            if f is not None and not f.flags & SLOW_OUT and n <= self._mtu:
                                buf[24:26] = f.o_port
                                c = (ipck ^ 0xFFFF) + f.o_ipd
                                c = (c & 0xFFFF) + (c >> 16)
                                c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
                                _TTL_CSUM_SRC(buf, 8, ttl - 1, 1, c, f.o_addr)
                                c = ((buf[22] << 8 | buf[23]) ^ 0xFFFF) + f.o_l4d
                                c = (c & 0xFFFF) + (c >> 16)
                                c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
                                buf[22] = c >> 8
                                buf[23] = c & 0xFF
                                f.last = now
                                h = self._hot
                                h[0] += 1
                                h[1] += n
                                return 1
                    elif typ == 0 or typ == 14:
                        f = self._in1.get(key[0:8] + _ID2(buf, 24)[0])
                        if f is not None and not f.flags & SLOW_IN:
                            buf[16:20] = f.i_addr
                            buf[24:26] = f.i_port
                            c = (ipck ^ 0xFFFF) + f.i_ipd
                            c = (c & 0xFFFF) + (c >> 16)
                            c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
                            _TTL_CSUM(buf, 8, ttl - 1, 1, c)
                            c = ((buf[22] << 8 | buf[23]) ^ 0xFFFF) + f.i_l4d
                            c = (c & 0xFFFF) + (c >> 16)
                            c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
                            buf[22] = c >> 8
                            buf[23] = c & 0xFF
                            if self._inbound_refresh:
                                f.last = now
                            h = self._hot
                            h[2] += 1
                            h[3] += n
                            return 2
                elif (b0 == 0x45 and total == n and not ff & 0x3FFF and ttl > 1
                        and (proto == 6 or proto == 17)
                        and not sum(_WORDS5(buf, 0)) % 0xFFFF):
                    if from_lan:
                        f = (self._out6 if proto == 6 else self._out17).get(key)
                        if f is not None and not f.flags & SLOW_OUT and n <= self._mtu:
                            if proto == 6:
                                if buf[32] < 0x50 or buf[33] & TCP_SYN_FIN_RST:
                                    return self._slow(buf, from_lan, now, True)
                                f.o_seq = seq  # type: ignore[attr-defined]  # a TcpFlow
                                ck = 36
                            else:
                                ulen = buf[24] << 8 | buf[25]
                                if ulen < 8 or ulen > n - 20:
                                    return self._slow(buf, from_lan, now, True)
                                ck = 26
                            buf[20:22] = f.o_port
                            c = (ipck ^ 0xFFFF) + f.o_ipd
                            c = (c & 0xFFFF) + (c >> 16)
                            c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
                            _TTL_CSUM_SRC(buf, 8, ttl - 1, proto, c, f.o_addr)
                            if proto == 6 or buf[26] or buf[27]:
                                c = ((buf[ck] << 8 | buf[ck + 1]) ^ 0xFFFF) + f.o_l4d
                                c = (c & 0xFFFF) + (c >> 16)
                                c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
                                if c == 0 and proto == 17:
                                    c = 0xFFFF
                                buf[ck] = c >> 8
                                buf[ck + 1] = c & 0xFF
                            f.last = now
                            h = self._hot
                            h[0] += 1
                            h[1] += n
                            return 1
                    else:
                        f = (self._in6 if proto == 6 else self._in17).get(key)
                        hp = self._hport[proto]
                        # a packet to or from a helper's port goes to the helper's
                        # inbound_lookup first, unless its flow was released by the helper
                        if f is not None and not f.flags & SLOW_IN and (
                                hp is None or not (hp[buf[20] << 8 | buf[21]] or hp[buf[22] << 8 | buf[23]])
                                or f.flags & RELEASED):
                            if proto == 6:
                                if buf[32] < 0x50 or buf[33] & TCP_SYN_FIN_RST:
                                    return self._slow(buf, from_lan, now, True)
                                f.i_seq = seq  # type: ignore[attr-defined]  # a TcpFlow
                                ck = 36
                            else:
                                ulen = buf[24] << 8 | buf[25]
                                if ulen < 8 or ulen > n - 20:
                                    return self._slow(buf, from_lan, now, True)
                                ck = 26
                            buf[16:20] = f.i_addr
                            buf[22:24] = f.i_port
                            c = (ipck ^ 0xFFFF) + f.i_ipd
                            c = (c & 0xFFFF) + (c >> 16)
                            c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
                            _TTL_CSUM(buf, 8, ttl - 1, proto, c)
                            if proto == 6 or buf[26] or buf[27]:
                                c = ((buf[ck] << 8 | buf[ck + 1]) ^ 0xFFFF) + f.i_l4d
                                c = (c & 0xFFFF) + (c >> 16)
                                c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
                                if c == 0 and proto == 17:
                                    c = 0xFFFF
                                buf[ck] = c >> 8
                                buf[ck + 1] = c & 0xFF
                            if self._inbound_refresh:
                                f.last = now
                            h = self._hot
                            h[2] += 1
                            h[3] += n
                            return 2
                    # no flow yet (or a slow one): the header checksum is known to be right
                    return self._slow(buf, from_lan, now, True)
                elif ((proto == 50 or proto == 47) and b0 == 0x45 and total == n and not ff & 0x3FFF
                        and ttl > 1 and not sum(_WORDS5(buf, 0)) % 0xFFFF):
                    # An ESP SA or GRE v1 call whose helper cached its translation
                    # (natpass.nat.ipfast): ESP is keyed by addresses + SPI (bytes 12..24), GRE by
                    # addresses + Call ID, only for RFC 2637 4.1 headers (C, R clear, K set,
                    # version 1, PPTP protocol, long enough for the optional sequence/ack).
                    if proto == 50:
                        fk = key
                    elif (buf[20] & 0xE0 == 0x20 and buf[21] & 0x07 == 1 and buf[22] == 0x88
                          and buf[23] == 0x0B
                          and n >= 28 + (4 if buf[20] & 0x10 else 0) + (4 if buf[21] & 0x80 else 0)):
                        fk = key[0:8] + _ID2(buf, 26)[0]
                    else:
                        return self._slow(buf, from_lan, now, True)
                    if from_lan:
                        e = (self._fo50 if proto == 50 else self._fo47).get(fk)
                        if e is not None and n <= self._mtu:
                            c = (ipck ^ 0xFFFF) + e.ipd
                            c = (c & 0xFFFF) + (c >> 16)
                            c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
                            _TTL_CSUM_SRC(buf, 8, ttl - 1, proto, c, e.addr)
                            e.last = now
                            e.packets += 1
                            h = self._hot
                            h[0] += 1
                            h[1] += n
                            return 1
                    else:
                        e = (self._fi50 if proto == 50 else self._fi47).get(fk)
                        if e is not None:
                            buf[16:20] = e.addr
                            c = (ipck ^ 0xFFFF) + e.ipd
                            c = (c & 0xFFFF) + (c >> 16)
                            c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
                            _TTL_CSUM(buf, 8, ttl - 1, proto, c)
                            if e.ident is not None:
                                buf[26:28] = e.ident
                            e.last = now
                            e.packets += 1
                            h = self._hot
                            h[2] += 1
                            h[3] += n
                            return 2
                    return self._slow(buf, from_lan, now, True)
            return self._slow(buf, from_lan, now)
        except Exception:  # noqa: BLE001 - a bad packet must never raise out of process()
            # Counted apart from ordinary malformed drops so that tests and metrics see it.
            self._count("malformed_exception")
            return self._drop(V.MALFORMED)

    def _drop(self, reason: str) -> int:
        self.last_drop = reason
        d = self.drops
        d[reason] = d.get(reason, 0) + 1
        return DROP

    def _slow(self, buf: bytearray, from_lan: bool, now: float, verified: bool = False) -> int:
        """Everything but the established path. ``verified``: the fast path already checked the
        header (20 bytes, length, checksum), so the checksum is not summed a second time."""
        n = len(buf)
        if n < 20 or buf[0] >> 4 != 4:
            return self._drop(V.MALFORMED)
        ihl = (buf[0] & 0x0F) * 4
        total = buf[2] << 8 | buf[3]
        if ihl < 20 or ihl > n or total < ihl or total > n:
            return self._drop(V.MALFORMED)
        if not verified and int.from_bytes(buf[0:ihl], "big") % 0xFFFF:
            return self._drop(V.MALFORMED)  # header words do not sum to all ones
        if total < n:
            del buf[total:]  # link-layer padding after the datagram
        h = self._hot
        if from_lan:
            h[0] += 1
            h[1] += total
        else:
            h[2] += 1
            h[3] += total
        src = bytes(buf[12:16])
        if from_lan and not self._is_lan(src):
            return self._drop(V.NOT_LAN_SOURCE)
        proto = buf[9]
        ff = buf[6] << 8 | buf[7]
        if buf[8] <= 1:
            return self._ttl_expired(buf, from_lan)
        if ff & IP_OFFSET:
            return self._later_fragment(buf, ihl, from_lan, now)
        need_frag = False
        if from_lan and total > self._mtu and bytes(buf[16:20]) not in self._wan_set:
            if ff & IP_DF:
                # RFC 1191 section 4: the error reports the next-hop MTU
                self._drop(V.FRAG_NEEDED)
                if not may_send_error_about(buf):
                    return DROP
                self.reply = build_error(buf, DEST_UNREACHABLE, FRAG_NEEDED,
                                         self._router_lan_addr, mtu=self._mtu)
                return REPLY | TO_LAN
            need_frag = True
        fkey = b""
        old_addrs = b""
        if ff & IP_MF:
            fkey = fragment_key(buf, from_lan)
            old_addrs = bytes(buf[12:20])
        self.last_drop = None
        hpr = self._proto_helper.get(proto)
        if hpr is not None:
            code = self._helper_ip(hpr, buf, ihl, from_lan, now)
        elif proto == 6 or proto == 17:
            code = self._tcpudp(buf, ihl, proto, from_lan, now, bool(fkey))
        elif proto == 1:
            code = self._icmp(buf, ihl, from_lan, now)
        else:
            code = self._generic(buf, ihl, proto, from_lan, now)
        if code == DROP:
            return DROP
        out: list[bytearray] | None = None
        if fkey:
            addrs = bytes(buf[12:20])
            entry = FragEntry(code, addrs, combine(delta(old_addrs, addrs), TTL_DEC_DELTA), now)
            held, evicted = self._frags.first(fkey, entry)
            if evicted:
                self._count("fragment_entries_evicted")
            if held:
                out = [buf]
                for _t, _fl, frag in held:
                    if frag[8] <= 1:
                        self._drop(V.TTL_EXCEEDED)
                    else:
                        entry.apply(frag)
                        out.append(frag)
        if need_frag and code & 3 == TO_WAN:
            pieces: list[bytearray] = []
            for p in (out or [buf]):
                if len(p) > self._mtu:
                    pieces.extend(fragment(p, self._mtu))
                else:
                    pieces.append(p)
            out = pieces
            self._count("fragmented")
        if out is not None:
            self.emitted = out
            return code | MULTI
        return code

    def _ttl_expired(self, buf: bytearray, from_lan: bool) -> int:
        # RFC 1812 4.3.2.7 says who may get an error (natpass.packets.icmp); a TTL of 0 was
        # never forwarded to us by a correct router: somebody else's bug, stay quiet.
        self._drop(V.TTL_EXCEEDED)
        if buf[8] == 0 or not may_send_error_about(buf):
            return DROP
        if from_lan:
            src = self._router_lan_addr
        else:
            dst = bytes(buf[16:20])
            src = dst if dst in self._wan_set else self._wans[0]
        self.reply = build_error(buf, TIME_EXCEEDED, TTL_EXCEEDED_IN_TRANSIT, src)
        return REPLY | (TO_LAN if from_lan else TO_WAN)

    def _later_fragment(self, buf: bytearray, ihl: int, from_lan: bool, now: float) -> int:
        fkey = fragment_key(buf, from_lan)
        e = self._frags.entries.get(fkey)
        if e is not None:
            e.apply(buf)  # TTL > 1 checked by _slow
            if e.code & 3 == TO_WAN and len(buf) > self._mtu:
                self.emitted = fragment(buf, self._mtu)
                return e.code | MULTI
            return e.code
        # The first fragment has not arrived yet: hold a copy (bounded), release it later.
        if self._frags.hold(fkey, from_lan, buf, now):
            self._drop(V.FRAGMENT_EVICTED)
        self._count("fragments_held")
        self.last_drop = None
        return V.HELD

    def _helper_ip(self, h: Helper, buf: bytearray, ihl: int, from_lan: bool, now: float) -> int:
        buf[8] -= 1
        adjust(buf, 10, TTL_DEC_DELTA)
        r = h.on_ip_packet(buf, ihl, from_lan, now)
        if isinstance(r, str):
            return self._drop(r)
        if r not in (TO_WAN, TO_LAN):
            return self._drop(V.MALFORMED)
        return r

    def _tcpudp(self, buf: bytearray, ihl: int, proto: int, from_lan: bool, now: float,
                first_frag: bool) -> int:
        total = len(buf)
        l4len = total - ihl
        if proto == PROTO_TCP:
            if l4len < 20:
                return self._drop(V.MALFORMED)
            doff = (buf[ihl + 12] >> 4) * 4
            if doff < 20 or doff > l4len:
                return self._drop(V.MALFORMED)
        else:
            if l4len < 8:
                return self._drop(V.MALFORMED)
            ulen = buf[ihl + 4] << 8 | buf[ihl + 5]
            if ulen < 8 or (ulen > l4len and not first_frag):
                return self._drop(V.MALFORMED)
        key = _KEY12(buf, 12)[0] if ihl == 20 else bytes(buf[12:20]) + bytes(buf[ihl:ihl + 4])
        table = self.table
        if from_lan:
            f = table.out[proto].get(key)  # type: ignore[union-attr]
            if f is None:
                lan = key[0:4]
                remote = key[4:8]
                lport = key[8] << 8 | key[9]
                rport = key[10] << 8 | key[11]
                r = self._new_outbound(proto, key, lan, lport, remote, rport, now)
                if isinstance(r, str):
                    return self._drop(r)
                f = r
            if proto == PROTO_TCP:
                why = self._tcp_state(f, buf, ihl, True, now)
                if why is not None:
                    return self._drop(why)
            if not f.flags & OUTBOUND and not f.flags & REPLIED:
                self._replied(f, True)
            f.last = now
            self._rewrite_src(buf, ihl, proto, f)
            if f.helper is not None and not f.flags & RELEASED:
                why = f.helper.on_flow_packet(f, buf, ihl, True, now)
                if why is not None:
                    return self._drop(why)
            if f.flags & HAIRPIN:
                return self._hairpin(buf, ihl, proto, now)
            return TO_WAN
        f = None
        hp = self._hport[proto]
        if hp is not None and (hp[buf[ihl] << 8 | buf[ihl + 1]] or hp[buf[ihl + 2] << 8 | buf[ihl + 3]]):
            sport = buf[ihl] << 8 | buf[ihl + 1]
            dport = buf[ihl + 2] << 8 | buf[ihl + 3]
            ph = self._port_helpers[proto]
            h = ph.get(sport) or ph.get(dport)
            if h is not None:
                fv = h.inbound_lookup(proto, buf, ihl, now)
                if isinstance(fv, Flow) and not fv.flags & DEAD:
                    f = fv
        if f is None:
            f = table.inb[proto].get(key)  # type: ignore[union-attr]
        if f is None:
            r = self._new_inbound(buf, ihl, proto, key, now)
            if isinstance(r, str):
                return self._drop(r)
            f = r
        return self._inbound_flow(buf, ihl, proto, f, now)

    def _inbound_flow(self, buf: bytearray, ihl: int, proto: int, f: Flow, now: float) -> int:
        if proto == PROTO_TCP:
            why = self._tcp_state(f, buf, ihl, False, now)
            if why is not None:
                return self._drop(why)
        if f.flags & OUTBOUND and not f.flags & REPLIED:
            self._replied(f, False)
        if self._inbound_refresh:
            f.last = now
        self._rewrite_dst(buf, ihl, proto, f)
        if f.helper is not None and not f.flags & RELEASED:
            why = f.helper.on_flow_packet(f, buf, ihl, False, now)
            if why is not None:
                return self._drop(why)
        return TO_LAN

    def _rewrite_src(self, buf: bytearray, ihl: int, proto: int, f: Flow) -> None:
        """Outbound translation with the flow's precomputed deltas (any header length)."""
        buf[8] -= 1
        adjust(buf, 10, f.o_ipd)
        if ihl == 20 and (proto == PROTO_UDP or proto == PROTO_TCP):
            buf[12:16] = f.o_addr
            buf[20:22] = f.o_port
            if proto == PROTO_UDP:
                adjust_udp(buf, 26, f.o_l4d)
            else:
                adjust(buf, 36, f.o_l4d)
            return
        buf[12:16] = f.o_addr
        if proto == PROTO_UDP:
            buf[ihl:ihl + 2] = f.o_port
            adjust_udp(buf, ihl + 6, f.o_l4d)
        elif proto == PROTO_TCP:
            buf[ihl:ihl + 2] = f.o_port
            adjust(buf, ihl + 16, f.o_l4d)
        elif proto == PROTO_ICMP:
            buf[ihl + 4:ihl + 6] = f.o_port
            adjust(buf, ihl + 2, f.o_l4d)

    def _rewrite_dst(self, buf: bytearray, ihl: int, proto: int, f: Flow) -> None:
        """Inbound translation; deltas computed from the packet (it may come via a helper's
        inbound_lookup, addressed to another WAN endpoint than the flow's)."""
        if proto != PROTO_ICMP and ihl == 20 and _KEY12(buf, 12)[0] == f.in_key:
            # the usual case: addressed to the flow's WAN endpoint, precomputed deltas apply
            buf[16:20] = f.i_addr
            buf[22:24] = f.i_port
            buf[8] -= 1
            adjust(buf, 10, f.i_ipd)
            if proto == PROTO_UDP:
                adjust_udp(buf, 26, f.i_l4d)
            elif proto == PROTO_TCP:
                adjust(buf, 36, f.i_l4d)
            return
        new_addr = f.i_addr
        old_addr = bytes(buf[16:20])
        buf[16:20] = new_addr
        buf[8] -= 1
        adjust(buf, 10, combine(delta(old_addr, new_addr), TTL_DEC_DELTA))
        if proto == PROTO_UDP or proto == PROTO_TCP:
            old_port = bytes(buf[ihl + 2:ihl + 4])
            buf[ihl + 2:ihl + 4] = f.i_port
            adj = delta(old_addr + old_port, new_addr + f.i_port)
            if proto == PROTO_UDP:
                adjust_udp(buf, ihl + 6, adj)
            else:
                adjust(buf, ihl + 16, adj)
        elif proto == PROTO_ICMP:
            old_port = bytes(buf[ihl + 4:ihl + 6])
            buf[ihl + 4:ihl + 6] = f.i_port
            adjust(buf, ihl + 2, delta(old_port, f.i_port))

    def _hairpin(self, buf: bytearray, ihl: int, proto: int, now: float) -> int:
        """RFC 4787 REQ-9 / RFC 5382 REQ-8: LAN -> our WAN endpoint goes back to the LAN, its
        source already translated to the sender's mapping (so the target sees a public peer)."""
        if not self.config.hairpinning:
            return self._drop(V.NO_MAPPING)
        # one hop only: undo the outbound decrement, the inbound part decrements again
        buf[8] += 1
        adjust(buf, 10, TTL_INC_DELTA)
        key = bytes(buf[12:20]) + bytes(buf[ihl:ihl + 4])
        f = self.table.inb[proto].get(key)  # type: ignore[union-attr]
        if f is None:
            r = self._new_inbound(buf, ihl, proto, key, now)
            if isinstance(r, str):
                return self._drop(r)
            f = r
        self._count("hairpinned")
        return self._inbound_flow(buf, ihl, proto, f, now)

    def _icmp(self, buf: bytearray, ihl: int, from_lan: bool, now: float) -> int:
        total = len(buf)
        if total - ihl < 8:
            return self._drop(V.MALFORMED)
        typ = buf[ihl]
        if typ in ICMP_ERROR_TYPES:
            return self._icmp_error(buf, ihl, from_lan, now)
        key = bytes(buf[12:20]) + bytes(buf[ihl + 4:ihl + 6])
        if from_lan:
            if typ not in ICMP_QUERY_REQUESTS:
                return self._drop(V.NO_MAPPING if typ in ICMP_QUERY_REPLIES else V.UNSUPPORTED)
            f = self.table.out[PROTO_ICMP].get(key)  # type: ignore[union-attr]
            if f is None:
                if key[4:8] in self._wan_set:
                    return self._drop(V.NO_MAPPING)  # pinging the router itself: not NAT's job
                ident = key[8] << 8 | key[9]
                r = self._new_outbound(PROTO_ICMP, key, key[0:4], ident, key[4:8], 0, now)
                if isinstance(r, str):
                    return self._drop(r)
                f = r
            f.last = now
            self._rewrite_src(buf, ihl, PROTO_ICMP, f)
            return TO_WAN
        if typ not in ICMP_QUERY_REPLIES:
            return self._drop(V.NO_MAPPING if typ in ICMP_QUERY_REQUESTS else V.UNSUPPORTED)
        f = self.table.inb[PROTO_ICMP].get(key)  # type: ignore[union-attr]
        if f is None:
            return self._drop(V.NO_MAPPING)
        if not f.flags & REPLIED:
            self._replied(f, False)
        if self._inbound_refresh:
            f.last = now
        self._rewrite_dst(buf, ihl, PROTO_ICMP, f)
        return TO_LAN

    def _icmp_error(self, buf: bytearray, ihl: int, from_lan: bool, now: float) -> int:
        """RFC 5508 section 4: an ICMP error about a mapped flow (natpass.nat.icmp_errors)."""
        r = translate_error(buf, ihl, from_lan, self.table, self._is_lan)
        if isinstance(r, str):
            return self._drop(r)
        self._count("icmp_errors_translated")
        return r

    def _generic(self, buf: bytearray, ihl: int, proto: int, from_lan: bool, now: float) -> int:
        """Unknown IP protocols: address-only NAT, one LAN host per (remote address, protocol,
        WAN address), like Linux's generic conntrack. The payload is not touched."""
        src = bytes(buf[12:16])
        dst = bytes(buf[16:20])
        table = self.table
        if from_lan:
            key = src + dst
            f = table.lookup_out(proto, key)
            if f is None:
                if dst in self._wan_set:
                    return self._drop(V.UNSUPPORTED)
                wan = self._pair(src)
                in_key = dst + wan
                if table.lookup_in(proto, in_key) is not None:
                    return self._drop(V.UNSUPPORTED)  # another LAN host holds it
                why = self._make_room(src)
                if why is not None:
                    return self._drop(why)
                f = self._new_flow(proto, key, in_key, src, 0, wan, 0, None, None, True, now)
            f.last = now
            buf[12:16] = f.o_addr
            buf[8] -= 1
            adjust(buf, 10, f.o_ipd)
            return TO_WAN
        f = table.lookup_in(proto, src + dst)
        if f is None:
            return self._drop(V.NO_MAPPING if dst in self._wan_set else V.UNSUPPORTED)
        if not f.flags & REPLIED:
            self._replied(f, False)
        if self._inbound_refresh:
            f.last = now
        buf[16:20] = f.i_addr
        buf[8] -= 1
        adjust(buf, 10, f.i_ipd)
        return TO_LAN

    def far_end_view(self, buf: bytearray, now: float) -> bool:
        """Replay: rewrite a captured inbound packet (addressed to the untranslated LAN host)
        into what the far end sent after seeing natpass's translation (natpass.nat.far_end).
        False: no mapping."""
        return far_end_view(self, buf, now)


__all__ = ["Engine", "fragment"]
