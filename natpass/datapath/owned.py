"""What natpass owns in hybrid mode, described once and rendered twice.

In hybrid mode (``[router] datapath = "hybrid"``) the kernel forwards and masquerades ordinary IPv4
traffic and natpass handles only what the kernel handles badly. :func:`ownership` builds the one
description of that share (:class:`Ownership`); :func:`nft_owned` renders it as the nftables
rules that hide it from the kernel (in its forward, input and output hooks) and
:func:`bpf_program` as the classic BPF filter of natpass's packet sockets. Both walk the same
:class:`SideOwnership` records in the same order, so they cannot disagree
(tests/datapath/test_datapath_hybrid.py checks it packet by packet, in the kernel).

natpass owns, per side:

* LAN (not addressed to the router's own LAN address): IP protocols 47 (GRE), 50 (ESP), 51 (AH);
  TCP to port 1723 (PPTP); UDP to ports 500 (IKE) and 1701 (L2TP), and 4500 when
  ``hybrid_natt = "natpass"``; replies of LAN servers behind a port forward of those ports.
* WAN: the same IP protocols; TCP and UDP to natpass's port range (``hybrid_ports``); UDP to 500
  and 1701 (4500 likewise); TCP/UDP to a forwarded passthrough control port.
* On both sides, ICMP errors (types 3, 11, 12) whose quoted packet (a 20-byte header) is one natpass
  sent the other way: a quoted GRE/ESP/AH packet or one whose ports mirror a rule above.
* Non-first fragments of UDP (IKE is often fragmented; the kernel reassembles before conntrack
  and drops the whole datagram when it is owned, natpass gets the fragments from its socket).
  Non-first fragments of a kernel flow are forgotten by natpass without counting them as drops.

The kernel's masquerade range (:attr:`Ownership.kernel_ports`) lies above every fixed port natpass
owns and below natpass's range, so the two allocators never hand out the same WAN port.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

from natpass.packets.ipv4 import PROTO_AH, PROTO_ESP, PROTO_GRE, PROTO_ICMP, PROTO_TCP, PROTO_UDP

PPTP_PORT: Final = 1723  # RFC 2637
IKE_PORT: Final = 500  # RFC 7296
L2TP_PORT: Final = 1701  # RFC 2661
NATT_PORT: Final = 4500  # RFC 3948
ICMP_ERRORS: Final = (3, 11, 12)  # destination unreachable, time exceeded, parameter problem
KERNEL_ICMP_ERRORS: Final = (3, 5, 11, 12)  # what the kernel sends about a packet it routes (5: redirect)
OWNED_PROTOCOLS: Final = (PROTO_GRE, PROTO_ESP, PROTO_AH)
DEFAULT_NATPASS_PORTS: Final = (61440, 65535)
NATT_CHOICES: Final = ("kernel", "natpass")
DEFAULT_NATT: Final = "kernel"
MIN_KERNEL_PORTS: Final = 1024  # a masquerade range smaller than this is refused

Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class PortMatch:
    """TCP or UDP packets whose ``field`` port lies in ``ports`` (and, when given, whose source /
    destination address is ``saddr`` / ``daddr``)."""

    proto: int
    field: str  # "sport" or "dport"
    ports: tuple[Range, ...]
    saddr: bytes | None = None
    daddr: bytes | None = None

    def mirrored(self) -> PortMatch:
        """The same match seen from the other direction (as quoted inside an ICMP error)."""
        return PortMatch(self.proto, "dport" if self.field == "sport" else "sport", self.ports,
                         saddr=self.daddr, daddr=self.saddr)

    def matches(self, proto: int, sport: int, dport: int, src: bytes, dst: bytes) -> bool:
        if proto != self.proto:
            return False
        if self.saddr is not None and src != self.saddr:
            return False
        if self.daddr is not None and dst != self.daddr:
            return False
        port = sport if self.field == "sport" else dport
        return any(lo <= port <= hi for lo, hi in self.ports)


@dataclass(frozen=True, slots=True)
class SideOwnership:
    """What natpass takes from the frames arriving on one interface."""

    side: str  # "lan" or "wan"
    ifname: str
    protocols: tuple[int, ...]
    ports: tuple[PortMatch, ...]
    keep_local: bytes | None = None  # packets to this address stay with the kernel
    fragment_protocols: tuple[int, ...] = (PROTO_UDP,)

    @property
    def icmp_ports(self) -> tuple[PortMatch, ...]:
        """Port matches for the packet quoted in an ICMP error: the reverse of what natpass sent."""
        return tuple(m.mirrored() for m in self.ports)


@dataclass(frozen=True, slots=True)
class ForwardSplit:
    """A port forward and who serves it: natpass (passthrough control ports) or the kernel (DNAT)."""

    proto: int
    wan_port: int
    lan_addr: bytes
    lan_port: int
    natpass: bool


@dataclass(frozen=True, slots=True)
class Ownership:
    """The whole split between natpass and the kernel in hybrid mode."""

    lan: SideOwnership
    wan: SideOwnership
    natpass_ports: Range
    kernel_ports: Range
    natt: str
    fixed_ports: dict[int, tuple[int, ...]] = field(default_factory=dict)  # proto -> owned WAN ports
    forwards: tuple[ForwardSplit, ...] = ()

    def sides(self) -> tuple[SideOwnership, SideOwnership]:
        return (self.lan, self.wan)

    def summary(self) -> dict[str, object]:
        """Which half handles what (for ``natpass status``)."""
        natpass = ["IP protocols 47 (GRE), 50 (ESP), 51 (AH)", "TCP 1723 (PPTP control)",
                   "UDP 500 (IKE), UDP 1701 (L2TP)"]
        if self.natt == "natpass":
            natpass.append("UDP 4500 (IKE/ESP NAT-T)")
        natpass.append(f"TCP/UDP to WAN ports {self.natpass_ports[0]}-{self.natpass_ports[1]} "
                       "(natpass's mappings)")
        natpass += [f"{'TCP' if f.proto == PROTO_TCP else 'UDP'} {f.wan_port} forwarded to "
                    f"{ipaddress.IPv4Address(f.lan_addr)}:{f.lan_port}" for f in self.forwards if f.natpass]
        natpass += ["ICMP errors about those flows", "non-first UDP fragments"]
        kernel = ["all other IPv4 traffic (forward + masquerade, WAN ports "
                  f"{self.kernel_ports[0]}-{self.kernel_ports[1]})"]
        if self.natt == "kernel":
            kernel.append("UDP 4500 (IKE/ESP NAT-T)")
        kernel += [f"{'TCP' if f.proto == PROTO_TCP else 'UDP'} {f.wan_port} forwarded to "
                   f"{ipaddress.IPv4Address(f.lan_addr)}:{f.lan_port} (DNAT)" for f in self.forwards
                   if not f.natpass]
        return {"natpass": natpass, "kernel": kernel, "natt": self.natt,
                "natpass_ports": list(self.natpass_ports), "kernel_ports": list(self.kernel_ports)}


def check_settings(natpass_ports: object, natt: object) -> str | None:
    """Why ``[router] hybrid_ports`` / ``hybrid_natt`` are invalid, or None when they are fine."""
    if (not isinstance(natpass_ports, list | tuple) or len(natpass_ports) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in natpass_ports)):
        return "hybrid_ports must be [low, high]"
    lo, hi = natpass_ports
    # The kernel's masquerade range lies between the fixed ports natpass owns (4500 at most) and
    # this range, and must keep at least MIN_KERNEL_PORTS ports.
    if not NATT_PORT + 1 + MIN_KERNEL_PORTS <= lo <= hi <= 65535:
        return (f"hybrid_ports must lie within {NATT_PORT + 1 + MIN_KERNEL_PORTS}..65535 (the kernel's "
                "masquerade range lies below it, above the fixed ports natpass owns)")
    if natt not in NATT_CHOICES:
        return f"hybrid_natt must be \"kernel\" or \"natpass\", not {natt!r}"
    return None


def _merge(ports: list[int], ranges: tuple[Range, ...] = ()) -> tuple[Range, ...]:
    return tuple(sorted({(p, p) for p in ports} | set(ranges)))


def ownership(lan_if: str, wan_if: str, lan_address: bytes | None,
              natpass_ports: Range = DEFAULT_NATPASS_PORTS, natt: str = DEFAULT_NATT,
              forwards: tuple[tuple[int, int, bytes, int], ...] = ()) -> Ownership:
    """The description of natpass's share for these interfaces and settings.

    ``forwards``: (proto, WAN port, LAN address, LAN port) of each port forward. A forward of a
    passthrough control port (TCP 1723, UDP 500/1701, UDP 4500 when natpass owns NAT-T) stays with
    natpass (its helper must see the control channel); any other is the kernel's (DNAT).
    """
    error = check_settings(list(natpass_ports), natt)
    if error:
        raise ValueError(error)
    udp_fixed = [IKE_PORT, L2TP_PORT] + ([NATT_PORT] if natt == "natpass" else [])
    tcp_fixed = [PPTP_PORT]
    splits = []
    for proto, wan_port, lan_addr, lan_port in forwards:
        owned = wan_port in (tcp_fixed if proto == PROTO_TCP else udp_fixed)
        splits.append(ForwardSplit(proto, wan_port, lan_addr, lan_port, owned))
    # WAN ports natpass hands out or listens on, besides its range: the kernel's range lies above them.
    wan_fixed_udp = list(udp_fixed)
    wan_fixed_tcp = [f.wan_port for f in splits if f.natpass and f.proto == PROTO_TCP]
    top_fixed = max(wan_fixed_udp + wan_fixed_tcp + [L2TP_PORT])
    kernel_ports = (top_fixed + 1, natpass_ports[0] - 1)
    if kernel_ports[1] - kernel_ports[0] + 1 < MIN_KERNEL_PORTS:
        raise ValueError(f"the kernel's masquerade range {kernel_ports[0]}-{kernel_ports[1]} would be "
                         f"smaller than {MIN_KERNEL_PORTS} ports: lower hybrid_ports")
    lan_ports = [PortMatch(PROTO_TCP, "dport", _merge(tcp_fixed)),
                 PortMatch(PROTO_UDP, "dport", _merge(udp_fixed))]
    for f in splits:
        if f.natpass:  # the replies of a LAN server behind a forwarded control port
            lan_ports.append(PortMatch(f.proto, "sport", ((f.lan_port, f.lan_port),), saddr=f.lan_addr))
    wan_ports = [PortMatch(PROTO_TCP, "dport", _merge(wan_fixed_tcp, (natpass_ports,))),
                 PortMatch(PROTO_UDP, "dport", _merge(wan_fixed_udp, (natpass_ports,)))]
    lan = SideOwnership("lan", lan_if, OWNED_PROTOCOLS, tuple(lan_ports), keep_local=lan_address)
    wan = SideOwnership("wan", wan_if, OWNED_PROTOCOLS, tuple(wan_ports))
    return Ownership(lan, wan, tuple(natpass_ports), kernel_ports, natt,  # type: ignore[arg-type]
                     fixed_ports={PROTO_TCP: tuple(wan_fixed_tcp), PROTO_UDP: tuple(wan_fixed_udp)},
                     forwards=tuple(splits))


# ----- nftables --------------------------------------------------------------------------------
def _nft_ports(ranges: tuple[Range, ...]) -> str:
    # One port or one range is a compare or a range test; a set is a lookup (an interval set
    # a tree walk), which costs every packet of the kernel's share that reaches the rule.
    items = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _nft_ip(addr: bytes) -> str:
    return str(ipaddress.IPv4Address(addr))


@dataclass(frozen=True, slots=True)
class NftOwned:
    """natpass's share as nftables rules for the hooks the kernel passes anyway."""

    chains: list[str]  # lines of the ``own_*`` chain definitions
    dispatch: list[str]  # rules into them: the input chain's first, the forward chain's after established
    output: list[str]  # rules of the output chain (the kernel's own ICMP errors about owned packets)


