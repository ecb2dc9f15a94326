"""ICMP for IPv4 (RFC 792, RFC 1812 section 4.3): queries, errors with their embedded packet."""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from natpass.packets.checksum import Buffer, internet_checksum
from natpass.packets.errors import PacketError
from natpass.packets.ipv4 import (
    IPV4_MIN_HEADER,
    PROTO_ICMP,
    build_ipv4,
    str_to_addr,
)

# Types (RFC 792; RFC 950 address mask).
ECHO_REPLY: Final = 0
DEST_UNREACHABLE: Final = 3
SOURCE_QUENCH: Final = 4
REDIRECT: Final = 5
ECHO_REQUEST: Final = 8
TIME_EXCEEDED: Final = 11
PARAMETER_PROBLEM: Final = 12
TIMESTAMP_REQUEST: Final = 13
TIMESTAMP_REPLY: Final = 14
INFO_REQUEST: Final = 15
INFO_REPLY: Final = 16
ADDRESS_MASK_REQUEST: Final = 17
ADDRESS_MASK_REPLY: Final = 18

# Destination unreachable codes (RFC 792; RFC 1812 5.2.7.1 adds 6..15).
NET_UNREACHABLE: Final = 0
HOST_UNREACHABLE: Final = 1
PROTOCOL_UNREACHABLE: Final = 2
PORT_UNREACHABLE: Final = 3
FRAG_NEEDED: Final = 4  # "fragmentation needed and DF set"; next-hop MTU in bytes 6-7 (RFC 1191)
SOURCE_ROUTE_FAILED: Final = 5
COMM_ADMIN_PROHIBITED: Final = 13  # RFC 1812 5.2.7.1

# Time exceeded codes (RFC 792).
TTL_EXCEEDED_IN_TRANSIT: Final = 0
FRAG_REASSEMBLY_TIME_EXCEEDED: Final = 1

ICMP_HEADER: Final = 8
OFF_TYPE: Final = 0
OFF_CODE: Final = 1
OFF_CHECKSUM: Final = 2
OFF_IDENT: Final = 4  # echo/timestamp/info/mask identifier, the "port" a NAT rewrites (RFC 3022)
OFF_SEQ: Final = 6
OFF_MTU: Final = 6  # next-hop MTU of frag-needed (RFC 1191 section 4)
OFF_POINTER: Final = 4  # parameter problem pointer
OFF_GATEWAY: Final = 4  # redirect gateway address

# RFC 1812 4.3.2.3: an ICMP error datagram SHOULD be as long as possible without exceeding 576.
ICMP_ERROR_MAX_TOTAL: Final = 576
# RFC 792: the error carries the original IP header plus the first 64 bits of its data.
ICMP_ERROR_MIN_INNER_DATA: Final = 8

QUERY_TYPES: Final = frozenset({ECHO_REPLY, ECHO_REQUEST, TIMESTAMP_REQUEST, TIMESTAMP_REPLY,
                                INFO_REQUEST, INFO_REPLY, ADDRESS_MASK_REQUEST, ADDRESS_MASK_REPLY})
ERROR_TYPES: Final = frozenset({DEST_UNREACHABLE, SOURCE_QUENCH, REDIRECT, TIME_EXCEEDED,
                                PARAMETER_PROBLEM})
REQUEST_TYPES: Final = frozenset({ECHO_REQUEST, TIMESTAMP_REQUEST, INFO_REQUEST, ADDRESS_MASK_REQUEST})

_HDR = struct.Struct("!BBHHH")
_TS = struct.Struct("!III")
_INNER_IP = struct.Struct("!BBHHHBBH4s4s")


def is_query(icmp_type: int) -> bool:
    """Query/reply messages carry an identifier a NAT maps like a port."""
    return icmp_type in QUERY_TYPES


def is_error(icmp_type: int) -> bool:
    """Error messages embed the IP header + 8 bytes of the packet that caused them."""
    return icmp_type in ERROR_TYPES


