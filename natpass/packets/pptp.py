"""PPTP control connection messages (RFC 2637 section 2) over TCP 1723, and a sans-IO stream splitter."""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from natpass.packets.checksum import Buffer
from natpass.packets.errors import PacketError

PPTP_PORT: Final = 1723
MAGIC_COOKIE: Final = 0x1A2B3C4D  # RFC 2637 section 2: constant value of every control message
MESSAGE_TYPE_CONTROL: Final = 1
MESSAGE_TYPE_MANAGEMENT: Final = 2  # defined but unused by RFC 2637
HEADER_LEN: Final = 12  # length, PPTP message type, magic cookie, control message type, reserved0
PROTOCOL_VERSION: Final = 0x0100  # RFC 2637 2.1: version 1 revision 0

# Control message types (RFC 2637 section 2).
SCCRQ: Final = 1  # Start-Control-Connection-Request
SCCRP: Final = 2  # Start-Control-Connection-Reply
STOP_CCRQ: Final = 3  # Stop-Control-Connection-Request
STOP_CCRP: Final = 4  # Stop-Control-Connection-Reply
ECHO_RQ: Final = 5  # Echo-Request
ECHO_RP: Final = 6  # Echo-Reply
OCRQ: Final = 7  # Outgoing-Call-Request
OCRP: Final = 8  # Outgoing-Call-Reply
ICRQ: Final = 9  # Incoming-Call-Request
ICRP: Final = 10  # Incoming-Call-Reply
ICCN: Final = 11  # Incoming-Call-Connected
CCRQ: Final = 12  # Call-Clear-Request
CDN: Final = 13  # Call-Disconnect-Notify
WEN: Final = 14  # WAN-Error-Notify
SLI: Final = 15  # Set-Link-Info

NAMES: Final[dict[int, str]] = {
    SCCRQ: "Start-Control-Connection-Request", SCCRP: "Start-Control-Connection-Reply",
    STOP_CCRQ: "Stop-Control-Connection-Request", STOP_CCRP: "Stop-Control-Connection-Reply",
    ECHO_RQ: "Echo-Request", ECHO_RP: "Echo-Reply",
    OCRQ: "Outgoing-Call-Request", OCRP: "Outgoing-Call-Reply",
    ICRQ: "Incoming-Call-Request", ICRP: "Incoming-Call-Reply", ICCN: "Incoming-Call-Connected",
    CCRQ: "Call-Clear-Request", CDN: "Call-Disconnect-Notify",
    WEN: "WAN-Error-Notify", SLI: "Set-Link-Info",
}
SHORT_NAMES: Final[dict[int, str]] = {
    SCCRQ: "SCCRQ", SCCRP: "SCCRP", STOP_CCRQ: "StopCCRQ", STOP_CCRP: "StopCCRP", ECHO_RQ: "EchoRQ",
    ECHO_RP: "EchoRP", OCRQ: "OCRQ", OCRP: "OCRP", ICRQ: "ICRQ", ICRP: "ICRP", ICCN: "ICCN",
    CCRQ: "CCRQ", CDN: "CDN", WEN: "WEN", SLI: "SLI",
}

# Fixed total lengths as printed in RFC 2637 section 2 (checked against the field layouts below).
LENGTHS: Final[dict[int, int]] = {
    SCCRQ: 156, SCCRP: 156, STOP_CCRQ: 16, STOP_CCRP: 16, ECHO_RQ: 16, ECHO_RP: 20,
    OCRQ: 168, OCRP: 32, ICRQ: 220, ICRP: 24, ICCN: 28, CCRQ: 16, CDN: 148, WEN: 40, SLI: 24,
}
MAX_MESSAGE_LEN: Final = max(LENGTHS.values())

