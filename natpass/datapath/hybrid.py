"""Hybrid datapath: the kernel forwards ordinary traffic, natpass handles only what it owns.

:class:`Hybrid` turns the router's settings into everything hybrid mode needs, all derived from one
:class:`~natpass.datapath.owned.Ownership`:

* the kernel's share (:meth:`Hybrid.kernel_share`): ``ip_forward = 1``, conntrack timeouts from
  natpass's timeouts, and the nftables table ``inet natpass`` (a forward chain letting
  established/related through, then dropping what natpass owns, then letting new LAN->WAN flows
  through; an input chain dropping what natpass owns addressed to the router; an output chain
  dropping the kernel's own ICMP errors about natpass's packets; masquerade restricted to the
  kernel's port range; DNAT for the port forwards the kernel serves);
* the engine's config (:meth:`Hybrid.engine_config`): natpass allocates WAN ports only from its own
  range and serves only the forwards of passthrough control ports;
* the BPF filters of natpass's packet sockets (:meth:`Hybrid.rx_programs`);
* :class:`OwnedEngine`, the engine as the packet loop sees it, which keeps the non-first UDP
  fragments of the kernel's datagrams (natpass's socket cannot tell them apart by port) away from
  the engine and its drop counters.

If natpass dies, the table and ``ip_forward = 1`` stay: ordinary traffic keeps flowing through the
kernel, the VPN protocols natpass owns stop (dropped for the kernel, nobody handles them) until the next
start, which undoes the old set-up and makes it again.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from natpass.datapath.owned import (
    Insn,
    Ownership,
    bpf_program,
    nft_owned,
    ownership,
)
from natpass.nat import verdict as V
from natpass.nat.config import NatConfig, PortForward, Timeouts
from natpass.packets.checksum import internet_checksum
from natpass.packets.ipv4 import PROTO_TCP, PROTO_UDP
from natpass.packets.tcp import fix_tcp_checksum

log = logging.getLogger("natpass.datapath")

CONNTRACK_DIR = Path("/proc/sys/net/netfilter")
FRAGMENTS_WAITING_MAX = 256
USAGE_KERNEL_S = 600.0  # how often the usage record gets the kernel's flow count  # later fragments held until their first fragment shows them owned


def conntrack_sysctls(t: Timeouts) -> dict[str, str]:
    """The kernel's conntrack timeouts (sysctl name -> value) that follow natpass's timeouts.

    RFC 4787 REQ-5 and RFC 5382 REQ-5 apply to the kernel's mappings as much as to natpass's: the
    kernel's 30 s for unreplied UDP and 60-120 s for TCP set-up/close are below them.
    """
    udp = str(round(t.udp))
    transitory = str(round(t.tcp_transitory))
    out = {
        "net/netfilter/nf_conntrack_udp_timeout": udp,
        "net/netfilter/nf_conntrack_udp_timeout_stream": udp,
        "net/netfilter/nf_conntrack_tcp_timeout_established": str(round(t.tcp_established)),
        "net/netfilter/nf_conntrack_icmp_timeout": str(round(t.icmp)),
    }
    for state in ("syn_sent", "syn_recv", "fin_wait", "close_wait", "last_ack", "time_wait"):
        out[f"net/netfilter/nf_conntrack_tcp_timeout_{state}"] = transitory
    return out


def kernel_conntrack() -> dict[str, int]:
    """The kernel's flow count and table size in this network namespace."""
    out: dict[str, int] = {}
    for key in ("count", "max"):
        try:
            out[key] = int((CONNTRACK_DIR / f"nf_conntrack_{key}").read_text())
        except (OSError, ValueError):
            out[key] = -1
    return out


KERNEL_DROP_REASONS = ("natpass_share", "kernel_icmp_errors", "forward_refused", "input_refused")


