"""Engine state saved and restored: traffic after a restore is translated as without it."""

from __future__ import annotations

import ipaddress
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from natutil import LAN1, REMOTE, WAN1, a, eng, tcp, udp
from test_nat_invariants import LAN_NET, WANS, build, packet

from natpass.nat import snapshot as S
from natpass.nat import verdict as V
from natpass.nat.config import BEHAVIOURS, Limits, NatConfig, PortForward, Timeouts
from natpass.nat.engine import Engine


def _config(mapping: str, filtering: str, preserve: bool, refresh: bool, seed: int) -> NatConfig:
    return NatConfig(
        wan_addresses=tuple(ipaddress.IPv4Address(w).packed for w in WANS),
        lan_prefixes=(LAN_NET,), mapping=mapping, filtering=filtering,
        port_preservation=preserve, inbound_refresh=refresh, seed=seed,
        port_range=(20000, 20063),
        timeouts=Timeouts(udp=120.0, tcp_transitory=240.0, icmp=60.0),
        limits=Limits(max_flows=12, max_flows_per_host=6),
        forwards=(PortForward(proto=17, wan_port=8080,
                              lan_addr=ipaddress.IPv4Address("192.168.1.12").packed, lan_port=80),),
    )


def _through_json(data: dict) -> dict:
    return json.loads(json.dumps(data))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BEHAVIOURS), st.sampled_from(BEHAVIOURS), st.booleans(), st.booleans(),
       st.lists(packet, min_size=1, max_size=50), st.integers(0, 50), st.integers(0, 2**16))
def test_restart_gives_same_verdicts_and_bytes(mapping, filtering, preserve, refresh, pkts, cut,
                                              seed):
    cfg = _config(mapping, filtering, preserve, refresh, seed)
    plain = Engine(cfg)
    restarted = Engine(cfg)
    cut = min(cut, len(pkts))
    now = 0.0
    for i, (kind, from_lan, idx, port, ridx, rport, flags, step, hair) in enumerate(pkts):
        if i == cut:
            data = _through_json(S.snapshot(restarted, now))
            restarted = Engine(cfg)
            S.restore(restarted, data, now)
        now += step
        b1 = build(kind, from_lan, idx, port, ridx, rport, flags, hair)
        b2 = bytearray(b1)
        c1 = plain.process(b1, from_lan, now)
        c2 = restarted.process(b2, from_lan, now)
        assert c1 == c2, (i, plain.last_drop, restarted.last_drop)
        if c1 != V.DROP:
            assert b1 == b2
        assert len(plain.table) == len(restarted.table)


def test_restored_flows_translate_both_ways_as_before():
    e = eng(lan_prefixes=(ipaddress.IPv4Network("192.168.1.0/24"),))
    sent = []
    for port in range(40000, 40020):
        b = tcp(LAN1, REMOTE, port, 443, "S")
        assert e.process(b, True, 1.0) == V.TO_WAN
        sent.append(b)
        r = tcp(REMOTE, WAN1, 443, b[20] << 8 | b[21], "SA")
        assert e.process(r, False, 1.5) == V.TO_LAN
    data = _through_json(S.snapshot(e, 2.0))
    e2 = eng(lan_prefixes=(ipaddress.IPv4Network("192.168.1.0/24"),))
    rep = S.restore(e2, data, 100.0, elapsed=98.0)
    assert rep.flows == 20 and not rep.skipped
    for port, first in zip(range(40000, 40020), sent, strict=True):
        wport = first[20] << 8 | first[21]
        for eng_ in (e, e2):
            o = tcp(LAN1, REMOTE, port, 443, "A", b"x")
            assert eng_.process(o, True, 101.0) == V.TO_WAN
            assert bytes(o[12:16]) == a(WAN1) and (o[20] << 8 | o[21]) == wport
            i = tcp(REMOTE, WAN1, 443, wport, "A", b"y")
            assert eng_.process(i, False, 101.0) == V.TO_LAN
            assert bytes(i[16:20]) == a(LAN1) and (i[22] << 8 | i[23]) == port


def test_restore_skips_what_no_longer_fits():
    lan = (ipaddress.IPv4Network("192.168.1.0/24"),)
    e = eng(lan_prefixes=lan, port_range=(20000, 20099), port_preservation=False,
            timeouts=Timeouts(udp=30.0))
    for port in range(5000, 5010):
        assert e.process(udp(LAN1, REMOTE, port, 53), True, 0.0) == V.TO_WAN
    data = _through_json(S.snapshot(e, 0.0))
    # idle past the UDP timeout by the time of the restore
    rep = S.restore(eng(lan_prefixes=lan, port_range=(20000, 20099), timeouts=Timeouts(udp=30.0)),
                    data, 50.0, elapsed=50.0)
    assert rep.flows == 0 and rep.skipped == {"flows:idle-expired": 10}
    # the port range moved away from the ports in use
    rep = S.restore(eng(lan_prefixes=lan, port_range=(30000, 30099)), data, 1.0, elapsed=1.0)
    assert rep.flows == 0 and rep.skipped == {"flows:wan-port-outside-range": 10}
    # the WAN address changed
    rep = S.restore(eng(lan_prefixes=lan, wan_addresses=(a("203.0.113.9"),),
                        port_range=(20000, 20099)), data, 1.0, elapsed=1.0)
    assert rep.skipped == {"flows:wan-address-gone": 10}
    # garbage records are counted, never raised
    bad = dict(data, flows=[["x"], [17, "zz", "", 0, 0, "", "", ""]] + data["flows"][:2])
    e3 = eng(lan_prefixes=lan, port_range=(20000, 20099), timeouts=Timeouts(udp=30.0))
    rep = S.restore(e3, bad, 1.0, elapsed=1.0)
    assert rep.flows == 2 and rep.skipped == {"flows:malformed": 2}
    e3.expire(1000.0)
    assert len(e3.table) == 0 and all(v == 0 for v in e3._ports.in_range.values())
