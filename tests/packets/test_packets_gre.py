"""GRE version 0 (RFC 2784/2890) and PPTP enhanced GRE version 1 (RFC 2637 4.1)."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import GRE

from natpass.packets import PacketError, parse_gre
from natpass.packets.gre import (
    FLAG_A,
    PPTP_GRE_PROTO,
    V1_OFF_CALL_ID,
    build_gre,
    build_gre_v1,
    build_pptp_gre,
    call_id_offset,
    get_call_id,
    set_call_id,
    verify_gre_checksum,
)

LCP_ECHO = b"\xff\x03\xc0\x21\x09\x01\x00\x08\x01\x02\x03\x04"


@pytest.mark.parametrize("seq, ack", [(None, None), (7, None), (None, 9), (0xFFFFFFFF, 0)])
def test_v1_round_trip_with_optional_sequence_and_ack(seq: int | None, ack: int | None) -> None:
    g = build_gre_v1(0xBEEF, LCP_ECHO, seq=seq, ack=ack)
    h = parse_gre(g)
    assert h.version == 1 and h.key_present and h.proto == PPTP_GRE_PROTO
    assert (h.call_id, h.payload_length, h.seq, h.ack) == (0xBEEF, len(LCP_ECHO), seq, ack)
    assert h.header_len == 8 + (4 if seq is not None else 0) + (4 if ack is not None else 0)
    assert bytes(g[h.payload_offset:]) == LCP_ECHO
    assert bool(g[1] & FLAG_A) == (ack is not None)


def test_v1_call_id_rewrite_in_place_at_the_reported_offset() -> None:
    pkt = build_pptp_gre("192.168.1.5", "198.51.100.1", 0x1111, LCP_ECHO, seq=1)
    off = call_id_offset(pkt, 20)
    assert off == 20 + V1_OFF_CALL_ID
    set_call_id(pkt, 20, 0x2222)
    assert get_call_id(pkt, 20) == 0x2222 == parse_gre(pkt, 20).call_id


def test_v0_key_sequence_checksum_against_scapy() -> None:
    inner = bytes(IP(src="192.0.2.1", dst="192.0.2.2") / b"inner")
    g = build_gre(0x0800, inner, key=0xDEADBEEF, seq=42, checksum=True)
    h = parse_gre(g)
    assert (h.version, h.key, h.seq, h.proto) == (0, 0xDEADBEEF, 42, 0x0800)
    assert verify_gre_checksum(g)
    s = GRE(bytes(g))
    assert s.key == 0xDEADBEEF and s.sequence_number == 42 and s.chksum == h.checksum
    del s.chksum
    assert GRE(bytes(s)).chksum == h.checksum
    g[-1] ^= 0xFF
    assert not verify_gre_checksum(g)


def test_v0_minimal_header() -> None:
    h = parse_gre(build_gre(0x6558, b"frame"))
    assert h.header_len == 4 and h.key is None and h.call_id is None


@pytest.mark.parametrize("raw, reason", [
    (b"\x00\x01\x88\x0b\x00\x00\x00\x01", "without the key bit"),
    (b"\xa0\x01\x88\x0b\x00\x00\x00\x01\x00\x00\x00\x00", "checksum bit"),
    (b"\x20\x01\x08\x00\x00\x00\x00\x01", "not 0x880b"),
    (b"\x00\x02\x08\x00", "version 2"),
    (b"\x40\x00\x08\x00\x00\x00\x00\x00", "routing"),
    (b"\x00\x80\x08\x00", "acknowledgement"),
])
def test_invalid_gre_headers_raise_packet_error(raw: bytes, reason: str) -> None:
    with pytest.raises(PacketError, match=reason):
        parse_gre(raw)


def test_truncation_at_every_byte_of_the_header_raises() -> None:
    for g in (build_gre_v1(5, b"", seq=1, ack=2), build_gre(0x800, b"", key=1, seq=2, checksum=True)):
        for cut in range(len(g)):
            with pytest.raises(PacketError):
                parse_gre(g[:cut])
