"""What a TLS or DTLS handshake shows in clear: SNI, ALPN, certificate names (RFC 8446, RFC 5246,
RFC 6066, RFC 7301, RFC 6347), and the hints that point to an SSL VPN behind it.

Non-raising: a capture is evidence, and a record that does not parse is just not that.
"""

from __future__ import annotations

from typing import Final, NamedTuple

TLS_HANDSHAKE: Final = 22
HS_CLIENT_HELLO: Final = 1
HS_SERVER_HELLO: Final = 2
HS_CERTIFICATE: Final = 11
EXT_SERVER_NAME: Final = 0  # RFC 6066 section 3
EXT_ALPN: Final = 16  # RFC 7301
DTLS_VERSIONS: Final = frozenset({0xFEFF, 0xFEFD, 0xFEFC, 0x0100})  # DTLS 1.0, 1.2, 1.3; Cisco's pre-standard 0x0100
DTLS_CONTENT_TYPES: Final = frozenset({20, 21, 22, 23, 25})  # RFC 6347 4.1, RFC 9147 (ACK 26 not needed)
DTLS_HEADER: Final = 13
OID_COMMON_NAME: Final = b"\x06\x03\x55\x04\x03"  # 2.5.4.3
OID_ORGANIZATION: Final = b"\x06\x03\x55\x04\x0a"  # 2.5.4.10
DER_STRINGS: Final = frozenset({0x0C, 0x13, 0x14, 0x16})  # UTF8, Printable, Teletex, IA5 string
MAX_NAMES: Final = 8

# Words in a server name or certificate that point to an SSL VPN product (low confidence: a hint).
VENDOR_WORDS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("sstp", ("sstp",)),
    ("anyconnect", ("anyconnect", "openconnect", "ocserv")),
    ("fortinet", ("fortigate", "fortinet", "fortissl", "forti")),
    ("globalprotect", ("globalprotect", "gpgateway", "paloalto")),
    ("pulse", ("pulse", "ivanti", "dana-na")),
    ("ssl-vpn", ("sslvpn", "ssl-vpn", "vpn")),
)
VENDOR_PORTS: Final[dict[int, str]] = {10443: "fortinet", 4433: "ssl-vpn", 8443: "ssl-vpn"}


class ClientHello(NamedTuple):
    sni: str
    alpn: tuple[str, ...]


def _records(p: bytes) -> list[tuple[int, bytes]]:
    """(content type, body) of the whole or cut TLS records at the start of a TCP payload."""
    out: list[tuple[int, bytes]] = []
    off = 0
    while off + 5 <= len(p) and len(out) < 16:
        ctype, major = p[off], p[off + 1]
        if ctype not in (20, 21, 22, 23) or major != 3:
            break
        length = (p[off + 3] << 8) | p[off + 4]
        out.append((ctype, p[off + 5:off + 5 + length]))
        off += 5 + length
    return out


def handshake_types(p: bytes) -> list[int]:
    """Handshake message types in the TLS records of ``p`` (only those in clear)."""
    out = []
    for ctype, body in _records(p):
        off = 0
        while ctype == TLS_HANDSHAKE and off + 4 <= len(body):
            out.append(body[off])
            off += 4 + ((body[off + 1] << 16) | (body[off + 2] << 8) | body[off + 3])
    return out


def client_hello(p: bytes) -> ClientHello | None:
    """SNI and ALPN of a ClientHello at the start of ``p`` (TLS over TCP), or None."""
    recs = _records(p)
    if not recs or recs[0][0] != TLS_HANDSHAKE:
        return None
    b = recs[0][1]
    if len(b) < 4 + 2 + 32 + 1 or b[0] != HS_CLIENT_HELLO:
        return None
    off = 4 + 2 + 32
    off += 1 + b[off]  # session id
    if off + 2 > len(b):
        return ClientHello("", ())
    off += 2 + ((b[off] << 8) | b[off + 1])  # cipher suites
    if off >= len(b):
        return ClientHello("", ())
    off += 1 + b[off]  # compression methods
    if off + 2 > len(b):
        return ClientHello("", ())
    end = min(len(b), off + 2 + ((b[off] << 8) | b[off + 1]))
    off += 2
    sni = ""
    alpn: list[str] = []
    while off + 4 <= end:
        etype = (b[off] << 8) | b[off + 1]
        elen = (b[off + 2] << 8) | b[off + 3]
        ext = b[off + 4:off + 4 + elen]
        if etype == EXT_SERVER_NAME and len(ext) >= 5 and ext[2] == 0:
            n = (ext[3] << 8) | ext[4]
            sni = ext[5:5 + n].decode("ascii", "replace")
        elif etype == EXT_ALPN and len(ext) >= 2:
            pos = 2
            while pos < len(ext) and len(alpn) < MAX_NAMES:
                n = ext[pos]
                alpn.append(ext[pos + 1:pos + 1 + n].decode("ascii", "replace"))
                pos += 1 + n
        off += 4 + elen
    return ClientHello(sni, tuple(alpn))


def certificate_names(p: bytes) -> list[str]:
    """Common and organisation names of the certificates visible in ``p`` (TLS 1.2 sends them in
    clear; TLS 1.3 encrypts them): a DER scan for the two attribute OIDs."""
    out: list[str] = []
    for oid in (OID_COMMON_NAME, OID_ORGANIZATION):
        pos = p.find(oid)
        while pos >= 0 and len(out) < MAX_NAMES:
            v = pos + len(oid)
            if v + 2 <= len(p) and p[v] in DER_STRINGS and p[v + 1] < 0x80:
                name = p[v + 2:v + 2 + p[v + 1]].decode("utf-8", "replace")
                if name and name not in out:
                    out.append(name)
            pos = p.find(oid, v)
    return out


def is_dtls(p: bytes) -> bool:
    """True when ``p`` starts with a DTLS record header whose length fits the datagram."""
    if len(p) < DTLS_HEADER or p[0] not in DTLS_CONTENT_TYPES:
        return False
    if ((p[1] << 8) | p[2]) not in DTLS_VERSIONS:
        return False
    return DTLS_HEADER + ((p[11] << 8) | p[12]) <= len(p)


def vendor_hints(names: list[str], port: int) -> list[tuple[str, str]]:
    """(vendor, why) for each name or port that points to an SSL VPN product."""
    out: list[tuple[str, str]] = []
    for name in names:
        low = name.lower()
        for vendor, words in VENDOR_WORDS:
            word = next((w for w in words if w in low), None)
            if word is not None:
                out.append((vendor, f"'{name}' contains '{word}'"))
                break
    if port in VENDOR_PORTS:
        out.append((VENDOR_PORTS[port], f"TCP port {port}"))
    return out
