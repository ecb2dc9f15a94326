"""ESP/AH headers, IKE v1/v2 headers and payload chains, NAT-T classification and NAT-D."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP
from scapy.layers.ipsec import AH, ESP

from natpass.packets import PacketError
from natpass.packets import ike as K
from natpass.packets.esp import build_ah, build_ah_packet, build_esp, build_esp_packet, parse_ah, parse_esp
from natpass.packets.ipv4 import PROTO_ESP, str_to_addr

SPI_I = bytes.fromhex("0102030405060708")
SPI_R = bytes.fromhex("1112131415161718")


def test_esp_round_trip_and_scapy_agrees() -> None:
    pkt = build_esp_packet("192.168.1.2", "198.51.100.3", 0x11223344, 77, b"ciphertext")
    h = parse_esp(pkt, 20)
    assert (h.spi, h.seq) == (0x11223344, 77)
    s = IP(bytes(pkt))[ESP]
    assert (s.spi, s.seq) == (0x11223344, 77)


def test_esp_spi_zero_and_truncation_rejected() -> None:
    with pytest.raises(PacketError, match="SPI 0"):
        parse_esp(build_esp(0, 1))
    esp = build_esp(5, 1)
    for cut in range(8):
        with pytest.raises(PacketError):
            parse_esp(esp[:cut])


def test_ah_length_is_payload_len_plus_two_words() -> None:
    pkt = build_ah_packet("192.0.2.1", "192.0.2.2", 0x1000, 3, PROTO_ESP, b"next", icv=bytes(12))
    h = parse_ah(pkt, 20)
    assert h.payload_len == 4 and h.length == 24 and h.next_header == PROTO_ESP and h.spi == 0x1000
    assert bytes(pkt[20 + h.payload_offset:]) == b"next"
    s = IP(bytes(pkt))[AH]
    assert s.spi == 0x1000 and s.nh == PROTO_ESP and s.payloadlen == 4


def test_ah_bad_length_rejected() -> None:
    ah = build_ah(1, 1, 6, icv=bytes(12))
    ah[1] = 0  # (0 + 2) * 4 = 8 < 12
    with pytest.raises(PacketError, match="< 12"):
        parse_ah(ah)
    ah[1] = 200
    with pytest.raises(PacketError, match="exceeds"):
        parse_ah(ah)


def test_ikev2_header_flags_and_payload_chain() -> None:
    msg = K.build_ike(SPI_I, bytes(8), K.IKE_SA_INIT, K.FLAG_INITIATOR, 0, [
        (K.V2_SA, b"sa-body"), (K.V2_KE, b"ke"), (K.V2_NONCE, b"n" * 16),
        (K.V2_NOTIFY, K.build_notify_v2(K.NAT_DETECTION_SOURCE_IP, b"s" * 20)),
        (K.V2_NOTIFY, K.build_notify_v2(K.NAT_DETECTION_DESTINATION_IP, b"d" * 20)),
    ], critical=frozenset({K.V2_KE}))
    h = K.parse_ike(msg)
    assert h.is_v2 and h.initiator and not h.response and h.exchange_name == "IKE_SA_INIT"
    assert h.length == len(msg)
    ps = K.payloads(msg)
    assert [p.type for p in ps] == [K.V2_SA, K.V2_KE, K.V2_NONCE, K.V2_NOTIFY, K.V2_NOTIFY]
    assert [p.critical for p in ps] == [False, True, False, False, False]
    assert ps[0].data == b"sa-body" and ps[0].offset == 28
    assert K.nat_d_payloads(msg) == [K.NatD("source", b"s" * 20), K.NatD("destination", b"d" * 20)]


def test_ikev1_nat_d_first_is_destination_then_sources() -> None:
    msg = K.build_ike(SPI_I, SPI_R, K.V1_IDENTITY_PROTECTION, 0, 0, [
        (K.V1_KE, b"k"), (K.V1_NAT_D, b"D" * 20), (K.V1_NAT_D_DRAFT, b"S" * 20)], major=1)
    h = K.parse_ike(msg)
    assert h.major == 1 and h.exchange_name == "Main Mode" and not h.encrypted
    assert K.nat_d_payloads(msg) == [K.NatD("destination", b"D" * 20), K.NatD("source", b"S" * 20)]


def test_ikev1_encrypted_message_yields_no_payloads() -> None:
    msg = K.build_ike(SPI_I, SPI_R, K.V1_QUICK_MODE, K.V1_FLAG_ENCRYPTION, 5, [(K.V1_HASH, b"x" * 20)], major=1)
    assert K.parse_ike(msg).encrypted and K.payloads(msg) == []


def test_ikev2_chain_stops_at_sk() -> None:
    msg = K.build_ike(SPI_I, SPI_R, K.IKE_AUTH, K.FLAG_INITIATOR, 1, [(K.V2_SK, b"\x23" + bytes(40))])
    msg[16] = K.V2_SK
    msg[28] = K.V2_IDI  # SK's next-payload names the first payload inside the encryption
    assert [p.type for p in K.payloads(msg)] == [K.V2_SK]


def test_natd_hash_matches_rfc7296_definition() -> None:
    import hashlib

    addr = str_to_addr("198.51.100.7")
    assert K.natd_hash_v2(SPI_I, SPI_R, addr, 500) == hashlib.sha1(SPI_I + SPI_R + addr + b"\x01\xf4").digest()
    assert len(K.natd_hash_v1(SPI_I, SPI_R, addr, 500, "md5")) == 16


@pytest.mark.parametrize("mutate, reason", [
    (lambda m: m.__setitem__(17, 0x30), "major version"),
    (lambda m: m.__setitem__(slice(24, 28), (20).to_bytes(4, "big")), "< 28"),
    (lambda m: m.__setitem__(slice(24, 28), (9999).to_bytes(4, "big")), "exceeds"),
    (lambda m: m.__setitem__(slice(0, 8), bytes(8)), "initiator SPI"),
])
def test_bad_ike_headers(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    msg = K.build_ike(SPI_I, SPI_R, K.IKE_AUTH, 0, 0, [(K.V2_NONCE, b"abc")])
    mutate(msg)
    with pytest.raises(PacketError, match=reason):
        K.parse_ike(msg)


def test_payload_running_past_the_message_or_too_short_is_rejected() -> None:
    msg = K.build_ike(SPI_I, SPI_R, K.IKE_AUTH, 0, 0, [(K.V2_NONCE, b"abcd"), (K.V2_VENDOR_ID, b"v")])
    bad = bytearray(msg)
    bad[28 + 2:28 + 4] = (200).to_bytes(2, "big")
    with pytest.raises(PacketError, match="runs past"):
        K.payloads(bad)
    bad = bytearray(msg)
    bad[28 + 2:28 + 4] = (3).to_bytes(2, "big")
    with pytest.raises(PacketError, match="< 4"):
        K.payloads(bad)


def test_natt_classification_rfc3948() -> None:
    ike_msg = bytes(K.build_ike(SPI_I, SPI_R, K.IKE_SA_INIT, K.FLAG_INITIATOR))
    assert K.classify_natt(b"\xff") == K.NATT_CLASS_KEEPALIVE
    assert K.classify_natt(K.NON_ESP_MARKER + ike_msg) == K.NATT_CLASS_IKE
    assert K.classify_natt(bytes(build_esp(0x100, 1, b"data"))) == K.NATT_CLASS_ESP
    for bad in (b"", b"\x00", b"\xfe", b"\x00\x00\x00\x00" + bytes(10), b"\x01\x02\x03\x04\x05"):
        with pytest.raises(PacketError):
            K.classify_natt(bad)


def test_natd_check_reports_which_side_was_translated() -> None:
    lan, wan, server = str_to_addr("192.168.1.5"), str_to_addr("203.0.113.1"), str_to_addr("198.51.100.9")
    msg = K.build_ike(SPI_I, bytes(8), K.IKE_SA_INIT, K.FLAG_INITIATOR, 0, [
        (K.V2_NOTIFY, K.build_notify_v2(K.NAT_DETECTION_SOURCE_IP, K.natd_hash_v2(SPI_I, bytes(8), lan, 500))),
        (K.V2_NOTIFY, K.build_notify_v2(K.NAT_DETECTION_DESTINATION_IP,
                                        K.natd_hash_v2(SPI_I, bytes(8), server, 500)))])
    assert K.natd_check(msg, 0, lan, 500, server, 500) == K.NatDCheck(True, True, "sha1")
    # After a NAT rewrote the source to the WAN address and port, the server sees a mismatch.
    assert K.natd_check(msg, 0, wan, 61000, server, 500) == K.NatDCheck(False, True, "sha1")
    v1 = K.build_ike(SPI_I, SPI_R, K.V1_IDENTITY_PROTECTION, 0, 0, [
        (K.V1_NAT_D, K.natd_hash_v1(SPI_I, SPI_R, server, 500, "md5")),
        (K.V1_NAT_D, K.natd_hash_v1(SPI_I, SPI_R, lan, 500, "md5"))], major=1)
    assert K.natd_check(v1, 0, lan, 500, server, 500) == K.NatDCheck(True, True, "md5")
    assert K.natd_check(v1, 0, lan, 500, wan, 500) == K.NatDCheck(True, False, "md5")
    assert K.natd_check(K.build_ike(SPI_I, SPI_R, K.IKE_AUTH), 0, lan, 1, wan, 2) == K.NatDCheck(None, None, None)


def test_natd_hashes_of_real_captures_match_their_addresses(captures: Path) -> None:
    """Real peers' NAT-D values are reproduced from the packet's own addresses and ports, which
    shows the hash inputs and the IKEv1 payload order are right."""
    from natpass.datapath.pcap import iter_capture
    from natpass.packets import ipv4, udp

    both_match = 0
    for path in sorted(p for p in captures.glob("*/*") if p.suffix in (".pcap", ".pcapng", ".cap")):
        for cp in iter_capture(path):
            if cp.ip is None:
                continue
            try:
                h = ipv4.parse_ipv4(cp.ip)
                if h.proto != ipv4.PROTO_UDP or h.is_fragment:
                    continue
                u = udp.parse_udp(cp.ip, h.header_len)
                body = cp.ip[:h.header_len + u.length]
                at = h.header_len + 8
                if K.NATT_PORT in (u.sport, u.dport):
                    if K.classify_natt(body[at:]) != K.NATT_CLASS_IKE:
                        continue
                    at += 4
                elif K.IKE_PORT not in (u.sport, u.dport):
                    continue
                r = K.natd_check(body, at, h.src, u.sport, h.dst, u.dport)
            except PacketError:
                continue
            both_match += bool(r.source_match and r.destination_match)
    assert both_match > 0
