"""Recognising VPN protocols from payload bytes alone (no port numbers for OpenVPN/WireGuard).

Each function takes the transport payload and returns a small decoded value or None. They never
raise on malformed input: a capture is evidence, and a broken packet is just not that protocol.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from typing import NamedTuple

# --- WireGuard (whitepaper section 5.4): type byte, three reserved zero bytes, fixed sizes.
WG_INITIATION = 1
WG_RESPONSE = 2
WG_COOKIE = 3
WG_TRANSPORT = 4
WG_SIZES = {WG_INITIATION: 148, WG_RESPONSE: 92, WG_COOKIE: 64}
WG_TRANSPORT_MIN = 32  # header 16 + empty payload's 16-byte Poly1305 tag (keepalive)


def wireguard_type(p: bytes) -> int:
    """The WireGuard message type of ``p`` (1-4), or 0 when ``p`` is not shaped like one."""
    n = len(p)
    if n < WG_TRANSPORT_MIN or p[1] or p[2] or p[3]:
        return 0
    t = p[0]
    if t == WG_TRANSPORT:
        return t if n % 16 == 0 else 0  # transport payloads are padded to 16 bytes
    if t in WG_SIZES and WG_SIZES[t] == n:
        return t
    return 0


# --- OpenVPN (openvpn ssl_pkt.h / doc "protocol"): opcode in the top 5 bits, key id in the low 3.
OVPN_HARD_RESET_CLIENT_V1 = 1
OVPN_HARD_RESET_SERVER_V1 = 2
OVPN_SOFT_RESET_V1 = 3
OVPN_CONTROL_V1 = 4
OVPN_ACK_V1 = 5
OVPN_DATA_V1 = 6
OVPN_HARD_RESET_CLIENT_V2 = 7
OVPN_HARD_RESET_SERVER_V2 = 8
OVPN_DATA_V2 = 9
OVPN_HARD_RESET_CLIENT_V3 = 10
OVPN_CONTROL_WKC_V1 = 11
OVPN_CLIENT_RESETS = (OVPN_HARD_RESET_CLIENT_V1, OVPN_HARD_RESET_CLIENT_V2, OVPN_HARD_RESET_CLIENT_V3)
OVPN_SERVER_RESETS = (OVPN_HARD_RESET_SERVER_V1, OVPN_HARD_RESET_SERVER_V2)
OVPN_CONTROL = (1, 2, 3, 4, 5, 7, 8, 10, 11)  # carry an 8-byte session id after the opcode byte
OVPN_DATA = (OVPN_DATA_V1, OVPN_DATA_V2)
OVPN_CONTROL_MIN = 1 + 8 + 1 + 4  # opcode, session id, ack count, message packet id


class OvpnPacket(NamedTuple):
    opcode: int
    key_id: int
    session_id: bytes  # control: 8-byte session id; P_DATA_V2: 3-byte peer id; P_DATA_V1: b""


def openvpn_packet(p: bytes) -> OvpnPacket | None:
    """Decode the OpenVPN opcode/key/session id of a UDP payload (or TCP record after the length)."""
    if len(p) < 4:
        return None
    op = p[0] >> 3
    key = p[0] & 7
    if op == OVPN_DATA_V2:
        return OvpnPacket(op, key, p[1:4])
    if op == OVPN_DATA_V1:
        return OvpnPacket(op, key, b"")
    if op in OVPN_CONTROL and len(p) >= OVPN_CONTROL_MIN:
        if op in OVPN_CLIENT_RESETS + OVPN_SERVER_RESETS and key != 0:
            return None  # a hard reset always starts key id 0
        return OvpnPacket(op, key, p[1:9])
    return None


def openvpn_tcp_record(p: bytes) -> bytes | None:
    """The first OpenVPN packet of a TCP segment (RFC-less: 2-byte big-endian length prefix)."""
    if len(p) < 2 + OVPN_CONTROL_MIN:
        return None
    length = (p[0] << 8) | p[1]
    if length < OVPN_CONTROL_MIN or length > 1600:
        return None
    return p[2:2 + length]


# --- STUN (RFC 8489 section 5): magic cookie, XOR-MAPPED-ADDRESS (section 14.2).
STUN_MAGIC = b"\x21\x12\xa4\x42"
STUN_BINDING_RESPONSE = 0x0101
STUN_XOR_MAPPED_ADDRESS = 0x0020
STUN_MAPPED_ADDRESS = 0x0001


def stun_mapped(p: bytes) -> tuple[str, int] | None | bool:
    """For a STUN message: the IPv4 mapped address of a Binding success response, else True.

    Returns False (not STUN) when the header does not match.
    """
    if len(p) < 20 or p[0] & 0xC0 or p[4:8] != STUN_MAGIC:
        return False
    mtype, mlen = struct.unpack_from("!HH", p)
    if mlen + 20 != len(p) or mlen % 4:
        return False
    if mtype != STUN_BINDING_RESPONSE:
        return True
    off = 20
    while off + 4 <= len(p):
        atype, alen = struct.unpack_from("!HH", p, off)
        val = p[off + 4:off + 4 + alen]
        if atype in (STUN_XOR_MAPPED_ADDRESS, STUN_MAPPED_ADDRESS) and alen == 8 and val[1] == 1:
            port = struct.unpack_from("!H", val, 2)[0]
            addr = bytes(val[4:8])
            if atype == STUN_XOR_MAPPED_ADDRESS:
                port ^= 0x2112
                addr = bytes(a ^ b for a, b in zip(addr, STUN_MAGIC, strict=True))
            return ".".join(str(b) for b in addr), port
        off += 4 + ((alen + 3) & ~3)
    return True


# --- IKE (RFC 7296 section 3.1 header; RFC 2408 section 3.1 for IKEv1/ISAKMP).
IKE_HEADER = 28
IKE_PORT = 500
NATT_PORT = 4500  # RFC 3948
NON_ESP_MARKER = b"\x00\x00\x00\x00"  # RFC 3948 section 2.2
NATT_KEEPALIVE = b"\xff"  # RFC 3948 section 2.3
IKEV2_FLAG_INITIATOR = 0x08
IKEV2_FLAG_RESPONSE = 0x20
IKEV1_FLAG_ENCRYPTED = 0x01
IKEV2_SA_INIT = 34
IKEV2_AUTH = 35
IKEV2_CREATE_CHILD_SA = 36
IKEV2_INFORMATIONAL = 37
IKEV1_MAIN = 2
IKEV1_AGGRESSIVE = 4
IKEV1_INFORMATIONAL = 5
IKEV1_QUICK = 32
IKEV2_NOTIFY = 41
IKEV2_NAT_DETECTION_SOURCE_IP = 16388  # RFC 7296 section 3.10.1
IKEV2_NAT_DETECTION_DESTINATION_IP = 16389
IKEV2_REDIRECT = 16407  # RFC 5685
IKEV1_NAT_D = (20, 130)  # RFC 3947 section 3.2; 130 in the drafts most stacks still send
IKEV1_ENCRYPTED_START = 2  # IKEv1 main mode messages 5 and 6 are encrypted (flag E)
EXCHANGE_NAMES = {
    IKEV2_SA_INIT: "sa_init", IKEV2_AUTH: "auth", IKEV2_CREATE_CHILD_SA: "create_child_sa",
    IKEV2_INFORMATIONAL: "informational", 43: "intermediate",
}
V1_EXCHANGE_NAMES = {IKEV1_MAIN: "main mode", IKEV1_AGGRESSIVE: "aggressive mode",
                     IKEV1_INFORMATIONAL: "informational", IKEV1_QUICK: "quick mode"}


class IkeHeader(NamedTuple):
    spi_i: bytes
    spi_r: bytes
    next_payload: int
    version: int  # 1 or 2
    exchange: int
    flags: int
    message_id: int
    length: int


def ike_header(p: bytes) -> IkeHeader | None:
    if len(p) < IKE_HEADER:
        return None
    ver = p[17] >> 4
    if ver not in (1, 2):
        return None
    length = struct.unpack_from("!I", p, 24)[0]
    if length < IKE_HEADER:
        return None
    return IkeHeader(p[0:8], p[8:16], p[16], ver, p[18], p[19],
                     struct.unpack_from("!I", p, 20)[0], length)


def ike_payloads(p: bytes, first: int) -> list[tuple[int, bytes]]:
    """(type, body) of the cleartext payload chain; stops quietly at anything malformed."""
    out: list[tuple[int, bytes]] = []
    off = IKE_HEADER
    kind = first
    end = min(len(p), struct.unpack_from("!I", p, 24)[0])
    while kind and off + 4 <= end and len(out) < 64:
        nxt = p[off]
        plen = (p[off + 2] << 8) | p[off + 3]
        if plen < 4 or off + plen > end:
            break
        out.append((kind, p[off + 4:off + plen]))
        if kind == 46:  # Encrypted payload: nothing after it is readable
            break
        kind = nxt
        off += plen
    return out


class NatDetection(NamedTuple):
    source: list[bytes]  # hashes of the sender's address as the sender sees it
    destination: list[bytes]  # hashes of the receiver's address as the sender sees it
    redirect: bool


def nat_detection(p: bytes, hdr: IkeHeader) -> NatDetection | None:
    """NAT-D hashes of a cleartext IKE message, or None when it carries none."""
    if hdr.version == 1 and hdr.flags & IKEV1_FLAG_ENCRYPTED:
        return None
    src: list[bytes] = []
    dst: list[bytes] = []
    redirect = False
    v1_seen = 0
    for kind, body in ike_payloads(p, hdr.next_payload):
        if hdr.version == 2 and kind == IKEV2_NOTIFY and len(body) >= 4:
            ntype = (body[2] << 8) | body[3]
            data = body[4 + body[1]:]
            if ntype == IKEV2_NAT_DETECTION_SOURCE_IP:
                src.append(bytes(data))
            elif ntype == IKEV2_NAT_DETECTION_DESTINATION_IP:
                dst.append(bytes(data))
            elif ntype == IKEV2_REDIRECT:
                redirect = True
        elif hdr.version == 1 and kind in IKEV1_NAT_D:
            # RFC 3947 3.2: the first NAT-D is the remote address, the others the local ones.
            (dst if v1_seen == 0 else src).append(bytes(body))
            v1_seen += 1
    if not src and not dst and not redirect:
        return None
    return NatDetection(src, dst, redirect)


_HASHES = (hashlib.sha1, hashlib.md5, hashlib.sha256, hashlib.sha384, hashlib.sha512)


def natd_matches(hashes: list[bytes], version: int, spi_i: bytes, spi_r: bytes, addr: bytes,
                 port: int) -> bool:
    """True when one of ``hashes`` is the NAT-D hash of ``addr:port`` (RFC 7296 2.23, RFC 3947 3.2).

    IKEv2 always uses SHA-1; IKEv1 uses the negotiated hash, so each common one is tried.
    """
    material = spi_i + spi_r + addr + struct.pack("!H", port)
    funcs = _HASHES[:1] if version == 2 else _HASHES
    digests = {f(material).digest() for f in funcs}
    return any(h in digests for h in hashes)


# --- L2TP (RFC 2661 section 3.1 / RFC 3931).
L2TP_PORT = 1701
L2TP_MESSAGES = {1: "sccrq", 2: "sccrp", 3: "scccn", 4: "stopccn", 6: "hello", 7: "ocrq", 8: "ocrp",
                 9: "occn", 10: "icrq", 11: "icrp", 12: "iccn", 14: "cdn", 15: "wen", 16: "sli"}


def l2tp_message(p: bytes) -> tuple[int, str] | None:
    """(version, message) of an L2TP packet: message is a control name, "zlb", or "data"."""
    if len(p) < 6:
        return None
    b0, b1 = p[0], p[1]
    ver = b1 & 0x0F
    if ver != 2:
        return (3, "data") if ver == 3 else None
    if not b0 & 0x80:
        return 2, "data"
    off = 2 + (2 if b0 & 0x40 else 0) + 4 + (4 if b0 & 0x08 else 0)  # length, ids, Ns/Nr
    if b0 & 0x02 and len(p) >= off + 2:  # offset size and padding
        off += 2 + ((p[off] << 8) | p[off + 1])
    if len(p) <= off:
        return 2, "zlb"
    if len(p) < off + 8:
        return None
    attr = (p[off + 4] << 8) | p[off + 5]
    if attr != 0 or (p[off + 2] << 8 | p[off + 3]) != 0:  # the Message Type AVP (IETF) comes first
        return None
    mtype = (p[off + 6] << 8) | p[off + 7]
    return 2, L2TP_MESSAGES.get(mtype, f"type-{mtype}")


# --- PPTP control (RFC 2637 section 2).
PPTP_PORT = 1723
PPTP_MAGIC = b"\x1a\x2b\x3c\x4d"
PPTP_NAMES = {1: "sccrq", 2: "sccrp", 3: "stopccrq", 4: "stopccrp", 5: "echo-request",
              6: "echo-reply", 7: "ocrq", 8: "ocrp", 9: "icrq", 10: "icrp", 11: "iccn",
              12: "ccrq", 13: "cdn", 14: "wen", 15: "sli"}


class PptpControl(NamedTuple):
    ctrl_type: int
    call_id: int | None
    peer_call_id: int | None
    result: int | None


def pptp_messages(p: bytes) -> list[PptpControl]:
    """Every whole PPTP control message at the start of a TCP payload."""
    out: list[PptpControl] = []
    off = 0
    while off + 12 <= len(p) and len(out) < 16:
        length = (p[off] << 8) | p[off + 1]
        if p[off + 4:off + 8] != PPTP_MAGIC or length < 12:
            break
        ctype = (p[off + 8] << 8) | p[off + 9]
        body = p[off:off + length]
        call = peer = result = None
        if ctype == 2 and len(body) >= 15:  # SCCRP: result code after the protocol version
            result = body[14]
        elif ctype == 7 and len(body) >= 14:  # OCRQ: call id
            call = (body[12] << 8) | body[13]
        elif ctype == 8 and len(body) >= 17:  # OCRP: call id, peer call id, result code
            call = (body[12] << 8) | body[13]
            peer = (body[14] << 8) | body[15]
            result = body[16]
        out.append(PptpControl(ctype, call, peer, result))
        off += length
    return out


# --- addresses
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598
# Only RFC 1918, loopback and link-local count as private: the documentation ranges (RFC 5737)
# stand in for public addresses in tests and examples.
_PRIVATE = tuple(ipaddress.IPv4Network(n) for n in
                 ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16"))


def address_kind(addr: bytes) -> str:
    """``cgnat`` (RFC 6598), ``private`` (RFC 1918 and other non-global) or ``public``."""
    ip = ipaddress.IPv4Address(addr)
    if ip in _CGNAT:
        return "cgnat"
    if any(ip in net for net in _PRIVATE):
        return "private"
    return "public"


def addr_str(addr: bytes) -> str:
    return f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}"
