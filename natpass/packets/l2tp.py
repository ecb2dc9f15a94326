"""L2TPv2 (RFC 2661): header, control-message AVPs, ZLB, and builders for tests and the lab."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final, NamedTuple

from natpass.packets.checksum import Buffer
from natpass.packets.errors import PacketError

L2TP_PORT: Final = 1701
L2TP_VERSION: Final = 2

# Header flag bits of the first byte (RFC 2661 3.1).
FLAG_T: Final = 0x80  # control message
FLAG_L: Final = 0x40  # length field present
FLAG_S: Final = 0x08  # Ns/Nr present
FLAG_O: Final = 0x02  # offset size present
FLAG_P: Final = 0x01  # priority
VERSION_MASK: Final = 0x0F  # low nibble of the second byte

# AVP header (RFC 2661 4.1).
AVP_M: Final = 0x8000  # mandatory
AVP_H: Final = 0x4000  # hidden
AVP_RESERVED: Final = 0x3C00
AVP_LENGTH_MASK: Final = 0x03FF
AVP_HEADER: Final = 6

# Attribute types (RFC 2661 4.4).
AVP_MESSAGE_TYPE: Final = 0
AVP_RESULT_CODE: Final = 1
AVP_PROTOCOL_VERSION: Final = 2
AVP_FRAMING_CAPABILITIES: Final = 3
AVP_BEARER_CAPABILITIES: Final = 4
AVP_TIE_BREAKER: Final = 5
AVP_FIRMWARE_REVISION: Final = 6
AVP_HOST_NAME: Final = 7
AVP_VENDOR_NAME: Final = 8
AVP_ASSIGNED_TUNNEL_ID: Final = 9
AVP_RECEIVE_WINDOW_SIZE: Final = 10
AVP_CHALLENGE: Final = 11
AVP_CAUSE_CODE: Final = 12
AVP_CHALLENGE_RESPONSE: Final = 13
AVP_ASSIGNED_SESSION_ID: Final = 14
AVP_CALL_SERIAL_NUMBER: Final = 15
AVP_FRAMING_TYPE: Final = 19
AVP_TX_CONNECT_SPEED: Final = 24
AVP_RANDOM_VECTOR: Final = 36

# Control message types (RFC 2661 3.2).
SCCRQ: Final = 1
SCCRP: Final = 2
SCCCN: Final = 3
STOPCCN: Final = 4
HELLO: Final = 6
OCRQ: Final = 7
OCRP: Final = 8
OCCN: Final = 9
ICRQ: Final = 10
ICRP: Final = 11
ICCN: Final = 12
CDN: Final = 14
WEN: Final = 15
SLI: Final = 16
MESSAGE_NAMES: Final[dict[int, str]] = {
    SCCRQ: "SCCRQ", SCCRP: "SCCRP", SCCCN: "SCCCN", STOPCCN: "StopCCN", HELLO: "HELLO",
    OCRQ: "OCRQ", OCRP: "OCRP", OCCN: "OCCN", ICRQ: "ICRQ", ICRP: "ICRP", ICCN: "ICCN",
    CDN: "CDN", WEN: "WEN", SLI: "SLI",
}

_U16 = struct.Struct("!H")
_AVP = struct.Struct("!HHH")


class L2tpHeader(NamedTuple):
    """A parsed L2TPv2 header; offsets are relative to the L2TP header start."""

    is_control: bool
    length_present: bool
    seq_present: bool
    offset_present: bool
    priority: bool
    version: int
    length: int | None
    tunnel_id: int
    session_id: int
    ns: int | None
    nr: int | None
    offset_size: int | None
    tunnel_id_offset: int
    header_len: int  # including any offset padding: where the payload/AVPs start

    @property
    def session_id_offset(self) -> int:
        return self.tunnel_id_offset + 2

    @property
    def payload_offset(self) -> int:
        return self.header_len


class Avp(NamedTuple):
    mandatory: bool
    hidden: bool  # value is encrypted (RFC 2661 4.3): it cannot be decoded without the secret
    vendor: int
    type: int
    value: bytes
    offset: int  # of the AVP header, relative to the L2TP header

    @property
    def value_offset(self) -> int:
        return self.offset + AVP_HEADER

    def u16(self) -> int:
        if self.hidden:
            raise PacketError(f"AVP {self.type} is hidden")
        if len(self.value) != 2:
            raise PacketError(f"AVP {self.type} value is {len(self.value)} bytes, not 2")
        return (self.value[0] << 8) | self.value[1]


class L2tpControl(NamedTuple):
    header: L2tpHeader
    avps: list[Avp]

    @property
    def is_zlb(self) -> bool:
        """Zero-length body: an explicit acknowledgement with no AVPs (RFC 2661 5.8)."""
        return not self.avps

    @property
    def message_type(self) -> int | None:
        """The Message Type AVP value (None for a ZLB)."""
        if not self.avps:
            return None
        return self.avps[0].u16()

    @property
    def name(self) -> str:
        mt = self.message_type
        if mt is None:
            return "ZLB"
        return MESSAGE_NAMES.get(mt, f"message-{mt}")

    def find(self, attr: int, vendor: int = 0) -> Avp | None:
        for a in self.avps:
            if a.type == attr and a.vendor == vendor:
                return a
        return None

    @property
    def assigned_tunnel_id(self) -> int | None:
        a = self.find(AVP_ASSIGNED_TUNNEL_ID)
        return None if a is None or a.hidden else a.u16()

    @property
    def assigned_session_id(self) -> int | None:
        a = self.find(AVP_ASSIGNED_SESSION_ID)
        return None if a is None or a.hidden else a.u16()

    @property
    def hidden_avps(self) -> list[int]:
        return [a.type for a in self.avps if a.hidden]


def parse_l2tp(buf: Buffer, offset: int = 0) -> L2tpHeader:
    """The L2TPv2 header at ``offset`` (the message runs to the end of ``buf``).

    Checks version 2; control messages must have L and S set and O clear (RFC 2661 3.1); the
    length field, when present, must be >= the header and fit in ``buf``.
    """
    n = len(buf) - offset
    if offset < 0 or n < 6:
        raise PacketError(f"L2TP header truncated: {max(n, 0)} bytes")
    b0 = buf[offset]
    version = buf[offset + 1] & VERSION_MASK
    if version != L2TP_VERSION:
        raise PacketError(f"L2TP version {version} is not 2")
    t = bool(b0 & FLAG_T)
    lp = bool(b0 & FLAG_L)
    s = bool(b0 & FLAG_S)
    o = bool(b0 & FLAG_O)
    p = bool(b0 & FLAG_P)
    if t and not (lp and s):
        raise PacketError("L2TP control message without the L and S bits")
    if t and o:
        raise PacketError("L2TP control message with the O bit")
    need = 6 + (2 if lp else 0) + (4 if s else 0) + (2 if o else 0)
    if n < need:
        raise PacketError(f"L2TP header truncated: {n} < {need} bytes")
    pos = offset + 2
    length = None
    if lp:
        length = (buf[pos] << 8) | buf[pos + 1]
        pos += 2
    tid_off = pos - offset
    tunnel_id = (buf[pos] << 8) | buf[pos + 1]
    session_id = (buf[pos + 2] << 8) | buf[pos + 3]
    pos += 4
    ns = nr = None
    if s:
        ns = (buf[pos] << 8) | buf[pos + 1]
        nr = (buf[pos + 2] << 8) | buf[pos + 3]
        pos += 4
    off_size = None
    if o:
        off_size = (buf[pos] << 8) | buf[pos + 1]
        pos += 2 + off_size
    hlen = pos - offset
    limit = length if length is not None else n
    if length is not None and (length > n or length < hlen):
        raise PacketError(f"L2TP length {length} does not fit header {hlen} and {n} bytes")
    if hlen > limit:
        raise PacketError(f"L2TP offset padding runs past the message ({hlen} > {limit})")
    return L2tpHeader(t, lp, s, o, p, version, length, tunnel_id, session_id, ns, nr, off_size,
                      tid_off, hlen)


def iter_avps(buf: Buffer, start: int, end: int, base: int) -> Iterator[Avp]:
    """AVPs in ``buf[start:end]``; offsets reported relative to ``base``."""
    pos = start
    while pos < end:
        if end - pos < AVP_HEADER:
            raise PacketError(f"L2TP AVP header truncated at {pos - base}")
        flags_len, vendor, attr = _AVP.unpack_from(buf, pos)
        alen = flags_len & AVP_LENGTH_MASK
        if alen < AVP_HEADER:
            raise PacketError(f"L2TP AVP {attr} length {alen} < 6")
        if pos + alen > end:
            raise PacketError(f"L2TP AVP {attr} length {alen} runs past the message")
        yield Avp(bool(flags_len & AVP_M), bool(flags_len & AVP_H), vendor, attr,
                  bytes(buf[pos + AVP_HEADER:pos + alen]), pos - base)
        pos += alen


def parse_control(buf: Buffer, offset: int = 0) -> L2tpControl:
    """A control message: header and AVPs. A non-empty one must start with an unhidden IETF
    Message Type AVP of 2 bytes (RFC 2661 4.4.1)."""
    hdr = parse_l2tp(buf, offset)
    if not hdr.is_control:
        raise PacketError("L2TP data message, not control")
    assert hdr.length is not None
    avps = list(iter_avps(buf, offset + hdr.header_len, offset + hdr.length, offset))
    if avps:
        first = avps[0]
        if first.type != AVP_MESSAGE_TYPE or first.vendor != 0:
            raise PacketError(f"L2TP control message starts with AVP {first.type}, not Message Type")
        if first.hidden:
            raise PacketError("L2TP Message Type AVP is hidden")
        first.u16()
    return L2tpControl(hdr, avps)


def build_avp(attr: int, value: bytes, mandatory: bool = True, hidden: bool = False, vendor: int = 0) -> bytes:
    alen = AVP_HEADER + len(value)
    if alen > AVP_LENGTH_MASK:
        raise PacketError(f"L2TP AVP {attr} too long ({alen})")
    flags = (AVP_M if mandatory else 0) | (AVP_H if hidden else 0) | alen
    return _AVP.pack(flags, vendor & 0xFFFF, attr & 0xFFFF) + value


def avp_u16(attr: int, value: int, mandatory: bool = True) -> bytes:
    return build_avp(attr, _U16.pack(value & 0xFFFF), mandatory)


def avp_u32(attr: int, value: int, mandatory: bool = True) -> bytes:
    return build_avp(attr, struct.pack("!I", value & 0xFFFFFFFF), mandatory)


def build_control(tunnel_id: int, session_id: int = 0, ns: int = 0, nr: int = 0, avps: bytes = b"") -> bytearray:
    """A control message (T, L, S set) carrying the encoded ``avps`` (empty: a ZLB)."""
    length = 12 + len(avps)
    if length > 0xFFFF:
        raise PacketError("L2TP control message too long")
    out = bytearray(struct.pack("!BBHHHHH", FLAG_T | FLAG_L | FLAG_S, L2TP_VERSION, length,
                                tunnel_id & 0xFFFF, session_id & 0xFFFF, ns & 0xFFFF, nr & 0xFFFF))
    out += avps
    return out


def build_control_message(message_type: int, tunnel_id: int, session_id: int = 0, ns: int = 0, nr: int = 0,
                          avps: list[bytes] | None = None) -> bytearray:
    """A control message whose first AVP is Message Type ``message_type``, then ``avps``."""
    body = avp_u16(AVP_MESSAGE_TYPE, message_type) + b"".join(avps or [])
    return build_control(tunnel_id, session_id, ns, nr, body)


def build_zlb(tunnel_id: int, ns: int, nr: int, session_id: int = 0) -> bytearray:
    return build_control(tunnel_id, session_id, ns, nr)


def build_sccrq(assigned_tunnel_id: int, host_name: bytes = b"natpass", ns: int = 0,
                window: int = 4) -> bytearray:
    """Start-Control-Connection-Request with the AVPs RFC 2661 6.1 requires (tunnel ID 0)."""
    return build_control_message(SCCRQ, 0, 0, ns, 0, [
        avp_u16(AVP_PROTOCOL_VERSION, 0x0100),
        avp_u32(AVP_FRAMING_CAPABILITIES, 3),
        avp_u32(AVP_BEARER_CAPABILITIES, 0, mandatory=False),
        build_avp(AVP_HOST_NAME, host_name),
        avp_u16(AVP_ASSIGNED_TUNNEL_ID, assigned_tunnel_id),
        avp_u16(AVP_RECEIVE_WINDOW_SIZE, window),
    ])


def build_sccrp(peer_tunnel_id: int, assigned_tunnel_id: int, host_name: bytes = b"natpass", ns: int = 0,
                nr: int = 1, window: int = 4) -> bytearray:
    return build_control_message(SCCRP, peer_tunnel_id, 0, ns, nr, [
        avp_u16(AVP_PROTOCOL_VERSION, 0x0100),
        avp_u32(AVP_FRAMING_CAPABILITIES, 3),
        build_avp(AVP_HOST_NAME, host_name),
        avp_u16(AVP_ASSIGNED_TUNNEL_ID, assigned_tunnel_id),
        avp_u16(AVP_RECEIVE_WINDOW_SIZE, window),
    ])


def build_icrq(peer_tunnel_id: int, assigned_session_id: int, call_serial: int = 1, ns: int = 0,
               nr: int = 0) -> bytearray:
    return build_control_message(ICRQ, peer_tunnel_id, 0, ns, nr, [
        avp_u16(AVP_ASSIGNED_SESSION_ID, assigned_session_id),
        avp_u32(AVP_CALL_SERIAL_NUMBER, call_serial),
    ])


def build_icrp(peer_tunnel_id: int, peer_session_id: int, assigned_session_id: int, ns: int = 0,
               nr: int = 0) -> bytearray:
    return build_control_message(ICRP, peer_tunnel_id, peer_session_id, ns, nr, [
        avp_u16(AVP_ASSIGNED_SESSION_ID, assigned_session_id),
    ])


def build_data(tunnel_id: int, session_id: int, payload: Buffer = b"", ns: int | None = None,
               nr: int | None = None, with_length: bool = True, offset_size: int | None = None,
               priority: bool = False) -> bytearray:
    """A data message (T clear) carrying ``payload`` (a PPP frame); optional L, S, O fields."""
    flags = (FLAG_L if with_length else 0) | (FLAG_P if priority else 0)
    seq = ns is not None or nr is not None
    if seq:
        flags |= FLAG_S
    if offset_size is not None:
        flags |= FLAG_O
    head = bytearray([flags, L2TP_VERSION])
    if with_length:
        head += b"\x00\x00"
    head += struct.pack("!HH", tunnel_id & 0xFFFF, session_id & 0xFFFF)
    if seq:
        head += struct.pack("!HH", (ns or 0) & 0xFFFF, (nr or 0) & 0xFFFF)
    if offset_size is not None:
        head += _U16.pack(offset_size & 0xFFFF) + bytes(offset_size)
    out = head + bytes(payload)
    if with_length:
        if len(out) > 0xFFFF:
            raise PacketError("L2TP data message too long")
        _U16.pack_into(out, 2, len(out))
    return out


# --- Non-raising variant for reading captures.

class L2tpPeek(NamedTuple):
    """What a capture reader needs of an L2TP packet: version, control or data, message type."""

    version: int  # 2 (RFC 2661) or 3 (RFC 3931 over UDP)
    is_control: bool
    message_type: int | None  # control: the Message Type AVP value; None for data and a ZLB

    @property
    def name(self) -> str:
        """``sccrq``.. for a control message, ``zlb`` for an acknowledgement, ``data`` otherwise."""
        if not self.is_control:
            return "data"
        if self.message_type is None:
            return "zlb"
        return MESSAGE_NAMES.get(self.message_type, f"message-{self.message_type}").lower()


def peek_l2tp(buf: Buffer, offset: int = 0) -> L2tpPeek | None:
    """The version, kind and message type of an L2TP packet, or None when it is not one.

    The message may be cut after the Message Type AVP (snap length); the header rules of
    :func:`parse_l2tp` and the Message Type rule of :func:`parse_control` still apply.
    """
    n = len(buf) - offset
    if offset < 0 or n < 6:
        return None
    b0 = buf[offset]
    version = buf[offset + 1] & VERSION_MASK
    if version == 3:  # RFC 3931 4.1.2.2: T bit, then the version in the same place
        return L2tpPeek(3, bool(b0 & FLAG_T), None)
    if version != L2TP_VERSION:
        return None
    if not b0 & FLAG_T:
        return L2tpPeek(2, False, None)
    if not (b0 & FLAG_L and b0 & FLAG_S) or b0 & FLAG_O:
        return None
    start = offset + 12  # flags/version, length, tunnel and session ids, Ns, Nr
    length = (buf[offset + 2] << 8) | buf[offset + 3]
    if length < 12:
        return None
    if length == 12:
        return L2tpPeek(2, True, None)
    if len(buf) < start + 8:
        return None
    flags_len, vendor, attr = _AVP.unpack_from(buf, start)
    if attr != AVP_MESSAGE_TYPE or vendor or flags_len & AVP_H or flags_len & AVP_LENGTH_MASK != 8:
        return None
    return L2tpPeek(2, True, (buf[start + 6] << 8) | buf[start + 7])