def kernel_drops(table: Any) -> dict[str, int]:
    """Packets natpass's table dropped in the kernel, by reason, from ``nft -j list table``:
    natpass's share (the kernel's copy of what natpass handles), the kernel's own ICMP errors about
    it, new flows refused by the forward chain and WAN traffic refused by the input chain."""
    out = dict.fromkeys(KERNEL_DROP_REASONS, 0)
    items = table.get("nftables", []) if isinstance(table, dict) else []
    for item in items:
        rule = item.get("rule") if isinstance(item, dict) else None
        if not isinstance(rule, dict):
            continue
        chain = str(rule.get("chain", ""))
        if chain.startswith("own_"):
            reason = "kernel_icmp_errors" if chain.endswith("_kernel_error") else "natpass_share"
        elif chain in ("forward", "input"):
            reason = f"{chain}_refused"
        else:
            continue
        for expr in rule.get("expr", []):
            counter = expr.get("counter") if isinstance(expr, dict) else None
            if isinstance(counter, dict) and isinstance(counter.get("packets"), int):
                out[reason] += counter["packets"]
    return out


def read_kernel_drops() -> dict[str, int] | None:
    """:func:`kernel_drops` of the running table, or None when nft cannot list it."""
    from natpass.datapath.live_setup import NFT_TABLE

    try:
        proc = subprocess.run(["nft", "-j", "list", "table", "inet", NFT_TABLE], capture_output=True,
                              text=True, timeout=5, check=False)
        if proc.returncode != 0:
            return None
        return kernel_drops(json.loads(proc.stdout))
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


