"""GRE: version 0 (RFC 2784 with RFC 2890 key/sequence) and PPTP's enhanced GRE version 1 (RFC 2637 4.1)."""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from natpass.packets.checksum import Buffer, internet_checksum
from natpass.packets.errors import PacketError
from natpass.packets.ipv4 import PROTO_GRE, build_ipv4

# First flag byte (RFC 2784 section 2; K and S from RFC 2890 section 2).
FLAG_C: Final = 0x80  # checksum present
FLAG_R: Final = 0x40  # routing present (RFC 1701; reserved in RFC 2784)
FLAG_K: Final = 0x20  # key present
FLAG_S: Final = 0x10  # sequence number present
FLAG_SSR: Final = 0x08  # strict source route (RFC 1701)
RECUR_MASK: Final = 0x07
# Second flag byte: RFC 2637 4.1 puts the acknowledgement-present bit A at its top bit.
FLAG_A: Final = 0x80
VERSION_MASK: Final = 0x07

GRE_VERSION_0: Final = 0
GRE_VERSION_PPTP: Final = 1  # RFC 2637 4.1 "Ver: Must contain 1 (enhanced GRE)"
PPTP_GRE_PROTO: Final = 0x880B  # RFC 2637 4.1 protocol type for PPP
GRE_BASE_HEADER: Final = 4
# In version 1 the key field is payload length (16 bits) followed by the call ID (16 bits).
V1_OFF_PAYLOAD_LENGTH: Final = 4
V1_OFF_CALL_ID: Final = 6

ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_TEB: Final = 0x6558  # transparent Ethernet bridging

_BASE = struct.Struct("!BBH")


class GreHeader(NamedTuple):
    """A parsed GRE header; offsets are relative to the GRE header start."""

    version: int
    checksum_present: bool
    key_present: bool
    seq_present: bool
    ack_present: bool  # version 1 only
    proto: int
    checksum: int | None
    key: int | None  # version 1: (payload_length << 16) | call_id
    seq: int | None
    ack: int | None
    header_len: int

    @property
    def call_id(self) -> int | None:
        """Version 1 call ID (the peer's call ID the receiver assigned)."""
        return self.key & 0xFFFF if self.version == 1 and self.key is not None else None

    @property
    def payload_length(self) -> int | None:
        return self.key >> 16 if self.version == 1 and self.key is not None else None

    @property
    def payload_offset(self) -> int:
        return self.header_len


def parse_gre(buf: Buffer, offset: int = 0) -> GreHeader:
    """Parse a GRE v0 or v1 header at ``offset``; other versions and routing are PacketError."""
    n = len(buf) - offset
    if offset < 0 or n < GRE_BASE_HEADER:
        raise PacketError(f"GRE header truncated: {max(n, 0)} bytes")
    b0, b1, proto = _BASE.unpack_from(buf, offset)
    version = b1 & VERSION_MASK
    c = bool(b0 & FLAG_C)
    k = bool(b0 & FLAG_K)
    s = bool(b0 & FLAG_S)
    a = bool(b1 & FLAG_A)
    if b0 & FLAG_R:
        raise PacketError("GRE routing (RFC 1701 R bit) is not supported")
    pos = GRE_BASE_HEADER
    checksum = key = seq = ack = None
    if version == GRE_VERSION_0:
        if a:
            raise PacketError("GRE version 0 with the acknowledgement bit set")
        need = pos + (4 if c else 0) + (4 if k else 0) + (4 if s else 0)
        if n < need:
            raise PacketError(f"GRE header truncated: {n} < {need} bytes")
        if c:
            checksum = (buf[offset + pos] << 8) | buf[offset + pos + 1]
            pos += 4
        if k:
            key = int.from_bytes(buf[offset + pos:offset + pos + 4], "big")
            pos += 4
        if s:
            seq = int.from_bytes(buf[offset + pos:offset + pos + 4], "big")
            pos += 4
    elif version == GRE_VERSION_PPTP:
        if not k:
            raise PacketError("enhanced GRE (version 1) without the key bit")
        if c:
            raise PacketError("enhanced GRE (version 1) with the checksum bit")
        if proto != PPTP_GRE_PROTO:
            raise PacketError(f"enhanced GRE protocol type {proto:#06x} is not 0x880b")
        need = pos + 4 + (4 if s else 0) + (4 if a else 0)
        if n < need:
            raise PacketError(f"GRE header truncated: {n} < {need} bytes")
        key = int.from_bytes(buf[offset + pos:offset + pos + 4], "big")
        pos += 4
        if s:
            seq = int.from_bytes(buf[offset + pos:offset + pos + 4], "big")
            pos += 4
        if a:
            ack = int.from_bytes(buf[offset + pos:offset + pos + 4], "big")
            pos += 4
    else:
        raise PacketError(f"GRE version {version} is not supported")
    return GreHeader(version, c, k, s, a, proto, checksum, key, seq, ack, pos)


