"""IPv4 header parsing/building against scapy and dpkt, and every way a header can be broken."""

from __future__ import annotations

import dpkt
import pytest
from scapy.layers.inet import IP

from natpass.packets import PacketError
from natpass.packets.checksum import internet_checksum
from natpass.packets.ipv4 import (
    PROTO_UDP,
    addr_to_str,
    build_ipv4,
    check_options,
    fix_ip_checksum,
    header_checksum_ok,
    parse_ipv4,
    str_to_addr,
)

SRC, DST = "192.0.2.1", "198.51.100.7"


def test_build_then_parse_round_trips_every_field() -> None:
    pkt = build_ipv4(SRC, DST, PROTO_UDP, b"payload!", ttl=17, ident=0xBEEF, df=True, tos=0x10,
                     options=b"\x01\x01\x01\x00", mf=True, frag_offset=1480)
    h = parse_ipv4(pkt)
    assert (h.version, h.ihl, h.tos, h.ident, h.df, h.mf, h.frag_offset, h.ttl, h.proto) == (
        4, 6, 0x10, 0xBEEF, True, True, 1480, 17, PROTO_UDP)
    assert (h.src, h.dst) == (str_to_addr(SRC), str_to_addr(DST))
    assert h.total_length == len(pkt) == 24 + 8
    assert h.options == b"\x01\x01\x01\x00" and h.payload_offset == 24
    assert bytes(pkt[h.payload_offset:]) == b"payload!"
    assert header_checksum_ok(pkt)


def test_header_checksum_matches_scapy_and_dpkt() -> None:
    pkt = build_ipv4(SRC, DST, 6, bytes(range(40)), ttl=3, ident=999, df=True)
    ours = parse_ipv4(pkt).checksum
    s = IP(bytes(pkt))
    del s.chksum
    assert IP(bytes(s)).chksum == ours
    d = dpkt.ip.IP(bytes(pkt))
    d.sum = 0
    assert dpkt.ip.IP(bytes(d)).sum == ours


def test_parse_reads_scapy_built_header_with_options() -> None:
    raw = bytes(IP(src=SRC, dst=DST, ttl=9, id=5, flags="DF", options=b"\x94\x04\x00\x00") / b"abc")
    h = parse_ipv4(raw)
    assert h.ihl == 6 and h.df and h.ttl == 9 and h.ident == 5 and h.options == b"\x94\x04\x00\x00"
    assert header_checksum_ok(raw)


def test_fix_ip_checksum_repairs_a_rewritten_address() -> None:
    pkt = build_ipv4(SRC, DST, 17, b"x")
    pkt[12:16] = str_to_addr("203.0.113.5")
    assert not header_checksum_ok(pkt)
    fix_ip_checksum(pkt)
    assert header_checksum_ok(pkt) and internet_checksum(pkt[:20]) == 0


def test_ethernet_padding_after_total_length_is_allowed() -> None:
    pkt = build_ipv4(SRC, DST, 17, b"ab") + bytes(18)
    assert parse_ipv4(pkt).total_length == 22


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b.__setitem__(0, 0x65), "version"),
    (lambda b: b.__setitem__(0, 0x44), "IHL"),
    (lambda b: b.__setitem__(0, 0x4F), "header length"),
    (lambda b: b.__setitem__(slice(2, 4), b"\x00\x13"), "total length"),
    (lambda b: b.__setitem__(slice(2, 4), b"\xff\xff"), "total length"),
])
def test_broken_header_raises_packet_error(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    pkt = build_ipv4(SRC, DST, 17, bytes(8))
    mutate(pkt)
    with pytest.raises(PacketError, match=reason):
        parse_ipv4(pkt)


def test_truncation_at_every_byte_raises_packet_error() -> None:
    pkt = build_ipv4(SRC, DST, 17, bytes(8), options=b"\x07\x07\x04" + bytes(4))
    for cut in range(len(pkt)):
        with pytest.raises(PacketError):
            parse_ipv4(memoryview(pkt)[:cut])


@pytest.mark.parametrize("opts", [b"\x07", b"\x07\x01\x00\x00", b"\x07\x09\x04\x00", b"\x01\x44"])
def test_malformed_options_are_rejected(opts: bytes) -> None:
    with pytest.raises(PacketError):
        check_options(opts)


def test_well_formed_options_pass() -> None:
    check_options(b"\x01\x01\x94\x04\x00\x00\x00\x00")


def test_address_helpers_are_strict() -> None:
    assert addr_to_str(str_to_addr("203.0.113.255")) == "203.0.113.255"
    for bad in ("1.2.3", "256.1.1.1", "a.b.c.d", "1.2.3.4.5", "01234.1.1.1", ""):
        with pytest.raises(PacketError):
            str_to_addr(bad)
    with pytest.raises(PacketError):
        addr_to_str(b"\x01\x02\x03")


def test_build_rejects_what_cannot_be_encoded() -> None:
    with pytest.raises(PacketError):
        build_ipv4(SRC, DST, 17, b"", frag_offset=3)
    with pytest.raises(PacketError):
        build_ipv4(SRC, DST, 17, b"", options=bytes(44))
    with pytest.raises(PacketError):
        build_ipv4(SRC, DST, 17, bytes(65536))


def test_option_types_and_source_route_detection() -> None:
    from natpass.packets.ipv4 import OPT_LSRR, OPT_NOP, OPT_RA, has_source_route, option_types

    lsrr = bytes([OPT_LSRR, 7, 4]) + str_to_addr("198.51.100.1")
    assert option_types(b"\x01" + lsrr) == [OPT_NOP, OPT_LSRR] and has_source_route(b"\x01" + lsrr)
    ra = bytes([OPT_RA, 4, 0, 0])
    assert option_types(ra + b"\x00\x07\x07") == [OPT_RA] and not has_source_route(ra)
    h = parse_ipv4(build_ipv4(SRC, DST, 17, b"", options=lsrr))
    assert has_source_route(h.options)
    with pytest.raises(PacketError):
        option_types(b"\x83\x09\x04")
