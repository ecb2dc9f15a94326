"""Idle timeouts with the injected clock, refresh direction, TCP state tracking, table limits."""

from __future__ import annotations

from natutil import LAN1, LAN2, REMOTE, REMOTE2, WAN1, echo, eng, inb, out, parse, tcp, udp

from natpass.nat import verdict as V
from natpass.nat.config import Limits, Timeouts


def open_udp(e, now=0.0, sport=5000):
    b = udp(LAN1, REMOTE, sport, 53)
    assert out(e, b, now) == V.TO_WAN
    return parse(b).sport


def test_rfc4787_req5_udp_mapping_lives_300s():
    e = eng()
    wport = open_udp(e, 0.0)
    assert inb(e, udp(REMOTE, WAN1, 53, wport), 299.0) == V.TO_LAN
    e.expire(302.0)
    assert inb(e, udp(REMOTE, WAN1, 53, wport), 302.0) == V.DROP
    assert e.last_drop == V.NO_MAPPING
    assert e.counters["flows_expired"] == 1


def test_udp_timeout_from_config():
    e = eng(timeouts=Timeouts(udp=120.0))
    wport = open_udp(e)
    e.expire(119.0)
    assert inb(e, udp(REMOTE, WAN1, 53, wport), 119.0) == V.TO_LAN
    e.expire(122.0)
    assert len(list(e.flows())) == 0


def test_rfc4787_req6_outbound_refresh():
    e = eng()
    wport = open_udp(e, 0.0)
    assert out(e, udp(LAN1, REMOTE, 5000, 53), 200.0) == V.TO_WAN
    e.expire(400.0)
    assert inb(e, udp(REMOTE, WAN1, 53, wport), 400.0) == V.TO_LAN


def test_rfc4787_req6_inbound_does_not_refresh_by_default():
    e = eng()
    wport = open_udp(e, 0.0)
    assert inb(e, udp(REMOTE, WAN1, 53, wport), 200.0) == V.TO_LAN
    assert inb(e, udp(REMOTE, WAN1, 53, wport), 250.0) == V.TO_LAN
    e.expire(302.0)
    assert inb(e, udp(REMOTE, WAN1, 53, wport), 302.0) == V.DROP


def test_inbound_refresh_when_configured():
    e = eng(inbound_refresh=True)
    wport = open_udp(e, 0.0)
    assert inb(e, udp(REMOTE, WAN1, 53, wport), 200.0) == V.TO_LAN
    assert inb(e, udp(REMOTE, WAN1, 53, wport), 250.0) == V.TO_LAN
    e.expire(400.0)
    assert inb(e, udp(REMOTE, WAN1, 53, wport), 400.0) == V.TO_LAN


def test_expiry_runs_from_process_as_time_advances():
    e = eng()
    open_udp(e, 0.0)
    assert len(list(e.flows())) == 1
    out(e, udp(LAN2, REMOTE2, 1, 2), 1000.0)  # any packet moves the clock
    assert [f.lan_addr for f in e.flows()] == [bytes([192, 168, 1, 20])]


def tcp_handshake(e, now=0.0, sport=40000):
    b = tcp(LAN1, REMOTE, sport, 80, "S")
    assert out(e, b, now) == V.TO_WAN
    wport = parse(b).sport
    assert inb(e, tcp(REMOTE, WAN1, 80, wport, "SA"), now) == V.TO_LAN
    assert out(e, tcp(LAN1, REMOTE, sport, 80, "A"), now) == V.TO_WAN
    return wport


def test_rfc5382_req5_established_tcp_lives_2h4m():
    e = eng()
    wport = tcp_handshake(e)
    e.expire(7439.0)
    assert inb(e, tcp(REMOTE, WAN1, 80, wport, "A"), 7439.0) == V.TO_LAN
    e.expire(7442.0)
    assert inb(e, tcp(REMOTE, WAN1, 80, wport, "A"), 7442.0) == V.DROP


def test_rfc5382_req5_half_open_tcp_is_transitory_4min():
    e = eng()
    b = tcp(LAN1, REMOTE, 40000, 80, "S")
    out(e, b, 0.0)
    e.expire(239.0)
    assert len(list(e.flows())) == 1
    e.expire(242.0)
    assert len(list(e.flows())) == 0


