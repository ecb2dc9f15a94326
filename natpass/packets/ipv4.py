"""IPv4 header (RFC 791): parse, build, field access by offset for the engine's hot path."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final, NamedTuple

from natpass.packets.checksum import Buffer, internet_checksum
from natpass.packets.errors import PacketError

# IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
PROTO_GRE: Final = 47
PROTO_ESP: Final = 50
PROTO_AH: Final = 51

IPV4_MIN_HEADER: Final = 20  # RFC 791 section 3.1: IHL >= 5 words
IPV4_MAX_HEADER: Final = 60  # IHL is 4 bits: at most 15 words
FLAG_DF: Final = 0x4000  # RFC 791 3.1 flags bit 1: Don't Fragment
FLAG_MF: Final = 0x2000  # RFC 791 3.1 flags bit 2: More Fragments
FRAG_OFFSET_MASK: Final = 0x1FFF  # fragment offset, in 8-byte units

# Field offsets inside the IPv4 header (RFC 791 section 3.1), for in-place access.
OFF_TOTAL_LENGTH: Final = 2
OFF_IDENT: Final = 4
OFF_FLAGS_FRAG: Final = 6
OFF_TTL: Final = 8
OFF_PROTO: Final = 9
OFF_CHECKSUM: Final = 10
OFF_SRC: Final = 12
OFF_DST: Final = 16

# Option types (RFC 791 3.1): the two single-byte options; every other has a length byte.
OPT_EOL: Final = 0
OPT_NOP: Final = 1
OPT_RR: Final = 7  # record route (RFC 791)
OPT_TS: Final = 68  # timestamp (RFC 791)
OPT_LSRR: Final = 131  # loose source and record route (RFC 791)
OPT_SSRR: Final = 137  # strict source and record route (RFC 791)
OPT_RA: Final = 148  # router alert (RFC 2113)
SOURCE_ROUTE_OPTIONS: Final = frozenset({OPT_LSRR, OPT_SSRR})

_HDR = struct.Struct("!BBHHHBBH4s4s")


class IPv4Header(NamedTuple):
    """A parsed IPv4 header. ``src``/``dst`` are 4-byte ``bytes``; ``payload_offset`` == ``header_len``."""

    version: int
    ihl: int
    tos: int
    total_length: int
    ident: int
    df: bool
    mf: bool
    frag_offset: int  # in bytes (the field times 8)
    ttl: int
    proto: int
    checksum: int
    src: bytes
    dst: bytes
    options: bytes
    header_len: int

    @property
    def payload_offset(self) -> int:
        return self.header_len

    @property
    def payload_length(self) -> int:
        return self.total_length - self.header_len

    @property
    def is_fragment(self) -> bool:
        return self.mf or self.frag_offset != 0


def check_options(options: Buffer) -> None:
    """Raise PacketError unless ``options`` is a well-formed RFC 791 option list."""
    n = len(options)
    i = 0
    while i < n:
        kind = options[i]
        if kind == OPT_EOL:
            return
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise PacketError(f"IPv4 option {kind} at {i} has no length byte")
        olen = options[i + 1]
        if olen < 2 or i + olen > n:
            raise PacketError(f"IPv4 option {kind} at {i} has bad length {olen}")
        i += olen


def iter_options(buf: Buffer, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(kind, offset, length) of each option in ``buf[start:end]``, in the layout IPv4 (RFC 791
    3.1) and TCP (RFC 9293 3.1) share: 0 ends the list, 1 is a one-byte no-op (not yielded),
    every other option is kind, length, data. Stops quietly at a truncated or malformed one."""
    i = start
    while i < end:
        kind = buf[i]
        if kind == OPT_EOL:
            return
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= end:
            return
        olen = buf[i + 1]
        if olen < 2 or i + olen > end:
            return
        yield kind, i, olen
        i += olen


def option_types(options: Buffer) -> list[int]:
    """The option type of every option in a well-formed list (NOPs included, EOL ends it)."""
    check_options(options)
    out: list[int] = []
    i = 0
    n = len(options)
    while i < n:
        kind = options[i]
        if kind == OPT_EOL:
            break
        out.append(kind)
        i += 1 if kind == OPT_NOP else options[i + 1]
    return out


def has_source_route(options: Buffer) -> bool:
    """True when the options carry LSRR/SSRR, which routers commonly refuse to forward
    (RFC 1812 5.2.4.1 lets them be configured to drop such packets)."""
    return any(t in SOURCE_ROUTE_OPTIONS for t in option_types(options))


def parse_ipv4(buf: Buffer, check_options_: bool = True) -> IPv4Header:
    """Parse and validate the IPv4 header at the start of ``buf``.

    Checks version 4, IHL >= 5, header and total length inside ``buf`` and total length >= header
    (bytes after ``total_length``, e.g. Ethernet padding, are allowed). The checksum is not verified
    here (see :func:`header_checksum_ok`) so that diagnosis can still read a damaged packet.
    """
    n = len(buf)
    if n < IPV4_MIN_HEADER:
        raise PacketError(f"IPv4 header truncated: {n} bytes")
    vihl, tos, total, ident, ff, ttl, proto, csum, src, dst = _HDR.unpack_from(buf, 0)
    version = vihl >> 4
    if version != 4:
        raise PacketError(f"not IPv4: version {version}")
    ihl = vihl & 0x0F
    hlen = ihl * 4
    if ihl < 5:
        raise PacketError(f"IPv4 IHL {ihl} < 5")
    if hlen > n:
        raise PacketError(f"IPv4 header length {hlen} exceeds {n} captured bytes")
    if total < hlen:
        raise PacketError(f"IPv4 total length {total} < header length {hlen}")
    if total > n:
        raise PacketError(f"IPv4 total length {total} exceeds {n} captured bytes")
    options = bytes(buf[IPV4_MIN_HEADER:hlen]) if hlen > IPV4_MIN_HEADER else b""
    if options and check_options_:
        check_options(options)
    return IPv4Header(version, ihl, tos, total, ident, bool(ff & FLAG_DF), bool(ff & FLAG_MF),
                      (ff & FRAG_OFFSET_MASK) * 8, ttl, proto, csum, src, dst, options, hlen)