def gre_version(buf: Buffer, offset: int = 0) -> int:
    """The GRE version bits (hot path; caller checked the length)."""
    return buf[offset + 1] & VERSION_MASK


def call_id_offset(buf: Buffer, offset: int = 0) -> int:
    """Absolute offset of the version 1 call ID field, for in-place rewriting."""
    hdr = parse_gre(buf, offset)
    if hdr.version != GRE_VERSION_PPTP:
        raise PacketError("GRE call ID only exists in version 1")
    return offset + V1_OFF_CALL_ID


def get_call_id(buf: Buffer, offset: int = 0) -> int:
    """Version 1 call ID at ``offset`` (hot path: no validation)."""
    p = offset + V1_OFF_CALL_ID
    return (buf[p] << 8) | buf[p + 1]


def set_call_id(buf: bytearray | memoryview, offset: int, call_id: int) -> None:
    """Overwrite the version 1 call ID in place (GRE v1 carries no checksum to fix)."""
    p = offset + V1_OFF_CALL_ID
    buf[p] = (call_id >> 8) & 0xFF
    buf[p + 1] = call_id & 0xFF


def verify_gre_checksum(buf: Buffer, offset: int = 0) -> bool:
    """True when a v0 checksum is absent or correct (computed over header and payload)."""
    hdr = parse_gre(buf, offset)
    if not hdr.checksum_present:
        return True
    return internet_checksum(buf[offset:]) == 0


def build_gre(proto: int, payload: Buffer = b"", key: int | None = None, seq: int | None = None,
              checksum: bool = False) -> bytearray:
    """A version 0 GRE header + payload (RFC 2784/2890)."""
    b0 = (FLAG_C if checksum else 0) | (FLAG_K if key is not None else 0) | (FLAG_S if seq is not None else 0)
    hlen = GRE_BASE_HEADER + (4 if checksum else 0) + (4 if key is not None else 0) + (4 if seq is not None else 0)
    out = bytearray(hlen + len(payload))
    _BASE.pack_into(out, 0, b0, GRE_VERSION_0, proto & 0xFFFF)
    pos = GRE_BASE_HEADER
    if checksum:
        pos += 4
    if key is not None:
        struct.pack_into("!I", out, pos, key & 0xFFFFFFFF)
        pos += 4
    if seq is not None:
        struct.pack_into("!I", out, pos, seq & 0xFFFFFFFF)
        pos += 4
    out[hlen:] = payload
    if checksum:
        value = internet_checksum(out)
        out[4] = value >> 8
        out[5] = value & 0xFF
    return out


def build_gre_v1(call_id: int, payload: Buffer = b"", seq: int | None = None,
                 ack: int | None = None) -> bytearray:
    """An enhanced GRE (version 1, RFC 2637 4.1) header + PPP payload."""
    if len(payload) > 0xFFFF:
        raise PacketError("enhanced GRE payload longer than 65535")
    b0 = FLAG_K | (FLAG_S if seq is not None else 0)
    b1 = (FLAG_A if ack is not None else 0) | GRE_VERSION_PPTP
    hlen = 8 + (4 if seq is not None else 0) + (4 if ack is not None else 0)
    out = bytearray(hlen + len(payload))
    struct.pack_into("!BBHHH", out, 0, b0, b1, PPTP_GRE_PROTO, len(payload), call_id & 0xFFFF)
    pos = 8
    if seq is not None:
        struct.pack_into("!I", out, pos, seq & 0xFFFFFFFF)
        pos += 4
    if ack is not None:
        struct.pack_into("!I", out, pos, ack & 0xFFFFFFFF)
        pos += 4
    out[hlen:] = payload
    return out


def build_pptp_gre(src: Buffer | str, dst: Buffer | str, call_id: int, payload: Buffer = b"",
                   seq: int | None = None, ack: int | None = None, ttl: int = 64,
                   ident: int = 0) -> bytearray:
    """A complete IPv4 packet carrying enhanced GRE."""
    return build_ipv4(src, dst, PROTO_GRE, build_gre_v1(call_id, payload, seq, ack), ttl=ttl, ident=ident)


def peek_pptp_call_id(buf: Buffer, offset: int = 0) -> int | None:
    """The call ID of an enhanced GRE (version 1, RFC 2637 4.1) header, or None when the bytes are
    not one (a capture reader's non-raising check: K set, C and R clear, protocol 0x880b)."""
    if offset < 0 or len(buf) - offset < GRE_BASE_HEADER + 4:
        return None
    b0, b1, proto = _BASE.unpack_from(buf, offset)
    if (b1 & VERSION_MASK != GRE_VERSION_PPTP or not b0 & FLAG_K or b0 & (FLAG_C | FLAG_R)
            or proto != PPTP_GRE_PROTO):
        return None
    return (buf[offset + V1_OFF_CALL_ID] << 8) | buf[offset + V1_OFF_CALL_ID + 1]
