"""natpass.packets.rewrite: the one place that rewrites addresses and bytes and keeps every
checksum right (engine, helper context and passthrough helpers use it); scapy recomputes."""

from __future__ import annotations

import pytest
from natutil import ICMP, IP, TCP, UDP, Raw, a, checksums_ok, raw
from scapy.layers.inet import IPerror, UDPerror
from scapy.layers.l2 import GRE

from natpass.packets.checksum import internet_checksum
from natpass.packets.rewrite import rewrite_bytes, rewrite_icmp_quote, set_address

PACKETS = {
    "tcp": raw(IP(src="192.168.1.10", dst="198.51.100.7") / TCP(sport=4000, dport=80) / Raw(b"abcdefg")),
    "udp": raw(IP(src="192.168.1.10", dst="198.51.100.7") / UDP(sport=4000, dport=53) / Raw(b"abcdefg")),
    "icmp": raw(IP(src="192.168.1.10", dst="198.51.100.7") / ICMP(id=7) / Raw(b"ping")),
    "gre": raw(IP(src="192.168.1.10", dst="198.51.100.7") / GRE() / Raw(b"xx")),
}


@pytest.mark.parametrize("kind", sorted(PACKETS))
@pytest.mark.parametrize("off", [12, 16])
def test_set_address_keeps_every_checksum(kind: str, off: int) -> None:
    buf = bytearray(PACKETS[kind])
    set_address(buf, off, a("203.0.113.77"))
    assert buf[off:off + 4] == a("203.0.113.77")
    assert checksums_ok(buf)


def test_udp_without_checksum_stays_without() -> None:
    buf = raw(IP(src="192.168.1.10", dst="198.51.100.7") / UDP(sport=1, dport=2, chksum=0) / Raw(b"q"))
    set_address(buf, 12, a("203.0.113.1"))
    assert buf[26:28] == b"\x00\x00" and internet_checksum(bytes(buf[:20])) == 0


@pytest.mark.parametrize("kind", ["tcp", "udp", "icmp"])
@pytest.mark.parametrize("at,new", [(0, b"\x12\x34"), (1, b"\xff"), (3, b"\x01\x02\x03")])
def test_rewrite_bytes_at_odd_and_even_offsets(kind: str, at: int, new: bytes) -> None:
    buf = bytearray(PACKETS[kind])
    start = len(buf) - 6 + at  # at 0 and 1: both parities from the L4 header start
    rewrite_bytes(buf, start, new)
    assert bytes(buf[start:start + len(new)]) == new
    assert checksums_ok(buf)


def test_rewrite_outside_the_packet_raises() -> None:
    with pytest.raises(IndexError):
        rewrite_bytes(bytearray(PACKETS["udp"]), len(PACKETS["udp"]) - 1, b"ab")


def test_rewrite_icmp_quote_fixes_quoted_and_outer_checksums() -> None:
    quoted = raw(IP(src="203.0.113.1", dst="198.51.100.7") / UDP(sport=40000, dport=53) / Raw(b"q" * 20))
    buf = raw(IP(src="198.51.100.254", dst="203.0.113.1") / ICMP(type=3, code=3) / bytes(quoted))
    rewrite_icmp_quote(buf, 20, 28 + 12, 28 + 20, a("192.168.1.10"), (5000).to_bytes(2, "big"))
    p = IP(bytes(buf))
    assert p[IPerror].src == "192.168.1.10" and p[UDPerror].sport == 5000
    assert checksums_ok(buf)
    inner = bytes(buf[28:])
    assert internet_checksum(inner[:20]) == 0
    again = IP(inner)
    del again[UDP].chksum
    assert IP(bytes(again))[UDP].chksum == p[UDPerror].chksum