def header_checksum_ok(buf: Buffer) -> bool:
    """True when the IPv4 header checksum of ``buf`` is correct (header must be present)."""
    if len(buf) < IPV4_MIN_HEADER:
        raise PacketError("IPv4 header truncated")
    hlen = (buf[0] & 0x0F) * 4
    if hlen < IPV4_MIN_HEADER or hlen > len(buf):
        raise PacketError("IPv4 header length out of range")
    return internet_checksum(buf[:hlen]) == 0


def fix_ip_checksum(buf: bytearray | memoryview) -> int:
    """Recompute the IPv4 header checksum of ``buf`` in place; returns the new value."""
    if len(buf) < IPV4_MIN_HEADER:
        raise PacketError("IPv4 header truncated")
    hlen = (buf[0] & 0x0F) * 4
    if hlen < IPV4_MIN_HEADER or hlen > len(buf):
        raise PacketError("IPv4 header length out of range")
    buf[OFF_CHECKSUM] = 0
    buf[OFF_CHECKSUM + 1] = 0
    value = internet_checksum(buf[:hlen])
    buf[OFF_CHECKSUM] = value >> 8
    buf[OFF_CHECKSUM + 1] = value & 0xFF
    return value


def build_ipv4(src: Buffer | str, dst: Buffer | str, proto: int, payload: Buffer = b"", ttl: int = 64,
               ident: int = 0, df: bool = False, tos: int = 0, options: Buffer = b"",
               mf: bool = False, frag_offset: int = 0) -> bytearray:
    """A complete IPv4 packet with a correct header checksum.

    ``frag_offset`` is in bytes and must be a multiple of 8. ``options`` is padded with EOL to a
    multiple of 4 bytes. The payload is copied as is (its own checksum is the caller's).
    """
    s = str_to_addr(src) if isinstance(src, str) else bytes(src)
    d = str_to_addr(dst) if isinstance(dst, str) else bytes(dst)
    if len(s) != 4 or len(d) != 4:
        raise PacketError("IPv4 addresses must be 4 bytes")
    opts = bytes(options)
    if len(opts) % 4:
        opts += b"\x00" * (4 - len(opts) % 4)
    hlen = IPV4_MIN_HEADER + len(opts)
    if hlen > IPV4_MAX_HEADER:
        raise PacketError(f"IPv4 options too long: {len(opts)} bytes")
    if frag_offset % 8 or not 0 <= frag_offset // 8 <= FRAG_OFFSET_MASK:
        raise PacketError(f"bad fragment offset {frag_offset}")
    total = hlen + len(payload)
    if total > 0xFFFF:
        raise PacketError(f"IPv4 packet too long: {total}")
    ff = (FLAG_DF if df else 0) | (FLAG_MF if mf else 0) | (frag_offset // 8)
    out = bytearray(total)
    _HDR.pack_into(out, 0, 0x40 | (hlen // 4), tos & 0xFF, total, ident & 0xFFFF, ff, ttl & 0xFF,
                   proto & 0xFF, 0, s, d)
    out[IPV4_MIN_HEADER:hlen] = opts
    out[hlen:] = payload
    fix_ip_checksum(out)
    return out


def addr_to_str(addr: Buffer) -> str:
    """Dotted quad of a 4-byte address."""
    if len(addr) != 4:
        raise PacketError(f"IPv4 address must be 4 bytes, got {len(addr)}")
    return f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}"


def str_to_addr(text: str) -> bytes:
    """4-byte address of a dotted quad (strict: four decimal parts 0..255)."""
    parts = text.split(".")
    if len(parts) != 4:
        raise PacketError(f"not an IPv4 address: {text!r}")
    out = bytearray(4)
    for i, part in enumerate(parts):
        if not part.isdigit() or len(part) > 3 or int(part) > 255:
            raise PacketError(f"not an IPv4 address: {text!r}")
        out[i] = int(part)
    return bytes(out)


# Hot-path accessors: no validation beyond what the engine already did with parse_ipv4.

def ihl_bytes(buf: Buffer) -> int:
    """Header length in bytes (IHL * 4)."""
    return (buf[0] & 0x0F) * 4


def get_proto(buf: Buffer) -> int:
    return buf[OFF_PROTO]


def get_src(buf: Buffer) -> bytes:
    return bytes(buf[OFF_SRC:OFF_SRC + 4])


def get_dst(buf: Buffer) -> bytes:
    return bytes(buf[OFF_DST:OFF_DST + 4])


def get_total_length(buf: Buffer) -> int:
    return (buf[OFF_TOTAL_LENGTH] << 8) | buf[OFF_TOTAL_LENGTH + 1]


def get_ttl(buf: Buffer) -> int:
    return buf[OFF_TTL]
