"""IPsec ESP (RFC 4303 section 2) and AH (RFC 4302 section 2) headers: the parts a NAT can see."""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from natpass.packets.checksum import Buffer
from natpass.packets.errors import PacketError
from natpass.packets.ipv4 import PROTO_AH, PROTO_ESP, build_ipv4

ESP_HEADER: Final = 8  # SPI + sequence number (RFC 4303 2.1, 2.2)
AH_MIN_HEADER: Final = 12  # next header, payload len, reserved, SPI, sequence (RFC 4302 2)
ESP_SPI_RESERVED_MAX: Final = 255  # RFC 4303 2.1: SPIs 1..255 reserved by IANA, 0 local use
OFF_SPI: Final = 0
AH_OFF_SPI: Final = 4

_ESP = struct.Struct("!II")
_AH = struct.Struct("!BBHII")


class EspHeader(NamedTuple):
    spi: int
    seq: int

    @property
    def payload_offset(self) -> int:
        return ESP_HEADER


class AhHeader(NamedTuple):
    next_header: int
    payload_len: int  # the raw field: AH length in 32-bit words minus 2
    spi: int
    seq: int
    icv: bytes

    @property
    def length(self) -> int:
        """AH header length in bytes: (payload_len + 2) * 4 (RFC 4302 2.2)."""
        return (self.payload_len + 2) * 4

    @property
    def payload_offset(self) -> int:
        return self.length


def parse_esp(buf: Buffer, offset: int = 0) -> EspHeader:
    """SPI and sequence number of the ESP packet at ``offset``; SPI 0 is never sent (RFC 4303 2.1)."""
    n = len(buf) - offset
    if offset < 0 or n < ESP_HEADER:
        raise PacketError(f"ESP header truncated: {max(n, 0)} bytes")
    spi, seq = _ESP.unpack_from(buf, offset)
    if spi == 0:
        raise PacketError("ESP SPI 0 is reserved and never sent")
    return EspHeader(spi, seq)


def get_spi(buf: Buffer, offset: int = 0) -> int:
    """The 32-bit SPI at ``offset`` (hot path; the caller checked the length)."""
    return int.from_bytes(buf[offset:offset + 4], "big")


def parse_ah(buf: Buffer, offset: int = 0) -> AhHeader:
    """The AH header at ``offset``; its length must be at least 12 bytes and present."""
    n = len(buf) - offset
    if offset < 0 or n < AH_MIN_HEADER:
        raise PacketError(f"AH header truncated: {max(n, 0)} bytes")
    nh, plen, _reserved, spi, seq = _AH.unpack_from(buf, offset)
    length = (plen + 2) * 4
    if length < AH_MIN_HEADER:
        raise PacketError(f"AH length {length} < 12")
    if length > n:
        raise PacketError(f"AH length {length} exceeds {n} bytes")
    if spi == 0:
        raise PacketError("AH SPI 0 is reserved and never sent")
    return AhHeader(nh, plen, spi, seq, bytes(buf[offset + AH_MIN_HEADER:offset + length]))


def build_esp(spi: int, seq: int, payload: Buffer = b"") -> bytearray:
    """An ESP header followed by ``payload`` (opaque: ciphertext, trailer and ICV)."""
    out = bytearray(ESP_HEADER + len(payload))
    _ESP.pack_into(out, 0, spi & 0xFFFFFFFF, seq & 0xFFFFFFFF)
    out[ESP_HEADER:] = payload
    return out


def build_ah(spi: int, seq: int, next_header: int, icv: Buffer = bytes(12), payload: Buffer = b"") -> bytearray:
    """An AH header (ICV padded to a 4-byte multiple; RFC 4302 2.6) followed by ``payload``."""
    icv_b = bytes(icv)
    if len(icv_b) % 4:
        icv_b += bytes(4 - len(icv_b) % 4)
    length = AH_MIN_HEADER + len(icv_b)
    if length // 4 - 2 > 0xFF:
        raise PacketError("AH ICV too long")
    out = bytearray(length + len(payload))
    _AH.pack_into(out, 0, next_header & 0xFF, length // 4 - 2, 0, spi & 0xFFFFFFFF, seq & 0xFFFFFFFF)
    out[AH_MIN_HEADER:length] = icv_b
    out[length:] = payload
    return out


def build_esp_packet(src: Buffer | str, dst: Buffer | str, spi: int, seq: int, payload: Buffer = b"",
                     ttl: int = 64) -> bytearray:
    """A complete IPv4 packet carrying ESP."""
    return build_ipv4(src, dst, PROTO_ESP, build_esp(spi, seq, payload), ttl=ttl)


def build_ah_packet(src: Buffer | str, dst: Buffer | str, spi: int, seq: int, next_header: int,
                    payload: Buffer = b"", icv: Buffer = bytes(12), ttl: int = 64) -> bytearray:
    """A complete IPv4 packet carrying AH (the ICV is not computed: no keys here)."""
    return build_ipv4(src, dst, PROTO_AH, build_ah(spi, seq, next_header, icv, payload), ttl=ttl)