class IcmpHeader(NamedTuple):
    type: int
    code: int
    checksum: int
    rest: int  # the 32-bit "rest of header" word


class IcmpQuery(NamedTuple):
    """Echo / timestamp / info / address-mask message."""

    type: int
    code: int
    checksum: int
    ident: int
    seq: int
    originate: int  # timestamp messages only (0 otherwise)
    receive: int
    transmit: int
    data_offset: int  # offset of the data after the fixed part, relative to the ICMP header


class InnerPacket(NamedTuple):
    """The packet quoted inside an ICMP error, parsed as far as it was quoted."""

    offset: int  # where the inner IP header starts, relative to the ICMP header
    available: int  # bytes of the inner packet actually present
    header_len: int
    total_length: int  # what the inner header claims (may exceed ``available``)
    proto: int
    src: bytes
    dst: bytes
    ttl: int
    ident: int
    frag_offset: int
    mf: bool
    l4_available: int  # bytes after the inner IP header that are present (0..)
    sport: int | None  # TCP/UDP ports (or ICMP identifier as ``sport``) when quoted
    dport: int | None

    @property
    def l4_offset(self) -> int:
        return self.offset + self.header_len

    @property
    def truncated(self) -> bool:
        return self.available < self.total_length


class IcmpError(NamedTuple):
    type: int
    code: int
    checksum: int
    mtu: int  # next-hop MTU for frag-needed, else 0
    pointer: int  # parameter problem pointer, else 0
    gateway: bytes  # redirect gateway, else b""
    inner: InnerPacket


def parse_icmp_header(buf: Buffer, offset: int = 0) -> IcmpHeader:
    n = len(buf) - offset
    if offset < 0 or n < ICMP_HEADER:
        raise PacketError(f"ICMP header truncated: {max(n, 0)} bytes")
    t, c, csum, a, b = _HDR.unpack_from(buf, offset)
    return IcmpHeader(t, c, csum, (a << 16) | b)


def parse_query(buf: Buffer, offset: int = 0) -> IcmpQuery:
    """Parse an echo/timestamp/info/mask message at ``offset`` (the ICMP message runs to the end)."""
    n = len(buf) - offset
    if offset < 0 or n < ICMP_HEADER:
        raise PacketError(f"ICMP header truncated: {max(n, 0)} bytes")
    t, c, csum, ident, seq = _HDR.unpack_from(buf, offset)
    if t not in QUERY_TYPES:
        raise PacketError(f"ICMP type {t} is not a query")
    if t in (TIMESTAMP_REQUEST, TIMESTAMP_REPLY):
        if n < ICMP_HEADER + 12:
            raise PacketError(f"ICMP timestamp truncated: {n} bytes")
        o, r, x = _TS.unpack_from(buf, offset + ICMP_HEADER)
        return IcmpQuery(t, c, csum, ident, seq, o, r, x, ICMP_HEADER + 12)
    return IcmpQuery(t, c, csum, ident, seq, 0, 0, 0, ICMP_HEADER)


