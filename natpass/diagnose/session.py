"""The records one pass over a capture keeps: flows, VPN sessions and their steps, TLS/DTLS
handshakes seen in clear, and what the pass hands to the rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from natpass.diagnose.model import MAX_EVIDENCE, CaptureInfo
from natpass.diagnose.network import HostFact, IcmpHop, Opened
from natpass.packets.ipproto import IpProto

PROTO_TCP = IpProto.TCP.value
PROTO_UDP = IpProto.UDP.value
PROTO_GRE = IpProto.GRE.value
PROTO_ESP = IpProto.ESP.value
PROTO_AH = IpProto.AH.value
PROTO_ICMP = IpProto.ICMP.value
PROTO_ICMPV6 = IpProto.ICMPV6.value
# Steady-state kinds of the fast path: once a flow's handshake steps are all recorded, its data
# packets only need counting, which a single dict lookup on the raw header bytes decides.
FAST_OTHER = 0
FAST_WG = 1
FAST_ESP_IN_UDP = 2
FAST_OVPN = 3
FAST_RAW = 4
FAST_GRE = 5


@dataclass(slots=True)
class Steps:
    """First frame of each named step, and capped evidence lists per kind of event."""

    first: dict[str, tuple[int, float, str]] = field(default_factory=dict)
    ev: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def mark(self, name: str, frame: int, t: float, direction: str) -> None:
        if name not in self.first:
            self.first[name] = (frame, t, direction)

    def note(self, kind: str, frame: int, t: float) -> None:
        lst = self.ev.get(kind)
        if lst is None:
            self.ev[kind] = [(frame, t)]
        elif len(lst) < MAX_EVIDENCE:
            lst.append((frame, t))


@dataclass(slots=True)
class Session:
    """One VPN attempt between a client and a server."""

    name: str
    client: bytes
    server: bytes
    cport: int = 0
    sport: int = 0
    transport: str = ""
    out: int = 0
    inn: int = 0
    first_t: float = 0.0
    last_t: float = 0.0
    last_out_t: float = 0.0
    last_in_t: float = 0.0
    steps: Steps = field(default_factory=Steps)
    extra: dict[str, object] = field(default_factory=dict)
    confidence: str = "structure"  # "structure" | "port+pattern" | "port": what the recognition rests on
    hints: list[str] = field(default_factory=list)  # what led there, when not the structure alone
    gre_out: int = 0  # PPTP: GRE packets client -> server
    gre_in: int = 0

    def count_gre(self, outbound: bool, t: float) -> None:
        """A PPTP session's data packet (its ``out``/``inn`` count the TCP control connection)."""
        if outbound:
            self.gre_out += 1
        else:
            self.gre_in += 1
        self.last_t = t

    def count(self, outbound: bool, t: float) -> None:
        if outbound:
            self.out += 1
            self.last_out_t = t
        else:
            self.inn += 1
            self.last_in_t = t
        self.last_t = t


class SessionLimit(Exception):
    """More VPN sessions than MAX_SESSIONS: the packet is counted but not followed."""


class Flow:
    """A 5-tuple flow; ``a`` is the side that sent the first packet seen."""

    __slots__ = ("a", "ap", "b", "bp", "proto", "kind", "sess", "syn_from", "tries", "tent", "frame", "t")

    def __init__(self, a: bytes, ap: int, b: bytes, bp: int, proto: int, frame: int = 0, t: float = 0.0) -> None:
        self.a, self.ap, self.b, self.bp, self.proto = a, ap, b, bp, proto
        self.frame, self.t = frame, t
        self.kind = ""  # "", "other", "wireguard", "openvpn"
        self.sess: Session | None = None
        self.syn_from: tuple[bytes, int] | None = None
        self.tries = 0
        self.tent: dict[object, object] | None = None


@dataclass(slots=True)
class TlsSeen:
    """What the first packets of a TLS connection showed in clear."""

    client: bytes
    cport: int
    server: bytes
    sport: int
    frame: int
    t: float
    sni: str
    alpn: tuple[str, ...]
    server_hello: tuple[int, float] | None = None
    names: list[str] = field(default_factory=list)


@dataclass(slots=True)
class DtlsSeen:
    """DTLS records of a UDP flow during its classification: counts and first frame each way."""

    out: int = 0
    inn: int = 0
    first_out: tuple[int, float] | None = None
    first_in: tuple[int, float] | None = None


@dataclass(slots=True)
class Observation:
    """What one pass over a capture gathered, for the rules."""

    info: CaptureInfo
    sessions: list[Session]
    stun: list[tuple[int, float, bytes, int, str, int]]
    hosts: dict[bytes, HostFact]
    opened: list[Opened]
    hops: list[IcmpHop]
