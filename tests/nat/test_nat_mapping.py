"""Mapping and filtering behaviour (RFC 4787 / RFC 5382), port choice, pooling, hairpin, forwards."""

from __future__ import annotations

import ipaddress

import pytest
from natutil import (
    LAN1,
    LAN2,
    REMOTE,
    REMOTE2,
    WAN1,
    WAN2,
    a,
    checksums_ok,
    eng,
    inb,
    out,
    parse,
    tcp,
    udp,
)

from natpass.nat import verdict as V
from natpass.nat.config import PortForward
from natpass.packets.checksum import verify


def mapped(e, src=LAN1, sport=5000, dst=REMOTE, dport=53, now=0.0):
    b = udp(src, dst, sport, dport)
    assert out(e, b, now) == V.TO_WAN
    p = parse(b)
    return p.src, p.sport


def test_rfc4787_req1_endpoint_independent_mapping():
    e = eng()
    m1 = mapped(e, dst=REMOTE, dport=53)
    m2 = mapped(e, dst=REMOTE2, dport=5353)
    assert m1 == m2


def test_rfc4787_address_dependent_mapping_differs_per_remote_address():
    e = eng(mapping="address-dependent", port_preservation=False)
    m1 = mapped(e, dst=REMOTE, dport=53)
    m1b = mapped(e, dst=REMOTE, dport=54)
    m2 = mapped(e, dst=REMOTE2, dport=53)
    assert m1 == m1b
    assert m1 != m2


def test_rfc4787_address_and_port_dependent_mapping_differs_per_remote_port():
    e = eng(mapping="address-and-port-dependent", port_preservation=False)
    m1 = mapped(e, dst=REMOTE, dport=53)
    m2 = mapped(e, dst=REMOTE, dport=54)
    assert m1 != m2
    assert mapped(e, dst=REMOTE, dport=53) == m1


def test_rfc4787_req2_paired_pooling_keeps_one_wan_address_per_host():
    e = eng(wan_addresses=(a(WAN1), a(WAN2)))
    seen = {}
    for host in range(10, 30):
        lan = f"192.168.1.{host}"
        addrs = {mapped(e, src=lan, sport=6000 + i, dport=1000 + i)[0] for i in range(5)}
        assert len(addrs) == 1
        seen[lan] = addrs.pop()
    assert set(seen.values()) == {WAN1, WAN2}


def test_rfc4787_req3_port_preservation_when_free():
    e = eng()
    assert mapped(e, src=LAN1, sport=40000)[1] == 40000


def test_rfc4787_req3_second_host_same_port_gets_another_port():
    e = eng()
    assert mapped(e, src=LAN1, sport=40000)[1] == 40000
    p2 = mapped(e, src=LAN2, sport=40000)[1]
    assert p2 != 40000
    lo, hi = e.config.port_range
    assert lo <= p2 <= hi


def test_rfc6056_ports_not_sequential_without_preservation():
    e = eng(port_preservation=False, seed=7)
    ports = [mapped(e, sport=10000 + i, dport=53)[1] for i in range(50)]
    assert len(set(ports)) == 50
    steps = {b - a_ for a_, b in zip(ports, ports[1:], strict=False)}
    assert len(steps) > 10  # no fixed increment


def test_seed_makes_port_choice_reproducible():
    def run(seed):
        e = eng(port_preservation=False, seed=seed)
        return [mapped(e, sport=10000 + i)[1] for i in range(20)]
    assert run(3) == run(3)
    assert run(3) != run(4)


def test_not_lan_source_dropped():
    e = eng()
    b = udp("10.9.9.9", REMOTE, 5000, 53)
    assert out(e, b) == V.DROP
    assert e.last_drop == V.NOT_LAN_SOURCE
    assert e.drops[V.NOT_LAN_SOURCE] == 1


@pytest.mark.parametrize("filtering,same_addr_other_port,other_addr", [
    ("endpoint-independent", V.TO_LAN, V.TO_LAN),
    ("address-dependent", V.TO_LAN, V.DROP),
    ("address-and-port-dependent", V.DROP, V.DROP),
])
def test_rfc4787_req8_filtering_behaviours(filtering, same_addr_other_port, other_addr):
    e = eng(filtering=filtering)
    wan, wport = mapped(e, sport=5000, dst=REMOTE, dport=53)
    # the remote endpoint that was contacted always gets through
    assert inb(e, udp(REMOTE, wan, 53, wport)) == V.TO_LAN
    assert inb(e, udp(REMOTE, wan, 9999, wport)) == same_addr_other_port
    assert inb(e, udp(REMOTE2, wan, 53, wport)) == other_addr
    if other_addr == V.DROP:
        assert e.last_drop == V.FILTERED


