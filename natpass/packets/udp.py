"""UDP header (RFC 768): parse, build with pseudo-header checksum, verify."""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from natpass.packets.checksum import Buffer, l4_checksum, pseudo_header_sum, verify
from natpass.packets.errors import PacketError
from natpass.packets.ipv4 import PROTO_UDP, str_to_addr

UDP_HEADER: Final = 8
OFF_SPORT: Final = 0
OFF_DPORT: Final = 2
OFF_LENGTH: Final = 4
OFF_CHECKSUM: Final = 6
NO_CHECKSUM: Final = 0  # RFC 768: an all-zero checksum field means "not computed"

_HDR = struct.Struct("!HHHH")


class UdpHeader(NamedTuple):
    sport: int
    dport: int
    length: int  # header + payload, from the length field
    checksum: int

    @property
    def payload_offset(self) -> int:
        return UDP_HEADER

    @property
    def payload_length(self) -> int:
        return self.length - UDP_HEADER


def parse_udp(buf: Buffer, offset: int = 0) -> UdpHeader:
    """Parse the UDP header at ``offset``; the length field must fit in what follows it."""
    n = len(buf) - offset
    if offset < 0 or n < UDP_HEADER:
        raise PacketError(f"UDP header truncated: {max(n, 0)} bytes")
    sport, dport, length, csum = _HDR.unpack_from(buf, offset)
    if length < UDP_HEADER:
        raise PacketError(f"UDP length {length} < 8")
    if length > n:
        raise PacketError(f"UDP length {length} exceeds {n} bytes")
    return UdpHeader(sport, dport, length, csum)


def udp_checksum(src: Buffer, dst: Buffer, datagram: Buffer) -> int:
    """Checksum field value for ``datagram`` (field zeroed); a computed 0 is sent as 0xFFFF."""
    value = l4_checksum(src, dst, PROTO_UDP, datagram)
    return value or 0xFFFF


def verify_udp(src: Buffer, dst: Buffer, datagram: Buffer) -> bool:
    """True when the checksum is correct or absent (zero)."""
    if len(datagram) < UDP_HEADER:
        raise PacketError("UDP header truncated")
    if datagram[OFF_CHECKSUM] == 0 and datagram[OFF_CHECKSUM + 1] == 0:
        return True
    return verify(datagram, pseudo_header_sum(src, dst, PROTO_UDP, len(datagram)))


def fix_udp_checksum(src: Buffer, dst: Buffer, datagram: bytearray | memoryview) -> int:
    """Recompute the UDP checksum of ``datagram`` in place; returns the new value."""
    if len(datagram) < UDP_HEADER:
        raise PacketError("UDP header truncated")
    datagram[OFF_CHECKSUM] = 0
    datagram[OFF_CHECKSUM + 1] = 0
    value = udp_checksum(src, dst, datagram)
    datagram[OFF_CHECKSUM] = value >> 8
    datagram[OFF_CHECKSUM + 1] = value & 0xFF
    return value


def build_udp_datagram(src: Buffer | str, dst: Buffer | str, sport: int, dport: int,
                       payload: Buffer = b"", checksum: bool = True) -> bytearray:
    """A UDP datagram (header + payload); ``checksum=False`` leaves the field 0 (none)."""
    s = str_to_addr(src) if isinstance(src, str) else bytes(src)
    d = str_to_addr(dst) if isinstance(dst, str) else bytes(dst)
    length = UDP_HEADER + len(payload)
    if length > 0xFFFF:
        raise PacketError(f"UDP datagram too long: {length}")
    out = bytearray(length)
    _HDR.pack_into(out, 0, sport & 0xFFFF, dport & 0xFFFF, length, 0)
    out[UDP_HEADER:] = payload
    if checksum:
        fix_udp_checksum(s, d, out)
    return out


def build_udp(src: Buffer | str, dst: Buffer | str, sport: int, dport: int, payload: Buffer = b"",
              checksum: bool = True, ttl: int = 64, ident: int = 0, df: bool = False) -> bytearray:
    """A complete IPv4+UDP packet with both checksums correct."""
    from natpass.packets.ipv4 import build_ipv4

    dgram = build_udp_datagram(src, dst, sport, dport, payload, checksum)
    return build_ipv4(src, dst, PROTO_UDP, dgram, ttl=ttl, ident=ident, df=df)
