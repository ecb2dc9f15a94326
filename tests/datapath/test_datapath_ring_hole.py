"""The RX ring loop over an in-memory ring: a frame the kernel leaves unfilled while later frames
are ready (seen under a flood: the socket then starved for good) is skipped after a short grace;
a frame that is only late is read in order."""

from __future__ import annotations

from typing import Any

from natpass.datapath import live
from natpass.datapath.packetsock import TPACKET2_HDR
from natpass.nat import verdict as V

FRAMES = 8
FSIZE = 2048
MAC_OFF = 34  # where a frame's Ethernet header starts in its slot


class MemRing:
    """The parts of ``packetsock.Ring`` the loop reads, over a bytearray instead of an mmap."""

    def __init__(self) -> None:
        self.map = bytearray(FRAMES * FSIZE)
        self.mv = memoryview(self.map)
        self.frames = FRAMES
        self.frame_size = FSIZE
        self.index = 0

    def fill(self, slot: int, ident: int) -> None:
        """An IPv4 frame in ``slot``, status TP_STATUS_USER; ``ident``: its IP ID."""
        packet = bytes([0x45, 0, 0, 28]) + ident.to_bytes(2, "big") + bytes(22)
        frame = bytes(12) + b"\x08\x00" + packet
        off = slot * FSIZE
        TPACKET2_HDR.pack_into(self.mv, off, 1, len(frame), len(frame), MAC_OFF, MAC_OFF + 14)
        self.mv[off + MAC_OFF:off + MAC_OFF + len(frame)] = frame


class SeenEngine:
    """Records the IP ID of every packet the loop hands over, and drops it."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def process(self, buf: bytearray, from_lan: bool, now: float) -> int:
        self.seen.append(int.from_bytes(buf[4:6], "big"))
        return V.DROP


def _datapath(ring: MemRing) -> tuple[Any, Any, SeenEngine]:
    engine = SeenEngine()
    dp = live.LiveDatapath.__new__(live.LiveDatapath)
    sides = []
    for name in ("lan", "wan"):
        side = live.Side.__new__(live.Side)
        side.name = side.ifname = name
        side.rx_ring = ring if name == "lan" else None  # type: ignore[assignment]
        side.tx_ring = None
        side.by_dst = {}
        side.tx_pending = side.rx = 0
        side.stall_index, side.stall_since = -1, 0.0
        sides.append(side)
    dp.lan, dp.wan = sides
    dp.engine = engine
    dp.drops = dp.ring_holes = 0
    dp._last_hole_log = -1e9
    return dp, dp.lan, engine


def test_a_frame_left_unfilled_is_skipped_after_the_grace() -> None:
    ring = MemRing()
    ring.fill(1, 101)
    ring.fill(2, 102)  # slot 0 stays the kernel's
    dp, lan, engine = _datapath(ring)
    dp._drain_ring(lan, True, 100.0)
    dp._drain_ring(lan, True, 100.0 + live.RING_HOLE_S / 2)
    assert engine.seen == [] and dp.ring_holes == 0  # within the grace: still waiting in order
    dp._drain_ring(lan, True, 100.0 + live.RING_HOLE_S * 2)
    assert engine.seen == [101, 102]
    assert dp.ring_holes == 1
    assert ring.index == 3 and lan.rx == 2
    assert ring.mv[FSIZE] == 0 and ring.mv[2 * FSIZE] == 0  # both handed back to the kernel
    ring.fill(3, 103)  # and the loop goes on from there
    dp._drain_ring(lan, True, 101.0)
    assert engine.seen == [101, 102, 103] and dp.ring_holes == 1


def test_a_late_frame_is_read_in_order() -> None:
    ring = MemRing()
    ring.fill(1, 101)
    dp, lan, engine = _datapath(ring)
    dp._drain_ring(lan, True, 100.0)
    ring.fill(0, 100)  # the kernel finishes copying into slot 0 within the grace
    dp._drain_ring(lan, True, 100.0 + live.RING_HOLE_S / 2)
    assert engine.seen == [100, 101]
    assert dp.ring_holes == 0 and ring.index == 2


def test_an_empty_ring_is_not_a_hole() -> None:
    ring = MemRing()
    dp, lan, engine = _datapath(ring)
    for t in (100.0, 101.0, 102.0):
        dp._drain_ring(lan, True, t)
    assert engine.seen == [] and dp.ring_holes == 0 and ring.index == 0
