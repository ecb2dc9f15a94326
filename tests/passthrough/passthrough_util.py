"""Shared pieces of the passthrough tests: configs, an engine, TCP conversations, packet readers."""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from natpass.nat import verdict as V
from natpass.nat.config import Limits, NatConfig, Passthrough, PortForward, Timeouts
from natpass.packets import pptp as P
from natpass.packets.ipv4 import str_to_addr
from natpass.packets.tcp import ACK, FIN, PSH, SYN, build_tcp, verify_tcp
from natpass.packets.udp import build_udp, verify_udp
from natpass.passthrough import build_engine

WAN = "203.0.113.1"
SERVER = "198.51.100.7"
GATEWAY = "198.51.100.20"
HOSTS = ("192.168.1.10", "192.168.1.11", "192.168.1.12")


def config(pptp: bool = False, ipsec: bool = False, l2tp: bool = False, strict: bool = False,
           forwards: tuple[PortForward, ...] = (), timeouts: Timeouts | None = None,
           lan: tuple[str, ...] = ("192.168.1.0/24",), limits: Limits | None = None) -> NatConfig:
    return NatConfig(wan_addresses=(str_to_addr(WAN),),
                     lan_prefixes=tuple(ipaddress.IPv4Network(n) for n in lan),
                     passthrough=Passthrough(pptp=pptp, ipsec=ipsec, l2tp=l2tp, strict=strict),
                     forwards=forwards, timeouts=timeouts or Timeouts(), limits=limits or Limits(), seed=7)


def engine(**kw: Any) -> Any:
    return build_engine(config(**kw))


def engine_with_helpers(**kw: Any) -> tuple[Any, dict[str, Any]]:
    """An engine and its passthrough helpers by name (to read their state in a test)."""
    from natpass.nat.engine import Engine
    from natpass.passthrough import build_helpers

    cfg = config(**kw)
    helpers = build_helpers(cfg)
    return Engine(cfg, helpers), {h.name: h for h in helpers}


def with_switches(cfg: NatConfig, **switches: bool) -> NatConfig:
    return dataclasses.replace(cfg, passthrough=dataclasses.replace(cfg.passthrough, **switches))


def ip(addr: bytes | bytearray) -> str:
    return ".".join(str(b) for b in addr)


def src(buf: bytearray) -> str:
    return ip(buf[12:16])


def dst(buf: bytearray) -> str:
    return ip(buf[16:20])


def sport(buf: bytearray) -> int:
    ihl = (buf[0] & 15) * 4
    return int.from_bytes(buf[ihl:ihl + 2], "big")


def dport(buf: bytearray) -> int:
    ihl = (buf[0] & 15) * 4
    return int.from_bytes(buf[ihl + 2:ihl + 4], "big")


def tcp_payload(buf: bytearray) -> bytes:
    ihl = (buf[0] & 15) * 4
    doff = (buf[ihl + 12] >> 4) * 4
    return bytes(buf[ihl + doff:int.from_bytes(buf[2:4], "big")])


def checksums_ok(buf: bytearray) -> bool:
    """IP header checksum and (for TCP/UDP) the L4 checksum are right."""
    from natpass.packets.ipv4 import header_checksum_ok

    ihl = (buf[0] & 15) * 4
    if not header_checksum_ok(buf):
        return False
    seg = buf[ihl:int.from_bytes(buf[2:4], "big")]
    if buf[9] == 6:
        return verify_tcp(buf[12:16], buf[16:20], seg)
    if buf[9] == 17:
        return verify_udp(buf[12:16], buf[16:20], seg)
    return True


def messages(stream: bytes) -> list[P.PptpMessage]:
    """Every PPTP message of a byte stream (which must be whole and well formed)."""
    out = []
    pos = 0
    while pos < len(stream):
        msg = P.parse_pptp(stream, pos)
        out.append(msg)
        pos += msg.length
    return out


@dataclass
class Conv:
    """One TCP connection seen from the router: the LAN side and the remote side, with their
    sequence numbers; packets are built as each end sends them (the remote end addresses the
    WAN endpoint it learnt from the first translated packet)."""

    eng: Any
    lan: str
    lan_port: int
    remote: str
    remote_port: int
    lan_opens: bool = True
    now: float = 0.0
    seq_lan: int = 1000
    seq_remote: int = 50000
    wan: str | None = None
    wan_port: int | None = None
    lan_out: bytearray = field(default_factory=bytearray)  # stream bytes as the remote received
    remote_out: bytearray = field(default_factory=bytearray)  # as the LAN host received
    last: bytearray | None = None
    last_code: int = 0

    def _lan_pkt(self, flags: int, payload: bytes, seq: int | None = None) -> bytearray:
        return build_tcp(self.lan, self.remote, self.lan_port, self.remote_port,
                         seq=self.seq_lan if seq is None else seq, ack=self.seq_remote, flags=flags,
                         payload=payload)

    def _remote_pkt(self, flags: int, payload: bytes, seq: int | None = None) -> bytearray:
        assert self.wan is not None and self.wan_port is not None
        return build_tcp(self.remote, self.wan, self.remote_port, self.wan_port,
                         seq=self.seq_remote if seq is None else seq, ack=self.seq_lan, flags=flags,
                         payload=payload)

    def from_lan(self, payload: bytes = b"", flags: int = ACK | PSH, seq: int | None = None,
                 advance: bool = True) -> int:
        pkt = self._lan_pkt(flags, payload, seq)
        code = self.eng.process(pkt, True, self.now)
        self.last, self.last_code = pkt, code
        if code == V.TO_WAN:
            if self.wan is None:
                self.wan, self.wan_port = src(pkt), sport(pkt)
            if payload:
                self.lan_out += tcp_payload(pkt)
        if advance and seq is None:
            self.seq_lan += len(payload) + (1 if flags & (SYN | FIN) else 0)
        return int(code)

    def from_remote(self, payload: bytes = b"", flags: int = ACK | PSH, seq: int | None = None,
                    advance: bool = True) -> int:
        pkt = self._remote_pkt(flags, payload, seq)
        code = self.eng.process(pkt, False, self.now)
        self.last, self.last_code = pkt, code
        if code == V.TO_LAN and payload:
            self.remote_out += tcp_payload(pkt)
        if advance and seq is None:
            self.seq_remote += len(payload) + (1 if flags & (SYN | FIN) else 0)
        return int(code)

    def handshake(self) -> None:
        if self.lan_opens:
            assert self.from_lan(flags=SYN) == V.TO_WAN
            assert self.from_remote(flags=SYN | ACK) == V.TO_LAN
            assert self.from_lan(flags=ACK) == V.TO_WAN
        else:
            assert self.wan is not None and self.wan_port is not None
            assert self.from_remote(flags=SYN) == V.TO_LAN
            assert self.from_lan(flags=SYN | ACK) == V.TO_WAN
            assert self.from_remote(flags=ACK) == V.TO_LAN

    def close(self) -> None:
        self.from_lan(flags=FIN | ACK)
        self.from_remote(flags=FIN | ACK)
        self.from_lan(flags=ACK)


def udp(src_addr: str, dst_addr: str, sp: int, dp: int, payload: bytes) -> bytearray:
    return build_udp(src_addr, dst_addr, sp, dp, payload)
