"""Small pieces shared by the passthrough helpers: address text, byte access, the context check."""

from __future__ import annotations

from typing import Any

from natpass.nat.config import NatConfig, Timeouts
from natpass.nat.helper import Helper, HelperContext
from natpass.packets.ipv4 import OFF_DST, OFF_SRC, addr_to_str
from natpass.packets.rewrite import set_address

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


# Address rewrites of GRE, ESP and AH packets: the one implementation in natpass.packets.
set_ip_addr = set_address


class SwitchedHelper(Helper):
    """What the three helpers share: their timeouts, their own counters (each also handed to
    ``ctx.count``), and a switch flip that tears tunnel state down only when on turns off."""

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        super().__init__()
        self.timeouts = timeouts or Timeouts()
        self._counters: dict[str, int] = {}

    def _count(self, name: str, n: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + n
        if self.ctx is not None:
            self.ctx.count(name, n)

    def reconfigure(self, config: NatConfig, now: float) -> None:
        # Expiry reads self.timeouts each time, so live tunnels follow the new values at once.
        self.timeouts = config.timeouts

    def set_enabled(self, on: bool, now: float) -> int:
        was = self.enabled
        self.enabled = on
        return self.tear_down(now) if was and not on else 0

    def tear_down(self, now: float) -> int:
        """Forget every tunnel (the switch went off); returns how many were torn down."""
        return 0
