"""Bad input gets a counted drop or passes untouched, never a crash, a malformed packet out or an
unbounded table: random bytes on the followed ports and protocols, floods of SPIs and remotes."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from passthrough_util import (
    GATEWAY,
    HOSTS,
    SERVER,
    WAN,
    Conv,
    checksums_ok,
    engine,
    engine_with_helpers,
    messages,
    udp,
)

from natpass.nat import verdict as V
from natpass.nat.config import Limits
from natpass.packets import pptp as P
from natpass.packets.esp import build_esp_packet
from natpass.packets.ipv4 import PROTO_AH, PROTO_ESP, PROTO_GRE, build_ipv4
from natpass.packets.tcp import ACK, RST, SYN

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MESSAGES = [bytes(P.build_sccrq()), bytes(P.build_ocrq(1)), bytes(P.build_ocrp(2, 1)),
            bytes(P.build_sli(1)), bytes(P.build_ccrq(1)), bytes(P.build_cdn(2)), bytes(P.build_echo_request(3))]


def emitted_ok(eng, pkt, code) -> None:
    assert code in (V.TO_WAN, V.TO_LAN, V.DROP)
    if code != V.DROP:
        assert checksums_ok(pkt)
    else:
        assert eng.last_drop


@FUZZ
@given(chunks=st.lists(st.one_of(st.sampled_from(MESSAGES), st.binary(max_size=40)), max_size=12),
       cuts=st.lists(st.integers(1, 200), max_size=8), inbound=st.lists(st.booleans(), max_size=12))
def test_pptp_control_stream_of_messages_and_garbage_never_breaks_the_router(chunks, cuts, inbound):
    eng = engine(pptp=True)
    c = Conv(eng, HOSTS[0], 40000, SERVER, 1723)
    c.handshake()
    stream = b"".join(chunks)
    pos = 0
    for i, n in enumerate(cuts + [len(stream)]):
        part = stream[pos:pos + n]
        pos += n
        if not part:
            break
        send = c.from_remote if i < len(inbound) and inbound[i] else c.from_lan
        code = send(part)
        emitted_ok(eng, c.last, code)
    for _ in range(3):  # GRE after whatever happened
        for pkt, lan in ((build_ipv4(SERVER, WAN, PROTO_GRE, b"\x30\x01\x88\x0b" + bytes(8)), False),
                         (build_ipv4(HOSTS[0], SERVER, PROTO_GRE, b"\x30\x01\x88\x0b" + bytes(8)), True)):
            emitted_ok(eng, pkt, eng.process(pkt, lan, 1.0))


@FUZZ
@given(proto=st.sampled_from([PROTO_GRE, PROTO_ESP, PROTO_AH]), payload=st.binary(max_size=40),
       from_lan=st.booleans())
def test_random_gre_esp_ah_payloads_are_dropped_or_forwarded_cleanly(proto, payload, from_lan):
    eng = engine(pptp=True, ipsec=True)
    src, dst = (HOSTS[0], SERVER) if from_lan else (SERVER, WAN)
    pkt = build_ipv4(src, dst, proto, payload)
    emitted_ok(eng, pkt, eng.process(pkt, from_lan, 0.0))


@FUZZ
@given(port=st.sampled_from([500, 4500, 1701]), payload=st.binary(max_size=60), from_lan=st.booleans())
def test_random_udp_on_ike_natt_l2tp_ports(port, payload, from_lan):
    eng = engine(ipsec=True, l2tp=True)
    first = udp(HOSTS[0], GATEWAY, port, port, payload)
    emitted_ok(eng, first, eng.process(first, True, 0.0))
    if not from_lan:
        back = udp(GATEWAY, WAN, port, port, payload)
        emitted_ok(eng, back, eng.process(back, False, 0.1))


def test_a_spi_flood_from_one_host_stays_bounded():
    eng, helpers = engine_with_helpers(ipsec=True, limits=Limits(max_flows=16, max_flows_per_host=16))
    helper = helpers["ipsec"]
    helper.limits = dataclasses.replace(helper.limits, spis_per_session=8, ambiguous_spis=8)
    for spi in range(1, 200):
        assert eng.process(build_esp_packet(HOSTS[0], GATEWAY, spi, 1), True, 0.0) == V.TO_WAN
        assert eng.process(build_esp_packet(GATEWAY, WAN, 0x1000 + spi, 1), False, 0.0) == V.TO_LAN
    assert all(len(s.out_spis) <= 8 and len(s.in_spis) <= 8 for s in helper._sessions.values())
    assert len(helper._in) <= 8
    for n in range(100):  # many gateways
        gw = f"198.51.100.{n + 1}"
        eng.process(build_esp_packet(HOSTS[1], gw, 5, 1), True, 0.0)
    assert len(helper._sessions) <= 16
    eng.process(build_esp_packet(HOSTS[2], "198.51.100.1", 7, 1), True, 0.0)  # a second host there
    for spi in range(100):  # the WAN side sprays SPIs from a gateway two hosts use
        eng.process(build_esp_packet("198.51.100.1", WAN, 0x9000 + spi, 1), False, 0.0)
    assert len(helper._poisoned) <= 8


def test_ike_spis_sent_from_the_wan_do_not_fill_the_index():
    eng = engine(ipsec=True)
    out = udp(HOSTS[0], GATEWAY, 500, 500, bytes(8) + bytes(20))
    out[28:36] = b"A" * 8
    eng.process(out, True, 0.0)
    before = eng.status()["helpers"]["ipsec"]["stats"]["ike_sas"]
    for n in range(50):
        pkt = udp(GATEWAY, WAN, 500, 500, n.to_bytes(8, "big") + bytes(20))
        eng.process(pkt, False, 0.1)
    assert eng.status()["helpers"]["ipsec"]["stats"]["ike_sas"] == before == 1


def test_gre_to_many_servers_keeps_bounded_bindings():
    eng = engine(pptp=True, limits=Limits(max_flows=100, max_flows_per_host=10))
    for n in range(60):
        pkt = build_ipv4(HOSTS[0], f"198.51.100.{n + 1}", PROTO_GRE, b"\x00\x00\x08\x00" + bytes(20))
        assert eng.process(pkt, True, 0.0) == V.TO_WAN
    assert eng.status()["helpers"]["pptp"]["stats"]["gre_address_bindings"] <= 10


def test_pptp_control_connection_reopened_on_the_same_ports_is_followed_again():
    eng = engine(pptp=True)
    c = Conv(eng, HOSTS[0], 40000, SERVER, 1723)
    c.handshake()
    c.from_lan(bytes(P.build_ocrq(1)))
    c.from_remote(flags=RST | ACK)
    # the client reconnects from the same port with a new initial sequence number
    c.seq_lan, c.seq_remote = 777_000, 999_000
    c.lan_out = bytearray()
    assert c.from_lan(flags=SYN) == V.TO_WAN
    assert c.from_remote(flags=SYN | ACK) == V.TO_LAN
    c.from_lan(flags=ACK)
    assert c.from_lan(bytes(P.build_ocrq(1))) == V.TO_WAN
    assert messages(bytes(c.lan_out))[-1].call_id == 1
    assert [t["lan_call_id"] for t in eng.status()["helpers"]["pptp"]["tunnels"]] == [1]


def test_pptp_call_limit_fails_closed_instead_of_leaking_an_untranslated_call_id():
    eng, helpers = engine_with_helpers(pptp=True)
    helpers["pptp"].limits = dataclasses.replace(helpers["pptp"].limits, calls_per_control=2)
    c = Conv(eng, HOSTS[0], 40000, SERVER, 1723)
    c.handshake()
    assert c.from_lan(bytes(P.build_ocrq(1))) == V.TO_WAN
    assert c.from_lan(bytes(P.build_ocrq(2))) == V.TO_WAN
    assert c.from_lan(bytes(P.build_ocrq(3))) == V.DROP and eng.last_drop == "pptp:stream-lost"
    assert eng.counters["pptp:call-limit"] == 1
    assert [m.call_id for m in messages(bytes(c.lan_out))] == [1, 2]
