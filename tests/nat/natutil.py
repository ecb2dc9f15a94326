"""Packet builders and checks shared by the engine tests (scapy is the independent reference)."""

from __future__ import annotations

import ipaddress
from typing import Any

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.packet import Packet, Raw

from natpass.nat.config import NatConfig
from natpass.nat.engine import Engine

LAN1 = "192.168.1.10"
LAN2 = "192.168.1.20"
WAN1 = "203.0.113.1"
WAN2 = "203.0.113.2"
REMOTE = "198.51.100.7"
REMOTE2 = "198.51.100.8"


def a(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def cfg(**kw: Any) -> NatConfig:
    kw.setdefault("seed", 1)
    return NatConfig(**kw)


def eng(**kw: Any) -> Engine:
    helpers = kw.pop("helpers", ())
    return Engine(cfg(**kw), helpers)


def raw(pkt: Packet) -> bytearray:
    return bytearray(bytes(pkt))


def tcp(src: str, dst: str, sport: int, dport: int, flags: str = "A", payload: bytes = b"",
        ttl: int = 64, **ip: Any) -> bytearray:
    return raw(IP(src=src, dst=dst, ttl=ttl, **ip) / TCP(sport=sport, dport=dport, flags=flags,
                                                         seq=1000, ack=1) / Raw(payload))


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"hello", ttl: int = 64,
        **ip: Any) -> bytearray:
    return raw(IP(src=src, dst=dst, ttl=ttl, **ip) / UDP(sport=sport, dport=dport) / Raw(payload))


def echo(src: str, dst: str, ident: int, reply: bool = False, seq: int = 1) -> bytearray:
    return raw(IP(src=src, dst=dst) / ICMP(type=0 if reply else 8, id=ident, seq=seq)
               / Raw(b"ping-data"))


def checksums_ok(buf: bytes | bytearray) -> bool:
    """True when scapy, recomputing every checksum, gets the values the packet carries."""
    pkt = IP(bytes(buf))
    rebuilt = pkt.copy()
    layer: Packet | None = rebuilt
    while layer is not None and not isinstance(layer, Raw):
        for field in ("chksum",):
            if field in layer.fields:
                if isinstance(layer, UDP) and layer.chksum == 0:
                    continue
                if isinstance(layer, (IPerror, TCPerror, UDPerror)):
                    continue  # quoted headers may be truncated; checked separately
                del layer.chksum
        layer = layer.payload if layer.payload else None
    rebuilt = IP(bytes(rebuilt))
    return bytes(rebuilt) == bytes(pkt)


def parse(buf: bytes | bytearray) -> Packet:
    return IP(bytes(buf))


def out(e: Engine, buf: bytearray, now: float = 0.0) -> int:
    return e.process(buf, True, now)


def inb(e: Engine, buf: bytearray, now: float = 0.0) -> int:
    return e.process(buf, False, now)


