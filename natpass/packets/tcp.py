"""TCP header (RFC 793 / RFC 9293): parse, build with pseudo-header checksum, verify."""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from natpass.packets.checksum import Buffer, l4_checksum, pseudo_header_sum, verify
from natpass.packets.errors import PacketError
from natpass.packets.ipv4 import PROTO_TCP, str_to_addr

# Flag bits of byte 13 (RFC 9293 section 3.1; ECE/CWR from RFC 3168 section 6.1).
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20
ECE: Final = 0x40
CWR: Final = 0x80

TCP_MIN_HEADER: Final = 20
TCP_MAX_HEADER: Final = 60
OFF_SPORT: Final = 0
OFF_DPORT: Final = 2
OFF_SEQ: Final = 4
OFF_ACK: Final = 8
OFF_FLAGS: Final = 13
OFF_CHECKSUM: Final = 16

_HDR = struct.Struct("!HHIIBBHHH")


class TcpHeader(NamedTuple):
    """A parsed TCP header; offsets are relative to the start of the TCP header."""

    sport: int
    dport: int
    seq: int
    ack: int
    data_offset: int  # header length in bytes
    flags: int
    window: int
    checksum: int
    urgent: int
    options: bytes

    @property
    def options_length(self) -> int:
        return self.data_offset - TCP_MIN_HEADER

    @property
    def payload_offset(self) -> int:
        return self.data_offset

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


def parse_tcp(buf: Buffer, offset: int = 0) -> TcpHeader:
    """Parse the TCP header at ``offset`` of ``buf`` (the segment runs to the end of ``buf``)."""
    n = len(buf) - offset
    if offset < 0 or n < TCP_MIN_HEADER:
        raise PacketError(f"TCP header truncated: {max(n, 0)} bytes")
    sport, dport, seq, ack, doff, flags, window, csum, urg = _HDR.unpack_from(buf, offset)
    hlen = (doff >> 4) * 4
    if hlen < TCP_MIN_HEADER:
        raise PacketError(f"TCP data offset {hlen} < 20")
    if hlen > n:
        raise PacketError(f"TCP header length {hlen} exceeds {n} bytes")
    options = bytes(buf[offset + TCP_MIN_HEADER:offset + hlen]) if hlen > TCP_MIN_HEADER else b""
    return TcpHeader(sport, dport, seq, ack, hlen, flags, window, csum, urg, options)


def tcp_checksum(src: Buffer, dst: Buffer, segment: Buffer) -> int:
    """Checksum field value for ``segment`` whose checksum field is zero."""
    return l4_checksum(src, dst, PROTO_TCP, segment)


def verify_tcp(src: Buffer, dst: Buffer, segment: Buffer) -> bool:
    """True when the TCP checksum in ``segment`` is correct."""
    return verify(segment, pseudo_header_sum(src, dst, PROTO_TCP, len(segment)))


def fix_tcp_checksum(src: Buffer, dst: Buffer, segment: bytearray | memoryview) -> int:
    """Recompute the TCP checksum of ``segment`` in place; returns the new value."""
    if len(segment) < TCP_MIN_HEADER:
        raise PacketError("TCP header truncated")
    segment[OFF_CHECKSUM] = 0
    segment[OFF_CHECKSUM + 1] = 0
    value = tcp_checksum(src, dst, segment)
    segment[OFF_CHECKSUM] = value >> 8
    segment[OFF_CHECKSUM + 1] = value & 0xFF
    return value


def build_tcp_segment(src: Buffer | str, dst: Buffer | str, sport: int, dport: int, seq: int = 0,
                      ack: int = 0, flags: int = ACK, payload: Buffer = b"", window: int = 65535,
                      options: Buffer = b"", urgent: int = 0) -> bytearray:
    """A TCP segment (header + payload) with its checksum over the pseudo-header of src/dst."""
    s = str_to_addr(src) if isinstance(src, str) else bytes(src)
    d = str_to_addr(dst) if isinstance(dst, str) else bytes(dst)
    opts = bytes(options)
    if len(opts) % 4:
        opts += b"\x00" * (4 - len(opts) % 4)  # EOL padding (RFC 9293 3.1)
    hlen = TCP_MIN_HEADER + len(opts)
    if hlen > TCP_MAX_HEADER:
        raise PacketError(f"TCP options too long: {len(opts)}")
    out = bytearray(hlen + len(payload))
    _HDR.pack_into(out, 0, sport & 0xFFFF, dport & 0xFFFF, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                   (hlen // 4) << 4, flags & 0xFF, window & 0xFFFF, 0, urgent & 0xFFFF)
    out[TCP_MIN_HEADER:hlen] = opts
    out[hlen:] = payload
    fix_tcp_checksum(s, d, out)
    return out


def build_tcp(src: Buffer | str, dst: Buffer | str, sport: int, dport: int, seq: int = 0, ack: int = 0,
              flags: int = ACK, payload: Buffer = b"", window: int = 65535, options: Buffer = b"",
              ttl: int = 64, ident: int = 0, df: bool = True) -> bytearray:
    """A complete IPv4+TCP packet with both checksums correct."""
    from natpass.packets.ipv4 import build_ipv4

    seg = build_tcp_segment(src, dst, sport, dport, seq, ack, flags, payload, window, options)
    return build_ipv4(src, dst, PROTO_TCP, seg, ttl=ttl, ident=ident, df=df)


def flags_to_str(flags: int) -> str:
    """Flag letters in tcpdump order (e.g. ``"S."`` style is avoided: ``"SYN,ACK"``)."""
    names = [(FIN, "FIN"), (SYN, "SYN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"), (URG, "URG"),
             (ECE, "ECE"), (CWR, "CWR")]
    return ",".join(name for bit, name in names if flags & bit)