def parse_inner(buf: Buffer, offset: int) -> InnerPacket:
    """Parse the IP header quoted at ``offset`` leniently: its total length may exceed what is there.

    Needs the whole quoted IP header (20..60 bytes); the ports are reported only when their four
    bytes are present.
    """
    avail = len(buf) - offset
    if offset < 0 or avail < IPV4_MIN_HEADER:
        raise PacketError(f"ICMP error: quoted IP header truncated ({max(avail, 0)} bytes)")
    vihl, _tos, total, ident, ff, ttl, proto, _csum, src, dst = _INNER_IP.unpack_from(buf, offset)
    if vihl >> 4 != 4:
        raise PacketError(f"ICMP error: quoted packet is not IPv4 (version {vihl >> 4})")
    hlen = (vihl & 0x0F) * 4
    if hlen < IPV4_MIN_HEADER:
        raise PacketError(f"ICMP error: quoted IHL {hlen // 4} < 5")
    if hlen > avail:
        raise PacketError(f"ICMP error: quoted IP header ({hlen}) longer than the {avail} bytes quoted")
    if total < hlen:
        raise PacketError(f"ICMP error: quoted total length {total} < header {hlen}")
    # Trailing bytes beyond the quoted packet's own length (padding) are not part of it.
    available = min(avail, total)
    l4 = available - hlen
    sport = dport = None
    frag = (ff & 0x1FFF) * 8
    if l4 >= 4 and frag == 0:
        p = offset + hlen
        if proto == PROTO_ICMP:
            if l4 >= 6:
                sport = dport = (buf[p + 4] << 8) | buf[p + 5]
        else:
            sport = (buf[p] << 8) | buf[p + 1]
            dport = (buf[p + 2] << 8) | buf[p + 3]
    return InnerPacket(offset, available, hlen, total, proto, bytes(src), bytes(dst), ttl, ident, frag,
                       bool(ff & 0x2000), l4, sport, dport)


def parse_error(buf: Buffer, offset: int = 0) -> IcmpError:
    """Parse an ICMP error message at ``offset`` and the packet it quotes."""
    n = len(buf) - offset
    if offset < 0 or n < ICMP_HEADER:
        raise PacketError(f"ICMP header truncated: {max(n, 0)} bytes")
    t, c, csum, a, b = _HDR.unpack_from(buf, offset)
    if t not in ERROR_TYPES:
        raise PacketError(f"ICMP type {t} is not an error")
    mtu = b if (t == DEST_UNREACHABLE and c == FRAG_NEEDED) else 0
    pointer = (a >> 8) if t == PARAMETER_PROBLEM else 0
    gateway = bytes(buf[offset + 4:offset + 8]) if t == REDIRECT else b""
    inner = parse_inner(buf, offset + ICMP_HEADER)
    return IcmpError(t, c, csum, mtu, pointer, gateway, inner._replace(offset=ICMP_HEADER))


def verify_icmp(message: Buffer) -> bool:
    """True when the checksum over the whole ICMP message is correct."""
    if len(message) < ICMP_HEADER:
        raise PacketError("ICMP header truncated")
    return internet_checksum(message) == 0


def fix_icmp_checksum(message: bytearray | memoryview) -> int:
    """Recompute the ICMP checksum of ``message`` (ICMP header to end) in place."""
    if len(message) < ICMP_HEADER:
        raise PacketError("ICMP header truncated")
    message[OFF_CHECKSUM] = 0
    message[OFF_CHECKSUM + 1] = 0
    value = internet_checksum(message)
    message[OFF_CHECKSUM] = value >> 8
    message[OFF_CHECKSUM + 1] = value & 0xFF
    return value


def build_icmp(icmp_type: int, code: int, rest: int = 0, data: Buffer = b"") -> bytearray:
    """An ICMP message (header + data) with its checksum."""
    out = bytearray(ICMP_HEADER + len(data))
    _HDR.pack_into(out, 0, icmp_type & 0xFF, code & 0xFF, 0, (rest >> 16) & 0xFFFF, rest & 0xFFFF)
    out[ICMP_HEADER:] = data
    fix_icmp_checksum(out)
    return out


def build_echo(src: Buffer | str, dst: Buffer | str, ident: int, seq: int, payload: Buffer = b"",
               reply: bool = False, ttl: int = 64) -> bytearray:
    """A complete IPv4 echo request (or reply) packet."""
    msg = build_icmp(ECHO_REPLY if reply else ECHO_REQUEST, 0,
                     ((ident & 0xFFFF) << 16) | (seq & 0xFFFF), payload)
    return build_ipv4(src, dst, PROTO_ICMP, msg, ttl=ttl)


