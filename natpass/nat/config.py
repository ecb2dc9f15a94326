"""The engine's settings as plain typed data (the TOML loader lives in ``natpass.router.config``)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from natpass.nat.behaviour import BEHAVIOURS, Behaviour

SWITCHES = ("pptp", "ipsec", "l2tp")
__all__ = ["BEHAVIOURS", "SWITCHES", "Behaviour", "Limits", "NatConfig", "Passthrough", "PortForward",
           "Timeouts"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Idle timeouts in seconds; defaults at or above the RFC minimums."""

    udp: float = 300.0  # RFC 4787 REQ-5: at least 2 min, 5 min recommended
    udp_natt: float = 300.0  # NAT-T/IKE flows outlive the 20 s keepalive rhythm by far
    tcp_established: float = 7440.0  # RFC 5382 REQ-5: 2 h 4 min
    tcp_transitory: float = 240.0  # RFC 5382 REQ-5: 4 min
    icmp: float = 60.0  # RFC 5508 REQ-1: 60 s
    gre: float = 300.0  # PPTP data calls; the control connection's echo keeps them known
    esp: float = 600.0
    fragment: float = 30.0  # lifetime of a fragment-table entry


@dataclass(frozen=True, slots=True)
class Limits:
    """Table bounds; ``0`` means unbounded."""

    max_flows: int = 65536
    max_flows_per_host: int = 4096
    max_fragments: int = 1024


@dataclass(frozen=True, slots=True)
class PortForward:
    """A static DNAT rule: ``wan_addr:wan_port`` -> ``lan_addr:lan_port`` for ``proto``."""

    proto: int  # 6 or 17
    wan_port: int
    lan_addr: bytes
    lan_port: int
    wan_addr: bytes | None = None  # None: every WAN address


@dataclass(frozen=True, slots=True)
class Passthrough:
    """The per-protocol passthrough switches (all off by default)."""

    pptp: bool = False
    ipsec: bool = False
    l2tp: bool = False
    strict: bool = False  # also block a switched-off protocol's control ports

    def get(self, name: str) -> bool:
        return bool(getattr(self, name))


@dataclass(frozen=True, slots=True)
class NatConfig:
    """Everything the engine needs; immutable so a reload swaps it whole."""

    wan_addresses: tuple[bytes, ...] = (bytes([203, 0, 113, 1]),)
    lan_prefixes: tuple[ipaddress.IPv4Network, ...] = (ipaddress.IPv4Network("192.168.1.0/24"),)
    wan_mtu: int = 1500
    mapping: Behaviour = Behaviour.ENDPOINT_INDEPENDENT
    filtering: Behaviour = Behaviour.ADDRESS_AND_PORT_DEPENDENT
    port_range: tuple[int, int] = (1024, 65535)
    port_preservation: bool = True
    hairpinning: bool = True
    inbound_refresh: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    forwards: tuple[PortForward, ...] = ()
    passthrough: Passthrough = field(default_factory=Passthrough)
    seed: int | None = None  # port randomisation seed, for reproducible tests only
    # Source of the ICMP errors the router sends to LAN hosts (time exceeded, fragmentation
    # needed); None: the first WAN address (the router has no LAN address in this config).
    router_lan_address: bytes | None = None
