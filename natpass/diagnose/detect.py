"""Recognising VPN protocols that ``natpass.packets`` does not carry (WireGuard, OpenVPN, STUN)
from payload bytes alone, and the kind of an address.

Each function takes the transport payload and returns a small decoded value or None. They never
raise on malformed input: a capture is evidence, and a broken packet is just not that protocol.
IKE, L2TP, PPTP and GRE are read with the non-raising ``peek_*`` functions of ``natpass.packets``.
"""

from __future__ import annotations

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


# --- addresses
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598
# Only RFC 1918, loopback and link-local count as private: the documentation ranges (RFC 5737)
# stand in for public addresses in tests and examples.
_PRIVATE = tuple(ipaddress.IPv4Network(n) for n in
                 ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16"))
# IPv6 (RFC 4193 unique local, RFC 4291 link-local and loopback); 2001:db8::/32 stands in for global.
_PRIVATE6 = tuple(ipaddress.IPv6Network(n) for n in ("fc00::/7", "fe80::/10", "::1/128"))


def address_kind(addr: bytes) -> str:
    """``cgnat`` (RFC 6598), ``private`` (RFC 1918, RFC 4193 and other non-global) or ``public``."""
    if len(addr) == 16:
        ip6 = ipaddress.IPv6Address(addr)
        return "private" if any(ip6 in net for net in _PRIVATE6) else "public"
    ip = ipaddress.IPv4Address(addr)
    if ip in _CGNAT:
        return "cgnat"
    if any(ip in net for net in _PRIVATE):
        return "private"
    return "public"


def addr_str(addr: bytes) -> str:
    """Dotted quad for IPv4, RFC 5952 text for IPv6."""
    if len(addr) == 4:
        return f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}"
    return str(ipaddress.ip_address(addr))


def endpoint(addr: bytes, port: int) -> str:
    """``a.b.c.d:port`` or ``[v6]:port`` (RFC 5952 section 6); the bare address without a port."""
    if not port:
        return addr_str(addr)
    return f"[{addr_str(addr)}]:{port}" if len(addr) == 16 else f"{addr_str(addr)}:{port}"
