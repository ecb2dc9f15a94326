"""Recognition with a confidence: OpenVPN modes from their wire layouts, static-key mode by port and
pattern, IKEv2 on any port, SSL VPNs from the TLS handshake, IPsec over IPv6."""

from __future__ import annotations

import os
import random
import struct

from natpass.diagnose import detect as d
from natpass.diagnose import tls
from natpass.diagnose.run import diagnose_packets
from natpass.packets.ike import FLAG_INITIATOR, IKE_SA_INIT, V2_SA, build_ike
from natpass.packets.tcp import ACK, PSH, SYN, build_tcp
from natpass.packets.udp import build_udp

C, S = "192.168.1.11", "198.51.100.10"
NOW = 1_700_000_000.0
SID = bytes(range(1, 9))


def reset(mode: str, hmac: int = 20) -> bytes:
    """A P_CONTROL_HARD_RESET_CLIENT_V2 laid out as OpenVPN sends it in ``mode``."""
    op = bytes([(7 << 3) | 0])
    pid_time = struct.pack("!II", 1, int(NOW))
    if mode == "tls":
        return op + SID + b"\x00" + struct.pack("!I", 0)
    if mode == "tls-auth":
        return op + SID + os.urandom(hmac) + pid_time + b"\x00" + struct.pack("!I", 0)
    if mode == "tls-crypt":
        return op + SID + pid_time + os.urandom(32) + os.urandom(5)
    assert mode == "tls-crypt-v2"
    return bytes([(10 << 3) | 0]) + SID + pid_time + os.urandom(32) + os.urandom(5 + 290)


def test_openvpn_control_channel_modes_from_their_layouts() -> None:
    for mode in ("tls", "tls-crypt", "tls-crypt-v2"):
        assert d.openvpn_control_mode(reset(mode), NOW) == mode, mode
    for h in (20, 32, 64):
        assert d.openvpn_control_mode(reset("tls-auth", h), NOW) == "tls-auth", h
    # a clear time field years away from the capture is not a tls-auth/tls-crypt time
    assert d.openvpn_control_mode(reset("tls-crypt"), NOW + 10 * 365 * 86400) != "tls-crypt"


def _udp_flow(sport: int, dport: int, lengths: list[int], both: bool = True) -> list[tuple[float, bytes]]:
    rng = random.Random(7)
    pk = []
    for i, n in enumerate(lengths):
        out = not both or i % 2 == 0
        src, dst, sp, dp = (C, S, sport, dport) if out else (S, C, dport, sport)
        pk.append((i * 0.5, bytes(build_udp(src, dst, sp, dp, rng.randbytes(n)))))
    return pk


STATIC_LENGTHS = [20 + 16 + 16 * k for k in (2, 5, 2, 7, 3, 2, 4, 2, 6, 2)]  # SHA1 HMAC + IV + blocks


def test_static_key_on_the_openvpn_port_is_port_and_pattern() -> None:
    (p,) = diagnose_packets(_udp_flow(40000, 1194, STATIC_LENGTHS)).protocols
    assert (p.name, p.confidence, p.status) == ("openvpn", "port+pattern", "established")
    assert "mode: static-key" in p.notes and any("20-byte HMAC" in h for h in p.hints)


def test_other_lengths_on_the_openvpn_port_are_port_only() -> None:
    lengths = [n + 3 for n in STATIC_LENGTHS]
    (p,) = diagnose_packets(_udp_flow(40000, 1194, lengths)).protocols
    assert (p.name, p.confidence) == ("openvpn", "port")


def test_the_static_key_pattern_on_another_port_is_not_claimed() -> None:
    assert not diagnose_packets(_udp_flow(40000, 5000, STATIC_LENGTHS)).protocols


def test_static_key_one_way_for_seconds_is_a_stall_with_a_finding() -> None:
    diag = diagnose_packets(_udp_flow(40000, 1194, STATIC_LENGTHS, both=False))
    (p,) = diag.protocols
    assert (p.status, p.stopped_at) == ("failed", "data-in")
    assert "openvpn-stalled" in diag.codes()


def test_ikev2_on_a_port_of_its_own() -> None:
    spi = bytes(range(1, 9))
    req = build_ike(spi, bytes(8), IKE_SA_INIT, FLAG_INITIATOR, 0, [(V2_SA, bytes(40))])
    rsp = build_ike(spi, bytes(range(9, 17)), IKE_SA_INIT, 0x20, 0, [(V2_SA, bytes(40))])
    pk = [(0.0, bytes(build_udp(C, S, 40000, 8443, req))), (0.1, bytes(build_udp(S, C, 8443, 40000, rsp)))]
    (p,) = diagnose_packets(pk).protocols
    assert p.name == "ikev2" and p.transport == "udp/8443" and p.confidence == "structure"
    assert any("8443" in h for h in p.hints)


