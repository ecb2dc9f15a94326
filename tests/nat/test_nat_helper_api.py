"""The helper contract, proven with a tiny helper: claims, payload rewrite, events, close."""

from __future__ import annotations

from typing import Any

import pytest
from natutil import IP, LAN1, LAN2, REMOTE, WAN1, a, checksums_ok, eng, inb, out, parse, tcp, udp
from scapy.packet import Raw

from natpass.nat import verdict as V
from natpass.nat.config import Passthrough
from natpass.nat.helper import FlowView, Helper
from natpass.packets.rewrite import set_address

ECHO_PORT = 7777  # the toy protocol's server port
TOY_PROTO = 99


class ToyHelper(Helper):
    """A toy protocol on UDP 7777 whose payload names the client's address ("ADDR:a.b.c.d") and
    announces a data port ("DATA:nnnnn") the server will call back; plus IP protocol 99."""

    name = "pptp"  # borrow a real switch name to exercise set_switch
    ip_protocols = frozenset({TOY_PROTO})
    udp_ports = frozenset({ECHO_PORT})
    tcp_ports = frozenset({ECHO_PORT})

    def __init__(self) -> None:
        super().__init__()
        self.closed: list[FlowView] = []
        self.packets = 0
        self.ticks: list[float] = []
        self.torn = 0

    def set_enabled(self, on: bool, now: float) -> int:
        self.enabled = on
        n, self.torn = self.torn, 0
        return n

    def choose_wan_port(self, proto, lan_addr, lan_port, remote_addr, remote_port, wan_addr):
        return 40404

    def on_flow_packet(self, flow, buf, ihl, from_lan, now):
        assert self.ctx is not None
        self.packets += 1
        if not self.enabled:
            return V.passthrough_disabled(self.name)
        body = ihl + 8
        if from_lan and bytes(buf[body:body + 5]) == b"ADDR:":
            wan = ".".join(str(x) for x in flow.wan_addr).encode().ljust(15)
            self.ctx.rewrite(buf, body + 5, wan)
            self.ctx.count("toy:rewrites")
        if from_lan and bytes(buf[body:body + 5]) == b"DATA:":
            self.ctx.log("toy-data", port=int(bytes(buf[body + 5:body + 10])))
        flow.helper_state = "seen"
        return None

    def on_flow_closed(self, flow, now):
        self.closed.append(flow)

    def on_ip_packet(self, buf, ihl, from_lan, now):
        assert self.ctx is not None
        if not self.enabled:
            return V.passthrough_disabled(self.name)
        if from_lan:
            set_address(buf, 12, self.ctx.wan_address_for(bytes(buf[12:16])))
            return V.TO_WAN
        self.ctx.set_dst(buf, a(LAN1))
        return V.TO_LAN

    def tick(self, now: float) -> None:
        self.ticks.append(now)

    def stats(self) -> dict[str, Any]:
        return {"packets": self.packets}


def make(on: bool = True):
    h = ToyHelper()
    e = eng(helpers=[h], passthrough=Passthrough(pptp=on))
    return e, h


def test_helper_bound_and_switch_from_config():
    e, h = make(on=True)
    assert h.ctx is not None and h.enabled
    e2, h2 = make(on=False)
    assert not h2.enabled


def test_helper_choose_wan_port_used():
    e, h = make()
    b = udp(LAN1, REMOTE, 5000, ECHO_PORT, b"hi")
    assert out(e, b) == V.TO_WAN
    assert parse(b).sport == 40404


def test_helper_payload_rewrite_with_checksum_fix_verified_by_scapy():
    e, h = make()
    b = udp(LAN1, REMOTE, 5000, ECHO_PORT, b"ADDR:192.168.1.10     tail")
    assert out(e, b) == V.TO_WAN
    p = parse(b)
    assert bytes(p[Raw].load).startswith(b"ADDR:203.0.113.1")
    assert checksums_ok(b)
    assert e.counters["toy:rewrites"] == 1
    # odd offset and odd length in TCP
    t = tcp(LAN1, REMOTE, 5001, ECHO_PORT, "S", b"xADDR")
    out(e, t)
    assert checksums_ok(t)


def test_helper_rewrite_odd_offset_odd_length():
    e, h = make()
    b = udp(LAN1, REMOTE, 5000, ECHO_PORT, b"abcdefghij")
    out(e, b)
    h.ctx.rewrite(b, 28 + 3, b"XYZ")
    assert bytes(parse(b)[Raw].load) == b"abcXYZghij"
    assert checksums_ok(b)


