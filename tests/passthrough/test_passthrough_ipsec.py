"""IPsec helper through the engine: IKE port 500 and SPI demultiplexing, NAT-T, raw ESP/AH SPI
binding for several LAN hosts, AH accounting, switch and strict semantics.

IKE/ESP packets are built with natpass.packets (headers only: a NAT never sees more); the real
captures are replayed in test_passthrough_replay.py and test_passthrough_multiclient.py.
"""

from __future__ import annotations

from passthrough_util import GATEWAY, HOSTS, WAN, config, dport, dst, engine, sport, src, udp

from natpass.nat import verdict as V
from natpass.nat.config import Timeouts
from natpass.packets import ike as K
from natpass.packets.esp import build_ah_packet, build_esp_packet
from natpass.passthrough import build_engine


def ike(spi_i: bytes, exchange: int = K.IKE_SA_INIT, response: bool = False) -> bytes:
    flags = K.FLAG_RESPONSE if response else K.FLAG_INITIATOR
    return bytes(K.build_ike(spi_i, bytes(8) if not response else b"R" * 8, exchange, flags))


def ike_out(eng, host: str, spi_i: bytes, now: float = 0.0, exchange: int = K.IKE_SA_INIT,
            port: int = 500, rport: int = 500) -> bytearray:
    payload = ike(spi_i, exchange) if port != 4500 else K.NON_ESP_MARKER + ike(spi_i, exchange)
    pkt = udp(host, GATEWAY, port, rport, payload)
    assert eng.process(pkt, True, now) == V.TO_WAN
    return pkt


def ike_in(eng, spi_i: bytes, wan_port: int, now: float = 0.0, exchange: int = K.IKE_SA_INIT,
           sp: int = 500) -> tuple[int, bytearray]:
    payload = ike(spi_i, exchange, response=True)
    if sp == 4500:
        payload = K.NON_ESP_MARKER + payload
    pkt = udp(GATEWAY, WAN, sp, wan_port, payload)
    return eng.process(pkt, False, now), pkt


def esp_out(eng, host: str, spi: int, now: float, seq: int = 1) -> tuple[int, bytearray]:
    pkt = build_esp_packet(host, GATEWAY, spi, seq, bytes(32))
    return eng.process(pkt, True, now), pkt


def esp_in(eng, spi: int, now: float, seq: int = 1, gateway: str = GATEWAY) -> tuple[int, bytearray]:
    pkt = build_esp_packet(gateway, WAN, spi, seq, bytes(32))
    return eng.process(pkt, False, now), pkt


def test_ike_keeps_port_500_and_a_second_host_gets_another_port():
    eng = engine(ipsec=True)
    a = ike_out(eng, HOSTS[0], b"A" * 8)
    b = ike_out(eng, HOSTS[1], b"B" * 8)
    assert sport(a) == 500 and src(a) == WAN
    assert sport(b) not in (500, 0)
    code, pkt = ike_in(eng, b"B" * 8, sport(b))
    assert code == V.TO_LAN and dst(pkt) == HOSTS[1] and dport(pkt) == 500


def test_ike_to_wan_port_500_is_routed_by_initiator_spi():
    # A gateway that always answers port 500: the SPI says whose IKE SA it is.
    eng = engine(ipsec=True)
    ike_out(eng, HOSTS[0], b"A" * 8)
    ike_out(eng, HOSTS[1], b"B" * 8)
    for spi, host in ((b"B" * 8, HOSTS[1]), (b"A" * 8, HOSTS[0]), (b"B" * 8, HOSTS[1])):
        code, pkt = ike_in(eng, spi, 500)
        assert code == V.TO_LAN and dst(pkt) == host and dport(pkt) == 500
    assert eng.counters["ipsec:ike-demux-by-spi"] == 2