def client_hello(sni: str) -> bytes:
    name = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    alpn = b"http/1.1"
    alpn_ext = struct.pack("!HHHB", 16, len(alpn) + 3, len(alpn) + 1, len(alpn)) + alpn
    exts = sni_ext + alpn_ext
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def server_hello_and_cert(cn: str) -> bytes:
    sh_body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x13\x01" + b"\x00"
    sh = b"\x02" + len(sh_body).to_bytes(3, "big") + sh_body
    name = cn.encode()
    cert = b"\x30\x20" + b"\x06\x03\x55\x04\x03" + b"\x0c" + bytes([len(name)]) + name
    ch = b"\x0b" + (len(cert) + 6).to_bytes(3, "big") + (len(cert) + 3).to_bytes(3, "big") + len(cert).to_bytes(3, "big") + cert
    recs = sh + ch
    return b"\x16\x03\x03" + struct.pack("!H", len(recs)) + recs


def tls_session(sni: str, cn: str, port: int = 443) -> list[tuple[float, bytes]]:
    return [(0.0, bytes(build_tcp(C, S, 40001, port, seq=1, flags=SYN))),
            (0.01, bytes(build_tcp(S, C, port, 40001, seq=1, ack=2, flags=SYN | ACK))),
            (0.02, bytes(build_tcp(C, S, 40001, port, seq=2, ack=2, flags=PSH | ACK, payload=client_hello(sni)))),
            (0.05, bytes(build_tcp(S, C, port, 40001, seq=2, ack=9, flags=PSH | ACK,
                                   payload=server_hello_and_cert(cn))))]


def test_tls_handshake_fields_read_in_clear() -> None:
    ch = tls.client_hello(client_hello("vpn.example.com"))
    assert ch == ("vpn.example.com", ("http/1.1",))
    assert tls.certificate_names(server_hello_and_cert("FortiGate")) == ["FortiGate"]
    assert tls.handshake_types(server_hello_and_cert("x")) == [2, 11]


def test_ssl_vpn_from_names_is_low_confidence_with_hints() -> None:
    (p,) = diagnose_packets(tls_session("sslvpn.example.com", "FortiGate")).protocols
    assert (p.name, p.confidence, p.status) == ("tls-vpn", "port", "established")
    assert any("FortiGate" in h for h in p.hints) and any("SNI" in h for h in p.hints)


def test_ordinary_https_is_not_a_vpn() -> None:
    assert not diagnose_packets(tls_session("www.example.com", "www.example.com")).protocols


def test_dtls_beside_tls_to_the_same_server_is_port_and_pattern() -> None:
    pk = tls_session("portal.example.com", "portal.example.com")
    dtls = b"\x16\xfe\xfd" + bytes(8) + struct.pack("!H", 40) + bytes(40)
    pk += [(0.2 + i * 0.1, bytes(build_udp(C, S, 40002, 443, dtls))) for i in range(3)]
    diag = diagnose_packets(pk)
    (p,) = diag.protocols
    assert (p.name, p.confidence) == ("tls-vpn", "port+pattern")
    assert "looks like: anyconnect" in p.notes
    assert (p.status, p.stopped_at) == ("incomplete", "dtls-in")  # DTLS unanswered, 0.2 s: too short


def test_ipsec_failing_over_ipv6_gets_the_rfc6092_advice() -> None:
    c6, s6 = bytes.fromhex("20010db8000000010000000000000011"), bytes.fromhex("20010db8000000020000000000000010")
    spi = bytes(range(1, 9))
    req = build_ike(spi, bytes(8), IKE_SA_INIT, FLAG_INITIATOR, 0, [(V2_SA, bytes(40))])
    udp = struct.pack("!HHHH", 500, 500, 8 + len(req), 0) + req
    ip6 = bytes([0x60, 0, 0, 0]) + struct.pack("!HBB", len(udp), 17, 64) + c6 + s6 + udp
    diag = diagnose_packets([(i * 1.5, ip6) for i in range(4)])
    assert {"ike-no-response", "ipv6-ipsec-filtered"} <= diag.codes()
    (f,) = [f for f in diag.findings if f.code == "ipv6-ipsec-filtered"]
    assert "RFC 6092" in f.explanation
    assert diag.protocols[0].client.startswith("[2001:db8:")
