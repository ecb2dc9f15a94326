"""What the engine decides for one packet: codes, not objects, so the hot path allocates nothing.

``Engine.process(buf, from_lan, now)`` returns one of these ints and translates ``buf`` in place;
:func:`packets_to_send` turns a code into the packets to emit (replay and the live loop use it).
"""

from __future__ import annotations

from typing import Final

DROP: Final = 0
"""The packet is dropped; ``engine.last_drop`` holds the reason (one of the strings below)."""
TO_WAN: Final = 1
"""Emit ``buf`` (translated in place) on the WAN side."""
TO_LAN: Final = 2
"""Emit ``buf`` (translated in place) on the LAN side (inbound traffic, or hairpinned LAN traffic)."""
REPLY: Final = 4
"""Flag: the engine answers the sender itself (ICMP time exceeded / fragmentation needed).
``code & 3`` says on which side to emit ``engine.reply``; the original packet is dropped and counted."""
MULTI: Final = 8
"""Flag: emit every packet of ``engine.emitted`` (e.g. fragments) on the side ``code & 3``."""
HELD: Final = 16
"""Not a drop and nothing to emit yet: a non-first fragment is kept until the first fragment of
its datagram arrives (then all come out of that later call with MULTI). Counted in
``counters["fragments_held"]``; one pushed out at ``limits.max_fragments`` is dropped as
``fragment-evicted``, one never completed as ``fragment-timeout``."""

# Drop reasons: stable strings used in counters, reports and JSON.
NO_MAPPING: Final = "no-mapping"
FILTERED: Final = "filtered"
MALFORMED: Final = "malformed"
TABLE_FULL: Final = "table-full"
HOST_LIMIT: Final = "host-limit"
PORTS_EXHAUSTED: Final = "ports-exhausted"
TTL_EXCEEDED: Final = "ttl-exceeded"
FRAGMENT_TIMEOUT: Final = "fragment-timeout"
FRAGMENT_EVICTED: Final = "fragment-evicted"
"""A held fragment pushed out by a newer one at ``limits.max_fragments`` (a flood, not a slow
peer)."""
FRAG_NEEDED: Final = "fragmentation-needed"
NOT_LAN_SOURCE: Final = "not-lan-source"
UNSUPPORTED: Final = "unsupported-protocol"
TCP_OUT_OF_WINDOW: Final = "tcp-out-of-window"
"""A TCP RST, FIN, or SYN on an established connection, outside the receive window."""


def passthrough_disabled(switch: str) -> str:
    """Drop reason for traffic of a protocol whose passthrough switch is off."""
    return f"passthrough-disabled:{switch}"


def strict_blocked(switch: str) -> str:
    """Drop reason for a control port closed by ``strict = true`` while its switch is off."""
    return f"strict-blocked:{switch}"


def packets_to_send(code: int, buf: bytearray, reply: bytearray | None,
                    emitted: list[bytearray]) -> list[tuple[int, bytearray]]:
    """The (side, packet) pairs to emit for verdict ``code`` of ``buf``, side being TO_WAN or
    TO_LAN; ``reply`` and ``emitted`` are the engine's ``reply`` and ``emitted`` after that
    call. Empty for DROP and HELD; with REPLY the original packet is not sent."""
    side = code & 3
    if not side:
        return []
    if code & REPLY:
        return [] if reply is None else [(side, reply)]
    if code & MULTI:
        return [(side, p) for p in emitted]
    return [(side, buf)]