def test_ike_spi_used_by_two_hosts_is_not_used_for_routing():
    eng = engine(ipsec=True)
    ike_out(eng, HOSTS[0], b"S" * 8)
    ike_out(eng, HOSTS[1], b"S" * 8)
    assert eng.counters["ipsec:ike-spi-collision"] == 1
    code, pkt = ike_in(eng, b"S" * 8, 500)
    assert code == V.TO_LAN and dst(pkt) == HOSTS[0]  # the engine's own mapping of WAN:500


def test_natt_flow_gets_the_natt_timeout_and_the_switch_to_4500_is_seen():
    eng = build_engine(config(ipsec=True, timeouts=Timeouts(udp=60.0, udp_natt=900.0)))
    ike_out(eng, HOSTS[0], b"N" * 8)
    ike_out(eng, HOSTS[0], b"N" * 8, port=4500, rport=4500, exchange=K.IKE_AUTH)
    assert eng.counters["ipsec:natt-switch"] == 1
    flow = next(f for f in eng.flows() if f.lan_port == 4500)
    assert flow.timeout == 900.0
    # keepalives every 20 s keep it; inbound ESP-in-UDP reaches the host
    for t in (20.0, 40.0, 300.0):
        ka = udp(HOSTS[0], GATEWAY, 4500, 4500, b"\xff")
        assert eng.process(ka, True, t) == V.TO_WAN
    back = udp(GATEWAY, WAN, 4500, flow.wan_port, (0x1234).to_bytes(4, "big") + bytes(20))
    assert eng.process(back, False, 301.0) == V.TO_LAN and dst(back) == HOSTS[0]
    kinds = {t["mode"] for t in eng.status()["helpers"]["ipsec"]["tunnels"]}
    assert "nat-t" in kinds


def test_esp_single_host_binds_the_gateway_spi():
    eng = engine(ipsec=True)
    ike_out(eng, HOSTS[0], b"A" * 8, exchange=K.V1_QUICK_MODE)
    code, pkt = esp_out(eng, HOSTS[0], 0x1001, 1.0)
    assert code == V.TO_WAN and src(pkt) == WAN
    code, pkt = esp_in(eng, 0x2001, 1.1)
    assert code == V.TO_LAN and dst(pkt) == HOSTS[0]
    assert eng.status()["helpers"]["ipsec"]["stats"]["tunnels"] == 1


def test_esp_two_hosts_one_gateway_not_overlapping():
    eng = engine(ipsec=True)
    # host A negotiates and gets its SA pair; only then host B
    esp_out(eng, HOSTS[0], 0xA001, 0.0)
    assert esp_in(eng, 0xB001, 0.1)[0] == V.TO_LAN
    esp_out(eng, HOSTS[1], 0xA002, 5.0)
    code, pkt = esp_in(eng, 0xB002, 5.1)
    assert code == V.TO_LAN and dst(pkt) == HOSTS[1]
    for spi, host in ((0xB001, HOSTS[0]), (0xB002, HOSTS[1]), (0xB001, HOSTS[0])):
        code, pkt = esp_in(eng, spi, 6.0)
        assert code == V.TO_LAN and dst(pkt) == host
    # three hosts
    ike_out(eng, HOSTS[2], b"C" * 8, now=7.0, exchange=K.V1_IDENTITY_PROTECTION)
    code, pkt = esp_in(eng, 0xB003, 8.0)  # the gateway speaks first
    assert code == V.TO_LAN and dst(pkt) == HOSTS[2]


def test_esp_overlapping_negotiations_are_dropped_not_cross_delivered():
    eng = engine(ipsec=True)
    esp_out(eng, HOSTS[0], 0xA001, 0.0)
    esp_out(eng, HOSTS[1], 0xA002, 0.5)  # both wait for their gateway SPI
    code, _ = esp_in(eng, 0xB001, 1.0)
    assert code == V.DROP and eng.last_drop == "ipsec:ambiguous-spi"
    code, _ = esp_in(eng, 0xB002, 1.0)
    assert code == V.DROP and eng.last_drop == "ipsec:ambiguous-spi"
    assert eng.drops["ipsec:ambiguous-spi"] == 2


