"""far_end_view: captured inbound packets re-addressed to what the far end saw after NAT."""

from __future__ import annotations

from natutil import ICMP, IP, LAN1, REMOTE, WAN1, checksums_ok, echo, eng, parse, raw, tcp, udp
from scapy.layers.inet import IPerror

from natpass.nat import verdict as V


def test_far_end_view_udp_then_process_returns_to_lan_host():
    e = eng(port_preservation=False)
    sent = udp(LAN1, REMOTE, 5000, 53)
    assert e.process(sent, True, 0.0) == V.TO_WAN
    wport = parse(sent).sport
    captured = udp(REMOTE, LAN1, 53, 5000, b"answer")
    assert e.far_end_view(captured, 0.5)
    p = parse(captured)
    assert (p.dst, p.dport) == (WAN1, wport) and checksums_ok(captured)
    assert e.process(captured, False, 0.5) == V.TO_LAN
    assert (parse(captured).dst, parse(captured).dport) == (LAN1, 5000)


def test_far_end_view_tcp_and_icmp_echo():
    e = eng(port_preservation=False)
    s = tcp(LAN1, REMOTE, 40000, 80, "S")
    e.process(s, True, 0.0)
    c = tcp(REMOTE, LAN1, 80, 40000, "SA")
    assert e.far_end_view(c, 0.0) and checksums_ok(c)
    assert parse(c).dport == parse(s).sport
    q = echo(LAN1, REMOTE, 77)
    e.process(q, True, 0.0)
    r = echo(REMOTE, LAN1, 77, reply=True)
    assert e.far_end_view(r, 0.0) and checksums_ok(r)
    assert parse(r)[ICMP].id == parse(q)[ICMP].id and parse(r).dst == WAN1


def test_far_end_view_icmp_error_inner_header():
    e = eng(port_preservation=False)
    sent = udp(LAN1, REMOTE, 5000, 53)
    orig = bytes(sent)
    e.process(sent, True, 0.0)
    err = raw(IP(src="198.51.100.254", dst=LAN1) / ICMP(type=3, code=3) / orig)
    assert e.far_end_view(err, 0.0)
    p = parse(err)
    assert p.dst == WAN1 and p[IPerror].src == WAN1 and p[IPerror].sport == parse(sent).sport
    assert checksums_ok(err)
    assert e.process(err, False, 0.0) == V.TO_LAN
    assert parse(err)[IPerror].sport == 5000


def test_far_end_view_without_mapping_is_false():
    e = eng()
    assert not e.far_end_view(udp(REMOTE, LAN1, 53, 5000), 0.0)


def test_far_end_view_without_mapping_still_addresses_the_wan_side():
    e = eng()
    b = udp(REMOTE, LAN1, 53, 5000, b"mid-stream")
    assert not e.far_end_view(b, 0.0)
    assert parse(b).dst == WAN1 and checksums_ok(b)
    assert e.process(b, False, 0.0) == V.DROP and e.last_drop == V.NO_MAPPING
