"""PPTP control messages (RFC 2637 section 2) and the sans-IO stream splitter."""

from __future__ import annotations

import struct

import pytest

from natpass.packets import PacketError, PptpStream, parse_pptp
from natpass.packets import pptp as P

BUILDERS = {
    P.SCCRQ: lambda: P.build_sccrq(host_name=b"client"),
    P.SCCRP: lambda: P.build_sccrp(result_code=1),
    P.STOP_CCRQ: lambda: P.build_stop_ccrq(reason=2),
    P.STOP_CCRP: lambda: P.build_stop_ccrp(),
    P.ECHO_RQ: lambda: P.build_echo_request(0xCAFEBABE),
    P.ECHO_RP: lambda: P.build_echo_reply(0xCAFEBABE),
    P.OCRQ: lambda: P.build_ocrq(call_id=0x0101, call_serial_number=3, phone_number=b"555"),
    P.OCRP: lambda: P.build_ocrp(call_id=0x0202, peer_call_id=0x0101),
    P.ICRQ: lambda: P.build_icrq(call_id=0x0303, dialed_number=b"1", dialing_number=b"22"),
    P.ICRP: lambda: P.build_icrp(call_id=0x0404, peer_call_id=0x0303),
    P.ICCN: lambda: P.build_iccn(peer_call_id=0x0404),
    P.CCRQ: lambda: P.build_ccrq(call_id=0x0101),
    P.CDN: lambda: P.build_cdn(call_id=0x0202, result_code=3),
    P.WEN: lambda: P.build_wen(peer_call_id=0x0101, crc_errors=5),
    P.SLI: lambda: P.build_sli(peer_call_id=0x0202),
}

# RFC 2637 section 2, as printed in the RFC's message diagrams.
RFC_LENGTHS = {1: 156, 2: 156, 3: 16, 4: 16, 5: 16, 6: 20, 7: 168, 8: 32, 9: 220, 10: 24, 11: 28,
               12: 16, 13: 148, 14: 40, 15: 24}


def test_all_fifteen_types_have_a_builder_name_and_the_rfc_length() -> None:
    assert sorted(BUILDERS) == list(range(1, 16)) == sorted(P.NAMES)
    for ctype, build in BUILDERS.items():
        msg = build()
        assert len(msg) == RFC_LENGTHS[ctype] == P.message_length(ctype)
        m = parse_pptp(msg)
        assert m.ctrl_type == ctype and m.cookie == P.MAGIC_COOKIE and m.message_type == 1
        assert m.name == P.NAMES[ctype]


def test_call_id_offsets_point_at_the_values_the_builders_wrote() -> None:
    # Types whose sender's own Call ID field exists, and those that carry the Peer's Call ID.
    assert set(P.CALL_ID_OFFSET) == {P.OCRQ, P.OCRP, P.ICRQ, P.ICRP, P.CCRQ, P.CDN}
    assert set(P.PEER_CALL_ID_OFFSET) == {P.OCRP, P.ICRP, P.ICCN, P.WEN, P.SLI}
    for ctype, build in BUILDERS.items():
        msg = build()
        m = parse_pptp(msg)
        if ctype in P.CALL_ID_OFFSET:
            off = P.CALL_ID_OFFSET[ctype]
            assert struct.unpack_from("!H", msg, off)[0] == m.call_id is not None
        else:
            assert m.call_id is None
        if ctype in P.PEER_CALL_ID_OFFSET:
            off = P.PEER_CALL_ID_OFFSET[ctype]
            assert struct.unpack_from("!H", msg, off)[0] == m.peer_call_id is not None
        else:
            assert m.peer_call_id is None


def test_round_trip_keeps_every_field() -> None:
    msg = P.build_ocrp(call_id=7, peer_call_id=9, result_code=2, error_code=3, cause_code=4,
                       connect_speed=5, packet_recv_window_size=6, packet_processing_delay=8,
                       physical_channel_id=10)
    f = parse_pptp(msg).fields
    assert (f["call_id"], f["peer_call_id"], f["result_code"], f["error_code"], f["cause_code"],
            f["connect_speed"], f["packet_recv_window_size"], f["packet_processing_delay"],
            f["physical_channel_id"]) == (7, 9, 2, 3, 4, 5, 6, 8, 10)
    host = parse_pptp(P.build_sccrq(host_name=b"pns.example")).fields["host_name"]
    assert isinstance(host, bytes) and host.rstrip(b"\0") == b"pns.example"