# Field layouts after the 12-byte header (RFC 2637 sections 2.1-2.15), in order.
_FIELDS: Final[dict[int, tuple[tuple[str, str], ...]]] = {
    SCCRQ: (("protocol_version", "H"), ("reserved1", "H"), ("framing_capabilities", "I"),
            ("bearer_capabilities", "I"), ("maximum_channels", "H"), ("firmware_revision", "H"),
            ("host_name", "64s"), ("vendor_string", "64s")),
    SCCRP: (("protocol_version", "H"), ("result_code", "B"), ("error_code", "B"),
            ("framing_capabilities", "I"), ("bearer_capabilities", "I"), ("maximum_channels", "H"),
            ("firmware_revision", "H"), ("host_name", "64s"), ("vendor_string", "64s")),
    STOP_CCRQ: (("reason", "B"), ("reserved1", "B"), ("reserved2", "H")),
    STOP_CCRP: (("result_code", "B"), ("error_code", "B"), ("reserved1", "H")),
    ECHO_RQ: (("identifier", "I"),),
    ECHO_RP: (("identifier", "I"), ("result_code", "B"), ("error_code", "B"), ("reserved1", "H")),
    OCRQ: (("call_id", "H"), ("call_serial_number", "H"), ("minimum_bps", "I"), ("maximum_bps", "I"),
           ("bearer_type", "I"), ("framing_type", "I"), ("packet_recv_window_size", "H"),
           ("packet_processing_delay", "H"), ("phone_number_length", "H"), ("reserved1", "H"),
           ("phone_number", "64s"), ("subaddress", "64s")),
    OCRP: (("call_id", "H"), ("peer_call_id", "H"), ("result_code", "B"), ("error_code", "B"),
           ("cause_code", "H"), ("connect_speed", "I"), ("packet_recv_window_size", "H"),
           ("packet_processing_delay", "H"), ("physical_channel_id", "I")),
    ICRQ: (("call_id", "H"), ("call_serial_number", "H"), ("bearer_type", "I"),
           ("physical_channel_id", "I"), ("dialed_number_length", "H"), ("dialing_number_length", "H"),
           ("dialed_number", "64s"), ("dialing_number", "64s"), ("subaddress", "64s")),
    ICRP: (("call_id", "H"), ("peer_call_id", "H"), ("result_code", "B"), ("error_code", "B"),
           ("packet_recv_window_size", "H"), ("packet_transmit_delay", "H"), ("reserved1", "H")),
    ICCN: (("peer_call_id", "H"), ("reserved1", "H"), ("connect_speed", "I"),
           ("packet_recv_window_size", "H"), ("packet_transmit_delay", "H"), ("framing_type", "I")),
    CCRQ: (("call_id", "H"), ("reserved1", "H")),
    CDN: (("call_id", "H"), ("result_code", "B"), ("error_code", "B"), ("cause_code", "H"),
          ("reserved1", "H"), ("call_statistics", "128s")),
    WEN: (("peer_call_id", "H"), ("reserved1", "H"), ("crc_errors", "I"), ("framing_errors", "I"),
          ("hardware_overruns", "I"), ("buffer_overruns", "I"), ("timeout_errors", "I"),
          ("alignment_errors", "I")),
    SLI: (("peer_call_id", "H"), ("reserved1", "H"), ("send_accm", "I"), ("receive_accm", "I")),
}

_HEADER = struct.Struct("!HHIHH")
_BODY: Final[dict[int, struct.Struct]] = {
    t: struct.Struct("!" + "".join(fmt for _, fmt in f)) for t, f in _FIELDS.items()
}


def _field_offset(ctrl_type: int, name: str) -> int | None:
    pos = HEADER_LEN
    for fname, fmt in _FIELDS[ctrl_type]:
        if fname == name:
            return pos
        pos += struct.calcsize("!" + fmt)
    return None


CALL_ID_OFFSET: Final[dict[int, int]] = {
    t: off for t in _FIELDS if (off := _field_offset(t, "call_id")) is not None
}
"""Offset (within the message) of the sender's own Call ID, for the types that carry one."""
PEER_CALL_ID_OFFSET: Final[dict[int, int]] = {
    t: off for t in _FIELDS if (off := _field_offset(t, "peer_call_id")) is not None
}
"""Offset (within the message) of the Peer's Call ID, for the types that carry one."""

FieldValue = int | bytes


class PptpMessage(NamedTuple):
    """One parsed control message."""

    length: int
    message_type: int
    cookie: int
    ctrl_type: int
    fields: dict[str, FieldValue]

    @property
    def name(self) -> str:
        return NAMES.get(self.ctrl_type, f"type-{self.ctrl_type}")

    @property
    def short_name(self) -> str:
        return SHORT_NAMES.get(self.ctrl_type, f"type-{self.ctrl_type}")

    @property
    def call_id(self) -> int | None:
        v = self.fields.get("call_id")
        return v if isinstance(v, int) else None

    @property
    def peer_call_id(self) -> int | None:
        v = self.fields.get("peer_call_id")
        return v if isinstance(v, int) else None


