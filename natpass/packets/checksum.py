"""Internet checksum (RFC 1071), incremental update (RFC 1624) and the TCP/UDP pseudo-header."""

from __future__ import annotations

import sys

Buffer = bytes | bytearray | memoryview


def ones_sum(data: Buffer, initial: int = 0) -> int:
    """Folded 16-bit one's complement sum of ``data`` (big-endian words, odd byte padded)."""
    n = len(data)
    if n & 1:
        data = bytes(data) + b"\x00"
        n += 1
    # One big-int conversion beats a Python loop over 16-bit words by two orders of magnitude.
    total = initial + _sum_words(data, n)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _sum_words(data: Buffer, n: int) -> int:
    # Sum of 16-bit words == big integer of the bytes reduced modulo 0xFFFF (one's complement
    # arithmetic), except that a non-zero multiple of 0xFFFF must stay 0xFFFF, not 0.
    if n == 0:
        return 0
    value = int.from_bytes(data, "big")
    if value == 0:
        return 0
    r = value % 0xFFFF
    return r if r else 0xFFFF


def internet_checksum(data: Buffer, initial: int = 0) -> int:
    """The checksum field value for ``data`` (the field itself zeroed or excluded)."""
    return ~ones_sum(data, initial) & 0xFFFF


def verify(data: Buffer, initial: int = 0) -> bool:
    """True when ``data`` (checksum field included) sums to all ones."""
    return ones_sum(data, initial) == 0xFFFF


def pseudo_header_sum(src: Buffer, dst: Buffer, proto: int, length: int) -> int:
    """One's complement sum of the IPv4 pseudo-header (RFC 793/768)."""
    return ones_sum(bytes(src) + bytes(dst), proto + length)


def l4_checksum(src: Buffer, dst: Buffer, proto: int, segment: Buffer) -> int:
    """TCP/UDP checksum of ``segment`` (its checksum field zeroed) over the pseudo-header."""
    return internet_checksum(segment, pseudo_header_sum(src, dst, proto, len(segment)))


def delta(old: Buffer, new: Buffer) -> int:
    """Precomputed RFC 1624 adjustment for replacing ``old`` by ``new`` (equal even lengths)."""
    # ~m + m' summed in one's complement: the part of eqn. 3 that does not depend on the packet.
    return ones_sum(new, ones_sum(old) ^ 0xFFFF)


def word_delta(old: int, new: int) -> int:
    """RFC 1624 adjustment for one 16-bit word changing from ``old`` to ``new``."""
    total = (~old & 0xFFFF) + new
    return (total & 0xFFFF) + (total >> 16)


def apply_delta(checksum: int, adj: int) -> int:
    """New checksum field after an adjustment from :func:`delta` (RFC 1624 eqn. 3)."""
    total = (~checksum & 0xFFFF) + adj
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def adjust(buf: bytearray, off: int, adj: int) -> None:
    """Apply an RFC 1624 adjustment (eqn. 3) to the checksum field at ``off`` of ``buf``."""
    c = ((buf[off] << 8 | buf[off + 1]) ^ 0xFFFF) + adj
    c = (c & 0xFFFF) + (c >> 16)
    c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
    buf[off] = c >> 8
    buf[off + 1] = c & 0xFF


def adjust_udp(buf: bytearray, off: int, adj: int) -> None:
    """Like :func:`adjust` for a UDP checksum: a zero field (no checksum, RFC 768) stays zero and
    a computed zero is sent as 0xFFFF."""
    if buf[off] == 0 and buf[off + 1] == 0:
        return
    c = ((buf[off] << 8 | buf[off + 1]) ^ 0xFFFF) + adj
    c = (c & 0xFFFF) + (c >> 16)
    c = ((c & 0xFFFF) + (c >> 16)) ^ 0xFFFF
    if c == 0:
        c = 0xFFFF
    buf[off] = c >> 8
    buf[off + 1] = c & 0xFF


def combine(a: int, b: int) -> int:
    """One's complement sum of two adjustments, so several rewrites cost one update."""
    total = a + b
    return (total & 0xFFFF) + (total >> 16)


assert sys.byteorder in ("little", "big")