def test_helper_closed_callback_on_tcp_close_and_timeout():
    e, h = make()
    s = tcp(LAN1, REMOTE, 5002, ECHO_PORT, "S")
    out(e, s, 0.0)
    wport = parse(s).sport
    inb(e, tcp(REMOTE, WAN1, ECHO_PORT, wport, "SA"), 0.0)
    assert h.closed == []
    inb(e, tcp(REMOTE, WAN1, ECHO_PORT, wport, "R"), 1.0)
    assert len(h.closed) == 1
    u = udp(LAN1, REMOTE, 5003, ECHO_PORT, b"x")
    out(e, u, 2.0)
    e.expire(1000.0)
    assert len(h.closed) == 2  # the TCP flow is not reported twice


def test_helper_disabled_drop_reason_counted():
    e, h = make(on=False)
    assert out(e, udp(LAN1, REMOTE, 5000, ECHO_PORT, b"x")) == V.DROP
    assert e.last_drop == "passthrough-disabled:pptp"
    assert e.drops["passthrough-disabled:pptp"] == 1


def test_helper_owns_ip_protocol_whatever_its_switch():
    e, h = make(on=True)
    b = bytearray(bytes(IP(src=LAN2, dst=REMOTE, proto=TOY_PROTO, ttl=10) / Raw(b"gre-ish")))
    assert out(e, b) == V.TO_WAN
    p = parse(b)
    assert p.src == WAN1 and p.ttl == 9 and checksums_ok(b)
    e.set_switch("pptp", False, 5.0)
    b = bytearray(bytes(IP(src=LAN2, dst=REMOTE, proto=TOY_PROTO) / Raw(b"gre-ish")))
    assert out(e, b) == V.DROP and e.last_drop == "passthrough-disabled:pptp"


def test_set_switch_counts_torn_down_tunnels():
    e, h = make(on=True)
    h.torn = 3
    assert e.set_switch("pptp", False, 10.0) == 3
    assert not h.enabled
    assert e.counters["tunnels_torn_down"] == 3
    assert e.status()["switches"]["pptp"] is False
    assert e.set_switch("l2tp", True, 10.0) == 0
    with pytest.raises(KeyError):
        e.set_switch("nonsense", True, 10.0)


def test_helper_tick_at_most_once_per_second():
    e, h = make()
    for t in (0.0, 0.2, 0.5, 1.1, 1.5, 2.3):
        out(e, udp(LAN1, REMOTE, 6000, 53), t)
    assert h.ticks == [0.0, 1.1, 2.3]


def find_flow(e, lan: str, lport: int) -> FlowView:
    return next(f for f in e.flows() if f.lan_addr == a(lan) and f.lan_port == lport)


def test_helper_event_logged_and_status_lists_helper():
    e, h = make()
    assert out(e, udp(LAN1, REMOTE, 5000, ECHO_PORT, b"DATA:20000"), 1.0) == V.TO_WAN
    assert e.drain_events() == [{"event": "toy-data", "port": 20000}]
    f = find_flow(e, LAN1, 5000)
    assert f.wan_port == 40404 and f.outbound
    assert e.status()["helpers"]["pptp"]["stats"]["packets"] == 1


class DemuxHelper(Helper):
    """Claims UDP 500 and answers inbound_lookup with the flow it picks (IKE-style demux)."""

    name = "ipsec"
    udp_ports = frozenset({500})

    def __init__(self) -> None:
        super().__init__()
        self.pick: FlowView | None = None
        self.lookups = 0

    def inbound_lookup(self, proto, buf, ihl, now):
        self.lookups += 1
        return self.pick


def test_helper_inbound_lookup_decides_the_flow():
    h = DemuxHelper()
    e = eng(helpers=[h], passthrough=Passthrough(ipsec=True))
    b1 = udp(LAN1, REMOTE, 500, 500, b"ike1")
    b2 = udp(LAN2, REMOTE, 500, 500, b"ike2")
    out(e, b1)
    out(e, b2)
    p1, p2 = parse(b1).sport, parse(b2).sport
    assert p1 != p2
    # the helper says the packet addressed to LAN1's mapping belongs to LAN2's flow
    h.pick = find_flow(e, LAN2, 500)
    r = udp(REMOTE, WAN1, 500, p1, b"resp")
    assert inb(e, r) == V.TO_LAN
    assert (parse(r).dst, parse(r).dport) == (LAN2, 500)
    assert checksums_ok(r)
    assert h.lookups == 1
    # None: the engine's own lookup
    h.pick = None
    r = udp(REMOTE, WAN1, 500, p1, b"resp")
    assert inb(e, r) == V.TO_LAN and parse(r).dst == LAN1
