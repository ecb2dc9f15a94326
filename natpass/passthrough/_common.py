"""Small pieces shared by the passthrough helpers: address text, byte access, the context check."""

from __future__ import annotations

from typing import Any

from natpass.nat.helper import HelperContext
from natpass.packets.ipv4 import OFF_DST, OFF_SRC, addr_to_str

SEQ_MASK = 0xFFFFFFFF  # TCP sequence numbers wrap at 2**32 (RFC 9293 3.4)
HALF_SEQ = 0x80000000


def ip_text(addr: bytes) -> str:
    return addr_to_str(addr)


def src_of(buf: bytearray) -> bytes:
    return bytes(buf[OFF_SRC:OFF_SRC + 4])


def dst_of(buf: bytearray) -> bytes:
    return bytes(buf[OFF_DST:OFF_DST + 4])


def u16(buf: bytes | bytearray, off: int) -> int:
    return (buf[off] << 8) | buf[off + 1]


def u32(buf: bytes | bytearray, off: int) -> int:
    return int.from_bytes(buf[off:off + 4], "big")


def need_ctx(ctx: HelperContext | None) -> HelperContext:
    """The bound context; a helper used before ``Engine`` bound it is a programming error."""
    if ctx is None:
        raise RuntimeError("passthrough helper used before Engine.bind()")
    return ctx


def cap(table: dict[Any, Any], limit: int) -> None:
    """Forget the oldest entries (dicts keep insertion order) beyond ``limit``: helper tables
    fed by packets must stay bounded whatever a peer sends."""
    while len(table) > limit:
        del table[next(iter(table))]
