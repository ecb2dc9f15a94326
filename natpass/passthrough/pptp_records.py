"""What the PPTP helper keeps (natpass.passthrough.pptp): its records and their limits.

A :class:`Control` is one followed control connection with a parser state (:class:`StreamDir`)
per direction and its calls; a :class:`Call` maps a LAN Call ID to a WAN Call ID for one server; a
:class:`Binding` is address-only GRE (or an ended call remembered). :class:`PptpLimits` bounds
them all, per LAN host. The protocol rules live in the helper's module, the call table in
:mod:`natpass.passthrough.pptp_calls`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from natpass.nat.config import Limits
from natpass.nat.ipfast import IpFast
from natpass.passthrough._common import StateLimit

REWRITE_MEMORY: Final = 64  # rewrites remembered per direction for retransmissions


@dataclass(frozen=True, slots=True)
class PptpLimits:
    """Everything the PPTP helper keeps is bounded here (like netfilter's expectation policy).

    ``controls`` (followed control connections), ``calls``, ``gre_bindings`` (address-only GRE,
    one LAN host per far end and WAN address) and ``ended_calls`` (ended calls remembered so that
    their late GRE is dropped ``pptp:no-call`` rather than sent by address): each worth a flow,
    ``max_flows_per_host`` per LAN host and ``max_flows`` in all, least recently used out first,
    and a host pushes out only its own entries or a host's holding more (``HostLru``).
    ``calls_per_control``: calls one control connection may open, far beyond any real client; one
    more is refused and the connection fails closed (its Call ID must not leave untranslated)."""

    controls: StateLimit
    calls: StateLimit
    gre_bindings: StateLimit
    ended_calls: StateLimit
    calls_per_control: int = 64

    @classmethod
    def from_config(cls, limits: Limits) -> PptpLimits:
        flows = StateLimit.like_flows(limits)
        return cls(controls=flows, calls=flows, gre_bindings=flows, ended_calls=flows)



@dataclass(slots=True, eq=False)
class Call:
    """One PPTP call crossing the router."""

    lan: bytes
    remote: bytes
    wan: bytes
    lan_call_id: int
    wan_call_id: int
    control: Control
    created: float
    last_seen: float
    remote_call_id: int | None = None
    up: bool = False
    ended: bool = False
    # the engine's cached GRE translations of this call (natpass.nat.ipfast), per direction
    fast_out: IpFast | None = None
    fast_in: IpFast | None = None


@dataclass(slots=True, eq=False)
class StreamDir:
    """Parser state of one direction of a control connection."""

    next_seq: int | None = None
    partial: bytearray = field(default_factory=bytearray)
    msg_seq: int = 0
    msg_len: int = 0  # 0 until the 12-byte header is complete
    ctype: int = 0
    skip: bool = False  # a message counted as bad and passed untouched
    pending: list[tuple[int, str]] = field(default_factory=list)
    values: dict[str, int] = field(default_factory=dict)
    broken: str | None = None
    rewrites: deque[tuple[int, bytes, bytes]] = field(default_factory=lambda: deque(maxlen=REWRITE_MEMORY))

    def saved(self) -> list[Any]:
        """This parser state as plain data (the saved connection state)."""
        return [self.next_seq, self.partial.hex(), self.msg_seq, self.msg_len, self.ctype, self.skip,
                [[o, k] for o, k in self.pending], self.values, self.broken,
                [[q, a.hex(), b.hex()] for q, a, b in self.rewrites]]

    @classmethod
    def from_saved(cls, r: list[Any]) -> StreamDir:
        """The inverse of :meth:`saved` (raises TypeError/ValueError/IndexError on bad data)."""
        d = cls(r[0] if r[0] is None else int(r[0]), bytearray.fromhex(r[1]), int(r[2]), int(r[3]),
                int(r[4]), bool(r[5]), [(int(o), str(k)) for o, k in r[6]],
                {str(k): int(v) for k, v in r[7].items()}, None if r[8] is None else str(r[8]))
        d.rewrites.extend((int(q), bytes.fromhex(a), bytes.fromhex(b)) for q, a, b in r[9])
        return d


@dataclass(slots=True, eq=False)
class Control:
    """One followed control connection (the engine flow's ``helper_state``)."""

    lan: bytes
    lan_port: int
    wan: bytes
    wan_port: int
    remote: bytes
    remote_port: int
    outbound: bool
    last_seen: float
    tracked: bool = True
    evicted: bool = False  # pushed out by the limits: its data is dropped until a new SYN
    from_lan: StreamDir = field(default_factory=StreamDir)
    from_remote: StreamDir = field(default_factory=StreamDir)
    far_end: StreamDir | None = None  # replay only: inbound as the far end sent it
    by_lan: dict[int, Call] = field(default_factory=dict)
    by_wan: dict[int, Call] = field(default_factory=dict)
    # WAN Call ID -> LAN Call ID of calls that ended here (idle, pushed out) while the far end may
    # still hold them: not given to another call until this connection ends or clears them
    held: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class Binding:
    """Address-only GRE binding (GRE v0, or v1 without a followed call), or an ended call."""

    lan: bytes
    last_seen: float


CallKey = tuple[bytes, bytes, int]