def _quoted(matches: tuple[PortMatch, ...], verdict: str) -> list[str]:
    """Rules on the packet quoted in an ICMP error: @th is the ICMP header, the quoted IPv4 header
    follows at byte 8 (20 bytes: 0x45), its protocol at byte 17, addresses at 20/24, ports at 28/30."""
    protos = "{ " + ", ".join(str(p) for p in OWNED_PROTOCOLS) + " }"
    rules = [f"@th,136,8 {protos} counter {verdict}"]
    for m in matches:
        addr = ""
        if m.saddr is not None:
            addr += f" @th,160,32 0x{m.saddr.hex()}"
        if m.daddr is not None:
            addr += f" @th,192,32 0x{m.daddr.hex()}"
        bit = 224 if m.field == "sport" else 240
        rules.append(f"@th,136,8 {m.proto}{addr} @th,{bit},16 {_nft_ports(m.ports)} counter {verdict}")
    return rules


def nft_owned(own: Ownership) -> NftOwned:
    """natpass's share, dropped for the kernel in its forward and input hooks.

    Per input interface, a verdict map on the IP protocol alone goes to a short chain per side and
    protocol (``own_lan_6``, ``own_wan_17``, ...); each of its rules tests the ports first, then
    IPv4 (the inet table sees IPv6 too), packet type ``host`` and, on the LAN side, that the packet
    is not for the router itself, and drops with a counter (what natpass took from the kernel).

    The forward chain enters these chains only after ``ct state established,related accept``: an
    owned packet is never established (its conntrack entry stays unconfirmed and is freed with the
    drop), so the kernel keeps no state about natpass's traffic, while the bulk of the kernel's
    share, established, meets no rule of natpass's at all. A prerouting chain of natpass's own
    (priority raw, before conntrack) cost every forwarded packet an extra hook and its rules:
    5-10 % more CPU per byte of TCP (docs/DATAPATH.md). Traffic to the router's own addresses
    meets them first thing in the input chain, before any socket could answer it.

    Both hooks run after the checks where the kernel answers a forwarded packet itself (TTL
    expired, fragmentation needed, no route, redirect); natpass's engine answers those for its
    share, so the output chain drops such a kernel ICMP error when it quotes, as it arrived on the
    interface the error leaves by, a packet natpass owns.
    """
    icmp = "icmp type { " + ", ".join(str(t) for t in ICMP_ERRORS) + " } @th,64,8 0x45"
    kernel_icmp = "icmp type { " + ", ".join(str(t) for t in KERNEL_ICMP_ERRORS) + " } @th,64,8 0x45"
    chains: list[tuple[str, list[str]]] = []
    dispatch: list[str] = []
    output: list[str] = []
    for side in own.sides():
        vmap: list[str] = []
        # What every drop rule also requires, as the sockets' filter does: IPv4, to this host's
        # MAC, and on the LAN side not to the router's own address. Conditions after the port
        # test, which ordinary packets fail first, rather than rules ahead of it.
        also = "meta nfproto ipv4 meta pkttype host " + (
            "" if side.keep_local is None else f"ip daddr != {_nft_ip(side.keep_local)} ")
        per_proto: dict[int, list[str]] = {p: [f"{also}counter drop"] for p in side.protocols}
        for m in side.ports:
            addr = ""
            if m.saddr is not None:
                addr += f"ip saddr {_nft_ip(m.saddr)} "
            if m.daddr is not None:
                addr += f"ip daddr {_nft_ip(m.daddr)} "
            name = "tcp" if m.proto == PROTO_TCP else "udp"
            per_proto.setdefault(m.proto, []).append(
                f"{name} {m.field} {_nft_ports(m.ports)} {addr}{also}counter drop")
        errors = f"own_{side.side}_icmp_error"
        per_proto[PROTO_ICMP] = [f"{icmp} {also}jump {errors}"]
        for proto in sorted(per_proto):
            chain = f"own_{side.side}_{proto}"
            chains.append((chain, per_proto[proto]))
            # jump, not goto: a packet natpass does not own comes back to the base chain's
            # next rule (a goto would end in the base chain's policy, accept)
            vmap.append(f"{proto} : jump {chain}")
        chains.append((errors, _quoted(side.icmp_ports, "drop")))
        dispatch.append(f'meta iif "{side.ifname}" meta l4proto vmap {{ ' + ", ".join(vmap) + " }")
        # The kernel's own error leaves by the interface the packet came in by and quotes the
        # packet as it arrived (not mirrored); its answers about the router's own address stand.
        kernel_errors = f"own_{side.side}_kernel_error"
        local = [] if side.keep_local is None else [f"@th,192,32 0x{side.keep_local.hex()} return"]
        chains.append((kernel_errors, local + _quoted(side.ports, "drop")))
        output.append(f'meta oif "{side.ifname}" meta nfproto ipv4 {kernel_icmp} jump {kernel_errors}')
    lines: list[str] = []
    for chain, rules in chains:
        lines += [f"chain {chain} {{"] + [f"  {r}" for r in rules] + ["}"]
    return NftOwned(lines, dispatch, output)


