"""Diagnosis of sessions built packet by packet: each failure mode, both capture points."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from natpass.diagnose.model import MAX_EVIDENCE
from natpass.diagnose.run import diagnose, diagnose_packets
from natpass.packets import l2tp as l2tp_pkt
from natpass.packets import pptp as pptp_pkt
from natpass.packets.esp import build_esp_packet
from natpass.packets.gre import build_pptp_gre
from natpass.packets.ike import build_ike, build_notify_v2
from natpass.packets.ipv4 import str_to_addr
from natpass.packets.tcp import ACK, PSH, RST, SYN, build_tcp
from natpass.packets.udp import build_udp

LAN = "192.168.1.10"
WAN = "203.0.113.1"
SERVER = "198.51.100.20"


def pptp_session(client: str, *, gre_in: bool = True, gre_out_count: int = 6, ocrp_result: int = 1,
                 spacing: float = 1.0) -> list[tuple[float, bytes]]:
    c, s, cp = client, SERVER, 40000
    pk: list[tuple[float, bytes]] = [
        (0.00, build_tcp(c, s, cp, 1723, seq=1, flags=SYN)),
        (0.01, build_tcp(s, c, 1723, cp, seq=100, ack=2, flags=SYN | ACK)),
        (0.02, build_tcp(c, s, cp, 1723, seq=2, ack=101, flags=ACK)),
        (0.03, build_tcp(c, s, cp, 1723, seq=2, ack=101, flags=PSH | ACK, payload=pptp_pkt.build_sccrq())),
        (0.05, build_tcp(s, c, 1723, cp, seq=101, ack=200, flags=PSH | ACK, payload=pptp_pkt.build_sccrp())),
        (0.06, build_tcp(c, s, cp, 1723, seq=200, ack=300, flags=PSH | ACK, payload=pptp_pkt.build_ocrq(7))),
        (0.08, build_tcp(s, c, 1723, cp, seq=300, ack=400, flags=PSH | ACK,
                         payload=pptp_pkt.build_ocrp(9, 7, result_code=ocrp_result))),
    ]
    for i in range(gre_out_count):
        pk.append((0.1 + i * spacing, build_pptp_gre(c, s, 9, b"\xff\x03\xc0\x21" + bytes(16))))
        if gre_in:
            pk.append((0.12 + i * spacing, build_pptp_gre(s, c, 7, b"\xff\x03\xc0\x21" + bytes(16))))
    return pk


def test_healthy_pptp_session_is_established_without_error() -> None:
    diag = diagnose_packets(pptp_session(LAN))
    (p,) = diag.protocols
    assert (p.name, p.status) == ("pptp", "established")
    assert not diag.errors()
    assert "pptp-insecure" in diag.codes()  # insecure, but working
    assert "passthrough-not-needed" not in diag.codes()


def test_gre_one_way_after_ocrp_is_error_619_from_either_capture_point() -> None:
    for client in (LAN, WAN):  # on the client, and on the router's WAN after translation
        diag = diagnose_packets(pptp_session(client, gre_in=False))
        (f,) = [f for f in diag.findings if f.code == "gre-blocked"]
        assert f.windows_error == 619 and f.severity == "error"
        (p,) = diag.protocols
        assert p.client.startswith(client) and p.status == "failed"


def test_single_gre_packet_and_short_capture_is_inconclusive_not_blocked() -> None:
    diag = diagnose_packets(pptp_session(LAN, gre_in=False, gre_out_count=1))
    assert "gre-blocked" not in diag.codes() and "one-way-inconclusive" in diag.codes()


def test_pptp_syn_answered_by_reset_is_control_blocked() -> None:
    pk = [(0.0, build_tcp(LAN, SERVER, 40000, 1723, seq=1, flags=SYN)),
          (0.01, build_tcp(SERVER, LAN, 1723, 40000, seq=0, ack=2, flags=RST | ACK))]
    diag = diagnose_packets(pk)
    (f,) = [f for f in diag.findings if f.code == "pptp-control-blocked"]
    assert f.windows_error == 800 and [e.frame for e in f.evidence] == [1, 2]


def test_single_syn_then_end_of_capture_is_not_called_blocked() -> None:
    diag = diagnose_packets([(0.0, build_tcp(LAN, SERVER, 40000, 1723, seq=1, flags=SYN))])
    assert "pptp-control-blocked" not in diag.codes()


def test_server_refusing_the_call_is_not_blamed_on_the_network() -> None:
    diag = diagnose_packets(pptp_session(LAN, ocrp_result=2, gre_out_count=0))
    assert "pptp-call-refused" in diag.codes() and "gre-blocked" not in diag.codes()


def test_evidence_lists_stay_bounded_on_long_failures() -> None:
    diag = diagnose_packets(pptp_session(LAN, gre_in=False, gre_out_count=2000, spacing=0.01))
    assert all(len(f.evidence) <= MAX_EVIDENCE for f in diag.findings)
    (p,) = diag.protocols
    assert "GRE out 2000, in 0" in p.notes


# --- IKEv2 with NAT detection
SPI_I = bytes(range(1, 9))
SPI_R = bytes(range(11, 19))


def natd(spi_i: bytes, spi_r: bytes, addr: str, port: int) -> bytes:
    return hashlib.sha1(spi_i + spi_r + str_to_addr(addr) + struct.pack("!H", port)).digest()


def ikev2_sa_init(seen_client: str, real_client: str, server_sees: str,
                  fake_source: bool = False) -> list[tuple[float, bytes]]:
    """IKE_SA_INIT as captured with the client at ``seen_client``; the client's own address is
    ``real_client`` and the server sees it as ``server_sees`` (RFC 7296 2.23 hashes). A capture
    away from the client sees its packets one router hop on (TTL 63)."""
    req = build_ike(SPI_I, bytes(8), 34, flags=0x08, payload_list=[
        (41, build_notify_v2(16388, bytes(20) if fake_source else natd(SPI_I, bytes(8), real_client, 500))),
        (41, build_notify_v2(16389, natd(SPI_I, bytes(8), SERVER, 500)))])
    resp = build_ike(SPI_I, SPI_R, 34, flags=0x20, payload_list=[
        (41, build_notify_v2(16388, natd(SPI_I, SPI_R, SERVER, 500))),
        (41, build_notify_v2(16389, natd(SPI_I, SPI_R, server_sees, 500)))])
    ttl = 64 if seen_client == real_client else 63
    return [(0.0, build_udp(seen_client, SERVER, 500, 500, req, ttl=ttl)),
            (0.05, build_udp(SERVER, seen_client, 500, 500, resp))]


def test_one_home_nat_seen_from_the_client_is_not_flagged() -> None:
    diag = diagnose_packets(ikev2_sa_init(LAN, LAN, WAN))
    assert not diag.codes() & {"cgnat", "double-nat"}


def test_one_home_nat_seen_on_the_wan_is_not_flagged() -> None:
    diag = diagnose_packets(ikev2_sa_init(WAN, LAN, WAN))
    assert not diag.codes() & {"cgnat", "double-nat"}


def test_client_forcing_udp_encapsulation_is_not_a_nat() -> None:
    """strongSwan encap=yes sends a made-up source hash; captured on the client it means nothing."""
    diag = diagnose_packets(ikev2_sa_init(LAN, LAN, WAN, fake_source=True))
    assert not diag.codes() & {"cgnat", "double-nat"}


def test_nat_beyond_the_router_wan_is_cgnat() -> None:
    diag = diagnose_packets(ikev2_sa_init(WAN, LAN, "198.51.100.99"))
    assert "cgnat" in diag.codes()


def test_translated_before_and_after_the_capture_point_is_double_nat() -> None:
    diag = diagnose_packets(ikev2_sa_init("192.168.0.2", LAN, WAN))
    assert "double-nat" in diag.codes()


def test_ike_answered_then_nothing_on_4500_is_natt_blocked() -> None:
    pk = ikev2_sa_init(LAN, LAN, WAN)
    auth = build_ike(SPI_I, SPI_R, 35, flags=0x08, message_id=1, payload_list=[(46, bytes(64))])
    pk += [(0.1 + i, build_udp(LAN, SERVER, 4500, 4500, b"\0\0\0\0" + auth)) for i in range(3)]
    diag = diagnose_packets(pk)
    assert "natt-blocked" in diag.codes() and "ike-no-response" not in diag.codes()
    ike = next(p for p in diag.protocols if p.name == "ikev2")
    assert [ph.name for ph in ike.phases][:3] == ["sa_init request", "sa_init response", "auth request"]


def test_raw_esp_without_answer_over_seconds_is_esp_blocked() -> None:
    pk = [(i * 0.5, build_esp_packet(LAN, SERVER, 0x1234, i + 1, bytes(40))) for i in range(8)]
    diag = diagnose_packets(pk)
    (f,) = [f for f in diag.findings if f.code == "esp-blocked"]
    assert f.windows_error == 809


# --- L2TP, STUN, OpenVPN over TCP
def test_unanswered_l2tp_sccrq_is_no_response_and_unencrypted() -> None:
    pk = [(i * 1.0, build_udp(LAN, SERVER, 1701, 1701, l2tp_pkt.build_sccrq(5, ns=0))) for i in range(3)]
    diag = diagnose_packets(pk)
    assert {"l2tp-no-response", "l2tp-unencrypted"} <= diag.codes()


def stun_response(mapped: str, port: int) -> bytes:
    addr = bytes(a ^ b for a, b in zip(str_to_addr(mapped), b"\x21\x12\xa4\x42", strict=True))
    attr = struct.pack("!HHBBH", 0x0020, 8, 0, 1, port ^ 0x2112) + addr
    return struct.pack("!HH", 0x0101, len(attr)) + b"\x21\x12\xa4\x42" + bytes(12) + attr


def test_stun_mapping_differing_from_a_public_source_is_cgnat() -> None:
    pk = [(0.0, build_udp("198.51.100.3", WAN, 3478, 41641, stun_response("198.51.100.200", 1111)))]
    assert "cgnat" in diagnose_packets(pk).codes()


def test_stun_mapping_differing_from_a_private_source_is_the_home_nat() -> None:
    pk = [(0.0, build_udp("198.51.100.3", LAN, 3478, 41641, stun_response(WAN, 41641)))]
    assert "cgnat" not in diagnose_packets(pk).codes()


def openvpn_control(opcode: int, sid: bytes, ack_sid: bytes | None = None) -> bytes:
    body = bytes([opcode << 3]) + sid
    body += (b"\x01" + struct.pack("!I", 0) + ack_sid) if ack_sid else b"\x00"
    return body + struct.pack("!I", 0)


def test_openvpn_over_tcp_on_443_is_recognised_by_its_records() -> None:
    c_sid, s_sid = b"C" * 8, b"S" * 8
    pk = [(0.0, build_tcp(LAN, SERVER, 50000, 443, seq=1, flags=SYN)),
          (0.01, build_tcp(SERVER, LAN, 443, 50000, seq=9, ack=2, flags=SYN | ACK))]
    for t, src, dst, sp, dp, rec in ((0.02, LAN, SERVER, 50000, 443, openvpn_control(7, c_sid)),
                                     (0.05, SERVER, LAN, 443, 50000, openvpn_control(8, s_sid, c_sid))):
        pk.append((t, build_tcp(src, dst, sp, dp, seq=2, ack=10, flags=PSH | ACK,
                                payload=struct.pack("!H", len(rec)) + rec)))
    diag = diagnose_packets(pk)
    (p,) = diag.protocols
    assert (p.name, p.transport, p.client) == ("openvpn", "tcp/443", f"{LAN}:50000")


def test_wireguard_initiations_without_response_on_any_port() -> None:
    init = b"\x01\0\0\0" + b"\x11" * 144
    pk = [(i * 5.0, build_udp(LAN, SERVER, 40000, 5060, init)) for i in range(3)]
    diag = diagnose_packets(pk)
    (p,) = diag.protocols
    assert (p.name, p.status) == ("wireguard", "failed") and "wireguard-no-response" in diag.codes()


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=200).filter(lambda b: b[1:4] != b"\0\0\0"), st.integers(1024, 65535))
def test_udp_that_is_not_shaped_like_wireguard_is_not_reported_as_wireguard(payload: bytes, port: int) -> None:
    pk = [(i * 0.1, build_udp(LAN, SERVER, 40000, port, payload)) for i in range(3)]
    assert "wireguard" not in {p.name for p in diagnose_packets(pk).protocols}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=12))
def test_garbage_never_crashes(blobs: list[bytes]) -> None:
    pk = []
    for i, b in enumerate(blobs):
        pk.append((i * 0.1, b))
        if len(b) > 8:  # also as the payload of each VPN transport
            for proto_port in (500, 4500, 1701, 1723, 51820):
                pk.append((i * 0.1, bytes(build_udp(LAN, SERVER, proto_port, proto_port, b))))
            pk.append((i * 0.1, bytes(build_tcp(LAN, SERVER, 1723, 1723, payload=b))))
    diagnose_packets(pk).to_dict()


def test_not_a_capture_file_is_a_clear_error(tmp_path: Path) -> None:
    import pytest

    from natpass.diagnose.run import CaptureError

    bad = tmp_path / "x.pcap"
    bad.write_bytes(b"hello world, not a pcap")
    with pytest.raises(CaptureError):
        diagnose(bad)


def test_truncated_transport_headers_are_counted_malformed() -> None:
    from natpass.packets.ipv4 import build_ipv4

    pk = [(0.0, bytes(build_ipv4(LAN, SERVER, 17, b"\x01\x02\x03"))),
          (0.1, bytes(build_ipv4(LAN, SERVER, 6, b"\x01\x02\x03\x04\x05"))),
          (0.2, b"\x45\x00\x00\x10" + bytes(16))]  # total length below the header length
    diag = diagnose_packets(pk)
    assert diag.capture.malformed == 3 and diag.capture.ipv4 == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 6, 17, 47, 50, 51]), st.binary(max_size=80),
                          st.booleans()), max_size=16))
def test_valid_ip_headers_with_garbage_transport_never_crash(items: list[tuple[int, bytes, bool]]) -> None:
    from natpass.packets.ipv4 import build_ipv4

    pk = []
    for i, (proto, body, reverse) in enumerate(items):
        src, dst = (SERVER, LAN) if reverse else (LAN, SERVER)
        pk.append((i * 0.5, bytes(build_ipv4(src, dst, proto, body, mf=bool(i % 5 == 1)))))
    diag = diagnose_packets(pk)
    assert diag.capture.ipv4 + diag.capture.malformed + diag.capture.duplicates == len(pk)


def test_session_limit_keeps_memory_bounded_and_says_so(monkeypatch) -> None:
    from natpass.diagnose import analyzer

    monkeypatch.setattr(analyzer, "MAX_SESSIONS", 5)
    init = b"\x01\0\0\0" + b"\x22" * 144
    pk = [(i * 0.01, build_udp(LAN, SERVER, 30000 + i, 51820, init)) for i in range(20)]
    diag = diagnose_packets(pk)
    assert len(diag.protocols) == 5
    assert any("more than 5 VPN sessions" in p for p in diag.capture.problems)


def test_cut_capture_is_diagnosed_up_to_the_cut(captures: Path, tmp_path: Path) -> None:
    data = (captures / "wireguard/corelight__wireguard_port51194.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:len(data) // 2])
    diag = diagnose(cut)
    assert diag.capture.problems and {p.name for p in diag.protocols} == {"wireguard"}


def test_ah_from_another_address_than_the_ike_client_is_ah_through_nat() -> None:
    from natpass.packets.esp import build_ah_packet

    client = "203.0.113.5"  # public ends, no NAT between them as far as IKE can tell
    ike = ikev2_sa_init(client, client, client)

    def ah(source: str) -> list[tuple[float, bytes]]:
        return [(1.0 + i, bytes(build_ah_packet(source, SERVER, 0x99, i + 1, 1) if i % 2 == 0
                                else build_ah_packet(SERVER, source, 0x98, i + 1, 1))) for i in range(4)]

    assert "ah-through-nat" not in diagnose_packets(ike + ah(client)).codes()
    assert "ah-through-nat" in diagnose_packets(ike + ah("203.0.113.99")).codes()
