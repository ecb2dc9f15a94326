"""The non-raising packet readers diagnose uses agree with the raising parsers and never raise."""

from __future__ import annotations

import random
import struct

import pytest

from natpass.datapath.pcap import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2, ipv4_of_frame, ipv6_of_frame
from natpass.packets import ike, l2tp, pptp
from natpass.packets.errors import PacketError
from natpass.packets.gre import build_gre, build_gre_v1, parse_gre, peek_pptp_call_id
from natpass.packets.ipproto import NAMES, IpProto, proto_name, proto_number

SPI_I = bytes(range(1, 9))
SPI_R = bytes(range(9, 17))


def _ike_with_natd(src: bytes, sport: int, dst: bytes, dport: int) -> bytearray:
    chain = [(ike.V2_SA, b"\0" * 8),
             (ike.V2_NOTIFY, ike.build_notify_v2(ike.NAT_DETECTION_SOURCE_IP,
                                                 ike.natd_hash_v2(SPI_I, SPI_R, src, sport))),
             (ike.V2_NOTIFY, ike.build_notify_v2(ike.NAT_DETECTION_DESTINATION_IP,
                                                 ike.natd_hash_v2(SPI_I, SPI_R, dst, dport))),
             (ike.V2_NOTIFY, ike.build_notify_v2(ike.REDIRECT, b"\x01\x04\xc6\x33\x64\x01"))]
    return ike.build_ike(SPI_I, SPI_R, ike.IKE_SA_INIT, ike.FLAG_RESPONSE, 0, chain)


def test_peek_ike_agrees_with_parse_ike_and_reads_natd_and_redirect() -> None:
    a, b = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 7])
    msg = _ike_with_natd(a, 500, b, 500)
    assert ike.peek_ike(msg) == ike.parse_ike(msg)
    assert [p.type for p in ike.peek_payloads(msg)] == [p.type for p in ike.iter_payloads(msg)]
    assert ike.peek_nat_d(msg) == ike.nat_d_payloads(msg)
    hdr = ike.parse_ike(msg)
    src = [n.hash for n in ike.peek_nat_d(msg) if n.kind == "source"]
    assert ike.natd_hash_matches(src, hdr, a, 500)
    assert not ike.natd_hash_matches(src, hdr, a, 501)
    assert ike.REDIRECT in [t for t, _ in ike.peek_notifies(msg)]


def test_peek_ike_reads_a_message_cut_after_its_header() -> None:
    """An IP-fragmented or snap-length-cut IKE message: parse_ike refuses it, peek_ike reads it."""
    msg = _ike_with_natd(bytes(4), 1, bytes(4), 2)
    cut = bytes(msg[:40])
    with pytest.raises(PacketError):
        ike.parse_ike(cut)
    hdr = ike.peek_ike(cut)
    assert hdr is not None and hdr.exchange == ike.IKE_SA_INIT and hdr.length == len(msg)
    assert ike.peek_nat_d(cut) == []


def test_peek_l2tp_names_control_zlb_and_data() -> None:
    sccrq = l2tp.build_sccrq(7)
    assert l2tp.peek_l2tp(sccrq) == (2, True, l2tp.SCCRQ)
    assert l2tp.peek_l2tp(sccrq).name == "sccrq"  # type: ignore[union-attr]
    assert l2tp.parse_control(sccrq).message_type == l2tp.SCCRQ
    assert l2tp.peek_l2tp(l2tp.build_zlb(7, 1, 1)).name == "zlb"  # type: ignore[union-attr]
    assert l2tp.peek_l2tp(l2tp.build_data(7, 3, b"\xff\x03")).name == "data"  # type: ignore[union-attr]
    assert l2tp.peek_l2tp(b"\xc8\x05" + bytes(10)) is None  # version 5


def test_peek_pptp_reads_consecutive_messages_and_stops_at_garbage() -> None:
    two = pptp.build_sccrq() + pptp.build_ocrq(42)
    got = pptp.peek_pptp(bytes(two) + b"garbage")
    assert [m.ctrl_type for m in got] == [pptp.SCCRQ, pptp.OCRQ]
    assert got[1].call_id == 42 == pptp.parse_pptp(two, pptp.LENGTHS[pptp.SCCRQ]).call_id


def test_peek_pptp_call_id_only_for_enhanced_gre() -> None:
    v1 = build_gre_v1(0x1234, b"\xff\x03")
    assert peek_pptp_call_id(v1) == parse_gre(v1).call_id == 0x1234
    assert peek_pptp_call_id(build_gre(0x0800, b"x", key=0x1234)) is None


def test_peek_functions_never_raise_on_random_bytes() -> None:
    rng = random.Random(13)
    for _ in range(3000):
        blob = rng.randbytes(rng.randrange(0, 90))
        if blob and rng.random() < 0.5:  # plausible first bytes make the deeper paths run
            blob = bytes([rng.choice((0xC8, 0x02, 0x30, 0x20, 0x10))]) + blob[1:]
        ike.peek_ike(blob)
        ike.peek_payloads(blob)
        ike.peek_nat_d(blob)
        ike.peek_notifies(blob)
        l2tp.peek_l2tp(blob)
        pptp.peek_pptp(blob)
        peek_pptp_call_id(blob)


def test_one_ip_protocol_table() -> None:
    assert proto_name(IpProto.GRE) == "gre" and proto_name(IpProto.ESP) == "esp"
    assert proto_name(253) == "ip253" and proto_number("ip253") == 253
    assert all(proto_number(name) == num for num, name in NAMES.items())
    assert proto_number("nonsense") is None


def test_capture_reader_hands_over_ipv6_packets() -> None:
    ip6 = bytes([0x60, 0, 0, 0, 0, 8, 17, 64]) + bytes(32) + struct.pack("!HHHH", 500, 500, 8, 0)
    eth = b"\x02" * 12 + b"\x86\xdd"
    assert ipv6_of_frame(LINKTYPE_ETHERNET, eth + ip6) == ip6
    assert ipv4_of_frame(LINKTYPE_ETHERNET, eth + ip6) == (None, None)
    vlan = b"\x02" * 12 + b"\x81\x00\x00\x05\x86\xdd"
    assert ipv6_of_frame(LINKTYPE_ETHERNET, vlan + ip6) == ip6
    sll2 = b"\x86\xdd" + bytes(18)
    assert ipv6_of_frame(LINKTYPE_LINUX_SLL2, sll2 + ip6) == ip6
    assert ipv6_of_frame(LINKTYPE_ETHERNET, b"\x02" * 12 + b"\x08\x00" + ip6) is None
