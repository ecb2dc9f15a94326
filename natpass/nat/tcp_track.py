"""TCP connection tracking for the NAT: state bits and the receive-window check of control segments.

What the NAT keeps per TCP flow (:class:`natpass.nat.table.TcpFlow`), per direction: the sequence
number of the latest segment seen from that side (``o_seq`` from the LAN host, ``i_seq`` from the
remote end, -1 while unknown) and the largest window that side may advertise (``o_wmax`` /
``i_wmax``: 65535 shifted by its RFC 7323 window scale, learnt from the SYNs).

The established fast path, which handles every segment without SYN/FIN/RST, stores the sequence
number of each segment it translates (one attribute store); nothing else runs per data segment.
Why not track less: a sequence number learnt only at the handshake would be stale after the first
few megabytes, and a check against stale state either refuses genuine RSTs or accepts any.
Why not track more (Linux ``tcp_in_window`` keeps end, max end and max window per direction,
updated per segment): the window edges cost several comparisons per data segment on the hot path,
and the check below needs only a reference point and a bound.

The check (Linux conntrack ``tcp_in_window`` and RFC 5961 section 3.2 in spirit): a RST, a FIN,
or a SYN on a synchronized connection from side S is accepted when its sequence number lies in
``[ref - W, ref + W + 65535]``, where ``ref`` is the latest sequence number seen from S and ``W``
is the receiver's largest possible window: a genuine sender's next sequence number is at most one
receive window away from any segment it sent (the extra 65535 covers the last segment's length).
An off-path attacker must guess a sequence number inside that span (2W + 64 KiB out of 2**32)
as well as the WAN port. Segments outside it are dropped as ``tcp-out-of-window`` and change
nothing. When nothing was seen from S yet, the segment must acknowledge (ACK flag, acknowledgment
number within 64 KiB of) what the other side sent, as a RST answering a SYN does. A side whose
SYN was not seen (flow taken up mid-connection) has an unknown window scale, taken as the largest
(14): liberal, as Linux is for connections it picks up.

A SYN on a synchronized connection changes no state even in window (the endpoint answers it,
RFC 5961 section 4); after a FIN or RST, a SYN starts a new connection on the same 5-tuple.
"""

from __future__ import annotations

from typing import Final

from natpass.nat import verdict as V
from natpass.nat.table import FIN_LAN, FIN_WAN, RST_SEEN, SYN_LAN, SYN_WAN, WS_LAN, WS_WAN, TcpFlow
from natpass.packets.ipv4 import iter_options

TCP_FIN: Final = 0x01
TCP_SYN: Final = 0x02
TCP_RST: Final = 0x04
TCP_ACK: Final = 0x10
TCP_SYN_FIN_RST: Final = TCP_FIN | TCP_SYN | TCP_RST

OUT_OF_WINDOW: Final = V.TCP_OUT_OF_WINDOW

# RFC 7323 section 2.3: the shift count is at most 14.
MAX_WSCALE: Final = 14
# The largest window a side may advertise, per shift count (shared int objects).
WMAX: Final[tuple[int, ...]] = tuple(65535 << s for s in range(MAX_WSCALE + 1))
UNSCALED: Final = WMAX[0]
UNKNOWN_WMAX: Final = WMAX[MAX_WSCALE]
_SEQ_SPACE = 1 << 32
_SLACK = 65535  # one segment's length beyond the window edge


def window_scale(buf: bytearray, ihl: int) -> int | None:
    """The RFC 7323 window-scale shift of this segment's options (capped at 14), or None."""
    doff = (buf[ihl + 12] >> 4) * 4
    for kind, off, olen in iter_options(buf, ihl + 20, min(ihl + doff, len(buf))):
        if kind == 3 and olen == 3:  # RFC 7323 2.2: window scale, 3 bytes
            return min(buf[off + 2], MAX_WSCALE)
    return None


def _near(value: int, ref: int, below: int, above: int) -> bool:
    """``value`` lies in ``[ref - below, ref + above]`` in sequence-number space."""
    return (value - ref + below) % _SEQ_SPACE <= below + above


def track(f: TcpFlow, buf: bytearray, ihl: int, from_lan: bool) -> str | None:
    """Update the flow's TCP state with one segment seen on the slow path; the drop reason
    :data:`OUT_OF_WINDOW` when the segment must not pass (nothing is changed then)."""
    flags = buf[ihl + 13]
    seq = int.from_bytes(buf[ihl + 4:ihl + 8], "big")
    if from_lan:
        sent, peer, rwin = f.o_seq, f.i_seq, f.i_wmax
    else:
        sent, peer, rwin = f.i_seq, f.o_seq, f.o_wmax
    if flags & TCP_SYN_FIN_RST:
        st = f.state
        synced = st & (SYN_LAN | SYN_WAN) == (SYN_LAN | SYN_WAN)
        closing = st & (RST_SEEN | FIN_LAN | FIN_WAN)
        if flags & TCP_SYN and not flags & TCP_RST and closing:
            # a new connection reusing the 5-tuple: forget the old one
            st = 0
            sent = peer = f.o_seq = f.i_seq = -1
            f.o_wmax = f.i_wmax = UNKNOWN_WMAX
            synced = False
        elif (flags & (TCP_RST | TCP_FIN) or synced) and not _acceptable(flags, seq, buf, ihl,
                                                                         sent, peer, rwin):
            return OUT_OF_WINDOW
        if flags & TCP_RST:
            st |= RST_SEEN
        elif flags & TCP_SYN:
            if synced:
                return None  # the endpoint answers it (challenge ACK); the state stays
            st = _learn_scale(f, buf, ihl, from_lan, st) | (SYN_LAN if from_lan else SYN_WAN)
        if flags & TCP_FIN and not flags & TCP_RST:
            st |= FIN_LAN if from_lan else FIN_WAN
        f.state = st
    if from_lan:
        f.o_seq = seq
    else:
        f.i_seq = seq
    if peer < 0 and flags & TCP_ACK:
        # the acknowledgment says where the other side stands (a flow taken up mid-connection)
        ack = int.from_bytes(buf[ihl + 8:ihl + 12], "big")
        if from_lan:
            f.i_seq = ack
        else:
            f.o_seq = ack
    return None


def _acceptable(flags: int, seq: int, buf: bytearray, ihl: int, sent: int, peer: int,
                rwin: int) -> bool:
    if sent >= 0:
        return _near(seq, sent, rwin, rwin + _SLACK)
    if peer < 0:
        return True  # the flow's first segment: nothing to protect yet
    if not flags & TCP_ACK:
        return False
    ack = int.from_bytes(buf[ihl + 8:ihl + 12], "big")
    return _near(ack, peer, _SLACK, _SLACK)


def _learn_scale(f: TcpFlow, buf: bytearray, ihl: int, from_lan: bool, st: int) -> int:
    """RFC 7323 section 2.2: scaling applies only when both SYNs carry the option. Returns the
    state with this side's option bit."""
    shift = window_scale(buf, ihl)
    if shift is not None:
        st |= WS_LAN if from_lan else WS_WAN
    if from_lan:
        f.o_wmax = UNSCALED if shift is None else WMAX[shift]
    else:
        f.i_wmax = UNSCALED if shift is None else WMAX[shift]
    if st & (SYN_WAN if from_lan else SYN_LAN) and not (st & WS_LAN and st & WS_WAN):
        f.o_wmax = f.i_wmax = UNSCALED
    return st