def test_rfc4787_req8_endpoint_independent_filtering_delivers_to_mapped_host():
    e = eng(filtering="endpoint-independent")
    wan, wport = mapped(e, src=LAN2, sport=5000)
    b = udp(REMOTE2, wan, 4444, wport)
    assert inb(e, b) == V.TO_LAN
    p = parse(b)
    assert (p.dst, p.dport) == (LAN2, 5000)
    assert checksums_ok(b)


def test_inbound_without_mapping_dropped_no_mapping():
    e = eng()
    assert inb(e, udp(REMOTE, WAN1, 53, 5555)) == V.DROP
    assert e.last_drop == V.NO_MAPPING


def test_rfc5382_req1_tcp_endpoint_independent_mapping():
    e = eng()
    b1 = tcp(LAN1, REMOTE, 40000, 80, "S")
    b2 = tcp(LAN1, REMOTE2, 40000, 443, "S")
    assert out(e, b1) == V.TO_WAN and out(e, b2) == V.TO_WAN
    assert (parse(b1).src, parse(b1).sport) == (parse(b2).src, parse(b2).sport)


def test_rfc5382_req4_unsolicited_syn_silently_dropped():
    e = eng()
    assert inb(e, tcp(REMOTE, WAN1, 5555, 80, "S")) == V.DROP
    assert e.reply is None
    assert e.last_drop == V.NO_MAPPING


def test_rfc5382_tcp_simultaneous_open_through_eim_eif():
    e = eng(filtering="endpoint-independent")
    b = tcp(LAN1, REMOTE, 40000, 6000, "S")
    assert out(e, b) == V.TO_WAN
    wport = parse(b).sport
    # the peer's own SYN crosses ours (RFC 5382 REQ-2)
    s = tcp(REMOTE, WAN1, 6000, wport, "S")
    assert inb(e, s) == V.TO_LAN
    assert parse(s).dport == 40000


def _hairpin_setup(e):
    """LAN2 has a mapping (UDP 7000 -> WAN:p2); returns the WAN endpoint."""
    b = udp(LAN2, REMOTE, 7000, 3478)
    assert out(e, b) == V.TO_WAN
    return parse(b).src, parse(b).sport


def test_rfc4787_req9_hairpinning_udp_source_is_the_mapping():
    e = eng(filtering="endpoint-independent")
    wan, p2 = _hairpin_setup(e)
    b = udp(LAN1, wan, 6000, p2)
    assert out(e, b) == V.TO_LAN
    p = parse(b)
    assert (p.dst, p.dport) == (LAN2, 7000)
    assert p.src == WAN1  # external source address, not the LAN one (REQ-9b)
    assert p.sport == 6000  # LAN1's own mapping (port preserved)
    assert p.ttl == 63
    assert checksums_ok(b)
    # and the answer goes back to LAN1 through both mappings
    r = udp(LAN2, WAN1, 7000, p.sport)
    assert out(e, r) == V.TO_LAN
    q = parse(r)
    assert (q.src, q.sport, q.dst, q.dport) == (WAN1, p2, LAN1, 6000)
    assert checksums_ok(r)


def test_rfc5382_req8_hairpinning_tcp_filtered_by_apdf():
    e = eng()  # address-and-port-dependent filtering: LAN2 never talked to LAN1's mapping
    wan, p2 = _hairpin_setup(e)
    assert out(e, tcp(LAN1, wan, 6001, p2, "S")) == V.DROP
    assert e.last_drop in (V.FILTERED, V.NO_MAPPING)


def test_hairpinning_can_be_disabled():
    e = eng(filtering="endpoint-independent", hairpinning=False)
    wan, p2 = _hairpin_setup(e)
    assert out(e, udp(LAN1, wan, 6000, p2)) == V.DROP


def test_port_forward_inbound_and_reply():
    fw = PortForward(proto=6, wan_port=8080, lan_addr=a(LAN2), lan_port=80)
    e = eng(forwards=(fw,))
    s = tcp(REMOTE, WAN1, 5555, 8080, "S")
    assert inb(e, s) == V.TO_LAN
    p = parse(s)
    assert (p.dst, p.dport) == (LAN2, 80)
    assert checksums_ok(s)
    r = tcp(LAN2, REMOTE, 80, 5555, "SA")
    assert out(e, r) == V.TO_WAN
    q = parse(r)
    assert (q.src, q.sport) == (WAN1, 8080)
    assert checksums_ok(r)


def test_port_forward_hairpin_from_lan():
    fw = PortForward(proto=17, wan_port=9000, lan_addr=a(LAN2), lan_port=9001)
    e = eng(forwards=(fw,))
    b = udp(LAN1, WAN1, 5000, 9000)
    assert out(e, b) == V.TO_LAN
    p = parse(b)
    assert (p.src, p.dst, p.dport) == (WAN1, LAN2, 9001)
    r = udp(LAN2, WAN1, 9001, p.sport)
    assert out(e, r) == V.TO_LAN
    q = parse(r)
    assert (q.src, q.sport, q.dst, q.dport) == (WAN1, 9000, LAN1, 5000)


