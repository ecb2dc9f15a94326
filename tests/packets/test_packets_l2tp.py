"""L2TPv2 (RFC 2661): header bits, control AVPs, ZLB, hidden AVPs, data messages."""

from __future__ import annotations

import pytest
from scapy.layers.l2tp import L2TP

from natpass.packets import PacketError
from natpass.packets import l2tp as L


def test_sccrq_round_trip_message_type_and_assigned_tunnel_id() -> None:
    msg = L.build_sccrq(assigned_tunnel_id=4242, host_name=b"lac")
    c = L.parse_control(msg)
    h = c.header
    assert h.is_control and h.length_present and h.seq_present and not h.offset_present
    assert (h.version, h.tunnel_id, h.session_id, h.ns, h.nr, h.length) == (2, 0, 0, 0, 0, len(msg))
    assert c.message_type == L.SCCRQ and c.name == "SCCRQ" and c.assigned_tunnel_id == 4242
    avp = c.find(L.AVP_ASSIGNED_TUNNEL_ID)
    assert avp is not None and avp.mandatory and not avp.hidden
    assert int.from_bytes(msg[avp.value_offset:avp.value_offset + 2], "big") == 4242
    host = c.find(L.AVP_HOST_NAME)
    assert host is not None and host.value == b"lac"


def test_icrq_icrp_carry_assigned_session_ids_and_ids_in_header() -> None:
    c = L.parse_control(L.build_icrp(peer_tunnel_id=7, peer_session_id=8, assigned_session_id=99, ns=3, nr=4))
    assert (c.header.tunnel_id, c.header.session_id, c.header.ns, c.header.nr) == (7, 8, 3, 4)
    assert c.name == "ICRP" and c.assigned_session_id == 99
    assert L.parse_control(L.build_icrq(7, 55)).assigned_session_id == 55


def test_every_named_message_type_builds_and_parses() -> None:
    assert set(L.MESSAGE_NAMES) == {1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16}
    for mt, name in L.MESSAGE_NAMES.items():
        assert L.parse_control(L.build_control_message(mt, 1, 2, 3, 4)).name == name


def test_zlb_is_a_control_message_without_avps() -> None:
    c = L.parse_control(L.build_zlb(tunnel_id=5, ns=1, nr=2))
    assert c.is_zlb and c.message_type is None and c.name == "ZLB" and c.header.length == 12


def test_hidden_avp_is_reported_not_decoded() -> None:
    msg = L.build_control_message(L.ICRQ, 1, 0, 0, 0, [
        L.build_avp(L.AVP_ASSIGNED_SESSION_ID, b"\x9a\x4f\x01\x02\x03\x04", hidden=True)])
    c = L.parse_control(msg)
    assert c.hidden_avps == [L.AVP_ASSIGNED_SESSION_ID] and c.assigned_session_id is None
    avp = c.find(L.AVP_ASSIGNED_SESSION_ID)
    assert avp is not None
    with pytest.raises(PacketError, match="hidden"):
        avp.u16()


def test_data_message_with_optional_fields_and_scapy_agrees() -> None:
    ppp = b"\xff\x03\xc0\x21\x09\x01\x00\x08\x01\x02\x03\x04"
    for kwargs in ({}, {"ns": 1, "nr": 2}, {"with_length": False}, {"offset_size": 3}, {"priority": True}):
        d = L.build_data(77, 88, ppp, **kwargs)  # type: ignore[arg-type]
        h = L.parse_l2tp(d)
        assert not h.is_control and (h.tunnel_id, h.session_id) == (77, 88)
        assert bytes(d[h.payload_offset:]) == ppp
        assert int.from_bytes(d[h.tunnel_id_offset:h.tunnel_id_offset + 2], "big") == 77
        assert int.from_bytes(d[h.session_id_offset:h.session_id_offset + 2], "big") == 88
    s = L2TP(bytes(L.build_data(77, 88, ppp, ns=1, nr=2)))
    assert s.tunnel_id == 77 and s.session_id == 88


@pytest.mark.parametrize("raw, reason", [
    (b"\xc8\x03\x00\x0c" + bytes(8), "version 3"),
    (b"\x88\x02\x00\x00\x00\x00\x00\x00\x00\x00", "L and S"),
    (b"\xca\x02\x00\x0e" + bytes(10), "O bit"),
    (b"\xc8\x02\x00\x08" + bytes(8), "does not fit"),
    (b"\xc8\x02\x01\x00" + bytes(8), "does not fit"),
    (b"\x02\x02\x00\x01\x00\x02\x00\x09", "padding runs past"),
])
def test_bad_headers_raise(raw: bytes, reason: str) -> None:
    with pytest.raises(PacketError, match=reason):
        L.parse_l2tp(raw)


def test_bad_avps_raise() -> None:
    good = L.build_sccrq(1)
    bad = bytearray(good)
    bad[12:14] = (0x8000 | 5).to_bytes(2, "big")  # AVP length 5 < 6
    with pytest.raises(PacketError, match="< 6"):
        L.parse_control(bad)
    bad = bytearray(good)
    bad[12:14] = (0x8000 | 900).to_bytes(2, "big")
    with pytest.raises(PacketError, match="runs past"):
        L.parse_control(bad)
    first_not_type = L.build_control(1, 0, 0, 0, L.avp_u16(L.AVP_ASSIGNED_TUNNEL_ID, 3))
    with pytest.raises(PacketError, match="not Message Type"):
        L.parse_control(first_not_type)
    with pytest.raises(PacketError, match="data message"):
        L.parse_control(L.build_data(1, 2, b"x"))
    for cut in range(len(good)):
        with pytest.raises(PacketError):
            L.parse_control(good[:cut])
