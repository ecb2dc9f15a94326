"""Packets built by natpass, written with natpass's pcap writer, decoded independently by tshark."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tshark_check import bad_checksums, decode, tshark_available

from natpass.datapath.pcap import PcapWriter
from natpass.packets import esp, gre, icmp, ike, ipv4, l2tp, pptp, tcp, udp

pytestmark = pytest.mark.skipif(not tshark_available(), reason="tshark not installed")

PNS, PAC = "192.168.1.10", "203.0.113.20"
LCP_ECHO = b"\xff\x03\xc0\x21\x09\x01\x00\x08\x01\x02\x03\x04"


def values(tree: Any, key: str) -> Iterator[str]:
    """Every value of ``key`` anywhere in a tshark JSON layer tree."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == key:
                if isinstance(v, list):
                    yield from (str(x) for x in v)
                else:
                    yield str(v)
            yield from values(v, key)
    elif isinstance(tree, list):
        for item in tree:
            yield from values(item, key)


def first(frame: dict[str, Any], key: str) -> str:
    found = list(values(frame, key))
    assert found, f"tshark shows no {key} in {sorted(frame)}"
    return found[0]


def write(path: Path, packets: list[bytearray], linktype: str = "raw") -> list[dict[str, Any]]:
    with PcapWriter(path, linktype=linktype) as w:
        for i, p in enumerate(packets):
            w.write(p, 1_700_000_000 + i * 0.001)
    assert bad_checksums(path) == []
    # Repeated layers/fields (two PPTP messages, two Notify payloads) must not overwrite each other.
    frames = decode(path, "--no-duplicate-keys")
    assert len(frames) == len(packets)
    for f in frames:
        assert "_ws.malformed" not in f and "_ws.expert" not in str(f.get("_ws.malformed", "")), f
    return frames


PPTP_MESSAGES = [
    (pptp.SCCRQ, pptp.build_sccrq(), None, None),
    (pptp.SCCRP, pptp.build_sccrp(), None, None),
    (pptp.ECHO_RQ, pptp.build_echo_request(77), None, None),
    (pptp.ECHO_RP, pptp.build_echo_reply(77), None, None),
    (pptp.OCRQ, pptp.build_ocrq(call_id=0x1001, call_serial_number=5), 0x1001, None),
    (pptp.OCRP, pptp.build_ocrp(call_id=0x2002, peer_call_id=0x1001), 0x2002, 0x1001),
    (pptp.ICRQ, pptp.build_icrq(call_id=0x3003), 0x3003, None),
    (pptp.ICRP, pptp.build_icrp(call_id=0x4004, peer_call_id=0x3003), 0x4004, 0x3003),
    (pptp.ICCN, pptp.build_iccn(peer_call_id=0x4004), None, 0x4004),
    (pptp.SLI, pptp.build_sli(peer_call_id=0x2002), None, 0x2002),
    (pptp.WEN, pptp.build_wen(peer_call_id=0x1001, crc_errors=3), None, 0x1001),
    (pptp.CCRQ, pptp.build_ccrq(call_id=0x1001), 0x1001, None),
    (pptp.CDN, pptp.build_cdn(call_id=0x2002, result_code=3), 0x2002, None),
    (pptp.STOP_CCRQ, pptp.build_stop_ccrq(), None, None),
    (pptp.STOP_CCRP, pptp.build_stop_ccrp(), None, None),
]


def test_tshark_decodes_all_fifteen_pptp_messages_with_their_call_ids(tmp_path: Path) -> None:
    packets = []
    seq = {True: 1000, False: 5000}
    for i, (_, msg, _, _) in enumerate(PPTP_MESSAGES):
        from_pns = i % 2 == 0
        s, d, sp, dp = (PNS, PAC, 40000, 1723) if from_pns else (PAC, PNS, 1723, 40000)
        packets.append(tcp.build_tcp(s, d, sp, dp, seq=seq[from_pns], ack=seq[not from_pns],
                                     flags=tcp.ACK | tcp.PSH, payload=msg, ident=i))
        seq[from_pns] += len(msg)
    frames = write(tmp_path / "pptp.pcap", packets, linktype="ethernet")
    for frame, (ctype, msg, call_id, peer) in zip(frames, PPTP_MESSAGES, strict=True):
        assert int(first(frame, "pptp.control_message_type")) == ctype
        assert int(first(frame, "pptp.length")) == len(msg) == pptp.LENGTHS[ctype]
        if call_id is not None:
            assert int(first(frame, "pptp.call_id")) == call_id
        if peer is not None:
            assert int(first(frame, "pptp.peer_call_id")) == peer
        assert first(frame, "tcp.checksum.status") == "1" and first(frame, "ip.checksum.status") == "1"


