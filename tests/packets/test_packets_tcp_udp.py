"""TCP and UDP: pseudo-header checksums against scapy and dpkt, round trips, truncation."""

from __future__ import annotations

import dpkt
import pytest
from scapy.layers.inet import IP, TCP, UDP

from natpass.packets import PacketError, parse_ipv4
from natpass.packets.checksum import l4_checksum
from natpass.packets.ipv4 import str_to_addr
from natpass.packets.tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    build_tcp,
    fix_tcp_checksum,
    flags_to_str,
    parse_tcp,
    verify_tcp,
)
from natpass.packets.udp import build_udp, build_udp_datagram, parse_udp, udp_checksum, verify_udp

SRC, DST = "192.168.1.10", "203.0.113.9"
S, D = str_to_addr(SRC), str_to_addr(DST)


def _scapy_recomputed(raw: bytes, layer: type) -> int:
    p = IP(raw)
    del p[layer].chksum
    return int(IP(bytes(p))[layer].chksum)


def _dpkt_recomputed(raw: bytes) -> int:
    d = dpkt.ip.IP(raw)
    d.data.sum = 0  # dpkt fills zeroed TCP/UDP and IP checksums when packing
    d.sum = 0
    return int(dpkt.ip.IP(bytes(d)).data.sum)


@pytest.mark.parametrize("payload", [b"", b"a", b"hello world", bytes(range(256)) * 3], ids=len)
def test_tcp_checksum_matches_scapy_and_dpkt(payload: bytes) -> None:
    pkt = build_tcp(SRC, DST, 40001, 1723, seq=0xFFFFFFF0, ack=7, flags=SYN | ACK, payload=payload,
                    window=1234, options=b"\x02\x04\x05\xb4")
    h = parse_tcp(pkt, 20)
    assert h.checksum == _scapy_recomputed(bytes(pkt), TCP)
    assert _dpkt_recomputed(bytes(pkt)) == h.checksum
    assert verify_tcp(S, D, pkt[20:])


def test_tcp_round_trip_fields_and_flags() -> None:
    flags = FIN | SYN | RST | PSH | ACK | URG | ECE | CWR
    pkt = build_tcp(SRC, DST, 1, 65535, seq=123456789, ack=987654321, flags=flags, payload=b"xyz",
                    window=4321, options=b"\x01\x01\x01")
    h = parse_tcp(pkt, parse_ipv4(pkt).header_len)
    assert (h.sport, h.dport, h.seq, h.ack, h.flags, h.window) == (1, 65535, 123456789, 987654321, flags, 4321)
    assert h.data_offset == 24 and h.options_length == 4 and h.has(URG)
    assert bytes(pkt[20 + h.payload_offset:]) == b"xyz"
    assert flags_to_str(SYN | ACK) == "SYN,ACK"
    parsed = TCP(bytes(pkt[20:]))
    assert parsed.sport == 1 and parsed.seq == 123456789


def test_tcp_checksum_detects_a_flipped_bit_and_fix_repairs_it() -> None:
    seg = build_tcp(SRC, DST, 5, 6, payload=b"abcdef")[20:]
    seg[-1] ^= 0x01
    assert not verify_tcp(S, D, seg)
    fix_tcp_checksum(S, D, seg)
    assert verify_tcp(S, D, seg)


def test_tcp_truncation_and_bad_data_offset() -> None:
    seg = build_tcp(SRC, DST, 5, 6, options=b"\x02\x04\x05\xb4")[20:]
    for cut in range(len(seg)):
        with pytest.raises(PacketError):
            parse_tcp(seg[:cut])
    bad = bytearray(seg)
    bad[12] = 0x40  # data offset 4 words
    with pytest.raises(PacketError, match="data offset"):
        parse_tcp(bad)


@pytest.mark.parametrize("payload", [b"", b"z", bytes(range(200))], ids=len)
def test_udp_checksum_matches_scapy_and_dpkt(payload: bytes) -> None:
    pkt = build_udp(SRC, DST, 500, 4500, payload)
    h = parse_udp(pkt, 20)
    assert h.checksum == _scapy_recomputed(bytes(pkt), UDP)
    assert verify_udp(S, D, pkt[20:])
    assert _dpkt_recomputed(bytes(pkt)) == h.checksum
    assert dpkt.ip.IP(bytes(pkt)).udp.ulen == h.length == 8 + len(payload)


def test_udp_zero_checksum_means_none_and_computed_zero_is_sent_as_ffff() -> None:
    dgram = build_udp_datagram(SRC, DST, 1, 2, b"abc", checksum=False)
    assert parse_udp(dgram).checksum == 0 and verify_udp(S, D, dgram)
    # Find a payload whose checksum computes to 0: adjust the last word until it does.
    base = bytearray(build_udp_datagram(SRC, DST, 1000, 2000, b"\x00\x00", checksum=False))
    for word in range(0x10000):
        base[8:10] = word.to_bytes(2, "big")
        base[6:8] = b"\x00\x00"
        if l4_checksum(S, D, 17, base) == 0:
            break
    else:
        pytest.fail("no zero checksum found")
    assert udp_checksum(S, D, base) == 0xFFFF
    base[6:8] = b"\xff\xff"
    assert verify_udp(S, D, base)


def test_udp_length_field_checked() -> None:
    dgram = build_udp_datagram(SRC, DST, 1, 2, b"abcd")
    for cut in range(len(dgram)):
        with pytest.raises(PacketError):
            parse_udp(dgram[:cut])
    bad = bytearray(dgram)
    bad[4:6] = b"\x00\x07"
    with pytest.raises(PacketError, match="< 8"):
        parse_udp(bad)