def test_esp_ambiguous_spi_stays_refused_after_the_other_host_left():
    eng = build_engine(config(ipsec=True, timeouts=Timeouts(esp=100.0)))
    esp_out(eng, HOSTS[0], 0xA001, 0.0)
    esp_out(eng, HOSTS[1], 0xA002, 0.5)
    assert esp_in(eng, 0xB001, 1.0)[0] == V.DROP
    for t in range(50, 400, 50):  # host B is silent and expires; host A and the SPI go on
        esp_out(eng, HOSTS[0], 0xA001, float(t), seq=t)
        code, _ = esp_in(eng, 0xB001, float(t) + 0.1, seq=t)
        assert code == V.DROP and eng.last_drop == "ipsec:ambiguous-spi"
    assert eng.status()["helpers"]["ipsec"]["stats"]["sessions"] == 1
    # a fresh SA of host A, now the only host, binds normally
    esp_out(eng, HOSTS[0], 0xA011, 400.0)
    code, pkt = esp_in(eng, 0xB011, 400.1)
    assert code == V.TO_LAN and dst(pkt) == HOSTS[0]


def test_esp_a_silent_negotiation_is_not_forgotten_with_time():
    # Host A negotiates and stays silent; minutes later host B negotiates. The gateway's first
    # SPI could be either's: it must not be given to B just because A's negotiation is old.
    eng = engine(ipsec=True)
    ike_out(eng, HOSTS[0], b"A" * 8, now=0.0, exchange=K.V1_QUICK_MODE)
    ike_out(eng, HOSTS[1], b"B" * 8, now=200.0, exchange=K.V1_QUICK_MODE)
    code, _ = esp_in(eng, 0xB001, 201.0)
    assert code == V.DROP and eng.last_drop == "ipsec:ambiguous-spi"


def test_esp_rekey_new_outbound_spi_reopens_the_window():
    eng = engine(ipsec=True)
    esp_out(eng, HOSTS[0], 0xA001, 0.0)
    esp_in(eng, 0xB001, 0.1)
    esp_out(eng, HOSTS[1], 0xA002, 1.0)
    esp_in(eng, 0xB002, 1.1)
    # host B rekeys: new outbound SPI, then the gateway's new SPI
    esp_out(eng, HOSTS[1], 0xA012, 100.0)
    code, pkt = esp_in(eng, 0xB012, 100.2)
    assert code == V.TO_LAN and dst(pkt) == HOSTS[1]
    # the old SA keeps working until it expires
    code, pkt = esp_in(eng, 0xB002, 100.3)
    assert code == V.TO_LAN and dst(pkt) == HOSTS[1]
    code, pkt = esp_in(eng, 0xB001, 100.4)
    assert code == V.TO_LAN and dst(pkt) == HOSTS[0]


def test_esp_gateway_rekeys_first_with_several_idle_hosts_is_ambiguous():
    eng = engine(ipsec=True)
    esp_out(eng, HOSTS[0], 0xA001, 0.0)
    esp_in(eng, 0xB001, 0.1)
    esp_out(eng, HOSTS[1], 0xA002, 1.0)
    esp_in(eng, 0xB002, 1.1)
    code, _ = esp_in(eng, 0xB099, 500.0)  # nobody is waiting, two could own it
    assert code == V.DROP and eng.last_drop == "ipsec:ambiguous-spi"


def test_esp_from_a_gateway_nobody_talked_to_is_no_mapping():
    eng = engine(ipsec=True)
    esp_out(eng, HOSTS[0], 0xA001, 0.0)
    code, _ = esp_in(eng, 0xB001, 0.1, gateway="198.51.100.99")
    assert code == V.DROP and eng.last_drop == V.NO_MAPPING


