"""The NAT engine: NAPT of TCP, UDP and ICMP queries, pure (no I/O, injected clock).

Behaviour follows RFC 4787 (UDP), RFC 5382 (TCP) and RFC 5508 (ICMP): mapping and filtering
behaviours from the config, paired pooling, port preservation, idle timeouts with a timer wheel,
ICMP error translation, hairpinning, port forwards, fragments, table limits with early drop.

The established path (``process`` for a 20-byte header, non-fragment TCP/UDP packet of a known
flow) is written inline in one function: it slices the flow key out of the bytearray, looks it up
in one dict, writes the precomputed address/port bytes and adds the precomputed RFC 1624 deltas.
Everything else goes to :meth:`Engine._slow`. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import heapq
import random
import struct
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, cast

from natpass.nat import tcp_track
from natpass.nat import verdict as V
from natpass.nat.config import SWITCHES, NatConfig
from natpass.nat.helper import FlowView, Helper
from natpass.nat.table import (
    CLOSE_NOTIFIED,
    DEAD,
    FIN_LAN,
    FIN_WAN,
    HAIRPIN,
    MAP_HOLDER,
    OUTBOUND,
    RELEASED,
    REPLIED,
    RST_SEEN,
    SLOW_IN,
    SLOW_OUT,
    SYN_LAN,
    SYN_WAN,
    Flow,
    FlowExt,
    FlowTable,
    LanIndex,
    Mapping,
    PortIndex,
    TcpFlow,
)
from natpass.packets.checksum import combine, delta, internet_checksum

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
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_SYN_FIN_RST = TCP_FIN | TCP_SYN | TCP_RST

# RFC 792 / RFC 4884 ICMP types.
ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_FRAG_NEEDED_CODE = 4  # RFC 1191 section 4 (code 4 of type 3)
ICMP_TIME_EXCEEDED = 11
ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})  # unreachable, quench, redirect, time, parameter
# Query request -> reply type (RFC 792: echo, timestamp, information; RFC 950: address mask).
ICMP_QUERY_REQUESTS = frozenset({8, 13, 15, 17})
ICMP_QUERY_REPLIES = frozenset({0, 14, 16, 18})

# RFC 1812 section 4.3.2.3: an ICMP error carries as much of the original as fits in 576 bytes.
ICMP_ERROR_MAX = 576
# RFC 1624: decrementing the TTL byte changes the word (TTL, protocol) by -0x100, whose
# one's complement adjustment ~m + m' is the constant 0xFEFF whatever the TTL value.
TTL_DEC_DELTA = 0xFEFF
TTL_INC_DELTA = 0x0100
REPLY_TTL = 64  # RFC 1700 default TTL for the replies the router originates
# UDP ports whose flows get the NAT-T timeout (RFC 3947/3948 IKE and NAT-T).
UDP_NATT_PORTS = frozenset({500, 4500})

PORT_BYTES: tuple[bytes, ...] = tuple(p.to_bytes(2, "big") for p in range(65536))
# Interned small ints: port numbers and checksum deltas are shared by all flows instead of one
# int object per flow (RFC 1624 deltas are < 0x20000).
_INTS: tuple[int, ...] = tuple(range(0x20000))

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


class _Ctx:
    """The :class:`natpass.nat.helper.HelperContext` the engine gives to its helpers."""

    def __init__(self, engine: Engine) -> None:
        self._e = engine

    def wan_address_for(self, lan_addr: bytes) -> bytes:
        return self._e._pair(bytes(lan_addr))

    def is_lan(self, addr: bytes) -> bool:
        return self._e._is_lan(bytes(addr))

    def is_wan_address(self, addr: bytes) -> bool:
        return bytes(addr) in self._e._wan_set

    def set_src(self, buf: bytearray, addr: bytes) -> None:
        _set_ip_addr(buf, 12, bytes(addr))

    def set_dst(self, buf: bytearray, addr: bytes) -> None:
        _set_ip_addr(buf, 16, bytes(addr))

    def rewrite(self, buf: bytearray, offset: int, new: bytes) -> None:
        _rewrite_l4(buf, offset, bytes(new))

    def find_flow(self, proto: int, lan_addr: bytes, lan_port: int, remote_addr: bytes,
                  remote_port: int) -> FlowView | None:
        if proto == PROTO_ICMP:
            key = bytes(lan_addr) + bytes(remote_addr) + PORT_BYTES[lan_port]
        else:
            key = bytes(lan_addr) + bytes(remote_addr) + PORT_BYTES[lan_port] + PORT_BYTES[remote_port]
        return cast(FlowView | None, self._e.table.lookup_out(proto, key))

    def expect(self, proto: int, remote_addr: bytes | None, wan_addr: bytes, wan_port: int,
               lan_addr: bytes, lan_port: int, timeout: float, now: float, owner: str) -> None:
        self._e._expect(proto, None if remote_addr is None else bytes(remote_addr), bytes(wan_addr),
                        wan_port, bytes(lan_addr), lan_port, now + timeout, owner)

    def reserve_port(self, proto: int, wan_addr: bytes, preferred: int | None) -> int | None:
        return self._e._alloc_port(proto, bytes(wan_addr), preferred, None, reserve=True)

    def release_port(self, proto: int, wan_addr: bytes, port: int) -> None:
        self._e._free_port(proto, bytes(wan_addr), port)

    def fast_path(self, flow: FlowView, on: bool = True) -> None:
        if isinstance(flow, Flow) and not flow.flags & DEAD:
            self._e._release(flow, on)

    def count(self, name: str, n: int = 1) -> None:
        c = self._e._counters
        c[name] = c.get(name, 0) + n

    def log(self, event: str, **fields: Any) -> None:
        ev = {"event": event}
        ev.update(fields)
        self._e.events.append(ev)


_new_flow_object = object.__new__  # Flow without __init__: _new_flow sets every slot once


def _fold_all(x: int) -> int:
    """Fold a non-negative sum into 16 bits (one's complement end-around carry)."""
    while x > 0xFFFF:
        x = (x & 0xFFFF) + (x >> 16)
    return x


def _adjust(buf: bytearray, off: int, adj: int) -> None:
    """Apply an RFC 1624 adjustment (eqn. 3) to the checksum field at ``off``."""
    c = ((buf[off] << 8 | buf[off + 1]) ^ 0xFFFF) + adj
    c = (c & 0xFFFF) + (c >> 16)
    c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
    buf[off] = c >> 8
    buf[off + 1] = c & 0xFF


def _adjust_udp(buf: bytearray, off: int, adj: int) -> None:
    """Like :func:`_adjust` but keeps a zero UDP checksum (none, RFC 768) and never writes 0."""
    if buf[off] == 0 and buf[off + 1] == 0:
        return
    c = ((buf[off] << 8 | buf[off + 1]) ^ 0xFFFF) + adj
    c = (c & 0xFFFF) + (c >> 16)
    c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
    if c == 0:
        c = 0xFFFF
    buf[off] = c >> 8
    buf[off + 1] = c & 0xFF


def _l4_csum_offset(buf: bytearray, ihl: int) -> int:
    """Offset of the TCP/UDP checksum of ``buf`` when present in this packet/fragment, else -1."""
    proto = buf[9]
    if (buf[6] << 8 | buf[7]) & IP_OFFSET:
        return -1  # a later fragment carries no L4 header
    total = len(buf)
    if proto == PROTO_TCP and total >= ihl + 18:
        return ihl + 16
    if proto == PROTO_UDP and total >= ihl + 8:
        return ihl + 6
    return -1


def _set_ip_addr(buf: bytearray, off: int, addr: bytes) -> None:
    """Replace the source (12) or destination (16) address fixing IP and TCP/UDP checksums."""
    old = bytes(buf[off:off + 4])
    if old == addr:
        return
    adj = delta(old, addr)
    buf[off:off + 4] = addr
    _adjust(buf, 10, adj)
    ihl = (buf[0] & 0x0F) * 4
    ck = _l4_csum_offset(buf, ihl)
    if ck >= 0:
        if buf[9] == PROTO_UDP:
            _adjust_udp(buf, ck, adj)
        else:
            _adjust(buf, ck, adj)


def _rewrite_l4(buf: bytearray, offset: int, new: bytes) -> None:
    """Overwrite bytes inside the L4 header/payload and fix the TCP/UDP/ICMP checksum."""
    n = len(new)
    if n == 0:
        return
    if offset < 0 or offset + n > len(buf):
        raise IndexError("rewrite outside the packet")
    ihl = (buf[0] & 0x0F) * 4
    proto = buf[9]
    # Align the changed span on 16-bit words counted from the L4 header start.
    start = offset - ((offset - ihl) & 1)
    end = offset + n
    if (end - start) & 1:
        end += 1
    end = min(end, len(buf))
    old = bytes(buf[start:end])
    buf[offset:offset + n] = new
    adj = delta(old, bytes(buf[start:end]))
    if proto == PROTO_ICMP:
        if len(buf) >= ihl + 4:
            _adjust(buf, ihl + 2, adj)
        return
    ck = _l4_csum_offset(buf, ihl)
    if ck >= 0:
        if proto == PROTO_UDP:
            _adjust_udp(buf, ck, adj)
        else:
            _adjust(buf, ck, adj)


def build_icmp_error(orig: bytes | bytearray, icmp_type: int, code: int, src: bytes,
                     rest: bytes = b"\x00\x00\x00\x00") -> bytearray:
    """An ICMP error from ``src`` to the sender of ``orig`` quoting as much as RFC 1812 allows."""
    ihl = (orig[0] & 0x0F) * 4
    total = min(len(orig), orig[2] << 8 | orig[3])
    quote = bytes(orig[:max(ihl, min(total, ICMP_ERROR_MAX - 28))])
    icmp = bytearray([icmp_type, code, 0, 0]) + rest + quote
    c = internet_checksum(icmp)
    icmp[2] = c >> 8
    icmp[3] = c & 0xFF
    tot = 20 + len(icmp)
    out = bytearray(20)
    out[0] = 0x45
    out[2] = tot >> 8
    out[3] = tot & 0xFF
    out[8] = REPLY_TTL
    out[9] = PROTO_ICMP
    out[12:16] = src
    out[16:20] = bytes(orig[12:16])
    c = internet_checksum(out)
    out[10] = c >> 8
    out[11] = c & 0xFF
    out += icmp
    return out


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
    i = 20
    while i < ihl:
        kind = buf[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        olen = buf[i + 1]
        if olen < 2:
            break
        if kind & 0x80:
            opts += buf[i:i + olen]
        i += olen
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


class _FragEntry:
    """How the first fragment of a datagram was translated; later fragments copy it."""

    __slots__ = ("code", "addrs", "adj", "created")

    def __init__(self, code: int, addrs: bytes, adj: int, created: float) -> None:
        self.code = code
        self.addrs = addrs
        self.adj = adj
        self.created = created


class _Expect:
    __slots__ = ("remote", "lan_addr", "lan_port", "deadline", "owner")

    def __init__(self, remote: bytes | None, lan_addr: bytes, lan_port: int, deadline: float,
                 owner: str) -> None:
        self.remote = remote
        self.lan_addr = lan_addr
        self.lan_port = lan_port
        self.deadline = deadline
        self.owner = owner


class Engine:
    """The NAT engine (see docs/ENGINE-API.md)."""

    def __init__(self, config: NatConfig, helpers: Sequence[Helper] = ()) -> None:
        self.table = FlowTable()
        # the hot path reads these dicts directly (the table never replaces them)
        self._out6: dict[bytes, Flow] = self.table.out[PROTO_TCP]  # type: ignore[assignment]
        self._out17: dict[bytes, Flow] = self.table.out[PROTO_UDP]  # type: ignore[assignment]
        self._in6: dict[bytes, Flow] = self.table.inb[PROTO_TCP]  # type: ignore[assignment]
        self._in17: dict[bytes, Flow] = self.table.inb[PROTO_UDP]  # type: ignore[assignment]
        self._out1: dict[bytes, Flow] = self.table.out[PROTO_ICMP]  # type: ignore[assignment]
        self._in1: dict[bytes, Flow] = self.table.inb[PROTO_ICMP]  # type: ignore[assignment]
        self.last_drop: str | None = None
        self.reply: bytearray | None = None
        self.emitted: list[bytearray] = []
        self.drops: dict[str, int] = {}
        self.events: list[dict[str, Any]] = []
        self._counters: dict[str, int] = {}
        # packets from LAN, bytes from LAN, packets from WAN, bytes from WAN (hot counters)
        self._hot = [0, 0, 0, 0]
        self._ctx = _Ctx(self)
        self._helpers: list[Helper] = list(helpers)
        self._helper_by_name: dict[str, Helper] = {}
        self._proto_helper: dict[int, Helper] = {}
        self._port_helpers: dict[int, dict[int, Helper]] = {PROTO_TCP: {}, PROTO_UDP: {}}
        # per protocol, a 65536-byte table: 1 where a helper claims the port (inbound hot check)
        self._hport: list[bytearray | None] = [None] * 256
        # mapping indexes; a value is a Flow when that flow holds its own mapping (MAP_HOLDER)
        self._maps_lan: dict[int, LanIndex[Mapping | Flow]] = {
            1: LanIndex(), 6: LanIndex(), 17: LanIndex()}
        self._maps_wan: dict[int, PortIndex[Mapping | Flow]] = {
            1: PortIndex(), 6: PortIndex(), 17: PortIndex()}
        self._reserved: dict[int, set[bytes]] = {}
        self._ports_in_range: dict[tuple[int, bytes], int] = {}
        self._hosts: dict[bytes, int] = {}
        self._lan_objs: dict[bytes, bytes] = {}  # LAN host -> its one bytes object (Flow.i_addr)
        # flows in creation order for early drop; replied/removed ones are skipped lazily
        self._unreplied: deque[Flow] = deque()
        self._wheel: dict[int, list[Flow]] = {}
        self._wheel_heap: list[int] = []
        # wheel entries whose flow has left their bucket (removed or rescheduled): purged when
        # they outnumber the live flows, so an early-removed flow is not kept until its deadline
        self._wheel_stale = 0
        self._frags: dict[bytes, _FragEntry] = {}
        self._held: dict[bytes, list[tuple[float, bool, bytearray]]] = {}
        self._held_count = 0
        self._expects: dict[tuple[int, bytes, int], list[_Expect]] = {}
        self._next_tick = float("-inf")
        self._last_helper_tick = float("-inf")
        self._apply_config(config)
        self._install_forwards()
        for h in self._helpers:
            self._register(h)

    # ----------------------------------------------------------------------------- config
    def _apply_config(self, config: NatConfig) -> None:
        self.config = config
        if not config.wan_addresses:
            raise ValueError("at least one WAN address is needed")
        self._wans = tuple(bytes(a) for a in config.wan_addresses)
        self._wan_set = frozenset(self._wans)
        self._wan_objs = {w: w for w in self._wans}  # WAN address -> its one bytes object
        self._lan_nets = [(int(n.network_address), int(n.netmask)) for n in config.lan_prefixes]
        self._router_lan_addr = bytes(config.router_lan_address or self._wans[0])
        self._mtu = config.wan_mtu
        self._mapping = config.mapping
        self._filtering = config.filtering
        lo, hi = config.port_range
        if not 0 < lo <= hi <= 65535:
            raise ValueError(f"bad port range {config.port_range}")
        self._port_lo, self._port_hi = lo, hi
        self._rng = random.Random(config.seed)
        t = config.timeouts
        self._t_udp = float(t.udp)
        self._t_natt = float(t.udp_natt)
        self._t_est = float(t.tcp_established)
        self._t_trans = float(t.tcp_transitory)
        self._t_icmp = float(t.icmp)
        self._t_frag = float(t.fragment)
        self._max_flows = config.limits.max_flows
        self._max_per_host = config.limits.max_flows_per_host
        self._max_frags = config.limits.max_fragments
        self._inbound_refresh = config.inbound_refresh
        self._preserve = config.port_preservation
        self._track_remotes = config.filtering == "address-dependent"
        # a flow may hold its own mapping only when the mapping key is the LAN endpoint alone
        # and no per-mapping remote set is needed
        self._holders = config.mapping == "endpoint-independent" and not self._track_remotes

    def _register(self, h: Helper) -> None:
        if h.name in self._helper_by_name:
            raise ValueError(f"helper {h.name!r} registered twice")
        self._helper_by_name[h.name] = h
        h.strict = self.config.passthrough.strict
        if h.name in SWITCHES:
            h.enabled = self.config.passthrough.get(h.name)
        for p in h.ip_protocols:
            if p in (PROTO_TCP, PROTO_UDP, PROTO_ICMP):
                raise ValueError(f"helper {h.name} cannot own protocol {p}")
            self._proto_helper[p] = h
        for proto, ports in ((PROTO_TCP, h.tcp_ports), (PROTO_UDP, h.udp_ports)):
            for port in ports:
                self._port_helpers[proto][port] = h
                t = self._hport[proto]
                if t is None:
                    t = self._hport[proto] = bytearray(65536)
                t[port] = 1
        h.bind(self._ctx)

    def reconfigure(self, config: NatConfig, now: float) -> None:
        """Swap the configuration; flows whose LAN host and WAN address stay valid are kept."""
        old_mapping = self._mapping
        self._promote_all()  # the code below and the new config work on Mapping objects
        self._apply_config(config)
        for h in self._helpers:
            h.reconfigure(config, now)
            if h.strict != config.passthrough.strict:
                h.strict = config.passthrough.strict
                self._rearm(h)
            if h.name in SWITCHES and h.enabled != config.passthrough.get(h.name):
                self.set_switch(h.name, config.passthrough.get(h.name), now)
        for f in list(self.table):
            lan = f.out_key[0:4]
            if not self._is_lan(lan) or f.o_addr not in self._wan_set:
                self._remove(f, "flows_reconfigured")
                continue
            f.timeout = self._timeout_for(f)
            self._schedule(f, f.last + f.timeout)
        # static mappings: drop all, re-add from the new forwards
        for proto in (PROTO_TCP, PROTO_UDP):
            for m in [m for m in self._maps_wan[proto].values()
                      if isinstance(m, Mapping) and m.static]:
                del self._maps_wan[proto][m.wan_key]
                self._count_port(proto, m.wan_addr, m.wan_port, -1)
        if old_mapping != self._mapping:
            for proto, maps in self._maps_lan.items():
                rebuilt: LanIndex[Mapping | Flow] = LanIndex()
                for mv in maps.values():
                    assert isinstance(mv, Mapping)  # no holders after _promote_all
                    k = self._mapping_key_for(mv)
                    if k is not None and k not in rebuilt:
                        mv.lan_key = k
                        rebuilt[k] = mv
                self._maps_lan[proto] = rebuilt
        if self._track_remotes:
            for pidx in self._maps_wan.values():
                for mv in pidx.values():
                    assert isinstance(mv, Mapping)
                    mv.remotes = {}
            for f in self.table:
                fm = f.mapping
                if fm is not None and fm.remotes is not None:
                    r = f.out_key[4:8]
                    fm.remotes[r] = fm.remotes.get(r, 0) + 1
        else:
            for pidx in self._maps_wan.values():
                for mv in pidx.values():
                    assert isinstance(mv, Mapping)
                    mv.remotes = None
        self._install_forwards()

    def _mapping_key_for(self, m: Mapping) -> bytes | None:
        # Only endpoint-independent keys can be rebuilt without the remote end; the dependent
        # behaviours keep their key (they hold the remote in it already).
        if self._mapping == "endpoint-independent":
            return m.lan_addr + PORT_BYTES[m.lan_port]
        return m.lan_key if len(m.lan_key) > 6 else None

    def _promote(self, f: Flow) -> Mapping:
        """A second session joins the mapping a flow holds (or the config changes): replace the
        flow in the mapping indexes by a Mapping object shared by the sessions."""
        proto = f.proto
        mkey = f.lan_addr + PORT_BYTES[f.lan_port]  # endpoint-independent key (holders only)
        wkey = f.wan_addr + PORT_BYTES[f.wan_port]
        m = Mapping(proto, mkey, wkey)
        m.sessions = 1
        f.mapping = m
        f.flags &= ~MAP_HOLDER
        maps_lan = self._maps_lan[proto]
        if maps_lan.get(mkey) is f:
            maps_lan[mkey] = m
        maps_wan = self._maps_wan[proto]
        if maps_wan.get(wkey) is f:
            maps_wan[wkey] = m
        return m

    def _promote_all(self) -> None:
        for maps in self._maps_wan.values():
            for f in [v for v in maps.values() if isinstance(v, Flow)]:
                self._promote(f)

    def _drop_holder(self, f: Flow) -> None:
        """The flow holding its own mapping ends: the mapping ends with it."""
        proto = f.proto
        mkey = f.lan_addr + PORT_BYTES[f.lan_port]
        maps_lan = self._maps_lan[proto]
        if maps_lan.get(mkey) is f:
            del maps_lan[mkey]
        wan, wport = f.wan_addr, f.wan_port
        maps_wan = self._maps_wan[proto]
        wkey = wan + PORT_BYTES[wport]
        if maps_wan.get(wkey) is f:
            del maps_wan[wkey]
            self._count_port(proto, wan, wport, -1)

    def _install_forwards(self) -> None:
        for fw in self.config.forwards:
            wans = self._wans if fw.wan_addr is None else (bytes(fw.wan_addr),)
            for wan in wans:
                if wan not in self._wan_set:
                    continue
                wkey = wan + PORT_BYTES[fw.wan_port]
                maps = self._maps_wan.setdefault(fw.proto, PortIndex())
                if not self._port_free(fw.proto, wkey):
                    self._count("forward-conflict")
                    continue
                self._count_port(fw.proto, wan, fw.wan_port, 1)
                m = Mapping(fw.proto, bytes(fw.lan_addr) + PORT_BYTES[fw.lan_port], wkey,
                            static=True)
                if self._track_remotes:
                    m.remotes = {}
                maps[wkey] = m

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

    def set_switch(self, name: str, on: bool, now: float) -> int:
        """Flip a passthrough switch; returns how many tunnels the helper tore down."""
        h = self._helper_by_name.get(name)
        if h is None:
            if name not in SWITCHES:
                raise KeyError(f"no passthrough switch {name!r}")
            return 0
        n = h.set_enabled(on, now)
        self._rearm(h)
        self._count("tunnels_torn_down", n)
        self._count(f"switch:{name}:{'on' if on else 'off'}")
        return n

    def _rearm(self, h: Helper) -> None:
        """The helper's switch or strictness changed what it does per packet: every flow it
        released from per-packet calls gets them again."""
        for f in self.table:
            if f.helper is h and f.flags & RELEASED:
                self._release(f, False)

    def expire(self, now: float) -> None:
        """Run the timers up to ``now``."""
        self._tick(now)

    def flows(self) -> Iterator[FlowView]:
        return cast(Iterator[FlowView], iter(self.table))

    def status(self) -> dict[str, Any]:
        names = {1: "icmp", 6: "tcp", 17: "udp"}
        by_proto = {names.get(p, str(p)): n for p, n in self.table.by_proto().items()}
        return {
            "flows": {"total": len(self.table), "by_proto": by_proto},
            "mappings": sum(len(m) for m in self._maps_wan.values()),
            "fragments_held": self._held_count,
            "drops": dict(self.drops),
            "counters": self.counters,
            "switches": {s: (self._helper_by_name[s].enabled if s in self._helper_by_name
                             else self.config.passthrough.get(s)) for s in SWITCHES},
            "helpers": {h.name: {"stats": h.stats(), "tunnels": h.tunnels()} for h in self._helpers},
        }

    # ----------------------------------------------------------------------------- hot path
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
            return self._slow(buf, from_lan, now)
        except Exception:  # noqa: BLE001 - a bad packet must never raise out of process()
            # Counted apart from ordinary malformed drops so that tests and metrics see it.
            self._count("malformed_exception")
            return self._drop(V.MALFORMED)

    # ----------------------------------------------------------------------------- slow path
    def _drop(self, reason: str) -> int:
        self.last_drop = reason
        d = self.drops
        d[reason] = d.get(reason, 0) + 1
        return DROP

    def _count(self, name: str, n: int = 1) -> None:
        c = self._counters
        c[name] = c.get(name, 0) + n

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
            return self._ttl_expired(buf, ihl, from_lan, ff)
        if ff & IP_OFFSET:
            return self._later_fragment(buf, ihl, from_lan, now)
        need_frag = False
        if from_lan and total > self._mtu and bytes(buf[16:20]) not in self._wan_set:
            if ff & IP_DF:
                # RFC 1191 section 4: report the next-hop MTU in the low 16 bits of the ICMP
                # header's second word.
                self.reply = build_icmp_error(buf, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED_CODE,
                                              self._router_lan_addr,
                                              b"\x00\x00" + PORT_BYTES[self._mtu & 0xFFFF])
                self._drop(V.FRAG_NEEDED)
                return REPLY | TO_LAN
            need_frag = True
        fkey = b""
        old_addrs = b""
        if ff & IP_MF:
            fkey = bytes(buf[12:20]) + bytes(buf[4:6]) + bytes((proto, from_lan))
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
            frags = self._frags
            if self._max_frags and len(frags) >= self._max_frags and fkey not in frags:
                del frags[next(iter(frags))]  # the oldest: its later fragments will be held
                self._count("fragment_entries_evicted")
            frags[fkey] = _FragEntry(code, addrs, combine(delta(old_addrs, addrs),
                                                                TTL_DEC_DELTA), now)
            held = self._held.pop(fkey, None)
            if held:
                out = [buf]
                for _t, _fl, frag in held:
                    self._held_count -= 1
                    if self._apply_frag_entry(frag, self._frags[fkey]):
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

    def _is_lan(self, addr: bytes) -> bool:
        a = int.from_bytes(addr, "big")
        for net, mask in self._lan_nets:
            if a & mask == net:
                return True
        return False

    def _pair(self, lan: bytes) -> bytes:
        """Paired pooling (RFC 4787 REQ-2): a LAN host always gets the same WAN address."""
        w = self._wans
        if len(w) == 1:
            return w[0]
        return w[int.from_bytes(lan, "big") % len(w)]

    def _ttl_expired(self, buf: bytearray, ihl: int, from_lan: bool, ff: int) -> int:
        # RFC 1812 4.3.2.7: no ICMP error about an ICMP error or a non-initial fragment.
        no_reply = bool(ff & IP_OFFSET)
        if buf[9] == PROTO_ICMP and len(buf) > ihl and buf[ihl] in ICMP_ERROR_TYPES:
            no_reply = True
        if buf[8] == 0:
            no_reply = True  # never forwarded with TTL 0: somebody else's bug, stay quiet
        self._drop(V.TTL_EXCEEDED)
        if no_reply:
            return DROP
        if from_lan:
            src = self._router_lan_addr
        else:
            dst = bytes(buf[16:20])
            src = dst if dst in self._wan_set else self._wans[0]
        self.reply = build_icmp_error(buf, ICMP_TIME_EXCEEDED, 0, src)
        return REPLY | (TO_LAN if from_lan else TO_WAN)

    def _later_fragment(self, buf: bytearray, ihl: int, from_lan: bool, now: float) -> int:
        fkey = bytes(buf[12:20]) + bytes(buf[4:6]) + bytes((buf[9], from_lan))
        e = self._frags.get(fkey)
        if e is not None:
            if not self._apply_frag_entry(buf, e):
                return self._drop(V.MALFORMED)
            if e.code & 3 == TO_WAN and len(buf) > self._mtu:
                self.emitted = fragment(buf, self._mtu)
                return e.code | MULTI
            return e.code
        # The first fragment has not arrived yet: hold a copy (bounded), release it later.
        if self._max_frags and self._held_count >= self._max_frags:
            self._drop_oldest_held()
        self._held.setdefault(fkey, []).append((now, from_lan, bytearray(buf)))
        self._held_count += 1
        self._count("fragments_held")
        self.last_drop = None
        return V.HELD

    def _drop_oldest_held(self) -> None:
        for k, lst in self._held.items():
            lst.pop(0)
            self._held_count -= 1
            self._drop(V.FRAGMENT_EVICTED)
            if not lst:
                del self._held[k]
            return

    def _apply_frag_entry(self, buf: bytearray, e: _FragEntry) -> bool:
        if buf[8] <= 1:
            self._drop(V.TTL_EXCEEDED)
            return False
        buf[12:20] = e.addrs
        buf[8] -= 1
        _adjust(buf, 10, e.adj)
        return True

    # ----------------------------------------------------------------------------- helpers
    def _helper_ip(self, h: Helper, buf: bytearray, ihl: int, from_lan: bool, now: float) -> int:
        buf[8] -= 1
        _adjust(buf, 10, TTL_DEC_DELTA)
        r = h.on_ip_packet(buf, ihl, from_lan, now)
        if isinstance(r, str):
            return self._drop(r)
        if r not in (TO_WAN, TO_LAN):
            return self._drop(V.MALFORMED)
        return r

    def _expect(self, proto: int, remote: bytes | None, wan: bytes, wan_port: int, lan: bytes,
                lan_port: int, deadline: float, owner: str) -> None:
        self._expects.setdefault((proto, wan, wan_port), []).append(
            _Expect(remote, lan, lan_port, deadline, owner))

    def _match_expect(self, proto: int, wan: bytes, wan_port: int, remote: bytes,
                      now: float) -> _Expect | None:
        lst = self._expects.get((proto, wan, wan_port))
        if not lst:
            return None
        for i, e in enumerate(lst):
            if e.deadline > now and (e.remote is None or e.remote == remote):
                del lst[i]
                if not lst:
                    del self._expects[(proto, wan, wan_port)]
                return e
        return None

    # ----------------------------------------------------------------------------- ports
    # A WAN port is in use when a mapping holds it (``_maps_wan``) or a helper reserved it
    # (``_reserved``): no separate per-port set, so a mapping costs no extra memory for it.
    def _port_free(self, proto: int, wkey: bytes) -> bool:
        mw = self._maps_wan.get(proto)
        if mw is not None and wkey in mw:
            return False
        r = self._reserved.get(proto)
        return r is None or wkey not in r

    def _count_port(self, proto: int, wan: bytes, port: int, n: int) -> None:
        if self._port_lo <= port <= self._port_hi:
            k = (proto, wan)
            self._ports_in_range[k] = self._ports_in_range.get(k, 0) + n

    def _free_port(self, proto: int, wan: bytes, port: int) -> None:
        """Give back a helper's reservation."""
        wkey = wan + PORT_BYTES[port]
        r = self._reserved.get(proto)
        if r is not None and wkey in r:
            r.discard(wkey)
            self._count_port(proto, wan, port, -1)

    def _alloc_port(self, proto: int, wan: bytes, preferred: int | None,
                    preserve: int | None, reserve: bool = False) -> int | None:
        """A free WAN port: ``preferred`` (helper), else ``preserve`` (port preservation, only
        inside the port range, as Linux masquerade with a range does), else random in the port
        range (RFC 6056 algorithm 1: random start, linear probe). Counted as used; the caller
        inserts the mapping, or ``reserve`` marks it reserved for a helper. A helper's preferred
        port may lie outside the range (IKE's 500, L2TP's 1701: what their peers expect)."""
        pb = PORT_BYTES
        port: int | None = None
        if preserve is not None and not self._port_lo <= preserve <= self._port_hi:
            preserve = None
        for p in (preferred, preserve):
            if p is not None and 0 < p <= 65535 and self._port_free(proto, wan + pb[p]):
                port = p
                break
        if port is None:
            lo, hi = self._port_lo, self._port_hi
            size = hi - lo + 1
            if self._ports_in_range.get((proto, wan), 0) >= size:
                return None
            p = lo + self._rng.randrange(size)
            for _ in range(size):
                if self._port_free(proto, wan + pb[p]):
                    port = p
                    break
                p = p + 1 if p < hi else lo
            if port is None:
                return None
        if reserve:
            self._reserved.setdefault(proto, set()).add(wan + pb[port])
        self._count_port(proto, wan, port, 1)
        return port

    # ----------------------------------------------------------------------------- flows
    def _timeout_for(self, f: Flow) -> float:
        p = f.proto
        if p == PROTO_TCP:
            st = f.state
            if (st & (SYN_LAN | SYN_WAN)) == (SYN_LAN | SYN_WAN) and not st & (FIN_LAN | FIN_WAN | RST_SEEN):
                return self._t_est
            return self._t_trans
        if p == PROTO_UDP:
            if f.lan_port in UDP_NATT_PORTS or f.remote_port in UDP_NATT_PORTS:
                return self._t_natt
            return self._t_udp
        if p == PROTO_ICMP:
            return self._t_icmp
        return self._t_udp

    def _schedule(self, f: Flow, deadline: float) -> None:
        b = int(deadline) + 1
        lst = self._wheel.get(b)
        if lst is None:
            lst = self._wheel[b] = []
            heapq.heappush(self._wheel_heap, b)
        old = f.bucket
        if old is lst:
            return
        if old is not None:
            self._unbucket()
        lst.append(f)
        f.bucket = lst

    def _unbucket(self) -> None:
        """A flow left its wheel entry before the bucket came due: count the stale entry and
        purge the wheel when stale entries outnumber the live flows (amortised O(1))."""
        self._wheel_stale += 1
        if self._wheel_stale > self.table.count + 1024:
            for lst in self._wheel.values():
                lst[:] = [f for f in lst if f.bucket is lst]
            self._wheel_stale = 0

    def _tick(self, now: float) -> None:
        self._next_tick = float(int(now) + 1)
        heap = self._wheel_heap
        wheel = self._wheel
        while heap and heap[0] <= now:
            b = heapq.heappop(heap)
            lst = wheel.pop(b)
            for f in lst:
                if f.bucket is not lst:
                    self._wheel_stale -= 1
                    continue
                f.bucket = None
                d = f.last + f.timeout
                if d <= now:
                    self._remove(f, "flows_expired")
                else:
                    self._schedule(f, d)
        # fragment state: both dicts are in creation order, so only the expired head is visited
        t = self._t_frag
        frags = self._frags
        while frags:
            k = next(iter(frags))
            if frags[k].created + t > now:
                break
            del frags[k]
        held = self._held
        while held:
            k = next(iter(held))
            lst2 = held[k]
            if lst2[0][0] + t > now:
                break
            del held[k]
            for _ in lst2:
                self._held_count -= 1
                self._drop(V.FRAGMENT_TIMEOUT)
        if self._expects:
            for k2 in list(self._expects):
                keep = [e for e in self._expects[k2] if e.deadline > now]
                if keep:
                    self._expects[k2] = keep
                else:
                    del self._expects[k2]
        if self._helpers and now >= self._last_helper_tick + 1.0:
            self._last_helper_tick = now
            for h in self._helpers:
                h.tick(now)

    def _make_room(self, host: bytes) -> str | None:
        """Enforce the table limits; early-drop the oldest unreplied flow when full."""
        if self._max_flows and len(self.table) >= self._max_flows:
            dq = self._unreplied
            while dq and dq[0].flags & (REPLIED | DEAD):
                dq.popleft()
            if not dq:
                return V.TABLE_FULL
            self._remove(dq.popleft(), "flows_evicted")
        if self._max_per_host and self._hosts.get(host, 0) >= self._max_per_host:
            return V.HOST_LIMIT
        return None

    def _evict_for_port(self, proto: int, wan: bytes) -> bool:
        """The port range of ``wan`` is full: early-drop the oldest unreplied flow whose removal
        frees a port there, as a full table does. Unanswered flows (scans, floods, dead peers)
        would otherwise hold every port for their transitory timeout (240-300 s), refusing
        every other host's new flows; a flow that got an answer is never dropped for this. The
        scan looks at the first 64 unreplied flows only (the oldest), so a flood of another
        protocol or WAN address costs a bounded amount per new flow."""
        dq = self._unreplied
        while dq and dq[0].flags & (REPLIED | DEAD):
            dq.popleft()
        lo, hi = self._port_lo, self._port_hi
        for i, f in enumerate(dq):
            if i >= 64:
                break
            if f.proto != proto or f.o_addr != wan or f.flags & (REPLIED | DEAD):
                continue
            m = f.mapping
            if not (f.flags & MAP_HOLDER or (m is not None and m.sessions == 1 and not m.static)):
                continue
            if lo <= f.wan_port <= hi:
                self._remove(f, "flows_evicted")
                return True
        return False

    def _new_flow(self, proto: int, out_key: bytes, in_key: bytes, lan: bytes, lport: int,
                  wan: bytes, wport: int, mapping: Mapping | None, helper: Helper | None,
                  outbound: bool, now: float) -> Flow:
        f: Flow
        if proto == PROTO_TCP:
            tf = _new_flow_object(TcpFlow)
            tf.o_seq = tf.i_seq = -1
            tf.o_wmax = tf.i_wmax = tcp_track.UNKNOWN_WMAX
            f = tf
        else:
            f = _new_flow_object(Flow)
        f.proto = proto
        f.bucket = None
        f.out_key = out_key
        f.in_key = in_key
        f.o_l4d = f.i_l4d = 0
        f.ext = None
        hosts = self._hosts
        n_host = hosts.get(lan, 0)
        hosts[lan] = n_host + 1
        # one shared bytes object per LAN host and per WAN address instead of one per flow
        if n_host:
            lan = self._lan_objs[lan]
        else:
            self._lan_objs[lan] = lan
        wan = self._wan_objs.get(wan, wan)
        # RFC 1624 deltas in plain integer arithmetic: ~m is 0xFFFF - m per 16-bit word.
        ints = _INTS
        la = int.from_bytes(lan, "big")
        wa = int.from_bytes(wan, "big")
        sl = (la >> 16) + (la & 0xFFFF)
        sw = (wa >> 16) + (wa & 0xFFFF)
        # Every sum below is < 2**32, so two end-around-carry folds bring it to 16 bits
        # (written out: this runs once per new flow and calls cost more than the arithmetic).
        x = 0x1FFFE - sl + sw + TTL_DEC_DELTA
        x = (x & 0xFFFF) + (x >> 16)
        f.o_ipd = ints[(x & 0xFFFF) + (x >> 16)]
        x = 0x1FFFE - sw + sl + TTL_DEC_DELTA
        x = (x & 0xFFFF) + (x >> 16)
        f.i_ipd = ints[(x & 0xFFFF) + (x >> 16)]
        if proto == PROTO_TCP or proto == PROTO_UDP:
            x = 0x2FFFD - sl - lport + sw + wport
            x = (x & 0xFFFF) + (x >> 16)
            f.o_l4d = ints[(x & 0xFFFF) + (x >> 16)]
            x = 0x2FFFD - sw - wport + sl + lport
            x = (x & 0xFFFF) + (x >> 16)
            f.i_l4d = ints[(x & 0xFFFF) + (x >> 16)]
            f.o_port = PORT_BYTES[wport]
            f.i_port = PORT_BYTES[lport]
        elif proto == PROTO_ICMP:
            f.o_port = PORT_BYTES[wport]
            f.i_port = PORT_BYTES[lport]
            f.o_l4d = ints[_fold_all(0xFFFF - lport + wport)]
            f.i_l4d = ints[_fold_all(0xFFFF - wport + lport)]
        else:
            f.o_port = f.i_port = b""
        f.o_addr = wan
        f.i_addr = lan
        fl = OUTBOUND | SLOW_IN if outbound else SLOW_OUT
        remote = out_key[4:8]
        if remote in self._wan_set:
            fl |= HAIRPIN | SLOW_IN | SLOW_OUT
        if helper is not None:
            fl |= SLOW_IN | SLOW_OUT
        f.flags = fl  # TCP state 0
        if helper is not None or mapping is not None:
            e = f.ext = FlowExt()
            e.helper = helper
            e.mapping = mapping
        if mapping is not None:
            mapping.sessions += 1
            if mapping.remotes is not None:
                mapping.remotes[remote] = mapping.remotes.get(remote, 0) + 1
        f.last = now
        if proto == PROTO_TCP:
            to = self._t_trans
        elif proto == PROTO_UDP:
            to = self._t_natt if (lport in UDP_NATT_PORTS or
                                  (out_key[10] << 8 | out_key[11]) in UDP_NATT_PORTS) else self._t_udp
        else:
            to = self._timeout_for(f)
        f.timeout = to
        self.table.add(f)
        dq = self._unreplied
        dq.append(f)
        if len(dq) > 2 * self.table.count + 1024:
            # drop the replied/removed entries skipped lazily so far (amortised O(1) per flow)
            self._unreplied = deque(x for x in dq if not x.flags & (REPLIED | DEAD))
        self._schedule(f, now + to)
        c = self._counters
        c["flows_created"] = c.get("flows_created", 0) + 1
        return f

    def _remove(self, f: Flow, why: str) -> None:
        if f.flags & DEAD:
            return
        f.flags |= DEAD
        self.table.remove(f)
        if f.bucket is not None:
            f.bucket = None
            self._unbucket()
        lan = f.i_addr
        n = self._hosts.get(lan, 0) - 1
        if n > 0:
            self._hosts[lan] = n
        else:
            self._hosts.pop(lan, None)
            self._lan_objs.pop(lan, None)
        if f.flags & MAP_HOLDER:
            self._drop_holder(f)
        m = f.mapping
        if m is not None:
            m.sessions -= 1
            if m.remotes is not None:
                r = f.out_key[4:8]
                c = m.remotes.get(r, 0) - 1
                if c > 0:
                    m.remotes[r] = c
                else:
                    m.remotes.pop(r, None)
            if m.sessions <= 0 and not m.static:
                maps_lan = self._maps_lan.get(m.proto)
                if maps_lan is not None and maps_lan.get(m.lan_key) is m:
                    del maps_lan[m.lan_key]
                maps_wan = self._maps_wan.get(m.proto)
                if maps_wan is not None and maps_wan.get(m.wan_key) is m:
                    del maps_wan[m.wan_key]
                    self._count_port(m.proto, m.wan_addr, m.wan_port, -1)
        self._count(why)
        self._notify_closed(f, f.last)

    def _notify_closed(self, f: Flow, now: float) -> None:
        if f.helper is not None and not f.flags & CLOSE_NOTIFIED:
            f.flags |= CLOSE_NOTIFIED
            f.helper.on_flow_closed(f, now)

    def _mapping_key(self, proto: int, lan: bytes, lport: int, remote: bytes, rport: int) -> bytes:
        mb = self._mapping
        if mb == "endpoint-independent":
            return lan + PORT_BYTES[lport]
        if mb == "address-dependent":
            return lan + PORT_BYTES[lport] + remote
        return lan + PORT_BYTES[lport] + remote + PORT_BYTES[rport]

    def _new_outbound(self, proto: int, out_key: bytes, lan: bytes, lport: int, remote: bytes,
                      rport: int, now: float) -> Flow | str:
        if (self._max_flows and self.table.count >= self._max_flows) or (
                self._max_per_host and self._hosts.get(lan, 0) >= self._max_per_host):
            why = self._make_room(lan)
            if why is not None:
                return why
        helper = self._port_helpers[proto].get(rport) if proto != PROTO_ICMP else None
        maps_lan = self._maps_lan[proto]
        eim = self._mapping == "endpoint-independent"
        if eim:
            mkey = b""  # built only if a Mapping object is made
            m = maps_lan.get_ep(lan, lport)
        else:
            mkey = self._mapping_key(proto, lan, lport, remote, rport)
            m = maps_lan.get(mkey)
        if isinstance(m, Flow):
            m = self._promote(m)
        if m is None:
            wan = self._pair(lan)
            port: int | None
            maps_wan = self._maps_wan[proto]
            if (helper is None and self._preserve and self._port_lo <= lport <= self._port_hi
                    and maps_wan.get_at(wan, lport) is None and not self._reserved):
                # port preservation (RFC 4787 REQ-3), the common case, without the general call
                port = lport
                k = (proto, wan)
                self._ports_in_range[k] = self._ports_in_range.get(k, 0) + 1
            else:
                pref = None
                if helper is not None:
                    pref = helper.choose_wan_port(proto, lan, lport, remote, rport, wan)
                keep = lport if self._preserve else None
                port = self._alloc_port(proto, wan, pref, keep)
                if port is None and self._evict_for_port(proto, wan):
                    port = self._alloc_port(proto, wan, pref, keep)
                if port is None:
                    return V.PORTS_EXHAUSTED
            if self._holders:
                # the new flow holds the mapping itself (no Mapping object, see MAP_HOLDER)
                if proto == PROTO_ICMP:
                    in_key = remote + wan + PORT_BYTES[port]
                else:
                    in_key = remote + wan + out_key[10:12] + PORT_BYTES[port]
                inb = self.table.inb[proto]
                if inb is not None and in_key in inb:
                    self._count_port(proto, wan, port, -1)  # see the same refusal below
                    return V.NO_MAPPING
                f = self._new_flow(proto, out_key, in_key, lan, lport, wan, port, None, helper,
                                   True, now)
                f.flags |= MAP_HOLDER
                maps_lan.set_ep(lan, lport, f)
                maps_wan.set_at(wan, port, f)
                return f
            if eim:
                mkey = lan + PORT_BYTES[lport]
            wkey = wan + PORT_BYTES[port]
            m = Mapping(proto, mkey, wkey)
            if self._track_remotes:
                m.remotes = {}
            maps_lan[mkey] = m
            maps_wan[wkey] = m
        wan, wport = m.wan_addr, m.wan_port
        if proto == PROTO_ICMP:
            in_key = remote + wan + PORT_BYTES[wport]
        else:
            in_key = remote + wan + out_key[10:12] + PORT_BYTES[wport]
        inb = self.table.inb[proto]
        if inb is not None and in_key in inb:
            # Another LAN endpoint already talks to this remote endpoint through this WAN
            # endpoint (only possible with overlapping forwards/expectations): refuse.
            if m.sessions == 0 and not m.static:
                self._drop_mapping(m)
            return V.NO_MAPPING
        return self._new_flow(proto, out_key, in_key, lan, lport, wan, wport, m, helper, True, now)

    def _drop_mapping(self, m: Mapping) -> None:
        if self._maps_lan[m.proto].get(m.lan_key) is m:
            del self._maps_lan[m.proto][m.lan_key]
        if self._maps_wan[m.proto].get(m.wan_key) is m:
            del self._maps_wan[m.proto][m.wan_key]
            self._count_port(m.proto, m.wan_addr, m.wan_port, -1)

    def _new_inbound(self, buf: bytearray, ihl: int, proto: int, in_key: bytes,
                     now: float) -> Flow | str:
        """An inbound TCP/UDP packet with no flow: expectation, port forward or filtering."""
        remote = in_key[0:4]
        wan = in_key[4:8]
        rport = buf[ihl] << 8 | buf[ihl + 1]
        wport = buf[ihl + 2] << 8 | buf[ihl + 3]
        if wan not in self._wan_set:
            return V.NO_MAPPING
        e = self._match_expect(proto, wan, wport, remote, now)
        m = self._maps_wan[proto].get(wan + PORT_BYTES[wport])
        if e is not None:
            lan, lport = e.lan_addr, e.lan_port
            helper: Helper | None = self._helper_by_name.get(e.owner)
            mapping = m if (m is not None and m.lan_addr == lan and m.lan_port == lport) else None
        elif m is None:
            return V.NO_MAPPING
        else:
            if not m.static:
                fb = self._filtering
                if fb == "address-and-port-dependent":
                    return V.FILTERED  # an allowed remote endpoint would have a flow already
                if fb == "address-dependent" and not (m.remotes and remote in m.remotes):
                    return V.FILTERED
            lan, lport = m.lan_addr, m.lan_port
            mapping = m
            helper = self._port_helpers[proto].get(lport) if m.static else None
            if helper is None and not m.static:
                helper = self._port_helpers[proto].get(rport)
        out_key = lan + remote + PORT_BYTES[lport] + PORT_BYTES[rport]
        if self.table.lookup_out(proto, out_key) is not None:
            return V.FILTERED  # that LAN endpoint already talks to this remote another way
        why = self._make_room(lan)
        if why is not None:
            return why
        if isinstance(mapping, Flow):
            mapping = self._promote(mapping)  # a second session joins a held mapping
        return self._new_flow(proto, out_key, in_key, lan, lport, wan, wport, mapping, helper,
                              False, now)

    # ----------------------------------------------------------------------------- TCP / UDP
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

    def _replied(self, f: Flow, from_lan: bool) -> None:
        fl = f.flags | REPLIED
        if not fl & HAIRPIN and (f.helper is None or fl & RELEASED):
            fl &= ~(SLOW_IN | SLOW_OUT)
        f.flags = fl

    def _release(self, f: Flow, on: bool) -> None:
        """``ctx.fast_path``: the owning helper needs (``on`` False: again needs) per-packet
        calls for this flow. Released, it takes the slow path only when a flow without helper
        would (until the first reply, hairpin)."""
        fl = f.flags
        if on:
            fl |= RELEASED
            if fl & REPLIED and not fl & HAIRPIN:
                fl &= ~(SLOW_IN | SLOW_OUT)
            elif not fl & HAIRPIN:
                fl = (fl & ~(SLOW_IN | SLOW_OUT)) | (SLOW_IN if fl & OUTBOUND else SLOW_OUT)
        else:
            fl = (fl & ~RELEASED) | SLOW_IN | SLOW_OUT
        f.flags = fl

    def _tcp_state(self, f: Flow, buf: bytearray, ihl: int, from_lan: bool,
                   now: float) -> str | None:
        """Track a slow-path TCP segment (natpass.nat.tcp_track); a drop reason when it is a
        RST/FIN/SYN outside the receive window."""
        assert isinstance(f, TcpFlow)
        before = f.state
        why = tcp_track.track(f, buf, ihl, from_lan)
        st = f.state
        if why is not None or st == before:
            return why
        old = f.timeout
        f.timeout = self._timeout_for(f)
        if f.timeout < old:
            self._schedule(f, f.last + f.timeout)
        if st & RST_SEEN or (st & FIN_LAN and st & FIN_WAN):
            self._notify_closed(f, now)
        return None

    def _rewrite_src(self, buf: bytearray, ihl: int, proto: int, f: Flow) -> None:
        """Outbound translation with the flow's precomputed deltas (any header length)."""
        buf[8] -= 1
        _adjust(buf, 10, f.o_ipd)
        if ihl == 20 and (proto == PROTO_UDP or proto == PROTO_TCP):
            buf[12:16] = f.o_addr
            buf[20:22] = f.o_port
            if proto == PROTO_UDP:
                _adjust_udp(buf, 26, f.o_l4d)
            else:
                _adjust(buf, 36, f.o_l4d)
            return
        buf[12:16] = f.o_addr
        if proto == PROTO_UDP:
            buf[ihl:ihl + 2] = f.o_port
            _adjust_udp(buf, ihl + 6, f.o_l4d)
        elif proto == PROTO_TCP:
            buf[ihl:ihl + 2] = f.o_port
            _adjust(buf, ihl + 16, f.o_l4d)
        elif proto == PROTO_ICMP:
            buf[ihl + 4:ihl + 6] = f.o_port
            _adjust(buf, ihl + 2, f.o_l4d)

    def _rewrite_dst(self, buf: bytearray, ihl: int, proto: int, f: Flow) -> None:
        """Inbound translation; deltas computed from the packet (it may come via a helper's
        inbound_lookup, addressed to another WAN endpoint than the flow's)."""
        if proto != PROTO_ICMP and ihl == 20 and _KEY12(buf, 12)[0] == f.in_key:
            # the usual case: addressed to the flow's WAN endpoint, precomputed deltas apply
            buf[16:20] = f.i_addr
            buf[22:24] = f.i_port
            buf[8] -= 1
            _adjust(buf, 10, f.i_ipd)
            if proto == PROTO_UDP:
                _adjust_udp(buf, 26, f.i_l4d)
            elif proto == PROTO_TCP:
                _adjust(buf, 36, f.i_l4d)
            return
        new_addr = f.i_addr
        old_addr = bytes(buf[16:20])
        buf[16:20] = new_addr
        buf[8] -= 1
        _adjust(buf, 10, combine(delta(old_addr, new_addr), TTL_DEC_DELTA))
        if proto == PROTO_UDP or proto == PROTO_TCP:
            old_port = bytes(buf[ihl + 2:ihl + 4])
            buf[ihl + 2:ihl + 4] = f.i_port
            adj = delta(old_addr + old_port, new_addr + f.i_port)
            if proto == PROTO_UDP:
                _adjust_udp(buf, ihl + 6, adj)
            else:
                _adjust(buf, ihl + 16, adj)
        elif proto == PROTO_ICMP:
            old_port = bytes(buf[ihl + 4:ihl + 6])
            buf[ihl + 4:ihl + 6] = f.i_port
            _adjust(buf, ihl + 2, delta(old_port, f.i_port))

    def _hairpin(self, buf: bytearray, ihl: int, proto: int, now: float) -> int:
        """RFC 4787 REQ-9 / RFC 5382 REQ-8: LAN -> our WAN endpoint goes back to the LAN, its
        source already translated to the sender's mapping (so the target sees a public peer)."""
        if not self.config.hairpinning:
            return self._drop(V.NO_MAPPING)
        # one hop only: undo the outbound decrement, the inbound part decrements again
        buf[8] += 1
        _adjust(buf, 10, TTL_INC_DELTA)
        key = bytes(buf[12:20]) + bytes(buf[ihl:ihl + 4])
        f = self.table.inb[proto].get(key)  # type: ignore[union-attr]
        if f is None:
            r = self._new_inbound(buf, ihl, proto, key, now)
            if isinstance(r, str):
                return self._drop(r)
            f = r
        self._count("hairpinned")
        return self._inbound_flow(buf, ihl, proto, f, now)

    # ----------------------------------------------------------------------------- ICMP
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
        """RFC 5508 section 4 / RFC 4787 REQ-... : translate an ICMP error about a mapped flow.
        Never refreshes nor removes the flow."""
        total = len(buf)
        inner = ihl + 8
        if total < inner + 20 or buf[inner] >> 4 != 4:
            return self._drop(V.MALFORMED)
        iihl = (buf[inner] & 0x0F) * 4
        if iihl < 20 or total < inner + iihl + 4:
            return self._drop(V.MALFORMED)
        iproto = buf[inner + 9]
        l4 = inner + iihl
        isrc = bytes(buf[inner + 12:inner + 16])
        idst = bytes(buf[inner + 16:inner + 20])
        inner_frag_later = (buf[inner + 6] << 8 | buf[inner + 7]) & IP_OFFSET
        if inner_frag_later:
            return self._drop(V.NO_MAPPING)
        if iproto == PROTO_TCP or iproto == PROTO_UDP:
            sp = bytes(buf[l4:l4 + 2])
            dp = bytes(buf[l4 + 2:l4 + 4])
            # the inner packet goes the other way: key it as the flow's opposite direction
            key = idst + isrc + dp + sp
            port_off = l4 + 2 if from_lan else l4
        elif iproto == PROTO_ICMP:
            if total < l4 + 8:
                return self._drop(V.MALFORMED)
            key = idst + isrc + bytes(buf[l4 + 4:l4 + 6])
            port_off = l4 + 4
        else:
            return self._drop(V.NO_MAPPING)
        table = self.table
        f = (table.lookup_out(iproto, key) if from_lan else table.lookup_in(iproto, key))
        if f is None:
            return self._drop(V.NO_MAPPING)
        if from_lan:
            new_addr, new_port = f.o_addr, f.o_port
            addr_off = inner + 16  # the inner packet was sent to the LAN host
            outer_off = 12
            if bytes(buf[12:16]) != f.i_addr and not self._is_lan(bytes(buf[12:16])):
                return self._drop(V.NOT_LAN_SOURCE)
        else:
            new_addr, new_port = f.i_addr, f.i_port
            addr_off = inner + 12  # the inner packet was sent by the LAN host
            outer_off = 16
            if bytes(buf[16:20]) != f.o_addr:
                return self._drop(V.NO_MAPPING)
        # Everything the ICMP checksum covers that changes lies in [inner, span_end).
        span_end = min(total, max(l4 + 18, l4 + 8))
        if (span_end - inner) & 1 and span_end < total:
            span_end += 1
        old_span = bytes(buf[inner:span_end])
        old_addr = bytes(buf[addr_off:addr_off + 4])
        old_port = bytes(buf[port_off:port_off + 2])
        buf[addr_off:addr_off + 4] = new_addr
        buf[port_off:port_off + 2] = new_port
        _adjust(buf, inner + 10, delta(old_addr, new_addr))
        if iproto == PROTO_TCP:
            if total >= l4 + 18:
                _adjust(buf, l4 + 16, delta(old_addr + old_port, new_addr + new_port))
        elif iproto == PROTO_UDP:
            if total >= l4 + 8:
                _adjust_udp(buf, l4 + 6, delta(old_addr + old_port, new_addr + new_port))
        else:
            _adjust(buf, l4 + 2, delta(old_port, new_port))
        _adjust(buf, ihl + 2, delta(old_span, bytes(buf[inner:span_end])))
        old_outer = bytes(buf[outer_off:outer_off + 4])
        outer_new = new_addr
        buf[outer_off:outer_off + 4] = outer_new
        buf[8] -= 1
        _adjust(buf, 10, combine(delta(old_outer, outer_new), TTL_DEC_DELTA))
        self._count("icmp_errors_translated")
        return TO_WAN if from_lan else TO_LAN

    # ----------------------------------------------------------------------------- others
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
            _adjust(buf, 10, f.o_ipd)
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
        _adjust(buf, 10, f.i_ipd)
        return TO_LAN

    # ----------------------------------------------------------------------------- replay
    def far_end_view(self, buf: bytearray, now: float) -> bool:
        """Replay: rewrite a captured inbound packet (addressed to the untranslated LAN host)
        into what the far end sent after seeing natpass's translation. False: no mapping."""
        try:
            if self._far_end_view(buf, now):
                return True
            # No mapping: the far end could still only have addressed the router's public
            # address (never the private one), so the WAN side shows that; process() will
            # then drop it (no-mapping / filtered) as it would the real packet.
            if len(buf) >= 20 and (buf[0] & 0x0F) * 4 <= len(buf):
                dst = bytes(buf[16:20])
                if self._is_lan(dst):
                    _set_ip_addr(buf, 16, self._pair(dst))
            return False
        except (IndexError, ValueError):
            return False

    def _far_end_view(self, buf: bytearray, now: float) -> bool:
        n = len(buf)
        if n < 20 or buf[0] >> 4 != 4:
            return False
        ihl = (buf[0] & 0x0F) * 4
        if ihl < 20 or n < ihl:
            return False
        proto = buf[9]
        src = bytes(buf[12:16])
        dst = bytes(buf[16:20])
        later = (buf[6] << 8 | buf[7]) & IP_OFFSET
        h = self._proto_helper.get(proto)
        if h is not None:
            if not self._is_lan(dst):
                return False
            # The helper sees the LAN destination: it is its only demultiplexing key (e.g. two LAN
            # hosts holding the same PPTP Call ID with one server). Then the WAN address goes in.
            h.far_end_view(buf, ihl, now)
            _set_ip_addr(buf, 16, self._pair(dst))
            return True
        table = self.table
        if proto in (PROTO_TCP, PROTO_UDP) and not later and n >= ihl + 4:
            sp = bytes(buf[ihl:ihl + 2])
            dp = bytes(buf[ihl + 2:ihl + 4])
            f = table.lookup_out(proto, dst + src + dp + sp)
            if f is not None:
                wan, wport = f.o_addr, f.o_port
            else:
                m = self._maps_lan[proto].get(self._mapping_key(proto, dst, dp[0] << 8 | dp[1], src,
                                                                sp[0] << 8 | sp[1]))
                if m is None:
                    return False
                wan, wport = m.wan_addr, PORT_BYTES[m.wan_port]
            _set_ip_addr(buf, 16, wan)
            _rewrite_l4(buf, ihl + 2, wport)
            if f is not None and f.helper is not None:
                f.helper.far_end_view(buf, ihl, now)
            return True
        if proto == PROTO_ICMP and n >= ihl + 8:
            typ = buf[ihl]
            if typ in ICMP_QUERY_REPLIES:
                f = table.lookup_out(PROTO_ICMP, dst + src + bytes(buf[ihl + 4:ihl + 6]))
                if f is None:
                    return False
                _set_ip_addr(buf, 16, f.o_addr)
                _rewrite_l4(buf, ihl + 4, f.o_port)
                return True
            if typ in ICMP_ERROR_TYPES:
                return self._far_end_icmp_error(buf, ihl)
            return False
        if proto not in (PROTO_TCP, PROTO_UDP, PROTO_ICMP):
            f = table.lookup_out(proto, dst + src)
            if f is None:
                return False
            _set_ip_addr(buf, 16, f.o_addr)
            return True
        return False

    def _far_end_icmp_error(self, buf: bytearray, ihl: int) -> bool:
        total = len(buf)
        inner = ihl + 8
        if total < inner + 24:
            return False
        iihl = (buf[inner] & 0x0F) * 4
        l4 = inner + iihl
        iproto = buf[inner + 9]
        isrc = bytes(buf[inner + 12:inner + 16])
        idst = bytes(buf[inner + 16:inner + 20])
        if iproto in (PROTO_TCP, PROTO_UDP) and total >= l4 + 4:
            key = isrc + idst + bytes(buf[l4:l4 + 2]) + bytes(buf[l4 + 2:l4 + 4])
            port_off = l4
        elif iproto == PROTO_ICMP and total >= l4 + 8:
            key = isrc + idst + bytes(buf[l4 + 4:l4 + 6])
            port_off = l4 + 4
        else:
            return False
        f = self.table.lookup_out(iproto, key)
        if f is None:
            return False
        # The inner packet as the far end received it: from the WAN endpoint.
        self._icmp_inner_set(buf, ihl, inner, l4, iproto, inner + 12, port_off, f.o_addr, f.o_port)
        _set_ip_addr(buf, 16, f.o_addr)
        return True

    def _icmp_inner_set(self, buf: bytearray, ihl: int, inner: int, l4: int, iproto: int,
                        addr_off: int, port_off: int, new_addr: bytes, new_port: bytes) -> None:
        total = len(buf)
        span_end = min(total, l4 + 18)
        if (span_end - inner) & 1 and span_end < total:
            span_end += 1
        old_span = bytes(buf[inner:span_end])
        old_addr = bytes(buf[addr_off:addr_off + 4])
        old_port = bytes(buf[port_off:port_off + 2])
        buf[addr_off:addr_off + 4] = new_addr
        buf[port_off:port_off + 2] = new_port
        _adjust(buf, inner + 10, delta(old_addr, new_addr))
        if iproto == PROTO_TCP and total >= l4 + 18:
            _adjust(buf, l4 + 16, delta(old_addr + old_port, new_addr + new_port))
        elif iproto == PROTO_UDP and total >= l4 + 8:
            _adjust_udp(buf, l4 + 6, delta(old_addr + old_port, new_addr + new_port))
        elif iproto == PROTO_ICMP:
            _adjust(buf, l4 + 2, delta(old_port, new_port))
        _adjust(buf, ihl + 2, delta(old_span, bytes(buf[inner:span_end])))


__all__ = ["Engine", "build_icmp_error", "fragment"]
