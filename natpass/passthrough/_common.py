"""Small pieces shared by the passthrough helpers: address text, byte access, the context check."""

from __future__ import annotations

from typing import Any

from natpass.nat.config import NatConfig, Timeouts
from natpass.nat.helper import Helper, HelperContext
from natpass.packets.checksum import apply_delta, delta
from natpass.packets.ipv4 import OFF_CHECKSUM, OFF_DST, OFF_SRC, addr_to_str

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


_DELTAS: dict[bytes, int] = {}  # old+new address -> RFC 1624 adjustment (a handful of pairs)
_MAX_DELTAS = 65536


def set_ip_addr(buf: bytearray, off: int, new: bytes) -> None:
    """Replace the IPv4 source (``OFF_SRC``) or destination (``OFF_DST``) address of a GRE, ESP or
    AH packet, adjusting the header checksum (RFC 1624). These protocols have no pseudo-header
    checksum, so this is all ``HelperContext.set_src/set_dst`` would do, without recomputing the
    adjustment for every packet of a tunnel."""
    old = bytes(buf[off:off + 4])
    if old == new:
        return
    key = old + new
    adj = _DELTAS.get(key)
    if adj is None:
        adj = delta(old, new)
        if len(_DELTAS) < _MAX_DELTAS:
            _DELTAS[key] = adj
    buf[off:off + 4] = new
    c = apply_delta((buf[OFF_CHECKSUM] << 8) | buf[OFF_CHECKSUM + 1], adj)
    buf[OFF_CHECKSUM] = c >> 8
    buf[OFF_CHECKSUM + 1] = c & 0xFF


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
