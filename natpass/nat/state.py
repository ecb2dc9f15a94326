"""The engine's state and its life cycle: configuration, helpers, mappings, flows, timers, limits.

:class:`NatState` holds what the NAT knows (the flow table, the mapping indexes, the WAN port pool,
the timer wheel, fragment state, helper expectations) and the operations that create, refresh and
remove flows and mappings: RFC 4787 mapping behaviours and paired pooling, port forwards, the
table limits with early drop, idle timeouts (RFC 4787 REQ-5, RFC 5382 REQ-5, RFC 5508 REQ-1).
:class:`natpass.nat.engine.Engine` adds the per-packet work on top of it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from natpass.nat import tcp_track
from natpass.nat import verdict as V
from natpass.nat.behaviour import Behaviour
from natpass.nat.config import SWITCHES, NatConfig
from natpass.nat.context import EngineContext
from natpass.nat.fragments import Fragments
from natpass.nat.helper import Helper
from natpass.nat.ipfast import IpFastTable
from natpass.nat.ports import PORT_BYTES, PortPool
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
from natpass.nat.timers import TimerWheel

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
# RFC 1624: decrementing the TTL byte changes the word (TTL, protocol) by -0x100, whose
# one's complement adjustment ~m + m' is the constant 0xFEFF whatever the TTL value.
TTL_DEC_DELTA = 0xFEFF
# UDP ports whose flows get the NAT-T timeout (RFC 3947/3948 IKE and NAT-T).
UDP_NATT_PORTS = frozenset({500, 4500})
# Interned small ints: port numbers and checksum deltas are shared by all flows instead of one
# int object per flow (RFC 1624 deltas are < 0x20000).
_INTS: tuple[int, ...] = tuple(range(0x20000))
_new_flow_object = object.__new__  # Flow without __init__: _new_flow sets every slot once
EVICT_SCAN = 64  # unreplied flows looked at to free a WAN port (bounded work per new flow)


def _fold_all(x: int) -> int:
    """Fold a non-negative sum into 16 bits (one's complement end-around carry)."""
    while x > 0xFFFF:
        x = (x & 0xFFFF) + (x >> 16)
    return x


class NatState:
    """Tables and their life cycle (see the module docstring); no per-packet translation."""

    def __init__(self, config: NatConfig, helpers: Sequence[Helper] = ()) -> None:
        self.table = FlowTable()
        self.last_drop: str | None = None
        self.drops: dict[str, int] = {}
        self.events: list[dict[str, Any]] = []
        self._counters: dict[str, int] = {}
        self._ctx = EngineContext(self)
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
        lo, hi = config.port_range
        self._ports = PortPool(self._maps_wan, lo, hi, config.seed)
        self._hosts: dict[bytes, int] = {}
        self._lan_objs: dict[bytes, bytes] = {}  # LAN host -> its one bytes object (Flow.i_addr)
        # flows in creation order for early drop; replied/removed ones are skipped lazily
        self._unreplied: deque[Flow] = deque()
        self._wheel = TimerWheel()
        self._frags = Fragments(config.limits.max_fragments, config.timeouts.fragment)
        self._ipfast = IpFastTable()  # helpers' cached GRE call / ESP SA translations
        self._next_tick = float("-inf")
        self._last_helper_tick = float("-inf")
        self._apply_config(config)
        self._install_forwards()
        for h in self._helpers:
            self._register(h)

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
        self._mapping = Behaviour(config.mapping)
        self._filtering = Behaviour(config.filtering)
        lo, hi = config.port_range
        self._ports.set_range(lo, hi, config.seed)
        t = config.timeouts
        self._t_udp = float(t.udp)
        self._t_natt = float(t.udp_natt)
        self._t_est = float(t.tcp_established)
        self._t_trans = float(t.tcp_transitory)
        self._t_icmp = float(t.icmp)
        self._frags.lifetime = float(t.fragment)
        self._frags.limit = config.limits.max_fragments
        self._max_flows = config.limits.max_flows
        self._max_per_host = config.limits.max_flows_per_host
        self._inbound_refresh = config.inbound_refresh
        self._preserve = config.port_preservation
        self._eim = self._mapping is Behaviour.ENDPOINT_INDEPENDENT
        self._track_remotes = self._filtering.needs_remotes
        # a flow may hold its own mapping only when the mapping key is the LAN endpoint alone
        # and no per-mapping remote set is needed
        self._holders = self._eim and not self._track_remotes

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
        # cached GRE/ESP translations may name a WAN address or LAN host the new config drops:
        # the helpers install them again on the next packet of each call or SA
        self._ipfast.clear()
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
                self._ports.count(proto, m.wan_addr, m.wan_port, -1)
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
        if self._eim:
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
            self._ports.count(proto, wan, wport, -1)

    def _install_forwards(self) -> None:
        for fw in self.config.forwards:
            wans = self._wans if fw.wan_addr is None else (bytes(fw.wan_addr),)
            for wan in wans:
                if wan not in self._wan_set:
                    continue
                wkey = wan + PORT_BYTES[fw.wan_port]
                maps = self._maps_wan.setdefault(fw.proto, PortIndex())
                if not self._ports.is_free(fw.proto, wkey):
                    self._count("forward-conflict")
                    continue
                self._ports.count(fw.proto, wan, fw.wan_port, 1)
                m = Mapping(fw.proto, bytes(fw.lan_addr) + PORT_BYTES[fw.lan_port], wkey,
                            static=True)
                if self._track_remotes:
                    m.remotes = {}
                maps[wkey] = m

    def set_switch(self, name: str, on: bool, now: float) -> int:
        """Flip a passthrough switch; returns how many tunnels the helper tore down."""
        h = self._helper_by_name.get(name)
        if h is None:
            if name not in SWITCHES:
                raise KeyError(f"no passthrough switch {name!r}")
            return 0
        n = h.set_enabled(on, now)
        self._ipfast.clear(tuple(h.ip_protocols))
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

    def _count(self, name: str, n: int = 1) -> None:
        c = self._counters
        c[name] = c.get(name, 0) + n

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
        self._wheel.schedule(f, deadline, self.table.count)

    def _tick(self, now: float) -> None:
        """Timers up to ``now``: idle flows, fragment state, helpers' own."""
        self._next_tick = float(int(now) + 1)
        for f in self._wheel.due(now):
            if f.flags & DEAD:
                continue
            d = f.last + f.timeout
            if d <= now:
                self._remove(f, "flows_expired")
            else:
                self._schedule(f, d)
        timed_out = self._frags.expire(now)
        if timed_out:
            d2 = self.drops
            d2[V.FRAGMENT_TIMEOUT] = d2.get(V.FRAGMENT_TIMEOUT, 0) + timed_out
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
        lo, hi = self._ports.lo, self._ports.hi
        for i, f in enumerate(dq):
            if i >= EVICT_SCAN:
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
        self._wheel.forget(f, self.table.count)
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
                    self._ports.count(m.proto, m.wan_addr, m.wan_port, -1)
        self._count(why)
        self._notify_closed(f, f.last)

    def _notify_closed(self, f: Flow, now: float) -> None:
        if f.helper is not None and not f.flags & CLOSE_NOTIFIED:
            f.flags |= CLOSE_NOTIFIED
            f.helper.on_flow_closed(f, now)

    def _mapping_key(self, proto: int, lan: bytes, lport: int, remote: bytes, rport: int) -> bytes:
        return self._mapping.mapping_key(lan, lport, remote, rport)

    def _new_outbound(self, proto: int, out_key: bytes, lan: bytes, lport: int, remote: bytes,
                      rport: int, now: float) -> Flow | str:
        if (self._max_flows and self.table.count >= self._max_flows) or (
                self._max_per_host and self._hosts.get(lan, 0) >= self._max_per_host):
            why = self._make_room(lan)
            if why is not None:
                return why
        helper = self._port_helpers[proto].get(rport) if proto != PROTO_ICMP else None
        maps_lan = self._maps_lan[proto]
        eim = self._eim
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
            if (helper is None and self._preserve and self._ports.lo <= lport <= self._ports.hi
                    and maps_wan.get_at(wan, lport) is None):
                # port preservation (RFC 4787 REQ-3), the common case, without the general call
                port = lport
                k = (proto, wan)
                self._ports.in_range[k] = self._ports.in_range.get(k, 0) + 1
            else:
                pref = None
                if helper is not None:
                    pref = helper.choose_wan_port(proto, lan, lport, remote, rport, wan)
                keep = lport if self._preserve else None
                port = self._ports.alloc(proto, wan, pref, keep)
                if port is None and self._evict_for_port(proto, wan):
                    port = self._ports.alloc(proto, wan, pref, keep)
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
                    self._ports.count(proto, wan, port, -1)  # see the same refusal below
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
            self._ports.count(m.proto, m.wan_addr, m.wan_port, -1)

    def _new_inbound(self, buf: bytearray, ihl: int, proto: int, in_key: bytes,
                     now: float) -> Flow | str:
        """An inbound TCP/UDP packet with no flow: port forward or filtering."""
        remote = in_key[0:4]
        wan = in_key[4:8]
        rport = buf[ihl] << 8 | buf[ihl + 1]
        wport = buf[ihl + 2] << 8 | buf[ihl + 3]
        if wan not in self._wan_set:
            return V.NO_MAPPING
        m = self._maps_wan[proto].get(wan + PORT_BYTES[wport])
        if m is None:
            return V.NO_MAPPING
        if not m.static and not self._filtering.admits(m.remotes, remote):
            return V.FILTERED
        lan, lport = m.lan_addr, m.lan_port
        mapping: Mapping | Flow = m
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
