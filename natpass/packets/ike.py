"""IKE headers and payload chains (IKEv1 RFC 2408/2409, IKEv2 RFC 7296) and NAT traversal
framing on UDP 4500 (RFC 3948), with NAT-D payloads (RFC 3947, RFC 7296 2.23) for diagnosis."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from typing import Final, NamedTuple

from natpass.packets.checksum import Buffer
from natpass.packets.errors import PacketError

IKE_PORT: Final = 500
NATT_PORT: Final = 4500
IKE_HEADER: Final = 28  # RFC 7296 3.1 / RFC 2408 3.1
PAYLOAD_HEADER: Final = 4  # generic payload header (RFC 7296 3.2 / RFC 2408 3.2)
NON_ESP_MARKER: Final = b"\x00\x00\x00\x00"  # RFC 3948 2.2
NATT_KEEPALIVE: Final = b"\xff"  # RFC 3948 2.3
IKE_MAX_LENGTH: Final = 0xFFFF  # over UDP; the header field is 32 bits

# IKEv2 header flags (RFC 7296 3.1).
FLAG_RESPONSE: Final = 0x20
FLAG_VERSION: Final = 0x10
FLAG_INITIATOR: Final = 0x08
# IKEv1 header flags (RFC 2408 3.1).
V1_FLAG_ENCRYPTION: Final = 0x01
V1_FLAG_COMMIT: Final = 0x02
V1_FLAG_AUTH_ONLY: Final = 0x04
CRITICAL: Final = 0x80  # RFC 7296 3.2: critical bit of the generic payload header

# Exchange types.
V1_BASE: Final = 1
V1_IDENTITY_PROTECTION: Final = 2  # main mode
V1_AUTH_ONLY: Final = 3
V1_AGGRESSIVE: Final = 4
V1_INFORMATIONAL: Final = 5
V1_QUICK_MODE: Final = 32  # RFC 2409 5.5
V1_NEW_GROUP_MODE: Final = 33
IKE_SA_INIT: Final = 34
IKE_AUTH: Final = 35
CREATE_CHILD_SA: Final = 36
INFORMATIONAL: Final = 37
IKE_INTERMEDIATE: Final = 43  # RFC 9242
EXCHANGE_NAMES: Final[dict[int, str]] = {
    V1_BASE: "Base", V1_IDENTITY_PROTECTION: "Main Mode", V1_AUTH_ONLY: "Authentication Only",
    V1_AGGRESSIVE: "Aggressive Mode", V1_INFORMATIONAL: "Informational", V1_QUICK_MODE: "Quick Mode",
    V1_NEW_GROUP_MODE: "New Group Mode", IKE_SA_INIT: "IKE_SA_INIT", IKE_AUTH: "IKE_AUTH",
    CREATE_CHILD_SA: "CREATE_CHILD_SA", INFORMATIONAL: "INFORMATIONAL",
    IKE_INTERMEDIATE: "IKE_INTERMEDIATE",
}

# Payload types. IKEv1 (RFC 2408 3.1, RFC 3947 3.2/5.2, NAT-T drafts 130/131):
V1_SA: Final = 1
V1_PROPOSAL: Final = 2
V1_TRANSFORM: Final = 3
V1_KE: Final = 4
V1_ID: Final = 5
V1_CERT: Final = 6
V1_CR: Final = 7
V1_HASH: Final = 8
V1_SIG: Final = 9
V1_NONCE: Final = 10
V1_NOTIFY: Final = 11
V1_DELETE: Final = 12
V1_VENDOR_ID: Final = 13
V1_NAT_D: Final = 20
V1_NAT_OA: Final = 21
V1_NAT_D_DRAFT: Final = 130
V1_NAT_OA_DRAFT: Final = 131
# IKEv2 (RFC 7296 3.2, RFC 7383 for SKF):
V2_SA: Final = 33
V2_KE: Final = 34
V2_IDI: Final = 35
V2_IDR: Final = 36
V2_CERT: Final = 37
V2_CERTREQ: Final = 38
V2_AUTH: Final = 39
V2_NONCE: Final = 40
V2_NOTIFY: Final = 41
V2_DELETE: Final = 42
V2_VENDOR_ID: Final = 43
V2_TSI: Final = 44
V2_TSR: Final = 45
V2_SK: Final = 46
V2_CP: Final = 47
V2_EAP: Final = 48
V2_SKF: Final = 53
# IKEv2 notify types for NAT detection (RFC 7296 3.10.1).
NAT_DETECTION_SOURCE_IP: Final = 16388
NAT_DETECTION_DESTINATION_IP: Final = 16389

# NAT-T classes of a UDP 4500 payload (RFC 3948 2.2, 2.3).
NATT_CLASS_KEEPALIVE: Final = "keepalive"
NATT_CLASS_IKE: Final = "ike"
NATT_CLASS_ESP: Final = "esp"

_HDR = struct.Struct("!8s8sBBBBII")
_GEN = struct.Struct("!BBH")


class IkeHeader(NamedTuple):
    spi_i: bytes  # initiator SPI (IKEv1: initiator cookie)
    spi_r: bytes
    next_payload: int
    major: int
    minor: int
    exchange: int
    flags: int
    message_id: int
    length: int

    @property
    def version(self) -> int:
        return self.major

    @property
    def is_v2(self) -> bool:
        return self.major == 2

    @property
    def initiator(self) -> bool:
        """IKEv2 I bit: sent by the original initiator of the IKE SA."""
        return bool(self.flags & FLAG_INITIATOR)

    @property
    def response(self) -> bool:
        """IKEv2 R bit."""
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def encrypted(self) -> bool:
        """IKEv1 E bit: everything after the header is encrypted."""
        return self.major == 1 and bool(self.flags & V1_FLAG_ENCRYPTION)

    @property
    def exchange_name(self) -> str:
        return EXCHANGE_NAMES.get(self.exchange, f"exchange-{self.exchange}")


class IkePayload(NamedTuple):
    type: int
    critical: bool
    offset: int  # of the generic payload header, relative to the IKE header
    data: bytes  # the body after the 4-byte generic header


class NatD(NamedTuple):
    """One NAT-D hash: ``kind`` is "source" or "destination" (whose address it hashes)."""

    kind: str
    hash: bytes


def parse_ike(buf: Buffer, offset: int = 0) -> IkeHeader:
    """The IKE header at ``offset``: major version 1 or 2, length 28.. and all of it present."""
    n = len(buf) - offset
    if offset < 0 or n < IKE_HEADER:
        raise PacketError(f"IKE header truncated: {max(n, 0)} bytes")
    spi_i, spi_r, nxt, ver, exch, flags, mid, length = _HDR.unpack_from(buf, offset)
    major, minor = ver >> 4, ver & 0x0F
    if major not in (1, 2):
        raise PacketError(f"IKE major version {major} is not 1 or 2")
    if length < IKE_HEADER:
        raise PacketError(f"IKE length {length} < 28")
    if length > n:
        raise PacketError(f"IKE length {length} exceeds {n} bytes")
    if spi_i == bytes(8):
        raise PacketError("IKE initiator SPI is zero")
    return IkeHeader(spi_i, spi_r, nxt, major, minor, exch, flags, mid, length)


def ike_version(buf: Buffer, offset: int = 0) -> int:
    """1 for IKEv1, 2 for IKEv2 (validates the header)."""
    return parse_ike(buf, offset).major


def iter_payloads(buf: Buffer, offset: int = 0) -> Iterator[IkePayload]:
    """The generic payload chain of the IKE message at ``offset``, bounded by its length.

    Stops after an IKEv2 SK/SKF payload (whose content is encrypted) and yields nothing for an
    IKEv1 message with the E bit. A payload shorter than its header or running past the message
    is a PacketError.
    """
    hdr = parse_ike(buf, offset)
    if hdr.encrypted:
        return
    end = offset + hdr.length
    pos = offset + IKE_HEADER
    nxt = hdr.next_payload
    while nxt != 0:
        if pos == end:
            # The chain names a next payload but the message ends exactly here. Seen in real
            # traffic after an unassigned payload type that wraps the rest (ndpi capture, type
            # 127); tshark stops the same way. Not a truncation: nothing of a payload is cut.
            return
        if end - pos < PAYLOAD_HEADER:
            raise PacketError(f"IKE payload {nxt} header truncated at {pos - offset}")
        following, crit, plen = _GEN.unpack_from(buf, pos)
        if plen < PAYLOAD_HEADER:
            raise PacketError(f"IKE payload {nxt} length {plen} < 4")
        if pos + plen > end:
            raise PacketError(f"IKE payload {nxt} length {plen} runs past the message")
        yield IkePayload(nxt, bool(crit & CRITICAL) and hdr.is_v2, pos - offset,
                         bytes(buf[pos + PAYLOAD_HEADER:pos + plen]))
        if hdr.is_v2 and nxt in (V2_SK, V2_SKF):
            return  # the next-payload field names the first payload inside the encryption
        pos += plen
        nxt = following


def payloads(buf: Buffer, offset: int = 0) -> list[IkePayload]:
    return list(iter_payloads(buf, offset))


def nat_d_payloads(buf: Buffer, offset: int = 0) -> list[NatD]:
    """NAT-D hashes of an IKE message.

    IKEv1 (RFC 3947 3.2): the first NAT-D payload hashes the destination, the others the source.
    IKEv2 (RFC 7296 2.23): notify NAT_DETECTION_SOURCE_IP / NAT_DETECTION_DESTINATION_IP.
    """
    hdr = parse_ike(buf, offset)
    out: list[NatD] = []
    for p in iter_payloads(buf, offset):
        if hdr.major == 1 and p.type in (V1_NAT_D, V1_NAT_D_DRAFT):
            out.append(NatD("destination" if not out else "source", p.data))
        elif hdr.major == 2 and p.type == V2_NOTIFY:
            note = parse_notify_v2(p.data)
            if note[1] == NAT_DETECTION_SOURCE_IP:
                out.append(NatD("source", note[2]))
            elif note[1] == NAT_DETECTION_DESTINATION_IP:
                out.append(NatD("destination", note[2]))
    return out


def parse_notify_v2(body: Buffer) -> tuple[int, int, bytes, bytes]:
    """(protocol ID, notify type, notification data, SPI) of an IKEv2 Notify body (RFC 7296 3.10)."""
    if len(body) < 4:
        raise PacketError("IKEv2 notify payload truncated")
    proto, spi_size, ntype = struct.unpack_from("!BBH", body, 0)
    if 4 + spi_size > len(body):
        raise PacketError(f"IKEv2 notify SPI size {spi_size} runs past the payload")
    return proto, ntype, bytes(body[4 + spi_size:]), bytes(body[4:4 + spi_size])


def natd_hash_v2(spi_i: bytes, spi_r: bytes, addr: bytes, port: int) -> bytes:
    """SHA-1(SPIi | SPIr | IP | Port), the IKEv2 NAT-D value (RFC 7296 2.23)."""
    return hashlib.sha1(spi_i + spi_r + addr + port.to_bytes(2, "big")).digest()


def natd_hash_v1(cky_i: bytes, cky_r: bytes, addr: bytes, port: int, algorithm: str = "sha1") -> bytes:
    """HASH(CKY-I | CKY-R | IP | Port) with the negotiated hash (RFC 3947 3.2)."""
    return hashlib.new(algorithm, cky_i + cky_r + addr + port.to_bytes(2, "big")).digest()


def classify_natt(payload: Buffer) -> str:
    """What a UDP 4500 payload carries (RFC 3948): keepalive, IKE (after the non-ESP marker) or ESP."""
    n = len(payload)
    if n == 1 and payload[0] == 0xFF:
        return NATT_CLASS_KEEPALIVE
    if n < 4:
        raise PacketError(f"UDP-encapsulated payload of {n} bytes is neither keepalive, IKE nor ESP")
    if payload[0] == 0 and payload[1] == 0 and payload[2] == 0 and payload[3] == 0:
        if n < 4 + IKE_HEADER:
            raise PacketError(f"IKE after the non-ESP marker truncated: {n - 4} bytes")
        return NATT_CLASS_IKE
    if n < 8:
        raise PacketError(f"ESP-in-UDP truncated: {n} bytes")
    return NATT_CLASS_ESP


def build_ike_header(spi_i: bytes, spi_r: bytes, next_payload: int, exchange: int, flags: int,
                     message_id: int, length: int, major: int = 2, minor: int = 0) -> bytes:
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise PacketError("IKE SPIs are 8 bytes")
    return _HDR.pack(spi_i, spi_r, next_payload & 0xFF, ((major & 0xF) << 4) | (minor & 0xF),
                     exchange & 0xFF, flags & 0xFF, message_id & 0xFFFFFFFF, length & 0xFFFFFFFF)


def build_ike(spi_i: bytes, spi_r: bytes, exchange: int, flags: int = FLAG_INITIATOR, message_id: int = 0,
              payload_list: list[tuple[int, bytes]] | None = None, major: int = 2,
              critical: frozenset[int] = frozenset()) -> bytearray:
    """An IKE message: header + the chain of (payload type, body) in order."""
    chain = payload_list or []
    body = bytearray()
    for i, (ptype, data) in enumerate(chain):
        nxt = chain[i + 1][0] if i + 1 < len(chain) else 0
        plen = PAYLOAD_HEADER + len(data)
        if plen > 0xFFFF:
            raise PacketError("IKE payload too long")
        body += _GEN.pack(nxt, CRITICAL if ptype in critical else 0, plen) + bytes(data)
    first = chain[0][0] if chain else 0
    out = bytearray(build_ike_header(spi_i, spi_r, first, exchange, flags, message_id,
                                     IKE_HEADER + len(body), major))
    out += body
    return out


def build_notify_v2(notify_type: int, data: bytes = b"", protocol: int = 0, spi: bytes = b"") -> bytes:
    """Body of an IKEv2 Notify payload (RFC 7296 3.10)."""
    return struct.pack("!BBH", protocol, len(spi), notify_type) + spi + data


NATD_V1_ALGORITHMS: Final = ("sha1", "md5", "sha256", "sha384", "sha512")
"""Hashes tried for IKEv1 NAT-D: the negotiated one is inside the (unparsed) SA proposal."""


class NatDCheck(NamedTuple):
    """Whether the NAT-D hashes of a message match the addresses it arrived with.

    ``source_match`` False means the sender's address or port changed on the way (the sender is
    behind a NAT); ``destination_match`` False means the receiver's did (e.g. a port forward or a
    double NAT in front of it). None: the message had no hash of that kind.
    """

    source_match: bool | None
    destination_match: bool | None
    algorithm: str | None  # the hash that matched (IKEv1), "sha1" for IKEv2


def natd_check(buf: Buffer, offset: int, src: bytes, sport: int, dst: bytes, dport: int) -> NatDCheck:
    """Compare the NAT-D payloads of the IKE message at ``offset`` with the packet's addresses."""
    hdr = parse_ike(buf, offset)
    found = nat_d_payloads(buf, offset)
    if not found:
        return NatDCheck(None, None, None)
    algorithms = ("sha1",) if hdr.is_v2 else NATD_V1_ALGORITHMS
    best: NatDCheck | None = None
    for algo in algorithms:
        if hdr.is_v2:
            want_src = natd_hash_v2(hdr.spi_i, hdr.spi_r, src, sport)
            want_dst = natd_hash_v2(hdr.spi_i, hdr.spi_r, dst, dport)
        else:
            want_src = natd_hash_v1(hdr.spi_i, hdr.spi_r, src, sport, algo)
            want_dst = natd_hash_v1(hdr.spi_i, hdr.spi_r, dst, dport, algo)
        srcs = [d.hash for d in found if d.kind == "source"]
        dsts = [d.hash for d in found if d.kind == "destination"]
        s_match = (want_src in srcs) if srcs else None
        d_match = (want_dst in dsts) if dsts else None
        lengths = {len(h) for h in srcs + dsts}
        if lengths and lengths != {len(want_src)}:
            continue  # hash length says this is not the negotiated algorithm
        check = NatDCheck(s_match, d_match, algo)
        if s_match or d_match:
            return check
        best = best or check
    return best or NatDCheck(None if not any(d.kind == "source" for d in found) else False,
                             None if not any(d.kind == "destination" for d in found) else False, None)


