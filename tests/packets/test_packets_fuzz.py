"""Random and mutated bytes: every parser either returns or raises PacketError, nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from natpass.packets import PacketError, PptpStream, esp, gre, icmp, ike, ipv4, l2tp, pptp, tcp, udp

PARSERS: dict[str, Callable[[bytes], Any]] = {
    "ipv4": ipv4.parse_ipv4,
    "tcp": tcp.parse_tcp,
    "udp": udp.parse_udp,
    "icmp_query": icmp.parse_query,
    "icmp_error": icmp.parse_error,
    "icmp_header": icmp.parse_icmp_header,
    "gre": gre.parse_gre,
    "esp": esp.parse_esp,
    "ah": esp.parse_ah,
    "ike": ike.parse_ike,
    "ike_payloads": ike.payloads,
    "ike_natd": ike.nat_d_payloads,
    "natt": ike.classify_natt,
    "l2tp": l2tp.parse_l2tp,
    "l2tp_control": l2tp.parse_control,
    "pptp": pptp.parse_pptp,
}

# Valid seeds, so that mutations reach deep into each parser instead of failing at byte 0.
SEEDS: dict[str, bytes] = {
    "ipv4": bytes(ipv4.build_ipv4("192.0.2.1", "192.0.2.2", 17, b"abcdefgh", options=b"\x07\x07\x04" + bytes(4))),
    "tcp": bytes(tcp.build_tcp("192.0.2.1", "192.0.2.2", 1, 2, payload=b"x", options=b"\x02\x04\x05\xb4"))[20:],
    "udp": bytes(udp.build_udp("192.0.2.1", "192.0.2.2", 1, 2, b"abc"))[20:],
    "icmp_query": bytes(icmp.build_timestamp("192.0.2.1", "192.0.2.2", 1, 2))[20:],
    "icmp_error": bytes(icmp.build_error(udp.build_udp("192.0.2.1", "192.0.2.2", 1, 2, b"x"), 3, 4,
                                         "192.0.2.3", mtu=1400))[20:],
    "icmp_header": bytes(icmp.build_icmp(8, 0, 1, b"")),
    "gre": bytes(gre.build_gre_v1(5, b"ppp", seq=1, ack=2)),
    "esp": bytes(esp.build_esp(0x100, 1, b"x")),
    "ah": bytes(esp.build_ah(0x100, 1, 50)),
    "ike": bytes(ike.build_ike(b"\x01" * 8, b"\x02" * 8, ike.IKE_SA_INIT, payload_list=[(ike.V2_NONCE, b"n")])),
    "ike_payloads": bytes(ike.build_ike(b"\x01" * 8, bytes(8), ike.IKE_SA_INIT, payload_list=[
        (ike.V2_SA, b"s"), (ike.V2_NOTIFY, ike.build_notify_v2(ike.NAT_DETECTION_SOURCE_IP, b"h" * 20))])),
    "ike_natd": bytes(ike.build_ike(b"\x01" * 8, bytes(8), ike.V1_IDENTITY_PROTECTION, major=1,
                                    payload_list=[(ike.V1_NAT_D, b"d" * 20), (ike.V1_NAT_D, b"s" * 20)])),
    "natt": b"\x00\x00\x00\x00" + bytes(ike.build_ike(b"\x01" * 8, bytes(8), ike.IKE_SA_INIT)),
    "l2tp": bytes(l2tp.build_data(1, 2, b"ppp", ns=1, nr=2, offset_size=2)),
    "l2tp_control": bytes(l2tp.build_sccrq(5)),
    "pptp": bytes(pptp.build_ocrp(1, 2)),
}


def _only_packet_error(parse: Callable[[bytes], Any], data: bytes) -> None:
    try:
        parse(data)
    except PacketError:
        pass


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=120))
def test_random_bytes_raise_only_packet_error(name: str, data: bytes) -> None:
    _only_packet_error(PARSERS[name], data)


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=200, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
       cut=st.integers(0, 400))
def test_mutated_valid_packets_raise_only_packet_error(name: str, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(SEEDS[name])
    for pos, value in edits:
        if data:
            data[pos % len(data)] = value
    _only_packet_error(PARSERS[name], bytes(data[:cut]))


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_seed_parses_and_every_truncation_is_handled(name: str) -> None:
    seed = SEEDS[name]
    PARSERS[name](seed)
    for cut in range(len(seed)):
        _only_packet_error(PARSERS[name], seed[:cut])
        _only_packet_error(PARSERS[name], memoryview(seed)[:cut])  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=20))
def test_pptp_stream_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    s = PptpStream()
    total = 0
    for c in chunks:
        for m in s.feed(c):
            assert len(m.data) == int.from_bytes(m.data[:2], "big")
        total += len(c)
        assert s.pending <= pptp.MAX_MESSAGE_LEN
    assert s.offset == total


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=100), icmp_type=st.sampled_from(sorted(icmp.ERROR_TYPES)))
def test_build_error_about_random_bytes_raises_only_packet_error(data: bytes, icmp_type: int) -> None:
    try:
        err = icmp.build_error(data, icmp_type, 0, "192.0.2.1")
    except PacketError:
        return
    assert icmp.verify_icmp(err[20:]) and len(err) <= icmp.ICMP_ERROR_MAX_TOTAL


addr = st.binary(min_size=4, max_size=4)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@settings(max_examples=100, deadline=None)
@given(src=addr, dst=addr, sport=u16, dport=u16, seq=u32, ack=u32, flags=st.integers(0, 255),
       window=u16, payload=st.binary(max_size=64), ident=u16, ttl=st.integers(0, 255))
def test_tcp_build_parse_round_trip(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
                                    flags: int, window: int, payload: bytes, ident: int, ttl: int) -> None:
    pkt = tcp.build_tcp(src, dst, sport, dport, seq, ack, flags, payload, window, ttl=ttl, ident=ident)
    h = ipv4.parse_ipv4(pkt)
    assert (h.src, h.dst, h.ttl, h.ident, h.proto) == (src, dst, ttl, ident, ipv4.PROTO_TCP)
    assert ipv4.header_checksum_ok(pkt)
    t = tcp.parse_tcp(pkt, h.header_len)
    assert (t.sport, t.dport, t.seq, t.ack, t.flags, t.window) == (sport, dport, seq, ack, flags, window)
    assert tcp.verify_tcp(src, dst, pkt[h.header_len:])


@settings(max_examples=100, deadline=None)
@given(src=addr, dst=addr, sport=u16, dport=u16, payload=st.binary(max_size=64))
def test_udp_build_parse_round_trip(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> None:
    pkt = udp.build_udp(src, dst, sport, dport, payload)
    u = udp.parse_udp(pkt, 20)
    assert (u.sport, u.dport, u.length) == (sport, dport, 8 + len(payload)) and u.checksum != 0
    assert udp.verify_udp(src, dst, pkt[20:])


@settings(max_examples=100, deadline=None)
@given(call_id=u16, seq=st.none() | u32, ack=st.none() | u32, payload=st.binary(max_size=40))
def test_gre_v1_round_trip(call_id: int, seq: int | None, ack: int | None, payload: bytes) -> None:
    g = gre.parse_gre(gre.build_gre_v1(call_id, payload, seq, ack))
    assert (g.call_id, g.payload_length, g.seq, g.ack) == (call_id, len(payload), seq, ack)


@settings(max_examples=60, deadline=None)
@given(ctype=st.sampled_from(sorted(pptp.LENGTHS)), value=u16, split=st.lists(st.integers(1, 300), max_size=5))
def test_pptp_offsets_and_stream_for_any_type_and_split(ctype: int, value: int, split: list[int]) -> None:
    fields: dict[str, int] = {}
    if ctype in pptp.CALL_ID_OFFSET:
        fields["call_id"] = value
    if ctype in pptp.PEER_CALL_ID_OFFSET:
        fields["peer_call_id"] = value ^ 0xFFFF
    msg = bytes(pptp.build_pptp(ctype, **fields))
    for name, table in (("call_id", pptp.CALL_ID_OFFSET), ("peer_call_id", pptp.PEER_CALL_ID_OFFSET)):
        if ctype in table:
            assert int.from_bytes(msg[table[ctype]:table[ctype] + 2], "big") == fields[name]
    data = msg * 3
    s = pptp.PptpStream()
    got = []
    pos = 0
    for n in split + [len(data)]:
        got += s.feed(data[pos:pos + n])
        pos += n
    assert [m.offset for m in got] == [0, len(msg), 2 * len(msg)] and all(m.data == msg for m in got)