def test_forward_port_not_used_for_dynamic_mappings():
    fw = PortForward(proto=17, wan_port=5000, lan_addr=a(LAN2), lan_port=5000)
    e = eng(forwards=(fw,))
    assert mapped(e, src=LAN1, sport=5000)[1] != 5000


def test_unknown_protocol_address_only_nat():
    from scapy.layers.inet import IP
    from scapy.packet import Raw
    e = eng()
    b = bytearray(bytes(IP(src=LAN1, dst=REMOTE, proto=132) / Raw(b"x" * 20)))
    assert out(e, b) == V.TO_WAN
    # Only the IP header may change (the payload of an unknown protocol is opaque; once scapy has
    # loaded its SCTP layer it would judge this made-up payload's CRC, so check the header alone).
    assert parse(b).src == WAN1 and verify(b[:20]) and b[20:] == b"x" * 20
    r = bytearray(bytes(IP(src=REMOTE, dst=WAN1, proto=132) / Raw(b"y" * 20)))
    assert inb(e, r) == V.TO_LAN
    assert parse(r).dst == LAN1
    # a second LAN host to the same remote with the same protocol cannot be told apart
    b2 = bytearray(bytes(IP(src=LAN2, dst=REMOTE, proto=132) / Raw(b"x" * 20)))
    assert out(e, b2) == V.DROP and e.last_drop == V.UNSUPPORTED


def test_reconfigure_keeps_valid_flows_and_drops_others():
    from natpass.nat.config import NatConfig
    e = eng()
    wan, wport = mapped(e, src=LAN1, sport=5000)
    assert inb(e, udp(REMOTE, wan, 53, wport)) == V.TO_LAN
    e.reconfigure(NatConfig(seed=1, filtering="endpoint-independent"), 1.0)
    assert inb(e, udp(REMOTE2, wan, 53, wport), 1.0) == V.TO_LAN  # kept, new filtering
    e.reconfigure(NatConfig(seed=1, lan_prefixes=(ipaddress.IPv4Network("192.168.2.0/24"),)), 2.0)
    assert inb(e, udp(REMOTE, wan, 53, wport), 2.0) == V.DROP
    assert len(list(e.flows())) == 0


def test_status_is_json_serialisable_and_counts_flows_by_protocol():
    import json
    e = eng()
    mapped(e, sport=5000)
    mapped(e, sport=5001)
    out(e, tcp(LAN1, REMOTE, 40000, 80, "S"))
    out(e, udp("10.0.0.1", REMOTE, 1, 2))
    st = json.loads(json.dumps(e.status()))
    assert st["flows"]["total"] == 3
    assert st["flows"]["by_proto"] == {"tcp": 1, "udp": 2}
    assert st["drops"] == {V.NOT_LAN_SOURCE: 1}
    assert st["counters"]["flows_created"] == 3
    assert st["counters"]["packets_from_lan"] == 4


def test_flows_view_fields():
    e = eng(port_preservation=False)
    wan, wport = mapped(e, src=LAN2, sport=5555, dst=REMOTE2, dport=53)
    (f,) = list(e.flows())
    assert (f.proto, f.lan_addr, f.lan_port) == (17, a(LAN2), 5555)
    assert (f.wan_addr, f.wan_port) == (a(wan), wport)
    assert (f.remote_addr, f.remote_port) == (a(REMOTE2), 53)
    assert f.outbound and f.helper_state is None


def test_reconfigure_replaces_port_forwards():
    from natpass.nat.config import NatConfig
    fw1 = PortForward(proto=17, wan_port=9000, lan_addr=a(LAN2), lan_port=9001)
    fw2 = PortForward(proto=17, wan_port=9100, lan_addr=a(LAN1), lan_port=9101)
    e = eng(forwards=(fw1,))
    assert inb(e, udp(REMOTE, WAN1, 1234, 9000)) == V.TO_LAN
    e.reconfigure(NatConfig(seed=1, forwards=(fw2,)), 1.0)
    assert inb(e, udp(REMOTE2, WAN1, 1234, 9000), 1.0) == V.DROP
    b = udp(REMOTE2, WAN1, 1234, 9100)
    assert inb(e, b, 1.0) == V.TO_LAN
    assert (parse(b).dst, parse(b).dport) == (LAN1, 9101)
    # the old forward's port is free again for dynamic mappings
    assert mapped(e, src=LAN1, sport=9000, now=1.0)[1] == 9000
