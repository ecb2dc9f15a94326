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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from natpass.nat import verdict as V
from natpass.nat.config import Timeouts
from natpass.nat.helper import FlowView
from natpass.packets import l2tp as L
from natpass.packets.errors import PacketError
from natpass.packets.ipv4 import PROTO_UDP
from natpass.passthrough._common import SwitchedHelper, dst_of, ip_text, need_ctx, src_of, u16

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
MAX_SESSIONS_PER_TUNNEL: Final = 256


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


class L2tpHelper(SwitchedHelper):
    """UDP 1701 port preservation and L2TPv2 tunnel/session tracking."""

    name = "l2tp"
    udp_ports = frozenset({L2TP_PORT})

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        super().__init__(timeouts)
        self._tunnels: dict[int, Tunnel] = {}  # id(flow) -> tunnel of that flow
        self.l2tp_packets = 0  # UDP 1701 handled with the switch on

    def tear_down(self, now: float) -> int:
        torn = 0
        for t in list(self._tunnels.values()):
            torn += 1 if t.up else 0
            self._end(t, now, "switched-off")
        return torn

    def tick(self, now: float) -> None:
        for t in list(self._tunnels.values()):
            if now - t.last_seen > self.timeouts.udp:
                self._end(t, now, "timeout")

    def stats(self) -> dict[str, int]:
        out = dict(self._counters)
        out["tunnels"] = sum(1 for t in self._tunnels.values() if t.up)
        out["sessions"] = sum(len(t.lan_sessions) for t in self._tunnels.values())
        out["l2tp_packets"] = self.l2tp_packets
        return out

    def tunnels(self) -> list[dict[str, Any]]:
        return [{"proto": "l2tp", "lan": ip_text(t.lan), "lan_port": t.lan_port,
                 "remote": ip_text(t.remote), "wan": ip_text(t.wan), "wan_port": t.wan_port,
                 "lan_tunnel_id": t.lan_tunnel_id, "remote_tunnel_id": t.remote_tunnel_id,
                 "sessions": len(t.lan_sessions), "state": "up" if t.up else "connecting",
                 "since": t.created, "last_seen": t.last_seen} for t in self._tunnels.values()]

    def _end(self, t: Tunnel, now: float, why: str) -> None:
        if t.flow is not None:
            self._tunnels.pop(id(t.flow), None)
        if t.up:
            t.up = False
            self._count("l2tp:tunnels-down")
            if self.ctx is not None:
                self.ctx.log("tunnel-down", proto="l2tp", lan=ip_text(t.lan), remote=ip_text(t.remote),
                             wan=ip_text(t.wan), tunnel_id=t.lan_tunnel_id, reason=why,
                             duration=now - t.created)

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
        src, dst = src_of(buf), dst_of(buf)
        match = [t for t in self._tunnels.values() if t.remote == src and t.wan == dst
                 and t.lan_tunnel_id == tid and t.flow is not None]
        if len(match) != 1:
            return None
        return match[0].flow

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
            self._tunnels[id(flow)] = t
        t.last_seen = now
        self.l2tp_packets += 1
        total = u16(buf, 2)
        try:
            msg = read_l2tp(bytes(buf[ihl + 8:total]))
        except PacketError:
            self._count("l2tp:unreadable")
            return None  # still ordinary UDP: the endpoints judge their own protocol
        if not msg.control or msg.msg_type is None:
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
                    t.lan_tunnel_id = msg.assigned_tunnel
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
                sessions = t.lan_sessions if from_lan else t.remote_sessions
                if len(sessions) < MAX_SESSIONS_PER_TUNNEL:
                    sessions.add(msg.assigned_session)
                else:
                    self._count("l2tp:session-limit")
        elif mt == CDN:
            sessions = t.lan_sessions if from_lan else t.remote_sessions
            if msg.assigned_session is not None:
                sessions.discard(msg.assigned_session)
            # The header names the receiver's session: that half ends too.
            other = t.remote_sessions if from_lan else t.lan_sessions
            other.discard(msg.session_id)
        elif mt == STOPCCN:
            t.lan_sessions.clear()
            t.remote_sessions.clear()
            if t.up:
                t.up = False
                self._count("l2tp:tunnels-down")
                if self.ctx is not None:
                    self.ctx.log("tunnel-down", proto="l2tp", lan=ip_text(t.lan), remote=ip_text(t.remote),
                                 wan=ip_text(t.wan), tunnel_id=t.lan_tunnel_id, reason="stopccn",
                                 duration=now - t.created)
            t.lan_tunnel_id = None
            t.remote_tunnel_id = None

    def on_flow_closed(self, flow: FlowView, now: float) -> None:
        t = self._tunnels.get(id(flow))
        if t is not None:
            self._end(t, now, "flow-closed")