def test_tshark_decodes_enhanced_gre_call_id_sequence_and_ack(tmp_path: Path) -> None:
    frames = write(tmp_path / "gre.pcap", [
        gre.build_pptp_gre(PNS, PAC, 0xABCD, LCP_ECHO, seq=7, ack=6),
        gre.build_pptp_gre(PAC, PNS, 0x1234, LCP_ECHO, seq=1),
        gre.build_pptp_gre(PAC, PNS, 0x1234, b"", ack=9),
    ])
    assert int(first(frames[0], "gre.key.call_id")) == 0xABCD
    assert int(first(frames[0], "gre.key.payload_length")) == len(LCP_ECHO)
    assert (int(first(frames[0], "gre.sequence_number")), int(first(frames[0], "gre.ack_number"))) == (7, 6)
    assert first(frames[0], "gre.flags.version") == "1" and first(frames[0], "gre.flags.ack") == "1"
    assert int(first(frames[1], "gre.key.call_id")) == 0x1234 and not list(values(frames[1], "gre.ack_number"))
    assert int(first(frames[2], "gre.ack_number")) == 9 and first(frames[0], "ppp.protocol") == "0xc021"


def test_tshark_verifies_gre_v0_checksum_key_and_sequence(tmp_path: Path) -> None:
    inner = udp.build_udp("192.0.2.1", "192.0.2.2", 1, 2, b"inner")
    frames = write(tmp_path / "gre0.pcap", [
        ipv4.build_ipv4(PNS, PAC, ipv4.PROTO_GRE, gre.build_gre(0x0800, inner, key=0x01020304, seq=99, checksum=True))])
    f = frames[0]
    assert first(f, "gre.checksum.status") == "1"
    assert int(first(f, "gre.key"), 16) == 0x01020304 and int(first(f, "gre.sequence_number")) == 99
    assert list(values(f, "ip.src"))[-1] == "192.0.2.1"  # the inner packet was decoded too


def test_tshark_decodes_l2tp_tunnel_session_ids_and_avps(tmp_path: Path) -> None:
    msgs = [
        l2tp.build_sccrq(assigned_tunnel_id=0x0A0A),
        l2tp.build_sccrp(peer_tunnel_id=0x0A0A, assigned_tunnel_id=0x0B0B),
        l2tp.build_control_message(l2tp.SCCCN, 0x0B0B, 0, 1, 1),
        l2tp.build_icrq(peer_tunnel_id=0x0B0B, assigned_session_id=0x0C0C, ns=2, nr=1),
        l2tp.build_icrp(peer_tunnel_id=0x0A0A, peer_session_id=0x0C0C, assigned_session_id=0x0D0D, ns=1, nr=3),
        l2tp.build_zlb(tunnel_id=0x0A0A, ns=2, nr=3),
        l2tp.build_data(0x0B0B, 0x0D0D, LCP_ECHO, ns=0, nr=0),
        l2tp.build_data(0x0A0A, 0x0C0C, LCP_ECHO, with_length=False),
    ]
    frames = write(tmp_path / "l2tp.pcap", [udp.build_udp(PNS, PAC, 1701, 1701, m) for m in msgs])
    expect_ids = [(0, 0), (0x0A0A, 0), (0x0B0B, 0), (0x0B0B, 0), (0x0A0A, 0x0C0C), (0x0A0A, 0),
                  (0x0B0B, 0x0D0D), (0x0A0A, 0x0C0C)]
    for f, (tid, sid) in zip(frames, expect_ids, strict=True):
        assert (int(first(f, "l2tp.tunnel")), int(first(f, "l2tp.session"))) == (tid, sid)
        assert first(f, "udp.checksum.status") == "1"
    assert [int(next(values(f, "l2tp.avp.message_type"), "-1")) for f in frames[:5]] == [
        l2tp.SCCRQ, l2tp.SCCRP, l2tp.SCCCN, l2tp.ICRQ, l2tp.ICRP]
    assert int(first(frames[0], "l2tp.avp.assigned_tunnel_id")) == 0x0A0A
    assert int(first(frames[3], "l2tp.avp.assigned_session_id")) == 0x0C0C
    assert first(frames[6], "ppp.protocol") == "0xc021"