def test_bad_cookie_wrong_length_and_wrong_message_type_are_rejected() -> None:
    good = P.build_icrp(1, 2)
    bad = bytearray(good)
    bad[4:8] = b"\x1a\x2b\x3c\x4e"
    with pytest.raises(PacketError, match="cookie"):
        parse_pptp(bad)
    bad = bytearray(good)
    bad[0:2] = b"\x00\x20"
    with pytest.raises(PacketError, match="length"):
        parse_pptp(bad + bytes(8))
    bad = bytearray(good)
    bad[2:4] = b"\x00\x02"
    with pytest.raises(PacketError, match="not control"):
        parse_pptp(bad)
    bad = bytearray(good)
    bad[8:10] = b"\x00\x10"
    with pytest.raises(PacketError, match="unknown"):
        parse_pptp(bad)
    for cut in range(len(good)):
        with pytest.raises(PacketError):
            parse_pptp(good[:cut])


def test_build_rejects_unknown_fields_and_oversized_strings() -> None:
    with pytest.raises(PacketError):
        P.build_pptp(P.ICRP, no_such_field=1)
    with pytest.raises(PacketError):
        P.build_sccrq(host_name=b"x" * 65)
    with pytest.raises(PacketError):
        P.build_pptp(99)
    with pytest.raises(PacketError):
        P.build_ccrq(call_id=0x10000)


def test_stream_several_messages_in_one_segment_with_offsets() -> None:
    msgs = [P.build_sccrq(), P.build_ocrq(5), P.build_echo_request(1)]
    s = PptpStream(start=1000)
    out = s.feed(b"".join(msgs))
    assert [m.ctrl_type for m in out] == [P.SCCRQ, P.OCRQ, P.ECHO_RQ]
    assert [m.offset for m in out] == [1000, 1156, 1324]
    assert [m.data for m in out] == [bytes(m) for m in msgs]
    assert s.pending == 0 and s.broken is None and s.offset == 1340


def test_stream_message_split_over_segments_byte_by_byte() -> None:
    data = bytes(P.build_icrq(9)) + bytes(P.build_iccn(9))
    s = PptpStream()
    got = []
    for i in range(len(data)):
        got += s.feed(data[i:i + 1])
        assert s.pending <= P.MAX_MESSAGE_LEN
    assert [(m.offset, m.ctrl_type) for m in got] == [(0, P.ICRQ), (220, P.ICCN)]


@pytest.mark.parametrize("garbage, reason", [
    (b"\xff\xff" + bytes(10), "bad length 65535"),
    (b"\x00\x05" + bytes(10), "bad length 5"),
    (b"\x00\x10\x00\x01\xde\xad\xbe\xef" + bytes(8), "cookie"),
])
def test_stream_garbage_marks_it_broken_and_stops_buffering(garbage: bytes, reason: str) -> None:
    s = PptpStream()
    first = s.feed(bytes(P.build_echo_request(1)) + garbage)
    assert len(first) == 1 and s.broken is not None and reason in s.broken
    assert s.feed(bytes(100_000)) == [] and s.pending == 0


def test_stream_oversized_length_is_detected_before_the_body_arrives() -> None:
    s = PptpStream()
    s.feed(b"\x01")
    assert s.broken is None
    s.feed(b"\x00")  # length 256 > the longest message (220)
    assert s.broken is not None and s.pending == 0


def test_stream_counts_messages_delivered_before_it_broke() -> None:
    s = PptpStream()
    s.feed(bytes(P.build_echo_request(1)) + bytes(P.build_echo_reply(1)) + b"\x00\x01garbage")
    assert s.messages == 2 and s.broken is not None