def test_rfc5382_req5_fin_both_ways_becomes_transitory():
    e = eng()
    wport = tcp_handshake(e)
    assert out(e, tcp(LAN1, REMOTE, 40000, 80, "FA"), 10.0) == V.TO_WAN
    # one FIN: closing phase, transitory too
    e.expire(300.0)
    assert len(list(e.flows())) == 0
    assert inb(e, tcp(REMOTE, WAN1, 80, wport, "FA"), 300.0) == V.DROP


def test_rfc5382_rst_makes_connection_transitory():
    e = eng()
    wport = tcp_handshake(e)
    assert inb(e, tcp(REMOTE, WAN1, 80, wport, "R"), 5.0) == V.TO_LAN
    e.expire(239.0)
    assert len(list(e.flows())) == 1  # inbound RST does not refresh: last use was at 0
    e.expire(250.0)
    assert len(list(e.flows())) == 0


def test_rfc5508_icmp_query_mapping_lives_60s():
    e = eng()
    b = echo(LAN1, REMOTE, 99)
    assert out(e, b, 0.0) == V.TO_WAN
    ident = parse(b)["ICMP"].id
    assert inb(e, echo(REMOTE, WAN1, ident, reply=True), 59.0) == V.TO_LAN
    e.expire(62.0)
    assert inb(e, echo(REMOTE, WAN1, ident, reply=True), 62.0) == V.DROP


def test_table_full_early_drops_unreplied_before_established():
    e = eng(limits=Limits(max_flows=3, max_flows_per_host=0))
    wport = tcp_handshake(e, sport=40001)  # established: must survive
    assert out(e, udp(LAN1, REMOTE, 6000, 53), 1.0) == V.TO_WAN  # unreplied (oldest)
    assert out(e, udp(LAN1, REMOTE, 6001, 53), 2.0) == V.TO_WAN  # unreplied
    assert out(e, udp(LAN1, REMOTE, 6002, 53), 3.0) == V.TO_WAN  # evicts 6000
    ports = sorted(f.lan_port for f in e.flows())
    assert ports == [6001, 6002, 40001]
    assert e.counters["flows_evicted"] == 1
    assert inb(e, tcp(REMOTE, WAN1, 80, wport, "A"), 4.0) == V.TO_LAN


def test_table_full_when_everything_is_established():
    e = eng(limits=Limits(max_flows=1, max_flows_per_host=0))
    tcp_handshake(e, sport=40001)
    assert out(e, udp(LAN1, REMOTE, 6000, 53), 1.0) == V.DROP
    assert e.last_drop == V.TABLE_FULL
    assert e.drops[V.TABLE_FULL] == 1


def test_host_limit():
    e = eng(limits=Limits(max_flows=100, max_flows_per_host=2))
    assert out(e, udp(LAN1, REMOTE, 6000, 53)) == V.TO_WAN
    assert out(e, udp(LAN1, REMOTE, 6001, 53)) == V.TO_WAN
    assert out(e, udp(LAN1, REMOTE, 6002, 53)) == V.DROP
    assert e.last_drop == V.HOST_LIMIT
    assert out(e, udp(LAN2, REMOTE, 6002, 53)) == V.TO_WAN


def test_ports_exhausted():
    e = eng(port_range=(20000, 20002), port_preservation=False)
    got = set()
    for i in range(3):
        b = udp(LAN1, REMOTE, 7000 + i, 53)
        assert out(e, b) == V.TO_WAN
        got.add(parse(b).sport)
        assert inb(e, udp(REMOTE, WAN1, 53, parse(b).sport)) == V.TO_LAN  # answered: kept
    assert got == {20000, 20001, 20002}
    assert out(e, udp(LAN1, REMOTE, 7010, 53)) == V.DROP
    assert e.last_drop == V.PORTS_EXHAUSTED
    # ports come back when mappings expire
    e.expire(400.0)
    assert out(e, udp(LAN1, REMOTE, 7010, 53), 400.0) == V.TO_WAN


def test_timer_wheel_does_not_scan_live_flows():
    """Expiry cost follows the flows that are due, not the table size: 5000 fresh flows and a
    tick that expires nothing must not touch them (their bucket is far in the future)."""
    e = eng(limits=Limits(max_flows=0, max_flows_per_host=0))
    for i in range(5000):
        out(e, udp(LAN1, REMOTE, 1024 + i, 53), 0.0)
    buckets_before = len(e._wheel)
    e.expire(100.0)
    assert len(list(e.flows())) == 5000
    assert len(e._wheel) == buckets_before  # nothing due, nothing rescheduled
