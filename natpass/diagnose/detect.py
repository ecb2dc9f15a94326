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

from natpass.packets import ike as ikep

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


# OpenVPN control-channel protection (openvpn doc/man-sections/protocol-options, ssl_pkt.h):
# plain TLS mode:  opcode|key, session id (8), ack count (1), [acks], message packet id (4), ...
# --tls-auth:      opcode|key, session id (8), HMAC (16..64), packet id (4), net time (4), ack count, ...
# --tls-crypt:     opcode|key, session id (8), packet id (4), net time (4), tag (32), encrypted rest
# --tls-crypt-v2:  as tls-crypt, the client's first reset is P_CONTROL_HARD_RESET_CLIENT_V3 with its
#                  wrapped client key appended (and P_CONTROL_WKC_V1 may carry it later).
OVPN_HMAC_SIZES = (20, 32, 64, 16, 28, 48)  # SHA1 (default), SHA256, SHA512, MD5, SHA224, SHA384
OVPN_TLS_CRYPT_TAG = 32
OVPN_TIME_SLACK = 7 * 86400.0  # peers' clocks and the capture's may differ by days, not years
OVPN_MAX_START_PID = 64  # a reset is among the first packets of its packet-id space


def _plausible_time(v: int, now: float | None) -> bool:
    if now is None or now < 1e9:
        return v > 1_000_000_000  # after 2001: a Unix time, not a random or counter value
    return abs(v - now) <= OVPN_TIME_SLACK


def openvpn_control_mode(p: bytes, now: float | None = None) -> str:
    """How an OpenVPN control packet's control channel is protected: ``tls-crypt-v2``,
    ``tls-crypt``, ``tls-auth``, ``tls`` (none), or "" when its layout fits none of them.

    ``now`` is the capture time of the packet (Unix seconds): the clear net-time field of
    tls-auth and tls-crypt must be near it.
    """
    n = len(p)
    if n < OVPN_CONTROL_MIN:
        return ""
    op = p[0] >> 3
    if op in (OVPN_HARD_RESET_CLIENT_V3, OVPN_CONTROL_WKC_V1):
        return "tls-crypt-v2"

    def pid_time(off: int) -> bool:
        if n < off + 8:
            return False
        pid = int.from_bytes(p[off:off + 4], "big")
        return 0 < pid <= OVPN_MAX_START_PID * 1024 and _plausible_time(int.from_bytes(p[off + 4:off + 8], "big"), now)

    if n >= 9 + 8 + OVPN_TLS_CRYPT_TAG + 1 and pid_time(9):
        return "tls-crypt"
    for h in OVPN_HMAC_SIZES:
        if n >= 9 + h + 8 + 1 and pid_time(9 + h) and p[9 + h + 8] <= 8:
            return "tls-auth"
    acks = p[9]
    if acks <= 8 and n >= 10 + acks * 4 + (8 if acks else 0):
        return "tls"
    return ""


OVPN_MODE_HINT = {
    "tls": "TLS mode, control channel not protected (no tls-auth/tls-crypt)",
    "tls-auth": "TLS mode with --tls-auth: an HMAC and a clear packet id/time after the session id",
    "tls-crypt": "TLS mode with --tls-crypt: packet id and time in clear after the session id, then a "
                 "32-byte tag and the encrypted control channel",
    "tls-crypt-v2": "TLS mode with --tls-crypt-v2: the client's reset is P_CONTROL_HARD_RESET_CLIENT_V3 "
                    "carrying its wrapped key",
}
OVPN_PORT = 1194  # IANA "openvpn"
OVPN_STATIC_IV = 16  # CBC IV of static-key mode
OVPN_BLOCK = 16  # AES/CBC block: the ciphertext is whole blocks


def openvpn_static_hmac(lengths: list[int]) -> int | None:
    """The HMAC size under which every packet length fits OpenVPN static-key mode (``--secret``:
    HMAC, then a 16-byte IV, then whole 16-byte cipher blocks, at least one), or None."""
    if not lengths:
        return None
    for h in OVPN_HMAC_SIZES:
        if all(n >= h + OVPN_STATIC_IV + OVPN_BLOCK and (n - h) % OVPN_BLOCK == 0 for n in lengths):
            return h
    return None


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


# --- IKE beyond UDP 500/4500, and what IKEv1 vendor IDs say about the client (RFC 2408 3.16)
def ikev2_sa_init(p: bytes) -> bool:
    """True when ``p`` is a whole IKEv2 IKE_SA_INIT message (RFC 7296 3.1, 1.2): version 2.0,
    message id 0, length equal to the datagram, first payload SA or Notify, and request flags
    (initiator bit, zero responder SPI) or a response: IKEv2 recognised on any port."""
    hdr = ikep.peek_ike(p)
    return (hdr is not None and hdr.is_v2 and hdr.minor == 0 and hdr.exchange == ikep.IKE_SA_INIT
            and hdr.message_id == 0 and hdr.length == len(p)
            and hdr.next_payload in (ikep.V2_SA, ikep.V2_NOTIFY)
            and (hdr.response or (hdr.initiator and hdr.spi_r == bytes(8))))


IKEV1_VENDOR_IDS = (  # well-known vendor ID prefixes (hex) and what they say
    ("1e2b516905991c7d7c96fcbfb587e461", "windows"),  # MS NT5 ISAKMPOAKLEY: the Windows built-in client
    ("09002689dfd6b712", "xauth"),  # draft-ietf-ipsec-isakmp-xauth: user login after phase 1
    ("12f5f28c457168a9702d9fe274cc", "cisco-unity"),  # Cisco Unity: mode config road warrior
    ("4a131c81070358455c5728f20e95452f", "nat-t"),  # RFC 3947
    ("afcad71368a1f1c96b8696fc7757", "dpd"),  # RFC 3706
)


def ikev1_vendor_ids(p: bytes) -> list[str]:
    """Names of the known vendor IDs in a cleartext IKEv1 message."""
    out = []
    for pl in ikep.peek_payloads(p):
        if pl.type == ikep.V1_VENDOR_ID:
            hexa = pl.data.hex()
            out += [name for prefix, name in IKEV1_VENDOR_IDS if hexa.startswith(prefix)]
    return out