def message_length(ctrl_type: int) -> int:
    """The fixed length RFC 2637 gives for ``ctrl_type``."""
    try:
        return LENGTHS[ctrl_type]
    except KeyError:
        raise PacketError(f"unknown PPTP control message type {ctrl_type}") from None


def parse_pptp_header(buf: Buffer, offset: int = 0) -> tuple[int, int, int, int]:
    """(length, message type, magic cookie, control message type) at ``offset``, unchecked."""
    if offset < 0 or len(buf) - offset < HEADER_LEN:
        raise PacketError(f"PPTP header truncated: {max(len(buf) - offset, 0)} bytes")
    length, mtype, cookie, ctype, _ = _HEADER.unpack_from(buf, offset)
    return length, mtype, cookie, ctype


def parse_pptp(buf: Buffer, offset: int = 0) -> PptpMessage:
    """Parse and check one control message at ``offset``: cookie, message type 1, known control
    type, length equal to the RFC's fixed length for it, and all of it present."""
    length, mtype, cookie, ctype = parse_pptp_header(buf, offset)
    if cookie != MAGIC_COOKIE:
        raise PacketError(f"PPTP bad magic cookie {cookie:#010x}")
    if mtype != MESSAGE_TYPE_CONTROL:
        raise PacketError(f"PPTP message type {mtype} is not control (1)")
    expected = message_length(ctype)
    if length != expected:
        raise PacketError(f"PPTP {SHORT_NAMES[ctype]} length {length} != {expected}")
    if len(buf) - offset < length:
        raise PacketError(f"PPTP {SHORT_NAMES[ctype]} truncated: {len(buf) - offset} < {length}")
    values = _BODY[ctype].unpack_from(buf, offset + HEADER_LEN)
    fields: dict[str, FieldValue] = {name: v for (name, _), v in zip(_FIELDS[ctype], values, strict=True)}
    return PptpMessage(length, mtype, cookie, ctype, fields)


def build_pptp(ctrl_type: int, **fields: FieldValue) -> bytearray:
    """A control message of ``ctrl_type``; unspecified fields are zero, strings are NUL padded."""
    spec = _FIELDS.get(ctrl_type)
    if spec is None:
        raise PacketError(f"unknown PPTP control message type {ctrl_type}")
    known = {name for name, _ in spec}
    extra = set(fields) - known
    if extra:
        raise PacketError(f"PPTP {SHORT_NAMES[ctrl_type]} has no field(s) {sorted(extra)}")
    values: list[FieldValue] = []
    for name, fmt in spec:
        v = fields.get(name, b"" if fmt.endswith("s") else 0)
        if fmt.endswith("s"):
            if not isinstance(v, bytes | bytearray):
                raise PacketError(f"PPTP field {name} needs bytes")
            if len(v) > int(fmt[:-1]):
                raise PacketError(f"PPTP field {name} longer than {fmt[:-1]} bytes")
            values.append(bytes(v))
        else:
            if not isinstance(v, int):
                raise PacketError(f"PPTP field {name} needs an int")
            values.append(v)
    length = LENGTHS[ctrl_type]
    out = bytearray(length)
    _HEADER.pack_into(out, 0, length, MESSAGE_TYPE_CONTROL, MAGIC_COOKIE, ctrl_type, 0)
    try:
        _BODY[ctrl_type].pack_into(out, HEADER_LEN, *values)
    except struct.error as exc:
        raise PacketError(f"PPTP {SHORT_NAMES[ctrl_type]}: {exc}") from None
    return out


# One named builder per message type (RFC 2637 sections 2.1-2.15), the common fields as arguments.

def build_sccrq(host_name: bytes = b"natpass", vendor_string: bytes = b"natpass",
                framing_capabilities: int = 3, bearer_capabilities: int = 3, maximum_channels: int = 0,
                firmware_revision: int = 1) -> bytearray:
    return build_pptp(SCCRQ, protocol_version=PROTOCOL_VERSION, framing_capabilities=framing_capabilities,
                      bearer_capabilities=bearer_capabilities, maximum_channels=maximum_channels,
                      firmware_revision=firmware_revision, host_name=host_name, vendor_string=vendor_string)


