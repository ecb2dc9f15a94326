"""ICMP queries and errors (RFC 792, RFC 1812 4.3.2): quoting rules, truncated quotes, checksums."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDPerror

from natpass.packets import PacketError, parse_ipv4
from natpass.packets.icmp import (
    DEST_UNREACHABLE,
    ECHO_REPLY,
    ECHO_REQUEST,
    FRAG_NEEDED,
    ICMP_ERROR_MAX_TOTAL,
    PARAMETER_PROBLEM,
    PORT_UNREACHABLE,
    REDIRECT,
    SOURCE_QUENCH,
    TIME_EXCEEDED,
    TIMESTAMP_REPLY,
    TIMESTAMP_REQUEST,
    build_echo,
    build_error,
    build_icmp,
    build_timestamp,
    is_error,
    is_query,
    may_send_error_about,
    parse_error,
    parse_query,
    verify_icmp,
)
from natpass.packets.ipv4 import str_to_addr
from natpass.packets.tcp import build_tcp
from natpass.packets.udp import build_udp

LAN, REMOTE, ROUTER = "192.168.1.20", "198.51.100.30", "203.0.113.1"


def test_query_and_error_classification_follows_rfc792() -> None:
    assert all(is_query(t) for t in (0, 8, 13, 14, 15, 16, 17, 18))
    assert all(is_error(t) for t in (3, 4, 5, 11, 12))
    assert not any(is_query(t) for t in (3, 4, 5, 11, 12))
    assert not is_error(8) and not is_query(9)


def test_echo_round_trip_and_checksum_matches_scapy() -> None:
    pkt = build_echo(LAN, REMOTE, ident=0x1234, seq=7, payload=b"ping data")
    q = parse_query(pkt, 20)
    assert (q.type, q.ident, q.seq) == (ECHO_REQUEST, 0x1234, 7)
    s = IP(bytes(pkt))
    ours = s[ICMP].chksum
    del s[ICMP].chksum
    assert IP(bytes(s))[ICMP].chksum == ours
    assert parse_query(build_echo(REMOTE, LAN, 1, 2, reply=True), 20).type == ECHO_REPLY


def test_timestamp_fields_parse() -> None:
    pkt = build_timestamp(LAN, REMOTE, 9, 10, originate=1000, receive=2000, transmit=3000, reply=True)
    q = parse_query(pkt, 20)
    assert (q.type, q.ident, q.seq, q.originate, q.receive, q.transmit) == (TIMESTAMP_REPLY, 9, 10, 1000, 2000, 3000)
    assert parse_query(build_timestamp(LAN, REMOTE, 1, 1), 20).type == TIMESTAMP_REQUEST
    with pytest.raises(PacketError, match="timestamp truncated"):
        parse_query(build_timestamp(LAN, REMOTE, 1, 1)[:20 + 12], 20)


def test_frag_needed_carries_next_hop_mtu_and_quotes_header_plus_data() -> None:
    original = build_udp(LAN, REMOTE, 5000, 4500, bytes(100), df=True)
    err = build_error(original, DEST_UNREACHABLE, FRAG_NEEDED, ROUTER, mtu=1400)
    outer = parse_ipv4(err)
    assert outer.dst == str_to_addr(LAN) and outer.src == str_to_addr(ROUTER) and outer.tos == 0xC0
    e = parse_error(err, outer.header_len)
    assert e.mtu == 1400 and e.type == DEST_UNREACHABLE and e.code == FRAG_NEEDED
    assert (e.inner.src, e.inner.dst, e.inner.proto) == (str_to_addr(LAN), str_to_addr(REMOTE), 17)
    assert (e.inner.sport, e.inner.dport) == (5000, 4500)
    assert bytes(err[outer.header_len + e.inner.offset:]) == bytes(original)  # short: quoted whole
    assert verify_icmp(err[20:])
    s = IP(bytes(err))
    assert s[ICMP].nexthopmtu == 1400 and s[UDPerror].dport == 4500


def test_error_quote_is_limited_to_576_bytes_total() -> None:
    original = build_tcp(LAN, REMOTE, 1, 2, payload=bytes(1400))
    err = build_error(original, TIME_EXCEEDED, 0, ROUTER)
    assert len(err) == ICMP_ERROR_MAX_TOTAL
    e = parse_error(err, 20)
    assert e.inner.truncated and e.inner.available == 576 - 28 and e.inner.total_length == len(original)
    assert (e.inner.sport, e.inner.dport) == (1, 2)


def test_parameter_problem_pointer_and_redirect_gateway() -> None:
    original = build_udp(LAN, REMOTE, 1, 2, b"x")
    pp = parse_error(build_error(original, PARAMETER_PROBLEM, 0, ROUTER, pointer=9), 20)
    assert pp.pointer == 9
    rd = parse_error(build_error(original, REDIRECT, 1, ROUTER, gateway="192.168.1.254"), 20)
    assert rd.gateway == str_to_addr("192.168.1.254")
    sq = parse_error(build_error(original, SOURCE_QUENCH, 0, ROUTER), 20)
    assert sq.type == SOURCE_QUENCH


def test_inner_packet_truncated_to_header_only_still_parses_without_ports() -> None:
    original = build_udp(LAN, REMOTE, 1, 2, b"abcdefgh")
    msg = build_icmp(DEST_UNREACHABLE, PORT_UNREACHABLE, 0, bytes(original[:20]))
    e = parse_error(msg)
    assert e.inner.l4_available == 0 and e.inner.sport is None and e.inner.truncated
    msg = build_icmp(DEST_UNREACHABLE, PORT_UNREACHABLE, 0, bytes(original[:24]))
    assert parse_error(msg).inner.sport == 1


def test_inner_quoting_an_echo_reports_its_identifier() -> None:
    ping = build_echo(LAN, REMOTE, ident=0xABCD, seq=1)
    e = parse_error(build_error(ping, TIME_EXCEEDED, 0, ROUTER), 20)
    assert e.inner.sport == 0xABCD and e.inner.proto == 1


def test_error_truncation_at_every_byte_raises_packet_error_below_the_inner_header() -> None:
    err = build_error(build_udp(LAN, REMOTE, 1, 2, b"x" * 30), DEST_UNREACHABLE, 3, ROUTER)[20:]
    for cut in range(8 + 20):
        with pytest.raises(PacketError):
            parse_error(err[:cut])
    for cut in range(8 + 20, len(err) + 1):
        assert parse_error(err[:cut]).inner.available == min(cut - 8, 20 + 8 + 30)


def test_no_error_about_an_error_a_fragment_or_a_broadcast_source() -> None:
    udp = build_udp(LAN, REMOTE, 1, 2, b"x")
    assert may_send_error_about(udp)
    assert not may_send_error_about(build_error(udp, DEST_UNREACHABLE, 3, ROUTER))
    assert may_send_error_about(build_echo(LAN, REMOTE, 1, 1))
    frag = bytearray(udp)
    frag[6:8] = b"\x00\x10"
    assert not may_send_error_about(frag)
    for src, dst in (("255.255.255.255", REMOTE), ("0.0.0.0", REMOTE), ("127.0.0.1", REMOTE),
                     ("224.0.0.5", REMOTE), (LAN, "239.1.2.3"), (LAN, "255.255.255.255")):
        assert not may_send_error_about(build_udp(src, dst, 1, 2, b"x")), (src, dst)


def test_build_error_rejects_non_errors_and_garbage() -> None:
    with pytest.raises(PacketError):
        build_error(build_udp(LAN, REMOTE, 1, 2), ECHO_REQUEST, 0, ROUTER)
    with pytest.raises(PacketError):
        build_error(b"\x60" + bytes(39), TIME_EXCEEDED, 0, ROUTER)
    with pytest.raises(PacketError):
        parse_query(build_icmp(3, 3, 0, bytes(28)))


def test_icmp_checksums_match_dpkt() -> None:
    import dpkt

    for pkt in (build_echo(LAN, REMOTE, 7, 8, b"odd"),
                build_error(build_udp(LAN, REMOTE, 1, 2, b"x" * 9), TIME_EXCEEDED, 0, ROUTER)):
        ours = int.from_bytes(pkt[22:24], "big")
        d = dpkt.icmp.ICMP(bytes(pkt[20:]))
        d.sum = 0  # dpkt fills a zero checksum when packing
        assert dpkt.icmp.ICMP(bytes(d)).sum == ours


def test_error_quotes_an_original_header_with_options_whole() -> None:
    from natpass.packets.ipv4 import build_ipv4
    from natpass.packets.udp import build_udp_datagram

    original = build_ipv4(LAN, REMOTE, 17, build_udp_datagram(LAN, REMOTE, 33, 44, b"payload"),
                          options=b"\x94\x04\x00\x00")
    e = parse_error(build_error(original, DEST_UNREACHABLE, PORT_UNREACHABLE, REMOTE), 20)
    assert e.inner.header_len == 24 and (e.inner.sport, e.inner.dport) == (33, 44)
    assert e.inner.l4_offset == 8 + 24 and not e.inner.truncated
