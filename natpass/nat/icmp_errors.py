"""ICMP errors through the NAT (RFC 5508 section 4, RFC 5382 REQ-9, RFC 4787 REQ-...).

An ICMP error quotes the packet that caused it. For an error about a mapped flow the NAT rewrites
the quote as well as the outer header: an error from the WAN about a packet the LAN host sent
gets the LAN host's address and port back in the quote and goes to the LAN host; an error from
a LAN host about an inbound packet gets the WAN address and port in the quote and leaves from the
WAN address. The flow is neither refreshed nor removed. Errors the router itself originates
(time exceeded, fragmentation needed) are built by :func:`natpass.packets.icmp.build_error`.
"""

from __future__ import annotations

from collections.abc import Callable

from natpass.nat import verdict as V
from natpass.nat.table import FlowTable
from natpass.packets.checksum import adjust, combine, delta
from natpass.packets.icmp import ERROR_TYPES as ICMP_ERROR_TYPES
from natpass.packets.icmp import QUERY_TYPES, REQUEST_TYPES
from natpass.packets.ipv4 import FRAG_OFFSET_MASK, PROTO_ICMP, PROTO_TCP, PROTO_UDP
from natpass.packets.rewrite import rewrite_icmp_quote

ICMP_QUERY_REQUESTS = REQUEST_TYPES
ICMP_QUERY_REPLIES = QUERY_TYPES - REQUEST_TYPES
# RFC 1624: decrementing the TTL byte changes the word (TTL, protocol) by -0x100, whose
# one's complement adjustment ~m + m' is the constant 0xFEFF whatever the TTL value.
TTL_DEC_DELTA = 0xFEFF


def quoted_flow_key(buf: bytearray, ihl: int) -> tuple[int, bytes, int, int] | str:
    """(quoted protocol, key, quoted L4 offset, port offset) of the packet quoted in the ICMP
    error ``buf``, keyed as the flow direction the quote was sent in; a drop reason when the
    quote is not one natpass can map."""
    total = len(buf)
    inner = ihl + 8
    if total < inner + 20 or buf[inner] >> 4 != 4:
        return V.MALFORMED
    iihl = (buf[inner] & 0x0F) * 4
    if iihl < 20 or total < inner + iihl + 4:
        return V.MALFORMED
    if (buf[inner + 6] << 8 | buf[inner + 7]) & FRAG_OFFSET_MASK:
        return V.NO_MAPPING  # a later fragment quotes no ports
    iproto = buf[inner + 9]
    l4 = inner + iihl
    isrc = bytes(buf[inner + 12:inner + 16])
    idst = bytes(buf[inner + 16:inner + 20])
    if iproto == PROTO_TCP or iproto == PROTO_UDP:
        return iproto, isrc + idst + bytes(buf[l4:l4 + 2]) + bytes(buf[l4 + 2:l4 + 4]), l4, l4
    if iproto == PROTO_ICMP:
        if total < l4 + 8:
            return V.MALFORMED
        return iproto, isrc + idst + bytes(buf[l4 + 4:l4 + 6]), l4, l4 + 4
    return V.NO_MAPPING


def translate_error(buf: bytearray, ihl: int, from_lan: bool, table: FlowTable,
                    is_lan: Callable[[bytes], bool]) -> int | str:
    """Translate the ICMP error ``buf`` in place; returns TO_WAN/TO_LAN or a drop reason."""
    q = quoted_flow_key(buf, ihl)
    if isinstance(q, str):
        return q
    iproto, key, l4, port_off = q
    inner = ihl + 8
    # The quote went the other way than the error: key it as the flow's opposite direction.
    if iproto == PROTO_ICMP:
        key = key[4:8] + key[0:4] + key[8:10]
    else:
        key = key[4:8] + key[0:4] + key[10:12] + key[8:10]
    f = table.lookup_out(iproto, key) if from_lan else table.lookup_in(iproto, key)
    if f is None:
        return V.NO_MAPPING
    if from_lan:
        if iproto != PROTO_ICMP:
            port_off = l4 + 2  # the quote's destination port is the LAN host's
        src = bytes(buf[12:16])
        if src != f.i_addr and not is_lan(src):
            return V.NOT_LAN_SOURCE
        new_addr, new_port, addr_off, outer_off = f.o_addr, f.o_port, inner + 16, 12
    else:
        if bytes(buf[16:20]) != f.o_addr:
            return V.NO_MAPPING
        new_addr, new_port, addr_off, outer_off = f.i_addr, f.i_port, inner + 12, 16
    rewrite_icmp_quote(buf, ihl, addr_off, port_off, new_addr, new_port)
    old_outer = bytes(buf[outer_off:outer_off + 4])
    buf[outer_off:outer_off + 4] = new_addr
    buf[8] -= 1
    adjust(buf, 10, combine(delta(old_outer, new_addr), TTL_DEC_DELTA))
    return V.TO_WAN if from_lan else V.TO_LAN


def far_end_quote(buf: bytearray, ihl: int, table: FlowTable) -> bytes | None:
    """Replay: an ICMP error from the far end about a packet of a LAN host, as captured (the
    quote names the untranslated LAN endpoint): rewrite the quote into what the far end received
    (the WAN endpoint). Returns the WAN address for the outer destination, None without flow."""
    if len(buf) < ihl + 8 + 24:
        return None
    q = quoted_flow_key(buf, ihl)
    if isinstance(q, str):
        return None
    iproto, key, _l4, port_off = q
    f = table.lookup_out(iproto, key)
    if f is None:
        return None
    rewrite_icmp_quote(buf, ihl, ihl + 8 + 12, port_off, f.o_addr, f.o_port)
    return f.o_addr


__all__ = ["ICMP_ERROR_TYPES", "ICMP_QUERY_REPLIES", "ICMP_QUERY_REQUESTS", "far_end_quote",
           "translate_error"]