def test_tshark_decodes_icmp_queries_and_errors_with_good_checksums(tmp_path: Path) -> None:
    original = udp.build_udp(PNS, PAC, 40000, 4500, bytes(1200), df=True)
    packets = [
        icmp.build_echo(PNS, PAC, ident=0x4242, seq=3, payload=b"abcdefgh"),
        icmp.build_echo(PAC, PNS, ident=0x4242, seq=3, payload=b"abcdefgh", reply=True),
        icmp.build_timestamp(PNS, PAC, 1, 2, originate=1000),
        icmp.build_error(original, icmp.DEST_UNREACHABLE, icmp.FRAG_NEEDED, "198.51.100.1", mtu=1280),
        icmp.build_error(original, icmp.TIME_EXCEEDED, icmp.TTL_EXCEEDED_IN_TRANSIT, "198.51.100.1"),
        icmp.build_error(original, icmp.DEST_UNREACHABLE, icmp.PORT_UNREACHABLE, PAC),
    ]
    frames = write(tmp_path / "icmp.pcap", packets)
    for f in frames:
        assert first(f, "icmp.checksum.status") == "1"
    assert (int(first(frames[0], "icmp.ident")), int(first(frames[0], "icmp.seq"))) == (0x4242, 3)
    assert int(first(frames[3], "icmp.mtu")) == 1280
    assert len(packets[3]) == icmp.ICMP_ERROR_MAX_TOTAL
    # The quoted UDP header is decoded by tshark: the inner ports are where RFC 792 puts them.
    assert "4500" in list(values(frames[4], "udp.dstport"))


def test_tshark_decodes_esp_ah_ike_and_nat_t(tmp_path: Path) -> None:
    spi_i, spi_r = bytes.fromhex("a1a2a3a4a5a6a7a8"), bytes.fromhex("b1b2b3b4b5b6b7b8")
    sa_init = ike.build_ike(spi_i, bytes(8), ike.IKE_SA_INIT, ike.FLAG_INITIATOR, 0, [
        (ike.V2_NONCE, b"n" * 32),
        (ike.V2_NOTIFY, ike.build_notify_v2(ike.NAT_DETECTION_SOURCE_IP, b"s" * 20)),
        (ike.V2_NOTIFY, ike.build_notify_v2(ike.NAT_DETECTION_DESTINATION_IP, b"d" * 20))])
    auth = ike.build_ike(spi_i, spi_r, ike.IKE_AUTH, ike.FLAG_INITIATOR, 1, [(ike.V2_NONCE, b"x" * 8)])
    frames = write(tmp_path / "ipsec.pcap", [
        esp.build_esp_packet(PNS, PAC, 0xC0FFEE01, 5, bytes(48)),
        esp.build_ah_packet(PNS, PAC, 0xC0FFEE02, 6, ipv4.PROTO_ESP, bytes(esp.build_esp(0xC0FFEE03, 7, bytes(16)))),
        udp.build_udp(PNS, PAC, 500, 500, sa_init),
        udp.build_udp(PNS, PAC, 4500, 4500, ike.NON_ESP_MARKER + bytes(auth)),
        udp.build_udp(PNS, PAC, 4500, 4500, ike.NATT_KEEPALIVE),
        udp.build_udp(PNS, PAC, 4500, 4500, esp.build_esp(0xC0FFEE04, 8, bytes(32))),
    ])
    assert int(first(frames[0], "esp.spi"), 16) == 0xC0FFEE01 and int(first(frames[0], "esp.sequence")) == 5
    assert int(first(frames[1], "ah.spi"), 16) == 0xC0FFEE02 and int(first(frames[1], "esp.spi"), 16) == 0xC0FFEE03
    assert first(frames[2], "isakmp.ispi").replace(":", "") == spi_i.hex()
    assert int(first(frames[2], "isakmp.exchangetype")) == ike.IKE_SA_INIT
    notify_types = [int(v) for v in values(frames[2], "isakmp.notify.msgtype")]
    assert notify_types == [ike.NAT_DETECTION_SOURCE_IP, ike.NAT_DETECTION_DESTINATION_IP]
    assert first(frames[3], "isakmp.rspi").replace(":", "") == spi_r.hex()
    assert int(first(frames[3], "isakmp.length")) == len(auth)
    assert "udpencap" in frames[4]
    assert int(first(frames[5], "esp.spi"), 16) == 0xC0FFEE04
