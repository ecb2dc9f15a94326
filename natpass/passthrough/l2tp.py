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
from natpass.nat.helper import FlowView, Helper
from natpass.packets.ipv4 import PROTO_UDP
from natpass.passthrough._common import dst_of, ip_text, src_of, u16

L2TP_PORT: Final = 1701  # RFC 2661 8.1
# Header flag bits (RFC 2661 3.1).
FLAG_T: Final = 0x8000  # control message
FLAG_L: Final = 0x4000  # length present
FLAG_S: Final = 0x0800  # Ns/Nr present
FLAG_O: Final = 0x0200  # offset size present
VERSION_MASK: Final = 0x000F
L2TP_VERSION: Final = 2
# AVP header (RFC 2661 4.1).
AVP_M: Final = 0x8000
AVP_H: Final = 0x4000
AVP_LEN_MASK: Final = 0x03FF
AVP_HEADER: Final = 6
# Attribute types (RFC 2661 4.4).
AVP_MESSAGE_TYPE: Final = 0
AVP_ASSIGNED_TUNNEL_ID: Final = 9
AVP_ASSIGNED_SESSION_ID: Final = 14
# Control message types (RFC 2661 3.2).
SCCRQ: Final = 1
SCCRP: Final = 2
SCCCN: Final = 3
STOPCCN: Final = 4
HELLO: Final = 6
OCRQ: Final = 7
OCRP: Final = 8
OCCN: Final = 9
ICRQ: Final = 10
ICRP: Final = 11
ICCN: Final = 12
CDN: Final = 14
WEN: Final = 15
SLI: Final = 16
MAX_SESSIONS_PER_TUNNEL: Final = 256


class L2tpError(ValueError):
    """A control message this helper cannot read (counted, the datagram still passes)."""


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


def parse_l2tp(data: bytes) -> L2tpMessage:
    """Read the header and, for control messages, the AVPs the tracker needs."""
    if len(data) < 6:
        raise L2tpError("L2TP header truncated")
    flags = u16(data, 0)
    if flags & VERSION_MASK != L2TP_VERSION:
        raise L2tpError(f"L2TP version {flags & VERSION_MASK} is not 2")
    control = bool(flags & FLAG_T)
    pos = 2
    length = len(data)
    if flags & FLAG_L:
        length = u16(data, 2)
        pos = 4
        if length < 6 or length > len(data):
            raise L2tpError(f"L2TP length {length} outside the datagram")
    elif control:
        raise L2tpError("L2TP control message without the L bit")
    if length < pos + 4:
        raise L2tpError("L2TP header truncated")
    msg = L2tpMessage(control, u16(data, pos), u16(data, pos + 2))
    pos += 4
    if flags & FLAG_S:
        pos += 4
    elif control:
        raise L2tpError("L2TP control message without the S bit")
    if flags & FLAG_O:
        if pos + 2 > length:
            raise L2tpError("L2TP offset size truncated")
        pos += 2 + u16(data, pos)
    if pos > length:
        raise L2tpError("L2TP header longer than the message")
    if not control:
        return msg
    first = True
    while pos < length:
        if pos + AVP_HEADER > length:
            raise L2tpError("L2TP AVP header truncated")
        word = u16(data, pos)
        alen = word & AVP_LEN_MASK
        if alen < AVP_HEADER or pos + alen > length:
            raise L2tpError(f"L2TP AVP length {alen} bad")
        vendor = u16(data, pos + 2)
        attr = u16(data, pos + 4)
        value = data[pos + AVP_HEADER:pos + alen]
        hidden = bool(word & AVP_H)
        if first:
            if vendor != 0 or attr != AVP_MESSAGE_TYPE or alen != 8 or hidden:
                raise L2tpError("first L2TP AVP is not an unhidden Message Type")
            msg.msg_type = u16(value, 0)
            first = False
        elif vendor == 0 and attr in (AVP_ASSIGNED_TUNNEL_ID, AVP_ASSIGNED_SESSION_ID):
            if hidden:
                msg.hidden = True
            elif len(value) != 2:
                raise L2tpError(f"L2TP AVP {attr} length {alen} is not 8")
            elif attr == AVP_ASSIGNED_TUNNEL_ID:
                msg.assigned_tunnel = u16(value, 0)
            else:
                msg.assigned_session = u16(value, 0)
        pos += alen
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


class L2tpHelper(Helper):
    """UDP 1701 port preservation and L2TPv2 tunnel/session tracking."""

    name = "l2tp"
    udp_ports = frozenset({L2TP_PORT})

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        super().__init__()
        self.timeouts = timeouts or Timeouts()
        self._tunnels: dict[int, Tunnel] = {}  # id(flow) -> tunnel of that flow
        self._counters: dict[str, int] = {}

    def _count(self, name: str, n: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + n
        if self.ctx is not None:
            self.ctx.count(name, n)

    def set_enabled(self, on: bool, now: float) -> int:
        was = self.enabled
        self.enabled = on
        if on or not was:
            return 0
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
                             duration=now - t.created, at=now)

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
        flags = u16(buf, pay)
        if flags & VERSION_MASK != L2TP_VERSION:
            return None
        tid = u16(buf, pay + (4 if flags & FLAG_L else 2))
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
            return V.strict_blocked(self.name) if self.strict else None
        t = self._tunnels.get(id(flow))
        if t is None:
            t = Tunnel(flow.lan_addr, flow.lan_port, flow.remote_addr, flow.wan_addr, flow.wan_port,
                       now, now, flow=flow)
            self._tunnels[id(flow)] = t
        t.last_seen = now
        total = u16(buf, 2)
        try:
            msg = parse_l2tp(bytes(buf[ihl + 8:total]))
        except L2tpError:
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
                                 peer_tunnel_id=t.remote_tunnel_id, at=now)
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
                                 duration=now - t.created, at=now)
            t.lan_tunnel_id = None
            t.remote_tunnel_id = None

    def on_flow_closed(self, flow: FlowView, now: float) -> None:
        t = self._tunnels.get(id(flow))
        if t is not None:
            self._end(t, now, "flow-closed")