def build_sccrp(result_code: int = 1, error_code: int = 0, host_name: bytes = b"natpass",
                vendor_string: bytes = b"natpass", framing_capabilities: int = 3,
                bearer_capabilities: int = 3, maximum_channels: int = 1,
                firmware_revision: int = 1) -> bytearray:
    return build_pptp(SCCRP, protocol_version=PROTOCOL_VERSION, result_code=result_code,
                      error_code=error_code, framing_capabilities=framing_capabilities,
                      bearer_capabilities=bearer_capabilities, maximum_channels=maximum_channels,
                      firmware_revision=firmware_revision, host_name=host_name, vendor_string=vendor_string)


def build_stop_ccrq(reason: int = 1) -> bytearray:
    return build_pptp(STOP_CCRQ, reason=reason)


def build_stop_ccrp(result_code: int = 1, error_code: int = 0) -> bytearray:
    return build_pptp(STOP_CCRP, result_code=result_code, error_code=error_code)


def build_echo_request(identifier: int) -> bytearray:
    return build_pptp(ECHO_RQ, identifier=identifier)


def build_echo_reply(identifier: int, result_code: int = 1, error_code: int = 0) -> bytearray:
    return build_pptp(ECHO_RP, identifier=identifier, result_code=result_code, error_code=error_code)


def build_ocrq(call_id: int, call_serial_number: int = 0, minimum_bps: int = 300,
               maximum_bps: int = 100_000_000, bearer_type: int = 3, framing_type: int = 3,
               packet_recv_window_size: int = 64, packet_processing_delay: int = 0,
               phone_number: bytes = b"") -> bytearray:
    return build_pptp(OCRQ, call_id=call_id, call_serial_number=call_serial_number,
                      minimum_bps=minimum_bps, maximum_bps=maximum_bps, bearer_type=bearer_type,
                      framing_type=framing_type, packet_recv_window_size=packet_recv_window_size,
                      packet_processing_delay=packet_processing_delay,
                      phone_number_length=len(phone_number), phone_number=phone_number)


def build_ocrp(call_id: int, peer_call_id: int, result_code: int = 1, error_code: int = 0,
               cause_code: int = 0, connect_speed: int = 100_000_000, packet_recv_window_size: int = 64,
               packet_processing_delay: int = 0, physical_channel_id: int = 0) -> bytearray:
    return build_pptp(OCRP, call_id=call_id, peer_call_id=peer_call_id, result_code=result_code,
                      error_code=error_code, cause_code=cause_code, connect_speed=connect_speed,
                      packet_recv_window_size=packet_recv_window_size,
                      packet_processing_delay=packet_processing_delay,
                      physical_channel_id=physical_channel_id)


def build_icrq(call_id: int, call_serial_number: int = 0, bearer_type: int = 3,
               physical_channel_id: int = 0, dialed_number: bytes = b"",
               dialing_number: bytes = b"") -> bytearray:
    return build_pptp(ICRQ, call_id=call_id, call_serial_number=call_serial_number,
                      bearer_type=bearer_type, physical_channel_id=physical_channel_id,
                      dialed_number_length=len(dialed_number), dialing_number_length=len(dialing_number),
                      dialed_number=dialed_number, dialing_number=dialing_number)


def build_icrp(call_id: int, peer_call_id: int, result_code: int = 1, error_code: int = 0,
               packet_recv_window_size: int = 64, packet_transmit_delay: int = 0) -> bytearray:
    return build_pptp(ICRP, call_id=call_id, peer_call_id=peer_call_id, result_code=result_code,
                      error_code=error_code, packet_recv_window_size=packet_recv_window_size,
                      packet_transmit_delay=packet_transmit_delay)


def build_iccn(peer_call_id: int, connect_speed: int = 100_000_000, packet_recv_window_size: int = 64,
               packet_transmit_delay: int = 0, framing_type: int = 3) -> bytearray:
    return build_pptp(ICCN, peer_call_id=peer_call_id, connect_speed=connect_speed,
                      packet_recv_window_size=packet_recv_window_size,
                      packet_transmit_delay=packet_transmit_delay, framing_type=framing_type)