# ----- classic BPF (linux/filter.h) ----------------------------------------------------------
BPF_LD_W_ABS: Final = 0x20
BPF_LD_H_ABS: Final = 0x28
BPF_LD_B_ABS: Final = 0x30
BPF_LD_W_IND: Final = 0x40
BPF_LD_H_IND: Final = 0x48
BPF_LD_B_IND: Final = 0x50
BPF_LDX_B_MSH: Final = 0xB1
BPF_JA: Final = 0x05
BPF_JEQ_K: Final = 0x15
BPF_JGT_K: Final = 0x25
BPF_JGE_K: Final = 0x35
BPF_JSET_K: Final = 0x45
BPF_RET_K: Final = 0x06
SKF_AD_PKTTYPE: Final = -0x1000 + 4
PACKET_HOST: Final = 0
ETH_P_IP: Final = 0x0800
SNAP_ALL: Final = 0x40000

Insn = tuple[int, int, int, int]


class _Asm:
    """A tiny classic-BPF assembler: jumps name labels, resolved to forward offsets at the end."""

    def __init__(self) -> None:
        self.code: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}
        self._n = 0

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def fresh(self) -> str:
        self._n += 1
        return f"_l{self._n}"

    def op(self, code: int, k: int = 0) -> None:
        self.code.append((code, 0, 0, k))

    def jump(self, code: int, k: int, jt: str | int, jf: str | int) -> None:
        """``jt``/``jf``: a label, or 0 for the next instruction."""
        self.code.append((code, jt, jf, k))

    def assemble(self) -> list[Insn]:
        out: list[Insn] = []
        for i, (code, jt, jf, k) in enumerate(self.code):
            offs = []
            for target in (jt, jf):
                if isinstance(target, str):
                    off = self.labels[target] - i - 1
                    if not 0 <= off <= 255:
                        raise ValueError("BPF program too long for a classic-BPF jump (too many forwards)")
                    offs.append(off)
                else:
                    offs.append(target)
            out.append((code, offs[0], offs[1], k & 0xFFFFFFFF))
        return out


