"""L2TP passthrough (RFC 2661, L2TPv2 over UDP 1701): port 1701 kept, tunnels and sessions tracked.

Bare L2TP crosses a NAT as ordinary UDP, but many LNS only accept (or only answer) source port
1701, so the WAN port stays 1701 when free. Control messages are followed to know the tunnels and
sessions (Assigned Tunnel ID / Assigned Session ID AVPs of SCCRQ, SCCRP, ICRQ, ICRP, OCRQ, OCRP;
StopCCN ends a tunnel, CDN a session) for ``tunnels()``/``stats()`` and the usage record. When a
second LAN host to the same LNS got another WAN port and the LNS answers to 1701 anyway, the Tunnel
ID of the header (the receiver's, i.e. the LAN host's own) routes it back, when it is unique.

How the ``l2tp`` and ``ipsec`` switches combine. L2TP/IPsec (Windows, macOS, Android "L2TP/IPsec")
runs L2TP inside ESP: without NAT-T that is raw ESP, owned by the ``ipsec`` switch alone, and the
L2TP inside is encrypted, invisible to the router. So:
- ipsec on: L2TP/IPsec without NAT-T works whatever the ``l2tp`` switch says;
- ipsec off: its raw ESP is dropped (``passthrough-disabled:ipsec``) and the client fails with
  Windows error 809, whatever the ``l2tp`` switch says;
- with NAT-T (UDP 4500) it works with every switch off.
The ``l2tp`` switch only concerns L2TP visible on UDP 1701 (bare L2TP, or L2TP under ESP-NULL is
not readable either): on, port 1701 preservation and tracking; off, ordinary UDP; off with
``strict``, UDP 1701 is blocked (``strict-blocked:l2tp``).

State bounds (:class:`L2tpLimits`, from ``[limits]``): tunnels and sessions are held per LAN host
like flows, least recently used first out, and a host pushes out only its own entries (or a
host's holding more); a tunnel pushed out is forgotten (its flow stays ordinary UDP and is
followed afresh from its next control message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from natpass.nat import verdict as V
from natpass.nat.config import Limits, NatConfig, Timeouts
from natpass.nat.helper import FlowView
from natpass.packets import l2tp as L
from natpass.packets.errors import PacketError
from natpass.packets.ipv4 import PROTO_UDP
from natpass.passthrough._common import (
    LRU_GRANULARITY,
    HostLru,
    StateLimit,
    SwitchedHelper,
    dst_of,
    ip_text,
    need_ctx,
    src_of,
    u16,
)

L2TP_PORT: Final = 1701  # RFC 2661 8.1
# Control message types (RFC 2661 3.2).
SCCRQ: Final = L.SCCRQ
SCCRP: Final = L.SCCRP
SCCCN: Final = L.SCCCN
STOPCCN: Final = L.STOPCCN
OCRQ: Final = L.OCRQ
OCRP: Final = L.OCRP
ICRQ: Final = L.ICRQ
ICRP: Final = L.ICRP
CDN: Final = L.CDN


@dataclass(frozen=True, slots=True)
class L2tpLimits:
    """Everything the L2TP helper keeps is bounded here (like netfilter's expectation policy).

    ``tunnels`` (one per UDP 1701 flow) and ``sessions`` (Assigned Session IDs of both ends): each
    worth a flow, ``max_flows_per_host`` per LAN host and ``max_flows`` in all, least recently
    used out first, and a host pushes out only its own entries or a host's holding more
    (``HostLru``). ``sessions_per_tunnel``: one more Assigned Session ID in a tunnel is not
    followed (``l2tp:session-limit``); RFC 2661 allows 65,535 but no LAC opens that many."""

    tunnels: StateLimit
    sessions: StateLimit
    sessions_per_tunnel: int = 256

    @classmethod
    def from_config(cls, limits: Limits) -> L2tpLimits:
        flows = StateLimit.like_flows(limits)
        return cls(tunnels=flows, sessions=flows)


@dataclass(slots=True)
class L2tpMessage:
    """What the helper reads of one L2TPv2 datagram."""

    control: bool
    tunnel_id: int  # the receiver's Tunnel ID (header)
    session_id: int  # the receiver's Session ID (header)
    msg_type: int | None = None  # control only; None for a ZLB acknowledgement
    assigned_tunnel: int | None = None
    assigned_session: int | None = None
    hidden: bool = False  # an AVP we need was hidden (RFC 2661 4.3)


def read_l2tp(data: bytes) -> L2tpMessage:
    """Header and, for a control message, the AVPs the tracker needs (PacketError if unreadable)."""
    hdr = L.parse_l2tp(data)
    if not hdr.is_control:
        return L2tpMessage(False, hdr.tunnel_id, hdr.session_id)
    ctl = L.parse_control(data)
    msg = L2tpMessage(True, hdr.tunnel_id, hdr.session_id, ctl.message_type)
    for avp in ctl.avps[1:]:
        if avp.vendor == 0 and avp.type in (L.AVP_ASSIGNED_TUNNEL_ID, L.AVP_ASSIGNED_SESSION_ID):
            if avp.hidden:
                msg.hidden = True
            elif avp.type == L.AVP_ASSIGNED_TUNNEL_ID:
                msg.assigned_tunnel = avp.u16()
            else:
                msg.assigned_session = avp.u16()
    return msg


@dataclass(slots=True, eq=False)
class Tunnel:
    """One L2TP tunnel between a LAN host and an LNS/LAC across the router."""

    lan: bytes
    lan_port: int
    remote: bytes
    wan: bytes
    wan_port: int
    created: float
    last_seen: float
    lan_tunnel_id: int | None = None
    remote_tunnel_id: int | None = None
    lan_sessions: set[int] = field(default_factory=set)
    remote_sessions: set[int] = field(default_factory=set)
    up: bool = False
    flow: FlowView | None = None


@dataclass(slots=True, eq=False)
class Session:
    """One Assigned Session ID of a tunnel (``lan_side``: the LAN host assigned it)."""

    lan: bytes
    tunnel: Tunnel
    lan_side: bool
    session_id: int


SessionKey = tuple[int, bool, int]  # (id of the tunnel's flow, LAN side, Session ID)
TidKey = tuple[bytes, bytes, int]  # (remote, WAN address, LAN host's Tunnel ID)


class L2tpHelper(SwitchedHelper):
    """UDP 1701 port preservation and L2TPv2 tunnel/session tracking."""

    name = "l2tp"
    udp_ports = frozenset({L2TP_PORT})

    def __init__(self, timeouts: Timeouts | None = None, limits: Limits | None = None) -> None:
        super().__init__(timeouts)
        self.limits = L2tpLimits.from_config(limits or Limits())
        # id(flow) -> tunnel of that flow
        self._tunnels: HostLru[int, Tunnel] = HostLru(self.limits.tunnels, self._tunnel_evicted)
        self._sessions: HostLru[SessionKey, Session] = HostLru(self.limits.sessions,
                                                              self._session_evicted)
        self._by_tid: dict[TidKey, dict[int, Tunnel]] = {}  # LNS replies routed by Tunnel ID
        self.l2tp_packets = 0  # UDP 1701 handled with the switch on

    def reconfigure(self, config: NatConfig, now: float) -> None:
        super().reconfigure(config, now)
        self.limits = L2tpLimits.from_config(config.limits)
        self._tunnels.set_limit(self.limits.tunnels, now)
        self._sessions.set_limit(self.limits.sessions, now)

    def _tunnel_evicted(self, key: int, t: Tunnel, now: float) -> None:
        self._count("l2tp:tunnels-evicted")
        self._end(t, now, "evicted")

    def _session_evicted(self, key: SessionKey, sess: Session, now: float) -> None:
        self._count("l2tp:sessions-evicted")
        (sess.tunnel.lan_sessions if sess.lan_side else sess.tunnel.remote_sessions).discard(
            sess.session_id)

    def _set_tunnel_id(self, t: Tunnel, tid: int | None) -> None:
        """The LAN host's Tunnel ID (what the LNS puts in its headers), indexed for routing."""
        if t.lan_tunnel_id is not None:
            key = (t.remote, t.wan, t.lan_tunnel_id)
            same = self._by_tid.get(key)
            if same is not None:
                same.pop(id(t), None)
                if not same:
                    del self._by_tid[key]
        t.lan_tunnel_id = tid
        if tid is not None and t.flow is not None:
            self._by_tid.setdefault((t.remote, t.wan, tid), {})[id(t)] = t

    def _add_session(self, t: Tunnel, lan_side: bool, sid: int, now: float) -> None:
        sessions = t.lan_sessions if lan_side else t.remote_sessions
        if sid in sessions:
            return
        if len(sessions) >= self.limits.sessions_per_tunnel:
            self._count("l2tp:session-limit")
            return
        sessions.add(sid)
        assert t.flow is not None
        self._sessions.add((id(t.flow), lan_side, sid), Session(t.lan, t, lan_side, sid), now)

    def _drop_session(self, t: Tunnel, lan_side: bool, sid: int) -> None:
        (t.lan_sessions if lan_side else t.remote_sessions).discard(sid)
        if t.flow is not None:
            self._sessions.pop((id(t.flow), lan_side, sid))

    def _clear_sessions(self, t: Tunnel) -> None:
        for lan_side, sessions in ((True, t.lan_sessions), (False, t.remote_sessions)):
            for sid in list(sessions):
                self._drop_session(t, lan_side, sid)

    def tear_down(self, now: float) -> int:
        torn = 0
        for t in self._tunnels.values():
            torn += 1 if t.up else 0
            self._end(t, now, "switched-off")
        return torn

    def tick(self, now: float) -> None:
        for t in self._tunnels.values():
            if now - t.last_seen > self.timeouts.udp:
                self._end(t, now, "timeout")

    def stats(self) -> dict[str, int]:
        out = dict(self._counters)
        out["tunnels"] = sum(1 for t in self._tunnels.values() if t.up)
        out["sessions"] = sum(len(t.lan_sessions) for t in self._tunnels.values())
        out["l2tp_packets"] = self.l2tp_packets
        out["tunnels_tracked"] = len(self._tunnels)
        out["sessions_tracked"] = len(self._sessions)
        out["tunnels_evicted"] = self._tunnels.evicted
        out["sessions_evicted"] = self._sessions.evicted
        return out

    def tunnels(self) -> list[dict[str, Any]]:
        return [{"proto": "l2tp", "lan": ip_text(t.lan), "lan_port": t.lan_port,
                 "remote": ip_text(t.remote), "wan": ip_text(t.wan), "wan_port": t.wan_port,
                 "lan_tunnel_id": t.lan_tunnel_id, "remote_tunnel_id": t.remote_tunnel_id,
                 "sessions": len(t.lan_sessions), "state": "up" if t.up else "connecting",
                 "since": t.created, "last_seen": t.last_seen} for t in self._tunnels.values()]

    def _end(self, t: Tunnel, now: float, why: str) -> None:
        if t.flow is not None and self._tunnels.get(id(t.flow)) is t:
            self._tunnels.pop(id(t.flow))
        self._clear_sessions(t)
        self._set_tunnel_id(t, None)
        if t.up:
            t.up = False
            self._count("l2tp:tunnels-down")
            if self.ctx is not None:
                self.ctx.log("tunnel-down", proto="l2tp", lan=ip_text(t.lan), remote=ip_text(t.remote),
                             wan=ip_text(t.wan), tunnel_id=t.lan_tunnel_id, reason=why,
                             duration=now - t.created)

    def snapshot(self, now: float) -> dict[str, Any]:
        """Tunnels (with their flow, Tunnel IDs and Session IDs); times relative to ``now``."""
        return {"tunnels": [
            [t.lan.hex(), t.lan_port, t.remote.hex(), t.flow.remote_port, t.wan.hex(), t.wan_port,
             round(t.created - now, 3), round(t.last_seen - now, 3), t.lan_tunnel_id,
             t.remote_tunnel_id, sorted(t.lan_sessions), sorted(t.remote_sessions), t.up]
            for t in self._tunnels.values() if t.flow is not None]}

    def restore(self, data: dict[str, Any], now: float) -> int:
        ctx = need_ctx(self.ctx)
        n = 0
        for (lan_h, lport, remote_h, rport, wan_h, wport, created, seen, lan_tid, remote_tid,
             lan_sids, remote_sids, up) in data.get("tunnels", []):
            lan, remote, wan = bytes.fromhex(lan_h), bytes.fromhex(remote_h), bytes.fromhex(wan_h)
            flow = ctx.find_flow(PROTO_UDP, lan, int(lport), remote, int(rport))
            if flow is None or flow.wan_addr != wan or flow.wan_port != int(wport) \
                    or id(flow) in self._tunnels:
                self._count("l2tp:restore-skipped")
                continue
            t = Tunnel(lan, int(lport), remote, wan, int(wport), now + float(created),
                       now + float(seen), remote_tunnel_id=remote_tid, up=bool(up), flow=flow)
            self._tunnels.add(id(flow), t, t.last_seen)
            self._set_tunnel_id(t, None if lan_tid is None else int(lan_tid))
            for lan_side, sids in ((True, lan_sids), (False, remote_sids)):
                for sid in sids:
                    self._add_session(t, lan_side, int(sid), t.last_seen)
            n += 1
        return n

    def choose_wan_port(self, proto: int, lan_addr: bytes, lan_port: int, remote_addr: bytes,
                        remote_port: int, wan_addr: bytes) -> int | None:
        if self.enabled and proto == PROTO_UDP and lan_port == L2TP_PORT:
            return L2TP_PORT
        return None

    def inbound_lookup(self, proto: int, buf: bytearray, ihl: int, now: float) -> FlowView | None:
        if not self.enabled or proto != PROTO_UDP or u16(buf, ihl + 2) != L2TP_PORT:
            return None
        total = u16(buf, 2)
        pay = ihl + 8
        if total - pay < 6:
            return None
        try:
            tid = L.parse_l2tp(bytes(buf[pay:total])).tunnel_id
        except PacketError:
            return None
        match = self._by_tid.get((src_of(buf), dst_of(buf), tid))
        if match is None or len(match) != 1:
            return None
        return next(iter(match.values())).flow

    def on_flow_packet(self, flow: FlowView, buf: bytearray, ihl: int, from_lan: bool,
                       now: float) -> str | None:
        if flow.proto != PROTO_UDP:
            return None
        if not self.enabled:
            if self.strict:
                return V.strict_blocked(self.name)
            # bare L2TP is ordinary UDP with the switch off (inbound_lookup answers None too):
            # nothing to do per packet until the switch or strict changes
            need_ctx(self.ctx).fast_path(flow)
            return None
        t = self._tunnels.get(id(flow))
        if t is None:
            t = Tunnel(flow.lan_addr, flow.lan_port, flow.remote_addr, flow.wan_addr, flow.wan_port,
                       now, now, flow=flow)
            self._tunnels.add(id(flow), t, now)
        elif now - t.last_seen >= LRU_GRANULARITY:
            self._tunnels.touch(id(flow), t.lan, now)
        t.last_seen = now
        self.l2tp_packets += 1
        total = u16(buf, 2)
        try:
            msg = read_l2tp(bytes(buf[ihl + 8:total]))
        except PacketError:
            self._count("l2tp:unreadable")
            return None  # still ordinary UDP: the endpoints judge their own protocol
        if not msg.control:
            if msg.session_id:
                # data names the receiver's session: keep it the most recent of its host
                self._sessions.touch((id(flow), not from_lan, msg.session_id), t.lan, now)
            return None
        if msg.msg_type is None:
            return None
        self._count("l2tp:control")
        if msg.hidden:
            self._count("l2tp:hidden-avp")
        self._track(t, msg, from_lan, now)
        return None

    def _track(self, t: Tunnel, msg: L2tpMessage, from_lan: bool, now: float) -> None:
        mt = msg.msg_type
        if mt in (SCCRQ, SCCRP):
            if msg.assigned_tunnel is not None:
                if from_lan:
                    self._set_tunnel_id(t, msg.assigned_tunnel)
                else:
                    t.remote_tunnel_id = msg.assigned_tunnel
        elif mt == SCCCN:  # the initiator confirms: the tunnel is up (RFC 2661 5.1)
            if t.lan_tunnel_id is not None and t.remote_tunnel_id is not None and not t.up:
                t.up = True
                self._count("l2tp:tunnels-up")
                if self.ctx is not None:
                    self.ctx.log("tunnel-up", proto="l2tp", lan=ip_text(t.lan), remote=ip_text(t.remote),
                                 wan=ip_text(t.wan), tunnel_id=t.lan_tunnel_id,
                                 peer_tunnel_id=t.remote_tunnel_id)
        elif mt in (ICRQ, ICRP, OCRQ, OCRP):
            if msg.assigned_session is not None:
                self._add_session(t, from_lan, msg.assigned_session, now)
        elif mt == CDN:
            if msg.assigned_session is not None:
                self._drop_session(t, from_lan, msg.assigned_session)
            # The header names the receiver's session: that half ends too.
            self._drop_session(t, not from_lan, msg.session_id)
        elif mt == STOPCCN:
            self._clear_sessions(t)
            if t.up:
                t.up = False
                self._count("l2tp:tunnels-down")
                if self.ctx is not None:
                    self.ctx.log("tunnel-down", proto="l2tp", lan=ip_text(t.lan), remote=ip_text(t.remote),
                                 wan=ip_text(t.wan), tunnel_id=t.lan_tunnel_id, reason="stopccn",
                                 duration=now - t.created)
            self._set_tunnel_id(t, None)
            t.remote_tunnel_id = None

    def on_flow_closed(self, flow: FlowView, now: float) -> None:
        t = self._tunnels.get(id(flow))
        if t is not None:
            self._end(t, now, "flow-closed")
