"""The configured limits bound what a flood can make the engine hold: flows, memory, fragment
state, WAN ports; and what is pushed out is counted under its own reason."""

from __future__ import annotations

import gc
import ipaddress
import tracemalloc
from collections.abc import Iterator

from natutil import LAN1, LAN2, REMOTE, WAN1, eng, inb, out, parse, udp
from scapy.layers.inet import IP, UDP
from scapy.layers.inet import fragment as scapy_fragment
from scapy.packet import Raw

from natpass.nat import verdict as V
from natpass.nat.config import Limits, PortForward
from natpass.nat.table import Flow
from natpass.packets.ipv4 import str_to_addr
from natpass.packets.udp import build_udp


def flood_packets(n: int, start: int = 0) -> Iterator[bytearray]:
    """UDP from 250 LAN hosts to ever new remote addresses: every packet a new flow."""
    for i in range(start, start + n):
        lan = f"192.168.1.{1 + i % 250}"
        remote = str(ipaddress.IPv4Address("198.51.100.0") + (i // 250) % 256)
        yield build_udp(lan, remote, 1024 + i % 60000, 53, b"q")


def _flows_alive() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, Flow))


def test_new_flow_flood_at_ten_times_the_table_keeps_memory_bounded() -> None:
    """Flows pushed out to make room are freed at once (not held by the timer wheel or the
    early-drop queue until their old deadline), with the cyclic collector off."""
    size = 1000
    e = eng(limits=Limits(max_flows=size, max_flows_per_host=0))
    packets = list(flood_packets(10 * size))
    gc.collect()
    gc.disable()
    try:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        now = 0.0
        for p in packets[:size]:
            out(e, p, now)
            now += 0.0001
        one_table = tracemalloc.get_traced_memory()[0] - base
        for p in packets[size:]:
            out(e, p, now)
            now += 0.0001
        ten_tables = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        assert len(list(e.flows())) == size
        assert e.counters["flows_evicted"] == 9 * size
        assert ten_tables < 1.5 * one_table, (one_table, ten_tables)
        assert _flows_alive() <= 2 * size + 1024
    finally:
        gc.enable()


def test_flows_ending_early_leave_no_timer_entries_behind() -> None:
    """TCP flows closed by RST (a shorter timeout, a second timer entry) and evicted flows: the
    wheel's entries stay proportional to the live flows."""
    size = 500
    e = eng(limits=Limits(max_flows=size, max_flows_per_host=0))
    for p in flood_packets(20 * size):
        out(e, p, 1.0)
    entries = e._wheel.entries()
    assert entries <= 2 * size + 1024


def _first_fragment(src: str, dst: str, sport: int, dport: int, ident: int) -> bytearray:
    pkt = IP(src=src, dst=dst, id=ident) / UDP(sport=sport, dport=dport) / Raw(bytes(1200))
    return bytearray(bytes(scapy_fragment(pkt, fragsize=600)[0]))


def test_first_fragment_table_honours_max_fragments_from_the_lan() -> None:
    e = eng(limits=Limits(max_fragments=8))
    for ident in range(100):
        assert out(e, _first_fragment(LAN1, REMOTE, 5000, 53, ident + 1)) == V.TO_WAN
    assert len(e._frags.entries) <= 8
    assert e.counters["fragment_entries_evicted"] == 92


def test_first_fragment_table_honours_max_fragments_through_a_port_forward() -> None:
    fw = PortForward(proto=17, wan_port=5353, lan_addr=str_to_addr(LAN2), lan_port=53)
    e = eng(limits=Limits(max_fragments=8), forwards=(fw,))
    for ident in range(100):
        code = inb(e, _first_fragment(REMOTE, WAN1, 40000 + ident, 5353, ident + 1))
        assert code == V.TO_LAN
    assert len(e._frags.entries) <= 8


def test_held_fragments_pushed_out_at_the_cap_are_evicted_not_timed_out() -> None:
    e = eng(limits=Limits(max_fragments=2))
    for ident in range(5):
        pkt = IP(src=LAN1, dst=REMOTE, id=ident + 1) / UDP(sport=5000, dport=53) / Raw(bytes(1200))
        later = bytearray(bytes(scapy_fragment(pkt, fragsize=600)[1]))
        out(e, later, 0.0)
    assert e.drops.get(V.FRAGMENT_EVICTED) == 3
    assert V.FRAGMENT_TIMEOUT not in e.drops
    e.expire(31.0)
    assert e.drops[V.FRAGMENT_TIMEOUT] == 2


def test_port_preservation_stays_inside_the_port_range() -> None:
    e = eng(port_range=(20000, 20099), port_preservation=True,
            limits=Limits(max_flows=0, max_flows_per_host=0))
    inside = udp(LAN1, REMOTE, 20050, 53)
    assert out(e, inside) == V.TO_WAN and parse(inside).sport == 20050  # preserved: in range
    for lport in range(1024, 1124):
        b = udp(LAN1, REMOTE, lport, 53)
        code = out(e, b)
        if code == V.TO_WAN:
            assert 20000 <= parse(b).sport <= 20099
        else:
            assert e.last_drop == V.PORTS_EXHAUSTED
    ports = {f.wan_port for f in e.flows()}
    assert ports and all(20000 <= p <= 20099 for p in ports)


def test_port_exhaustion_early_drops_the_oldest_unreplied_flow() -> None:
    e = eng(port_range=(20000, 20003), port_preservation=False,
            limits=Limits(max_flows=0, max_flows_per_host=0))
    answered = udp(LAN2, REMOTE, 7000, 53)
    assert out(e, answered, 0.0) == V.TO_WAN
    wport = parse(answered).sport
    assert inb(e, udp(REMOTE, WAN1, 53, wport), 0.5) == V.TO_LAN  # replied: kept
    for i in range(3):
        assert out(e, udp(LAN1, REMOTE, 8000 + i, 53), 1.0 + i) == V.TO_WAN
    # the range is full: a new flow takes the port of the oldest flow nobody answered
    late = udp(LAN1, REMOTE, 9000, 53)
    assert out(e, late, 5.0) == V.TO_WAN
    assert e.counters["flows_evicted"] == 1
    lports = sorted(f.lan_port for f in e.flows())
    assert lports == [7000, 8001, 8002, 9000]
    assert inb(e, udp(REMOTE, WAN1, 53, wport), 6.0) == V.TO_LAN


def test_port_exhaustion_with_every_flow_answered_is_a_drop() -> None:
    e = eng(port_range=(20000, 20001), port_preservation=False)
    for i in range(2):
        b = udp(LAN1, REMOTE, 7000 + i, 53)
        assert out(e, b) == V.TO_WAN
        assert inb(e, udp(REMOTE, WAN1, 53, parse(b).sport)) == V.TO_LAN
    assert out(e, udp(LAN1, REMOTE, 7005, 53)) == V.DROP
    assert e.last_drop == V.PORTS_EXHAUSTED