# --- Non-raising variants for reading captures (a broken packet is just not IKE there).

REDIRECT: Final = 16407  # RFC 5685 section 10: REDIRECT notify


def peek_ike(buf: Buffer, offset: int = 0) -> IkeHeader | None:
    """The IKE header at ``offset``, or None when the bytes are not one.

    Unlike :func:`parse_ike`, the message may be cut after its header (an IP fragment, a snap
    length): only the header itself must be whole and plausible.
    """
    if offset < 0 or len(buf) - offset < IKE_HEADER:
        return None
    spi_i, spi_r, nxt, ver, exch, flags, mid, length = _HDR.unpack_from(buf, offset)
    major = ver >> 4
    if major not in (1, 2) or length < IKE_HEADER or spi_i == bytes(8):
        return None
    return IkeHeader(spi_i, spi_r, nxt, major, ver & 0x0F, exch, flags, mid, length)


def peek_payloads(buf: Buffer, offset: int = 0) -> list[IkePayload]:
    """The readable part of the payload chain: stops quietly where the chain is malformed or the
    captured bytes end, after an encrypted (SK/SKF) payload, and at once for IKEv1 with the E bit."""
    hdr = peek_ike(buf, offset)
    out: list[IkePayload] = []
    if hdr is None or hdr.encrypted:
        return out
    end = min(len(buf), offset + hdr.length)
    pos = offset + IKE_HEADER
    nxt = hdr.next_payload
    while nxt and end - pos >= PAYLOAD_HEADER and len(out) < 64:
        following, crit, plen = _GEN.unpack_from(buf, pos)
        if plen < PAYLOAD_HEADER or pos + plen > end:
            break
        out.append(IkePayload(nxt, bool(crit & CRITICAL) and hdr.is_v2, pos - offset,
                              bytes(buf[pos + PAYLOAD_HEADER:pos + plen])))
        if hdr.is_v2 and nxt in (V2_SK, V2_SKF):
            break
        pos += plen
        nxt = following
    return out


