"""Network facts from any traffic: where the capture was taken, carrier-grade NAT, double NAT.

These come from addresses and behaviour, not from recognised VPN flows: the address that takes
part in (nearly) every flow is the capture point's own; the TTL (IPv6: hop limit) of its packets
says whether it sent them itself (an initial TTL: 64, 128, 255, 32) or forwarded them one hop on
(initial - 1: a router's WAN side after NAT); who opened the flows tells a client from a server.
RFC 6598 (100.64.0.0/10) as the capture point's own address means carrier-grade NAT; an RFC 1918
address on a router's WAN side means a second NAT upstream. ICMP time-exceeded messages from
routers (traceroute) name the NAT hops on the way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal

from natpass.diagnose import detect as d

Vantage = Literal["client", "router-lan", "router-wan", "server", "unknown"]
VANTAGES: Final[tuple[Vantage, ...]] = ("client", "router-lan", "router-wan", "server")
VANTAGE_LABEL: Final[dict[str, str]] = {
    "client": "the VPN client", "router-lan": "the router's LAN side", "router-wan": "the router's WAN side",
    "server": "the VPN server", "unknown": "an unknown point",
}
INITIAL_TTLS: Final = frozenset({32, 64, 128, 255})  # what hosts send with (Linux/macOS 64, Windows 128)
LOCAL_SHARE: Final = 0.8  # the capture point's address takes part in at least this share of flows
MAX_HOSTS: Final = 65536  # addresses followed (bounded memory)
MAX_TTLS: Final = 16  # distinct TTL values kept per address


@dataclass(slots=True)
class HostFact:
    """What one source address sent: first frame, packet count, TTL histogram."""

    frame: int
    time: float
    packets: int = 0
    ttls: dict[int, int] = field(default_factory=dict)

    def ttl_kind(self) -> str:
        """``initial`` (sent by this host), ``one-hop`` (forwarded once) or ``far``."""
        if not self.ttls:
            return "far"
        ttl = max(self.ttls.items(), key=lambda kv: kv[1])[0]
        if ttl in INITIAL_TTLS:
            return "initial"
        if ttl + 1 in INITIAL_TTLS:
            return "one-hop"
        return "far"

    def common_ttl(self) -> int:
        return max(self.ttls.items(), key=lambda kv: kv[1])[0] if self.ttls else 0


@dataclass(slots=True)
class Opened:
    """A flow or VPN session: who opened it, to whom, first frame."""

    initiator: bytes
    responder: bytes
    frame: int
    time: float


@dataclass(slots=True)
class IcmpHop:
    """An ICMP time-exceeded (RFC 792 type 11, RFC 4443 type 3) from a router on the path."""

    router: bytes
    frame: int
    time: float


@dataclass(slots=True)
class VantageGuess:
    vantage: Vantage
    source: Literal["stated", "inferred"]
    local: bytes | None  # the capture point's own address, when one stands out
    basis: list[str]


@dataclass(slots=True)
class NetFact:
    """A finding about the network: ``code`` is "cgnat" or "double-nat"."""

    code: str
    frame: int
    time: float
    why: str


def infer_vantage(hosts: dict[bytes, HostFact], opened: list[Opened],
                  stated: Vantage | None = None) -> VantageGuess:
    """The capture point, from addresses, TTLs and who opened the flows (or as stated)."""
    pairs = {(o.initiator, o.responder) for o in opened}
    degree: Counter[bytes] = Counter()
    for a, b in {(min(p), max(p)) for p in pairs}:
        degree[a] += 1
        degree[b] += 1
    local = _local_address(hosts, pairs, degree)
    if stated is not None:
        return VantageGuess(stated, "stated", local, ["stated by the user"])
    if local is None:
        return _several_hosts(hosts, pairs)
    fact = hosts.get(local)
    kind = fact.ttl_kind() if fact else "far"
    ttl = fact.common_ttl() if fact else 0
    opened_by = sum(1 for a, _ in pairs if a == local)
    answered = sum(1 for _, b in pairs if b == local)
    who = d.addr_str(local)
    share = f"{who} takes part in {degree[local]} of {len(pairs)} flow(s)"
    if kind == "one-hop" and opened_by >= answered:
        return VantageGuess("router-wan", "inferred", local, [
            share, f"its packets carry TTL {ttl}: they crossed one router, the NAT whose outside "
                   f"address {who} is, so the capture sees that router's WAN side"])
    if kind == "initial" and opened_by >= answered:
        return VantageGuess("client", "inferred", local, [
            share, f"it opened {opened_by} of them with an initial TTL ({ttl}): the capture was taken "
                   "on the client (or on the router's LAN side, which sees the same packets)"])
    if kind == "initial" and answered > opened_by:
        return VantageGuess("server", "inferred", local, [
            share, f"it answered {answered} flow(s) opened by others, with an initial TTL ({ttl}): "
                   "the capture was taken on the server"])
    return VantageGuess("unknown", "inferred", local, [share, f"TTL {ttl} and the flow directions do "
                                                       "not say which side it is"])


def _local_address(hosts: dict[bytes, HostFact], pairs: set[tuple[bytes, bytes]],
                   degree: Counter[bytes]) -> bytes | None:
    if not degree:
        return None
    n = len({(min(p), max(p)) for p in pairs})
    best = max(degree.values())
    tied = [a for a, k in degree.items() if k == best]
    if best < max(1.0, LOCAL_SHARE * n):
        return None
    if len(tied) == 1:
        return tied[0]
    # One flow (or a tie): the side whose TTL shows it is on this link is the capture point's.
    def rank(a: bytes) -> tuple[int, int]:
        kind = hosts[a].ttl_kind() if a in hosts else "far"
        opened = sum(1 for x, _ in pairs if x == a)
        return ({"initial": 2, "one-hop": 1}.get(kind, 0), opened)
    tied.sort(key=rank, reverse=True)
    if rank(tied[0]) == rank(tied[1]):
        return None
    return tied[0]


def _several_hosts(hosts: dict[bytes, HostFact], pairs: set[tuple[bytes, bytes]]) -> VantageGuess:
    lan = sorted({a for a, _ in pairs if d.address_kind(a) == "private"
                  and a in hosts and hosts[a].ttl_kind() == "initial"})
    if len(lan) >= 2:
        names = ", ".join(d.addr_str(a) for a in lan[:4]) + (" ..." if len(lan) > 4 else "")
        return VantageGuess("router-lan", "inferred", None, [
            f"{len(lan)} private hosts ({names}) open flows with an initial TTL: the capture sees "
            "several LAN hosts before the router"])
    if not pairs:
        return VantageGuess("unknown", "inferred", None, ["no flows to judge from"])
    return VantageGuess("unknown", "inferred", None, ["no address takes part in most flows"])


def network_facts(hosts: dict[bytes, HostFact], opened: list[Opened], hops: list[IcmpHop],
                  guess: VantageGuess) -> list[NetFact]:
    """Carrier-grade NAT and double NAT from addresses and behaviour, each with its first frame."""
    out: list[NetFact] = []
    local = guess.local
    if local is not None and local in hosts:
        h = hosts[local]
        kind = d.address_kind(local)
        who = d.addr_str(local)
        if kind == "cgnat" and guess.vantage in ("router-wan", "client", "unknown"):
            place = "the router's WAN address" if guess.vantage == "router-wan" else "the capture point's address"
            out.append(NetFact("cgnat", h.frame, h.time,
                               f"{place} {who} is in 100.64.0.0/10, the shared address space of RFC 6598: "
                               "the ISP translates it again in a carrier-grade NAT"))
        elif kind == "private" and guess.vantage == "router-wan":
            out.append(NetFact("double-nat", h.frame, h.time,
                               f"the router's WAN address {who} (its packets leave with TTL "
                               f"{h.common_ttl()}, forwarded once) is a private RFC 1918 address: "
                               "another NAT sits upstream of this router"))
    seen: set[bytes] = set() if local is None else {local}
    for o in opened:
        a = o.initiator
        if a in seen or d.address_kind(a) != "cgnat":
            continue
        seen.add(a)
        first = hosts.get(a)
        frame, t = (first.frame, first.time) if first else (o.frame, o.time)
        out.append(NetFact("cgnat", frame, t,
                           f"{d.addr_str(a)} opens flows from 100.64.0.0/10 (RFC 6598 shared address "
                           "space): it sits behind a carrier-grade NAT"))
    nat_hops: dict[bytes, IcmpHop] = {}
    for hop in hops:
        if d.address_kind(hop.router) in ("private", "cgnat") and hop.router not in nat_hops:
            nat_hops[hop.router] = hop
    if any(d.address_kind(r) == "cgnat" for r in nat_hops):
        hop = next(h for r, h in nat_hops.items() if d.address_kind(r) == "cgnat")
        out.append(NetFact("cgnat", hop.frame, hop.time,
                           f"a router on the path answers from {d.addr_str(hop.router)} "
                           "(ICMP time exceeded), inside 100.64.0.0/10: a carrier-grade NAT"))
    private_hops = [h for r, h in nat_hops.items() if d.address_kind(r) == "private"]
    if len(private_hops) >= 2:
        names = ", ".join(d.addr_str(h.router) for h in private_hops[:3])
        out.append(NetFact("double-nat", private_hops[1].frame, private_hops[1].time,
                           f"{len(private_hops)} routers on the path answer from private addresses "
                           f"({names}, ICMP time exceeded): two NAT routers in a row"))
    return out