def build_ccrq(call_id: int) -> bytearray:
    return build_pptp(CCRQ, call_id=call_id)


def build_cdn(call_id: int, result_code: int = 1, error_code: int = 0, cause_code: int = 0,
              call_statistics: bytes = b"") -> bytearray:
    return build_pptp(CDN, call_id=call_id, result_code=result_code, error_code=error_code,
                      cause_code=cause_code, call_statistics=call_statistics)


def build_wen(peer_call_id: int, crc_errors: int = 0, framing_errors: int = 0, hardware_overruns: int = 0,
              buffer_overruns: int = 0, timeout_errors: int = 0, alignment_errors: int = 0) -> bytearray:
    return build_pptp(WEN, peer_call_id=peer_call_id, crc_errors=crc_errors, framing_errors=framing_errors,
                      hardware_overruns=hardware_overruns, buffer_overruns=buffer_overruns,
                      timeout_errors=timeout_errors, alignment_errors=alignment_errors)


def build_sli(peer_call_id: int, send_accm: int = 0xFFFFFFFF, receive_accm: int = 0xFFFFFFFF) -> bytearray:
    return build_pptp(SLI, peer_call_id=peer_call_id, send_accm=send_accm, receive_accm=receive_accm)


class StreamMessage(NamedTuple):
    """A complete control message cut from the TCP byte stream."""

    offset: int  # absolute stream offset of its first byte
    data: bytes

    @property
    def ctrl_type(self) -> int:
        return (self.data[8] << 8) | self.data[9]


class PptpStream:
    """Sans-IO splitter of one direction of a PPTP control connection.

    Feed it the TCP payload bytes in stream order; it returns every message completed, each with
    its absolute stream offset (``start`` is the offset of the first byte fed, e.g. 0 or a TCP
    sequence number). The partial buffer never exceeds one message (``MAX_MESSAGE_LEN``): a length
    outside 12..MAX_MESSAGE_LEN or a bad magic cookie marks the stream broken (``broken`` holds the
    reason) and later input is ignored, since the framing can no longer be trusted.
    """

    __slots__ = ("_buf", "_buf_start", "broken", "offset", "messages")

    def __init__(self, start: int = 0) -> None:
        self._buf = bytearray()
        self._buf_start = start
        self.offset = start  # stream offset just after the last byte fed
        self.broken: str | None = None
        self.messages = 0

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held."""
        return len(self._buf)

    def feed(self, data: Buffer) -> list[StreamMessage]:
        self.offset += len(data)
        if self.broken is not None:
            return []
        self._buf += data
        out: list[StreamMessage] = []
        pos = 0
        buf = self._buf
        n = len(buf)
        while n - pos >= 2:
            length = (buf[pos] << 8) | buf[pos + 1]
            if length < HEADER_LEN or length > MAX_MESSAGE_LEN:
                self._break(f"bad length {length} at stream offset {self._buf_start + pos}")
                break
            if n - pos >= 8:
                cookie = int.from_bytes(buf[pos + 4:pos + 8], "big")
                if cookie != MAGIC_COOKIE:
                    self._break(f"bad magic cookie {cookie:#010x} at stream offset {self._buf_start + pos}")
                    break
            if n - pos < length:
                break
            out.append(StreamMessage(self._buf_start + pos, bytes(buf[pos:pos + length])))
            pos += length
        self.messages += len(out)
        if self.broken is not None:
            return out
        if pos:
            del buf[:pos]
            self._buf_start += pos
        return out

    def _break(self, reason: str) -> None:
        self.broken = reason
        self._buf = bytearray()


def peek_pptp(buf: Buffer, offset: int = 0, limit: int = 16) -> list[PptpMessage]:
    """The whole, valid control messages at the start of a TCP payload (at most ``limit``);
    stops quietly at the first byte that does not start one (a capture reader's variant)."""
    out: list[PptpMessage] = []
    pos = offset
    while len(out) < limit and len(buf) - pos >= HEADER_LEN:
        try:
            msg = parse_pptp(buf, pos)
        except PacketError:
            break
        out.append(msg)
        pos += msg.length
    return out