def peek_notifies(buf: Buffer, offset: int = 0) -> list[tuple[int, bytes]]:
    """(notify type, notification data) of each readable IKEv2 Notify payload (RFC 7296 3.10)."""
    out: list[tuple[int, bytes]] = []
    for p in peek_payloads(buf, offset):
        body = p.data
        if p.type == V2_NOTIFY and len(body) >= 4 and 4 + body[1] <= len(body):
            out.append(((body[2] << 8) | body[3], body[4 + body[1]:]))
    return out


def peek_nat_d(buf: Buffer, offset: int = 0) -> list[NatD]:
    """NAT-D hashes of the readable part of an IKE message (see :func:`nat_d_payloads`)."""
    hdr = peek_ike(buf, offset)
    if hdr is None:
        return []
    out: list[NatD] = []
    if hdr.is_v2:
        for ntype, data in peek_notifies(buf, offset):
            if ntype == NAT_DETECTION_SOURCE_IP:
                out.append(NatD("source", data))
            elif ntype == NAT_DETECTION_DESTINATION_IP:
                out.append(NatD("destination", data))
        return out
    for p in peek_payloads(buf, offset):
        if p.type in (V1_NAT_D, V1_NAT_D_DRAFT):
            out.append(NatD("destination" if not out else "source", p.data))
    return out


def natd_hash_matches(hashes: list[bytes], hdr: IkeHeader, addr: bytes, port: int) -> bool:
    """True when one of ``hashes`` is the NAT-D hash of ``addr:port`` for the SA of ``hdr``
    (IKEv2: SHA-1; IKEv1: each hash of :data:`NATD_V1_ALGORITHMS`, the negotiated one unknown)."""
    if not hashes:
        return False
    if hdr.is_v2:
        return natd_hash_v2(hdr.spi_i, hdr.spi_r, addr, port) in hashes
    lengths = {len(h) for h in hashes}
    for algo in NATD_V1_ALGORITHMS:
        h = natd_hash_v1(hdr.spi_i, hdr.spi_r, addr, port, algo)
        if len(h) in lengths and h in hashes:
            return True
    return False
