"""Random traffic against every behaviour combination: invariants that must always hold."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from natutil import checksums_ok, echo, tcp, udp

from natpass.nat import verdict as V
from natpass.nat.config import BEHAVIOURS, Limits, NatConfig, PortForward, Timeouts
from natpass.nat.engine import Engine
from natpass.packets.checksum import internet_checksum

LAN_NET = ipaddress.IPv4Network("192.168.1.0/24")
LANS = ["192.168.1.10", "192.168.1.11", "192.168.1.12"]
WANS = ["203.0.113.1", "203.0.113.2"]
REMOTES = ["198.51.100.7", "198.51.100.8"]
PORTS = [1024, 5000, 5001, 40000]
RPORTS = [53, 80, 8080]

packet = st.tuples(
    st.sampled_from(["tcp", "udp", "icmp"]),
    st.booleans(),  # from LAN
    st.integers(0, 2),  # host / WAN index
    st.sampled_from(PORTS),
    st.integers(0, 1),  # remote index
    st.sampled_from(RPORTS),
    st.sampled_from(["S", "SA", "A", "PA", "FA", "R"]),
    st.floats(0, 200),  # time step
    st.integers(0, 3),  # hairpin: send to a WAN address instead of the remote
)


def build(kind, from_lan, idx, port, ridx, rport, flags, hair):
    remote = REMOTES[ridx]
    if from_lan:
        src = LANS[idx]
        dst = WANS[idx % 2] if hair == 0 else remote
        if kind == "tcp":
            return tcp(src, dst, port, rport, flags, b"d")
        if kind == "udp":
            return udp(src, dst, port, rport, b"u")
        return echo(src, dst, port)
    dst = WANS[idx % 2]
    if kind == "tcp":
        return tcp(remote, dst, rport, port, flags, b"d")
    if kind == "udp":
        return udp(remote, dst, rport, port, b"u")
    return echo(remote, dst, port, reply=True)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BEHAVIOURS), st.sampled_from(BEHAVIOURS), st.booleans(), st.booleans(),
       st.lists(packet, min_size=1, max_size=60), st.integers(0, 2**16))
def test_random_traffic_keeps_invariants(mapping, filtering, preserve, refresh, pkts, seed):
    cfg = NatConfig(
        wan_addresses=tuple(ipaddress.IPv4Address(w).packed for w in WANS),
        lan_prefixes=(LAN_NET,), mapping=mapping, filtering=filtering,
        port_preservation=preserve, inbound_refresh=refresh, seed=seed,
        port_range=(20000, 20063),
        timeouts=Timeouts(udp=120.0, tcp_transitory=240.0, icmp=60.0),
        limits=Limits(max_flows=12, max_flows_per_host=6),
        forwards=(PortForward(proto=17, wan_port=8080, lan_addr=ipaddress.IPv4Address(LANS[2]).packed,
                              lan_port=80),),
    )
    e = Engine(cfg)
    wan_set = {ipaddress.IPv4Address(w).packed for w in WANS}
    now = 0.0
    for kind, from_lan, idx, port, ridx, rport, flags, step, hair in pkts:
        now += step
        buf = build(kind, from_lan, idx, port, ridx, rport, flags, hair)
        code = e.process(buf, from_lan, now)
        assert "malformed_exception" not in e.counters
        if code == V.DROP:
            assert e.last_drop
            continue
        assert code in (V.TO_WAN, V.TO_LAN)
        assert internet_checksum(bytes(buf[:20])) == 0
        assert checksums_ok(buf)
        src = bytes(buf[12:16])
        dst = bytes(buf[16:20])
        if code == V.TO_WAN:
            # nothing private leaves on the WAN side
            assert src in wan_set
            assert ipaddress.IPv4Address(dst) not in LAN_NET
        else:
            assert ipaddress.IPv4Address(dst) in LAN_NET
            if from_lan:  # hairpinned: the LAN target sees a public source
                assert src in wan_set
        # table bookkeeping stays consistent
        flows = list(e.flows())
        assert len(flows) == len(e.table) <= 12
        per_host: dict[bytes, int] = {}
        for f in flows:
            per_host[f.lan_addr] = per_host.get(f.lan_addr, 0) + 1
            assert f.wan_addr in wan_set
            if f.proto != 1:
                # forwards use their own port; dynamic mappings stay in the range (preserved
                # ports too)
                assert 20000 <= f.wan_port <= 20063 or f.wan_port == 8080
        assert all(n <= 6 for n in per_host.values())
    # mappings are unique per WAN endpoint across live flows of one protocol
    seen: dict[tuple[int, bytes, int], tuple[bytes, int]] = {}
    for f in e.flows():
        k = (f.proto, f.wan_addr, f.wan_port)
        lan = (f.lan_addr, f.lan_port)
        assert seen.setdefault(k, lan) == lan
    e.expire(now + 10_000)
    assert len(e.table) == 0
    assert all(v == 0 for v in e._ports.in_range.values())