def build_timestamp(src: Buffer | str, dst: Buffer | str, ident: int, seq: int, originate: int = 0,
                    receive: int = 0, transmit: int = 0, reply: bool = False) -> bytearray:
    """A complete IPv4 timestamp request (or reply) packet (RFC 792)."""
    msg = build_icmp(TIMESTAMP_REPLY if reply else TIMESTAMP_REQUEST, 0,
                     ((ident & 0xFFFF) << 16) | (seq & 0xFFFF), _TS.pack(originate, receive, transmit))
    return build_ipv4(src, dst, PROTO_ICMP, msg)


def may_send_error_about(original: Buffer) -> bool:
    """RFC 1812 4.3.2.7: never an ICMP error about an ICMP error, a non-first fragment, a packet
    to a multicast or broadcast address, or one from an address that does not name one host
    (0/8, 127/8, multicast, class E). Directed broadcasts and link-layer broadcast are the
    caller's to check: they depend on the interface."""
    if len(original) < IPV4_MIN_HEADER or original[0] >> 4 != 4:
        return False
    hlen = (original[0] & 0x0F) * 4
    if hlen < IPV4_MIN_HEADER:
        return False
    frag = ((original[6] & 0x1F) << 8) | original[7]
    if frag:
        return False
    src0 = original[12]
    if src0 == 0 or src0 >= 224 or src0 == 127:
        return False  # unspecified, loopback, multicast, class E or limited broadcast source
    if original[16] >= 224:
        return False  # multicast or limited-broadcast destination
    if original[9] == PROTO_ICMP and frag == 0:
        if len(original) < hlen + 1:
            return False
        if original[hlen] in ERROR_TYPES:
            return False
    return True


def build_error(original_packet: Buffer, icmp_type: int, code: int, src_addr: Buffer | str,
                mtu: int = 0, pointer: int = 0, gateway: Buffer | str = b"", ttl: int = 64,
                tos: int = 0xC0) -> bytearray:
    """A complete IPv4 ICMP error about ``original_packet``, sent from ``src_addr`` to its source.

    Quotes the original IP header and as much of its data as fits in 576 bytes in all
    (RFC 1812 4.3.2.3; at least the 8 bytes RFC 792 requires). Precedence 6 (``tos`` 0xC0) per
    RFC 1812 4.3.2.5. ``mtu`` fills the next-hop MTU of frag-needed (RFC 1191).
    """
    if icmp_type not in ERROR_TYPES:
        raise PacketError(f"ICMP type {icmp_type} is not an error")
    n = len(original_packet)
    if n < IPV4_MIN_HEADER or original_packet[0] >> 4 != 4:
        raise PacketError("original packet is not IPv4")
    hlen = (original_packet[0] & 0x0F) * 4
    total = (original_packet[2] << 8) | original_packet[3]
    if hlen < IPV4_MIN_HEADER or hlen > n or total < hlen:
        raise PacketError("original packet has a bad IPv4 header")
    limit = ICMP_ERROR_MAX_TOTAL - IPV4_MIN_HEADER - ICMP_HEADER
    quote = bytes(original_packet[:min(n, total, limit)])
    if icmp_type == DEST_UNREACHABLE and code == FRAG_NEEDED:
        rest = mtu & 0xFFFF
    elif icmp_type == PARAMETER_PROBLEM:
        rest = (pointer & 0xFF) << 24
    elif icmp_type == REDIRECT:
        gw = str_to_addr(gateway) if isinstance(gateway, str) else bytes(gateway)
        if len(gw) != 4:
            raise PacketError("redirect needs a 4-byte gateway")
        rest = int.from_bytes(gw, "big")
    else:
        rest = 0
    msg = build_icmp(icmp_type, code, rest, quote)
    dst = bytes(original_packet[12:16])
    return build_ipv4(src_addr, dst, PROTO_ICMP, msg, ttl=ttl, tos=tos)