def test_esp_session_expires_after_the_esp_timeout():
    eng = build_engine(config(ipsec=True, timeouts=Timeouts(esp=100.0)))
    esp_out(eng, HOSTS[0], 0xA001, 0.0)
    esp_in(eng, 0xB001, 0.1)
    eng.expire(250.0)
    code, _ = esp_in(eng, 0xB001, 250.0)
    assert code == V.DROP and eng.last_drop == V.NO_MAPPING
    assert any(e["event"] == "tunnel-down" and e["proto"] == "ipsec" for e in eng.events)


def test_ah_is_forwarded_counted_and_reported():
    eng = engine(ipsec=True)
    out = build_ah_packet(HOSTS[0], GATEWAY, 0x3001, 1, 4, bytes(20))
    assert eng.process(out, True, 0.0) == V.TO_WAN and src(out) == WAN
    back = build_ah_packet(GATEWAY, WAN, 0x4001, 1, 4, bytes(20))
    assert eng.process(back, False, 0.1) == V.TO_LAN and dst(back) == HOSTS[0]
    st = eng.status()["helpers"]["ipsec"]
    assert st["stats"]["ah_translated"] == 2
    assert st["tunnels"][0]["ah_breaks"] is True


def test_ipsec_switch_off_drops_esp_and_ah_but_ike_and_natt_pass():
    eng = engine(ipsec=False)
    assert esp_out(eng, HOSTS[0], 0xA001, 0.0)[0] == V.DROP
    assert eng.last_drop == V.passthrough_disabled("ipsec")
    ah = build_ah_packet(HOSTS[0], GATEWAY, 0x3001, 1, 4, bytes(20))
    assert eng.process(ah, True, 0.0) == V.DROP and eng.last_drop == "passthrough-disabled:ipsec"
    a = ike_out(eng, HOSTS[0], b"A" * 8)
    assert ike_in(eng, b"A" * 8, sport(a))[0] == V.TO_LAN
    n = ike_out(eng, HOSTS[0], b"A" * 8, port=4500, rport=4500)
    assert ike_in(eng, b"A" * 8, sport(n), sp=4500)[0] == V.TO_LAN


def test_ipsec_strict_blocks_udp_500_but_never_4500():
    eng = engine(ipsec=False, strict=True)
    pkt = udp(HOSTS[0], GATEWAY, 500, 500, ike(b"A" * 8))
    assert eng.process(pkt, True, 0.0) == V.DROP and eng.last_drop == V.strict_blocked("ipsec")
    natt = udp(HOSTS[0], GATEWAY, 4500, 4500, K.NON_ESP_MARKER + ike(b"A" * 8))
    assert eng.process(natt, True, 0.0) == V.TO_WAN
    other = udp(HOSTS[0], GATEWAY, 40000, 4500, K.NON_ESP_MARKER + ike(b"C" * 8))
    assert eng.process(other, True, 0.0) == V.TO_WAN


def test_ipsec_switch_off_at_run_time_tears_down_sessions():
    eng = engine(ipsec=True)
    esp_out(eng, HOSTS[0], 0xA001, 0.0)
    esp_in(eng, 0xB001, 0.1)
    esp_out(eng, HOSTS[1], 0xA002, 5.0)
    esp_in(eng, 0xB002, 5.1)
    assert eng.set_switch("ipsec", False, 6.0) == 2
    assert esp_in(eng, 0xB001, 6.1)[0] == V.DROP
    assert eng.set_switch("ipsec", True, 7.0) == 0
    assert esp_in(eng, 0xB001, 7.1)[0] == V.DROP  # state is gone: a new SA must be made
    assert eng.last_drop == V.NO_MAPPING


def test_esp_malformed_is_dropped_as_malformed():
    eng = engine(ipsec=True)
    pkt = build_esp_packet(HOSTS[0], GATEWAY, 0, 1, bytes(8))
    assert eng.process(pkt, True, 0.0) == V.DROP and eng.last_drop == V.MALFORMED
