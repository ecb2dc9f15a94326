"""Rewrite fields of an IPv4 packet in place and keep every checksum right (RFC 1624).

The one implementation used by the NAT engine, its helper context and the passthrough helpers:
an address (IP header checksum, and the TCP/UDP checksum whose pseudo-header covers it), bytes
inside the L4 header or payload (TCP, UDP or ICMP checksum), and the address and port of the
packet quoted inside an ICMP error (quoted header checksum, quoted L4 checksum when it is there,
and the ICMP checksum over all of it).
"""

from __future__ import annotations

from natpass.packets.checksum import adjust, adjust_udp, delta
from natpass.packets.ipv4 import FRAG_OFFSET_MASK, PROTO_ICMP, PROTO_TCP, PROTO_UDP

_DELTAS: dict[bytes, int] = {}  # old + new address -> adjustment (a tunnel rewrites the same pair)
_MAX_DELTAS = 65536


def l4_checksum_offset(buf: bytearray, ihl: int) -> int:
    """Offset of the TCP/UDP checksum of ``buf`` when this packet (or first fragment) carries
    it, else -1."""
    proto = buf[9]
    if (buf[6] << 8 | buf[7]) & FRAG_OFFSET_MASK:
        return -1  # a later fragment carries no L4 header
    total = len(buf)
    if proto == PROTO_TCP and total >= ihl + 18:
        return ihl + 16
    if proto == PROTO_UDP and total >= ihl + 8:
        return ihl + 6
    return -1


def address_delta(old: bytes, new: bytes) -> int:
    """RFC 1624 adjustment for one address replacing another (memoised: few pairs recur)."""
    key = old + new
    adj = _DELTAS.get(key)
    if adj is None:
        adj = delta(old, new)
        if len(_DELTAS) < _MAX_DELTAS:
            _DELTAS[key] = adj
    return adj


def set_address(buf: bytearray, off: int, addr: bytes) -> None:
    """Replace the source (``off`` 12) or destination (16) address, fixing the IP header
    checksum and, for TCP/UDP, the L4 checksum (its pseudo-header holds the address)."""
    old = bytes(buf[off:off + 4])
    if old == addr:
        return
    adj = address_delta(old, addr)
    buf[off:off + 4] = addr
    adjust(buf, 10, adj)
    proto = buf[9]
    if proto == PROTO_TCP or proto == PROTO_UDP:
        ck = l4_checksum_offset(buf, (buf[0] & 0x0F) * 4)
        if ck >= 0:
            if proto == PROTO_UDP:
                adjust_udp(buf, ck, adj)
            else:
                adjust(buf, ck, adj)


def rewrite_bytes(buf: bytearray, offset: int, new: bytes) -> None:
    """Overwrite ``len(new)`` bytes at ``offset`` (inside the L4 header or payload) and fix the
    TCP, UDP or ICMP checksum. Odd offsets and lengths are handled; lengths never change."""
    n = len(new)
    if n == 0:
        return
    if offset < 0 or offset + n > len(buf):
        raise IndexError("rewrite outside the packet")
    ihl = (buf[0] & 0x0F) * 4
    proto = buf[9]
    # Align the changed span on 16-bit words counted from the L4 header start.
    start = offset - ((offset - ihl) & 1)
    end = offset + n
    if (end - start) & 1:
        end += 1
    end = min(end, len(buf))
    old = bytes(buf[start:end])
    buf[offset:offset + n] = new
    adj = delta(old, bytes(buf[start:end]))
    if proto == PROTO_ICMP:
        if len(buf) >= ihl + 4 and not (buf[6] << 8 | buf[7]) & FRAG_OFFSET_MASK:
            adjust(buf, ihl + 2, adj)
        return
    ck = l4_checksum_offset(buf, ihl)
    if ck >= 0:
        if proto == PROTO_UDP:
            adjust_udp(buf, ck, adj)
        else:
            adjust(buf, ck, adj)


def rewrite_icmp_quote(buf: bytearray, ihl: int, addr_off: int, port_off: int, new_addr: bytes,
                       new_port: bytes) -> None:
    """In the ICMP error ``buf`` (IP header ``ihl`` bytes), replace the quoted packet's address
    at ``addr_off`` and its port (TCP/UDP) or identifier (ICMP query) at ``port_off``. Fixes the
    quoted IP header checksum, the quoted TCP/UDP/ICMP checksum when the quote holds it, and
    the outer ICMP checksum (RFC 5508 section 4: what a NAT does to an ICMP error)."""
    total = len(buf)
    inner = ihl + 8
    l4 = inner + (buf[inner] & 0x0F) * 4
    iproto = buf[inner + 9]
    # Everything the ICMP checksum covers that changes lies in [inner, span_end).
    span_end = min(total, l4 + 18)
    if (span_end - inner) & 1 and span_end < total:
        span_end += 1
    old_span = bytes(buf[inner:span_end])
    old_addr = bytes(buf[addr_off:addr_off + 4])
    old_port = bytes(buf[port_off:port_off + 2])
    buf[addr_off:addr_off + 4] = new_addr
    buf[port_off:port_off + 2] = new_port
    adjust(buf, inner + 10, delta(old_addr, new_addr))
    if iproto == PROTO_TCP:
        if total >= l4 + 18:
            adjust(buf, l4 + 16, delta(old_addr + old_port, new_addr + new_port))
    elif iproto == PROTO_UDP:
        if total >= l4 + 8:
            adjust_udp(buf, l4 + 6, delta(old_addr + old_port, new_addr + new_port))
    elif total >= l4 + 4:
        adjust(buf, l4 + 2, delta(old_port, new_port))
    adjust(buf, ihl + 2, delta(old_span, bytes(buf[inner:span_end])))