def _bpf_match(asm: _Asm, m: PortMatch, port_off: dict[str, int], addr_off: dict[str, int],
               hit: str) -> None:
    """Jump to ``hit`` when the packet matches ``m`` (offsets are X-relative); else fall through."""
    miss = asm.fresh()
    for name, addr in (("saddr", m.saddr), ("daddr", m.daddr)):
        if addr is not None:
            asm.op(BPF_LD_W_IND, addr_off[name])
            asm.jump(BPF_JEQ_K, int.from_bytes(addr, "big"), 0, miss)
    asm.op(BPF_LD_H_IND, port_off[m.field])
    for lo, hi in m.ports:
        if lo == hi:
            asm.jump(BPF_JEQ_K, lo, hit, 0)
        else:
            skip = asm.fresh()
            asm.jump(BPF_JGE_K, lo, 0, skip)
            asm.jump(BPF_JGT_K, hi, skip, hit)
            asm.label(skip)
    asm.label(miss)


def bpf_program(side: SideOwnership) -> list[Insn]:
    """The socket filter for ``side``'s packet socket (bound to ETH_P_ALL, so it checks the
    EtherType itself): accept owned IPv4 frames addressed to our MAC, reject the rest."""
    asm = _Asm()
    asm.op(BPF_LD_B_ABS, SKF_AD_PKTTYPE)
    asm.jump(BPF_JEQ_K, PACKET_HOST, 0, "reject")
    asm.op(BPF_LD_H_ABS, 12)
    asm.jump(BPF_JEQ_K, ETH_P_IP, 0, "reject")
    if side.keep_local is not None:
        asm.op(BPF_LD_W_ABS, 14 + 16)
        asm.jump(BPF_JEQ_K, int.from_bytes(side.keep_local, "big"), "reject", 0)
    asm.op(BPF_LD_B_ABS, 14 + 9)
    for p in side.protocols:
        asm.jump(BPF_JEQ_K, p, "accept", 0)
    asm.op(BPF_LD_H_ABS, 14 + 6)
    asm.jump(BPF_JSET_K, 0x1FFF, "fragment", 0)
    asm.op(BPF_LDX_B_MSH, 14)  # X = IPv4 header length
    asm.op(BPF_LD_B_ABS, 14 + 9)
    asm.jump(BPF_JEQ_K, PROTO_TCP, "tcp", 0)
    asm.jump(BPF_JEQ_K, PROTO_UDP, "udp", 0)
    asm.jump(BPF_JEQ_K, PROTO_ICMP, "icmp", "reject")
    outer_ports = {"sport": 14, "dport": 16}
    outer_addrs = {"saddr": 14 + 12, "daddr": 14 + 16}  # absolute, see below
    for proto, name in ((PROTO_TCP, "tcp"), (PROTO_UDP, "udp")):
        asm.label(name)
        for m in side.ports:
            if m.proto == proto:
                if m.saddr is not None or m.daddr is not None:
                    # Outer addresses sit at fixed offsets: load them absolute, X stays.
                    miss = asm.fresh()
                    for key, addr in (("saddr", m.saddr), ("daddr", m.daddr)):
                        if addr is not None:
                            asm.op(BPF_LD_W_ABS, outer_addrs[key])
                            asm.jump(BPF_JEQ_K, int.from_bytes(addr, "big"), 0, miss)
                    _bpf_match(asm, PortMatch(m.proto, m.field, m.ports), outer_ports, {}, "accept")
                    asm.label(miss)
                else:
                    _bpf_match(asm, m, outer_ports, {}, "accept")
        asm.jump(BPF_JEQ_K, 0, "reject", "reject")  # no match: reject either way
    # ICMP error quoting a packet natpass sent the other way (quoted header of 20 bytes).
    asm.label("icmp")
    asm.op(BPF_LD_B_IND, 14)
    for i, t in enumerate(ICMP_ERRORS):
        asm.jump(BPF_JEQ_K, t, "icmp_error", 0 if i < len(ICMP_ERRORS) - 1 else "reject")
    asm.label("icmp_error")
    asm.op(BPF_LD_B_IND, 14 + 8)
    asm.jump(BPF_JEQ_K, 0x45, 0, "reject")
    asm.op(BPF_LD_B_IND, 14 + 8 + 9)
    for p in side.protocols:
        asm.jump(BPF_JEQ_K, p, "accept", 0)
    asm.jump(BPF_JEQ_K, PROTO_TCP, "icmp_tcp", 0)
    asm.jump(BPF_JEQ_K, PROTO_UDP, "icmp_udp", "reject")
    inner_ports = {"sport": 14 + 8 + 20, "dport": 14 + 8 + 22}
    inner_addrs = {"saddr": 14 + 8 + 12, "daddr": 14 + 8 + 16}
    for proto, name in ((PROTO_TCP, "icmp_tcp"), (PROTO_UDP, "icmp_udp")):
        asm.label(name)
        for m in side.icmp_ports:
            if m.proto == proto:
                # Reload the quoted protocol's ports after an address check (A was overwritten).
                _bpf_match(asm, m, inner_ports, inner_addrs, "accept")
        asm.jump(BPF_JEQ_K, 0, "reject", "reject")
    asm.label("fragment")
    asm.op(BPF_LD_B_ABS, 14 + 9)
    for p in side.fragment_protocols:
        asm.jump(BPF_JEQ_K, p, "accept", 0)
    asm.label("reject")
    asm.op(BPF_RET_K, 0)
    asm.label("accept")
    asm.op(BPF_RET_K, SNAP_ALL)
    return asm.assemble()


__all__ = [
    "Ownership", "SideOwnership", "PortMatch", "ForwardSplit", "ownership", "check_settings",
    "nft_owned", "NftOwned", "bpf_program", "DEFAULT_NATPASS_PORTS", "DEFAULT_NATT", "NATT_CHOICES",
]