class KernelShareSpec(Protocol):
    """What :class:`~natpass.datapath.live_setup.HostSetup` applies for hybrid mode."""

    ruleset: str
    sysctls: dict[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class KernelShare:
    """The kernel's part of hybrid mode: its nft table and the sysctls besides ip_forward."""

    ruleset: str
    sysctls: dict[str, str]


class Hybrid:
    """Everything hybrid mode derives from the router's settings (one :class:`Ownership`)."""

    def __init__(self, lan_if: str, wan_if: str, lan_address: bytes | None, nat: NatConfig,
                 natpass_ports: tuple[int, int], natt: str) -> None:
        self.lan_if, self.wan_if = lan_if, wan_if
        self.nat = nat
        self._next_usage = 0.0
        self.own: Ownership = ownership(
            lan_if, wan_if, lan_address, natpass_ports, natt,
            tuple((f.proto, f.wan_port, f.lan_addr, f.lan_port) for f in nat.forwards))

    # ----- the engine's side ------------------------------------------------------------------
    def engine_config(self, nat: NatConfig) -> NatConfig:
        """``nat`` for natpass's own flows: ports only from its range (no port preservation, which
        could pick a port of the kernel's range), and only the forwards natpass serves."""
        natpass_fwd = {(f.proto, f.wan_port) for f in self.own.forwards if f.natpass}
        return dataclasses.replace(
            nat, port_range=self.own.natpass_ports, port_preservation=False,
            forwards=tuple(f for f in nat.forwards if (f.proto, f.wan_port) in natpass_fwd))

    def wrap(self, engine: EngineLike, mtu: int = 1500) -> OwnedEngine:
        """The engine as natpass's packet sockets feed it in hybrid mode (``mtu``: the smaller of
        the two interfaces', the size merged frames are segmented to)."""
        return OwnedEngine(engine, self.nat.timeouts.fragment, mtu)

    def rx_programs(self) -> dict[str, list[Insn]]:
        """The socket filter per side ("lan"/"wan")."""
        return {side.side: bpf_program(side) for side in self.own.sides()}

    # ----- the kernel's side --------------------------------------------------------------------
    def kernel_forwards(self) -> list[PortForward]:
        kernel = {(f.proto, f.wan_port) for f in self.own.forwards if not f.natpass}
        return [f for f in self.nat.forwards if (f.proto, f.wan_port) in kernel]

    def nft_ruleset(self) -> str:
        """The whole ``inet natpass`` table (recreated whole: delete + add in one transaction)."""
        from natpass.datapath.live_setup import NFT_TABLE

        lan, wan = f'"{self.lan_if}"', f'"{self.wan_if}"'
        lo, hi = self.own.kernel_ports
        owned = nft_owned(self.own)
        chains = "".join(f"  {r}\n" for r in owned.chains)
        dispatch = "".join(f"    {r}\n" for r in owned.dispatch)
        dnat = []
        for f in self.kernel_forwards():
            name = "tcp" if f.proto == PROTO_TCP else "udp"
            daddr = f" ip daddr {ipaddress.IPv4Address(f.wan_addr)}" if f.wan_addr else ""
            dnat.append(f"    iifname {wan}{daddr} {name} dport {f.wan_port} "
                        f"dnat ip to {ipaddress.IPv4Address(f.lan_addr)}:{f.lan_port}")
        return (
            f"table inet {NFT_TABLE}\n"
            f"delete table inet {NFT_TABLE}\n"
            f"table inet {NFT_TABLE} {{\n"
            f"{chains}"
            "  chain forward {\n"
            "    type filter hook forward priority filter; policy accept;\n"
            # The bulk of the kernel's share is established: one conntrack-state test, first (a
            # flow is established only once its first packet passed a rule below). Then what
            # natpass owns, new LAN->WAN flows, the kernel's port forwards; other IPv4 dropped.
            "    ct state established,related accept\n"
            f"{dispatch}"
            f"    meta nfproto ipv4 meta iif {lan} meta oif {wan} ct state new,untracked accept\n"
            f"    meta iif {wan} meta oif {lan} ct status dnat accept\n"
            "    meta nfproto ipv4 counter drop\n"
            "  }\n"
            "  chain input {\n"
            "    type filter hook input priority filter; policy accept;\n"
            f"{dispatch}"
            f"    meta iif {wan} ct state established,related accept\n"
            f"    meta iif {wan} icmp type echo-request accept\n"
            f"    meta iif {wan} meta nfproto ipv4 counter drop\n"
            "  }\n"
            "  chain output {\n"
            "    type filter hook output priority filter; policy accept;\n"
            + "".join(f"    {r}\n" for r in owned.output) +
            "  }\n"
            "  chain dstnat {\n"
            "    type nat hook prerouting priority dstnat; policy accept;\n"
            + "".join(line + "\n" for line in dnat) +
            "  }\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f"    oifname {wan} meta nfproto ipv4 meta l4proto {{ tcp, udp }} masquerade to :{lo}-{hi}\n"
            f"    oifname {wan} meta nfproto ipv4 masquerade\n"
            "  }\n"
            "}\n"
        )

    def kernel_share(self) -> KernelShare:
        return KernelShare(self.nft_ruleset(), conntrack_sysctls(self.nat.timeouts))

    def reconfigured(self, nat: NatConfig) -> Hybrid:
        """The same split for a reloaded config (the kernel's timeouts follow on restart)."""
        return Hybrid(self.lan_if, self.wan_if, self.own.lan.keep_local, nat, self.own.natpass_ports,
                      self.own.natt)

    def usage_event(self, now: float) -> dict[str, Any] | None:
        """Every USAGE_KERNEL_S: the kernel's flow count for the usage record ("kernel" half)."""
        if now < self._next_usage:
            return None
        self._next_usage = now + USAGE_KERNEL_S
        ct = kernel_conntrack()
        return {"event": "kernel-flows", "switch": "kernel",
                "detail": f"count={ct['count']} max={ct['max']}"}

    def status(self, owned: OwnedEngine | None = None) -> dict[str, Any]:
        st: dict[str, Any] = dict(self.own.summary())
        st["kernel_conntrack"] = kernel_conntrack()
        st["kernel_drops"] = read_kernel_drops()
        if owned is not None:
            st["kernel_fragments_ignored"] = owned.kernel_fragments
            st["merged_frames"] = owned.merged_frames
            st["merged_segments"] = owned.merged_segments
        return st


class EngineLike(Protocol):
    """The engine as the packet loop uses it."""

    reply: Any
    emitted: Any

    def process(self, buf: bytearray, from_lan: bool, now: float) -> int: ...

    def expire(self, now: float) -> Any: ...


TCP_FIN, TCP_PSH, TCP_CWR = 0x01, 0x08, 0x80


def segment_tcp(buf: bytearray, mtu: int) -> list[bytearray]:
    """Split a TCP packet merged by GRO/LRO back into segments of at most ``mtu`` bytes, as the
    sender's segments were: sequence numbers advance, FIN and PSH only on the last, CWR only on
    the first, IP IDs count up, both checksums recomputed. ``[buf]`` when it fits already."""
    ihl = (buf[0] & 0x0F) * 4
    total = (buf[2] << 8) | buf[3]
    thl = (buf[ihl + 12] >> 4) * 4
    mss = mtu - ihl - thl
    if total <= mtu or mss <= 0 or total > len(buf):
        return [buf]
    payload = memoryview(buf)[ihl + thl:total]
    header = bytes(buf[:ihl + thl])
    seq = int.from_bytes(buf[ihl + 4:ihl + 8], "big")
    ident = (buf[4] << 8) | buf[5]
    flags = buf[ihl + 13]
    out = []
    count = (len(payload) + mss - 1) // mss
    for i in range(count):
        chunk = payload[i * mss:(i + 1) * mss]
        seg = bytearray(header) + chunk
        n = len(seg)
        seg[2:4] = n.to_bytes(2, "big")
        seg[4:6] = ((ident + i) & 0xFFFF).to_bytes(2, "big")
        seg[10:12] = b"\x00\x00"
        seg[10:12] = internet_checksum(seg[:ihl]).to_bytes(2, "big")
        seg[ihl + 4:ihl + 8] = ((seq + i * mss) & 0xFFFFFFFF).to_bytes(4, "big")
        f = flags
        if i:
            f &= ~TCP_CWR
        if i < count - 1:
            f &= ~(TCP_FIN | TCP_PSH)
        seg[ihl + 13] = f
        with memoryview(seg) as whole, whole[ihl:] as segment:
            fix_tcp_checksum(seg[12:16], seg[16:20], segment)
        out.append(seg)
    payload.release()
    return out


def _frag_key(buf: bytearray, from_lan: bool) -> bytes:
    return bytes(buf[12:20]) + bytes(buf[4:6]) + bytes((buf[9], from_lan))


class OwnedEngine:
    """The engine behind natpass's packet sockets in hybrid mode.

    natpass's socket takes every non-first UDP fragment (only the first carries the ports that say
    whose datagram it is). A later fragment goes to the engine only once the first fragment of its
    datagram came through the socket (it was owned); one whose first fragment never shows up within
    ``fragment_timeout`` belongs to the kernel (which reassembled the datagram itself) and is
    forgotten, counted in ``kernel_fragments``, not as a drop. Everything else goes straight to the
    engine: ``process`` is a closure over the engine's own method (one test on the way).
    """

    def __init__(self, engine: EngineLike, fragment_timeout: float = 30.0, mtu: int = 1500) -> None:
        self.engine = engine
        self.fragment_timeout = fragment_timeout
        self.mtu = mtu
        self.merged_frames = 0  # TCP packets merged by GRO/LRO, segmented again
        self.merged_segments = 0
        self._firsts: dict[bytes, float] = {}  # key -> expiry of an owned datagram's first fragment
        self._waiting: dict[bytes, list[tuple[float, bool, bytearray]]] = {}
        self._waiting_count = 0
        self._own_emitted: list[bytearray] | None = None
        self.kernel_fragments = 0
        inner = engine.process
        fragment = self._fragment
        merged = self._merged

        def process(buf: bytearray, from_lan: bool, now: float) -> int:
            if (buf[6] & 0x3F or buf[7]) and buf[9] == PROTO_UDP:
                return fragment(buf, from_lan, now)
            if len(buf) > mtu and buf[9] == PROTO_TCP:
                return merged(buf, from_lan, now)
            return inner(buf, from_lan, now)

        self.process = process

    @property
    def reply(self) -> Any:
        return self.engine.reply

    @property
    def emitted(self) -> Any:
        """The packets of a MULTI verdict: the engine's, or this wrapper's own (read once)."""
        own = self._own_emitted
        if own is not None:
            self._own_emitted = None
            return own
        return self.engine.emitted

    def _merged(self, buf: bytearray, from_lan: bool, now: float) -> int:
        """A TCP packet GRO/LRO merged on the way in: each segment through the engine, all of
        them out with one MULTI verdict (they belong to one flow, so they leave on one side)."""
        segments = segment_tcp(buf, self.mtu)
        if len(segments) == 1:
            return self.engine.process(buf, from_lan, now)
        self.merged_frames += 1
        self.merged_segments += len(segments)
        out: list[bytearray] = []
        side = 0
        for seg in segments:
            code = self.engine.process(seg, from_lan, now)
            if code & 3:
                side = code & 3
            if code & V.REPLY:
                reply = self.engine.reply
                if reply is not None:
                    out.append(reply)
            elif code & V.MULTI:
                out.extend(self.engine.emitted)
            elif code:
                out.append(seg)
        if not side:
            return V.DROP
        self._own_emitted = out
        return V.MULTI | side

    def _fragment(self, buf: bytearray, from_lan: bool, now: float) -> int:
        key = _frag_key(buf, from_lan)
        if buf[6] & 0x1F or buf[7]:  # a later fragment
            if key in self._firsts:
                return self.engine.process(buf, from_lan, now)
            if self._waiting_count >= FRAGMENTS_WAITING_MAX:
                self._forget_oldest()
            self._waiting.setdefault(key, []).append((now, from_lan, bytearray(buf)))
            self._waiting_count += 1
            return V.HELD  # kept until the first fragment shows whose datagram it is
        # The first fragment (MF set, offset 0) came through natpass's filter: the datagram is natpass's.
        self._firsts[key] = now + self.fragment_timeout
        for _t, lan, held in self._waiting.pop(key, []):
            self._waiting_count -= 1
            self.engine.process(held, lan, now)  # the engine holds it until the first fragment
        return self.engine.process(buf, from_lan, now)

    def _forget_oldest(self) -> None:
        key = next(iter(self._waiting))
        lst = self._waiting[key]
        lst.pop(0)
        self._waiting_count -= 1
        self.kernel_fragments += 1
        if not lst:
            del self._waiting[key]

    def expire(self, now: float) -> Any:
        for key in [k for k, t in self._firsts.items() if t <= now]:
            del self._firsts[key]
        limit = now - self.fragment_timeout
        for key in [k for k, lst in self._waiting.items() if lst[0][0] <= limit]:
            n = len(self._waiting.pop(key))
            self._waiting_count -= n
            self.kernel_fragments += n
        return self.engine.expire(now)


def describe(own: Ownership) -> Iterable[str]:
    """Log lines saying which half handles what."""
    summary = own.summary()
    yield "hybrid datapath: natpass handles " + "; ".join(summary["natpass"])  # type: ignore[arg-type]
    yield "hybrid datapath: the kernel handles " + "; ".join(summary["kernel"])  # type: ignore[arg-type]
    yield ("if natpass stops unexpectedly, ordinary traffic keeps flowing through the kernel; "
           "PPTP, raw ESP/AH, IKE and L2TP stop until natpass runs again")


__all__ = ["Hybrid", "KernelShare", "OwnedEngine", "conntrack_sysctls", "kernel_conntrack", "kernel_drops",
           "read_kernel_drops", "describe"]


def hybrid_warnings(nat: NatConfig) -> list[str]:
    """What the config says that, in hybrid mode, holds for natpass's flows only (``config check``)."""
    out = []
    default = NatConfig()
    if nat.mapping != default.mapping or nat.filtering != default.filtering:
        out.append(f"mapping = {nat.mapping!r} / filtering = {nat.filtering!r} apply to natpass's flows "
                   "only; the kernel's masquerade maps endpoint-independently while it can keep the "
                   "source port and filters address-and-port-dependently (RFC 4787)")
    if nat.hairpinning:
        out.append("hairpinning applies to natpass's flows only: the kernel's masquerade does not "
                   "hairpin ordinary traffic")
    if nat.limits.max_flows or nat.limits.max_flows_per_host:
        out.append("[limits] bound natpass's flows only; the kernel's flows are bounded by "
                   "net.netfilter.nf_conntrack_max")
    if not nat.port_preservation or nat.port_range != default.port_range:
        out.append("[nat] port_range / port_preservation are replaced by [router] hybrid_ports for "
                   "natpass's flows; the kernel keeps a source port inside its own range")
    return out
