"""Replay's far end: what a remote host would have sent back after seeing natpass's translation.

A capture taken without natpass holds inbound packets addressed to the untranslated LAN host. To
replay it through the engine, each such packet is first rewritten into what the far end sent to
natpass's WAN side: destination address and port (or ICMP identifier) of the flow's WAN
endpoint, the quote of an ICMP error likewise, and the helper-specific fields (PPTP Peer Call
ID, GRE key) by the owning helper's ``far_end_view``. Used by replay only, never by the live
datapath.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from natpass.nat.icmp_errors import ICMP_ERROR_TYPES, ICMP_QUERY_REPLIES, far_end_quote
from natpass.nat.ports import PORT_BYTES
from natpass.packets.ipv4 import FRAG_OFFSET_MASK, PROTO_ICMP, PROTO_TCP, PROTO_UDP
from natpass.packets.rewrite import rewrite_bytes, set_address

if TYPE_CHECKING:
    from natpass.nat.state import NatState


def far_end_view(state: NatState, buf: bytearray, now: float) -> bool:
    """Rewrite the captured inbound packet ``buf`` in place; False when no mapping exists."""
    try:
        if _rewrite(state, buf, now):
            return True
        # No mapping: the far end could still only have addressed the router's public
        # address (never the private one), so the WAN side shows that; process() will
        # then drop it (no-mapping / filtered) as it would the real packet.
        if len(buf) >= 20 and (buf[0] & 0x0F) * 4 <= len(buf):
            dst = bytes(buf[16:20])
            if state._is_lan(dst):
                set_address(buf, 16, state._pair(dst))
        return False
    except (IndexError, ValueError):
        return False


def _rewrite(state: NatState, buf: bytearray, now: float) -> bool:
    n = len(buf)
    if n < 20 or buf[0] >> 4 != 4:
        return False
    ihl = (buf[0] & 0x0F) * 4
    if ihl < 20 or n < ihl:
        return False
    proto = buf[9]
    src = bytes(buf[12:16])
    dst = bytes(buf[16:20])
    later = (buf[6] << 8 | buf[7]) & FRAG_OFFSET_MASK
    h = state._proto_helper.get(proto)
    if h is not None:
        if not state._is_lan(dst):
            return False
        # The helper sees the LAN destination: it is its only demultiplexing key (e.g. two LAN
        # hosts holding the same PPTP Call ID with one server). Then the WAN address goes in.
        h.far_end_view(buf, ihl, now)
        set_address(buf, 16, state._pair(dst))
        return True
    table = state.table
    if proto in (PROTO_TCP, PROTO_UDP) and not later and n >= ihl + 4:
        sp = bytes(buf[ihl:ihl + 2])
        dp = bytes(buf[ihl + 2:ihl + 4])
        f = table.lookup_out(proto, dst + src + dp + sp)
        if f is not None:
            wan, wport = f.o_addr, f.o_port
        else:
            m = state._maps_lan[proto].get(state._mapping_key(proto, dst, dp[0] << 8 | dp[1], src,
                                                              sp[0] << 8 | sp[1]))
            if m is None:
                return False
            wan, wport = m.wan_addr, PORT_BYTES[m.wan_port]
        set_address(buf, 16, wan)
        rewrite_bytes(buf, ihl + 2, wport)
        if f is not None and f.helper is not None:
            f.helper.far_end_view(buf, ihl, now)
        return True
    if proto == PROTO_ICMP and n >= ihl + 8:
        typ = buf[ihl]
        if typ in ICMP_QUERY_REPLIES:
            f = table.lookup_out(PROTO_ICMP, dst + src + bytes(buf[ihl + 4:ihl + 6]))
            if f is None:
                return False
            set_address(buf, 16, f.o_addr)
            rewrite_bytes(buf, ihl + 4, f.o_port)
            return True
        if typ in ICMP_ERROR_TYPES:
            wan_addr = far_end_quote(buf, ihl, table)
            if wan_addr is None:
                return False
            set_address(buf, 16, wan_addr)
            return True
        return False
    if proto not in (PROTO_TCP, PROTO_UDP, PROTO_ICMP):
        f = table.lookup_out(proto, dst + src)
        if f is None:
            return False
        set_address(buf, 16, f.o_addr)
        return True
    return False
