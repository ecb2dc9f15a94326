"""What-if replay: run a capture through the engine as if natpass had been the router.

Packets whose source lies in a LAN prefix go out through the engine; the rest arrive from the far
side. The far end is emulated: an arriving packet is first rewritten into what the far end would
really have sent after seeing natpass's translated traffic (``Engine.far_end_view``: the mapped WAN
address and port, translated helper fields such as PPTP call IDs), then processed inbound. The WAN
output holds that side as the far end saw it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from natpass.datapath.pcap import PcapWriter, iter_capture
from natpass.nat import verdict as V
from natpass.nat.config import NatConfig
from natpass.packets.icmp import ICMP_HEADER, fix_icmp_checksum, verify_icmp
from natpass.packets.ipproto import proto_name
from natpass.packets.ipv4 import fix_ip_checksum, header_checksum_ok
from natpass.packets.tcp import TCP_MIN_HEADER, fix_tcp_checksum, verify_tcp
from natpass.packets.udp import UDP_HEADER, fix_udp_checksum, verify_udp

# by_ip_protocol keys: these by name, every other protocol as "other" (docs: replay --json).
_BY_PROTO = frozenset({1, 6, 17, 47, 50, 51})
PROTO_KEYS = ("tcp", "udp", "icmp", "gre", "esp", "ah", "other")
_PRIVATE = [ipaddress.IPv4Network(n) for n in
            ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")]


@dataclass(slots=True)
class PacketRecord:
    """What happened to one captured packet."""

    index: int
    ts: float
    from_lan: bool
    proto: str
    code: int
    reason: str | None
    flow: str

    @property
    def forwarded(self) -> bool:
        return self.code & 3 != 0 and not self.code & V.REPLY

    @property
    def held(self) -> bool:
        """A fragment kept until its first fragment arrives: neither forwarded nor dropped."""
        return self.code == V.HELD

    @property
    def verdict(self) -> str:
        return "forwarded" if self.forwarded else "held" if self.held else "dropped"

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "ts": self.ts, "direction": "out" if self.from_lan else "in",
                "proto": self.proto, "verdict": self.verdict, "reason": self.reason,
                "flow": self.flow}


@dataclass
class ReplayResult:
    """The report of one replay: ``summary`` is the JSON object, ``records`` one per packet."""

    summary: dict[str, Any]
    records: list[PacketRecord] = field(default_factory=list)
    flows: list[dict[str, Any]] = field(default_factory=list)


def _is_private(addr: bytes) -> bool:
    ip = ipaddress.IPv4Address(addr)
    return any(ip in net for net in _PRIVATE)


def repair_offload(buf: bytearray) -> bool:
    """Fix checksums left unfilled by the capturing host's checksum offload; True when changed.

    A capture taken on a sending host shows its outbound packets before the NIC filled in the
    checksums (often 0): on the wire they were correct. A router verifies them, so the replay
    repairs them first (``--keep-checksums`` turns this off). Truncated packets are left alone.
    """
    ihl = (buf[0] & 0x0F) * 4
    total = (buf[2] << 8) | buf[3]
    if ihl < 20 or total != len(buf) or ihl > total:
        return False
    changed = not header_checksum_ok(buf)
    if changed:
        fix_ip_checksum(buf)
    if buf[6] & 0x3F or buf[7]:  # a fragment: its L4 checksum covers other fragments too
        return changed
    proto, src, dst = buf[9], buf[12:16], buf[16:20]
    with memoryview(buf) as whole, whole[ihl:] as seg:
        n = len(seg)
        if proto == 6 and n >= TCP_MIN_HEADER:
            if not verify_tcp(src, dst, seg):
                fix_tcp_checksum(src, dst, seg)
                changed = True
        elif proto == 17 and n >= UDP_HEADER and (seg[4] << 8 | seg[5]) == n:
            # verify_udp accepts a zero field (no checksum): nothing to repair then.
            if not verify_udp(src, dst, seg):
                fix_udp_checksum(src, dst, seg)
                changed = True
        elif proto == 1 and n >= ICMP_HEADER and not verify_icmp(seg):
            fix_icmp_checksum(seg)
            changed = True
    return changed


def infer_lan(path: str | Path) -> list[ipaddress.IPv4Network]:
    """Guess the LAN side of a capture: private sources that talk to public addresses, else the
    host that opened the first connection (a TCP SYN, or the first packet's sender)."""
    talkers: Counter[bytes] = Counter()
    first_syn: bytes | None = None
    first_src: bytes | None = None
    for pkt in iter_capture(path):
        ip = pkt.ip
        if ip is None or len(ip) < 20:
            continue
        src, dst = bytes(ip[12:16]), bytes(ip[16:20])
        if first_src is None:
            first_src = src
        if _is_private(src) and not _is_private(dst):
            talkers[src] += 1
        ihl = (ip[0] & 0x0F) * 4
        if first_syn is None and ip[9] == 6 and len(ip) >= ihl + 14 and ip[ihl + 13] & 0x12 == 0x02:
            first_syn = src
    if talkers:
        return [ipaddress.IPv4Network(ipaddress.IPv4Address(a)) for a, _ in talkers.most_common()]
    chosen = first_syn or first_src
    if chosen is None:
        return []
    return [ipaddress.IPv4Network(ipaddress.IPv4Address(chosen))]


def _flow_label(ip: bytes | bytearray, from_lan: bool) -> str:
    """One readable name for both directions of a flow: ``proto lanhost:id <-> remote:id``."""
    proto = ip[9]
    ihl = (ip[0] & 0x0F) * 4
    src, dst = ipaddress.IPv4Address(bytes(ip[12:16])), ipaddress.IPv4Address(bytes(ip[16:20]))
    name = proto_name(proto)
    frag = (ip[6] & 0x1F) << 8 | ip[7]
    s = d = extra = ""
    if frag == 0 and proto in (6, 17) and len(ip) >= ihl + 4:
        s = f":{int.from_bytes(ip[ihl:ihl + 2], 'big')}"
        d = f":{int.from_bytes(ip[ihl + 2:ihl + 4], 'big')}"
    elif frag == 0 and proto in (50, 51) and len(ip) >= ihl + 8:
        # Each direction of an SA pair has its own SPI: name it, so a one-way SA stands out.
        off = ihl + (4 if proto == 51 else 0)
        extra = f" spi=0x{int.from_bytes(ip[off:off + 4], 'big'):08x}"
    if from_lan:
        return f"{name} {src}{s} <-> {dst}{d}{extra}"
    return f"{name} {dst}{d} <-> {src}{s}{extra}"


def replay_capture(
    path: str | Path,
    config: NatConfig,
    lan: Sequence[str] | None = None,
    out: str | Path | None = None,
    lan_out: str | Path | None = None,
    engine_factory: Callable[[NatConfig], Any] | None = None,
    progress: Callable[[int], None] | None = None,
    repair: bool = True,
) -> ReplayResult:
    """Replay ``path`` through a fresh engine built from ``config``.

    ``lan``: LAN prefixes overriding the config's (``["auto"]`` infers them from the capture).
    ``out``: pcap of the WAN side as the far end saw it; ``lan_out``: the LAN side as its hosts
    saw it. ``progress`` is called every 10,000 packets with the count so far. ``repair``
    fixes checksum-offload artifacts of the capture first (see :func:`repair_offload`); packets
    cut short by the capture's snap length are counted as ``truncated`` and not replayed.
    """
    if lan:
        if list(lan) == ["auto"]:
            prefixes = infer_lan(path)
        else:
            prefixes = [ipaddress.IPv4Network(p) for p in lan]
        if prefixes:
            config = dataclasses.replace(config, lan_prefixes=tuple(prefixes))
    if engine_factory is None:
        from natpass.passthrough import build_engine

        engine_factory = build_engine
    engine = engine_factory(config)
    nets = [(int(n.network_address), int(n.netmask)) for n in config.lan_prefixes]

    def in_lan(addr: bytes) -> bool:
        value = int.from_bytes(addr, "big")
        return any(value & mask == net for net, mask in nets)

    by_proto = {k: {"out_forwarded": 0, "out_dropped": 0, "out_held": 0, "in_forwarded": 0,
                    "in_dropped": 0, "in_held": 0} for k in PROTO_KEYS}
    drops: Counter[str] = Counter()
    records: list[PacketRecord] = []
    flows: dict[str, dict[str, Any]] = {}
    counts = Counter[str]()
    wan_w = PcapWriter(out) if out else None
    lan_w = PcapWriter(lan_out) if lan_out else None
    last_ts = 0.0
    try:
        for pkt in iter_capture(path):
            counts["packets"] += 1
            if progress and counts["packets"] % 10000 == 0:
                progress(counts["packets"])
            if pkt.ip is None:
                counts["non_ipv4"] += 1
                continue
            now = max(pkt.ts, last_ts)  # captures with duplicated or reordered stamps
            last_ts = now
            buf = bytearray(pkt.ip)
            if len(buf) >= 20 and buf[0] >> 4 == 4 and ((buf[2] << 8) | buf[3]) > len(buf):
                counts["truncated"] += 1  # cut by the snap length: not what was on the wire
                continue
            if repair and len(buf) >= 20 and buf[0] >> 4 == 4 and repair_offload(buf):
                counts["repaired"] += 1
            if len(buf) < 20 or buf[0] >> 4 != 4:
                from_lan = False
                label = "malformed"
                key = "other"
            else:
                src_lan, dst_lan = in_lan(bytes(buf[12:16])), in_lan(bytes(buf[16:20]))
                if src_lan and dst_lan:
                    counts["lan_local"] += 1  # LAN-to-LAN traffic never reaches the router's NAT
                    continue
                from_lan = src_lan
                label = _flow_label(buf, from_lan)
                key = proto_name(buf[9]) if buf[9] in _BY_PROTO else "other"
            if from_lan:
                if lan_w:
                    lan_w.write(bytes(buf), pkt.ts)
                code = engine.process(buf, True, now)
            else:
                engine.far_end_view(buf, now)
                if wan_w:
                    wan_w.write(bytes(buf), pkt.ts)
                code = engine.process(buf, False, now)
            reason = engine.last_drop if code == V.DROP or code & V.REPLY else None
            if code & V.REPLY:
                counts["replies"] += 1
            for side, data in V.packets_to_send(code, buf, engine.reply, engine.emitted):
                writer = wan_w if side == V.TO_WAN else lan_w
                if writer:
                    writer.write(bytes(data), pkt.ts)
            rec = PacketRecord(pkt.index, pkt.ts, from_lan, key, code, reason, label)
            records.append(rec)
            direction = "out" if from_lan else "in"
            verdict = rec.verdict
            by_proto[key][f"{direction}_{verdict}"] += 1
            counts[verdict] += 1
            dropped = verdict == "dropped"
            if dropped and reason:
                drops[reason] += 1
            f = flows.setdefault(label, {"flow": label, "proto": key, "out": 0, "in": 0,
                                         "forwarded": 0, "dropped": 0, "held": 0,
                                         "drops": Counter()})
            f[direction] += 1
            f[verdict] += 1
            if dropped and reason:
                f["drops"][reason] += 1
    finally:
        if wan_w:
            wan_w.close()
        if lan_w:
            lan_w.close()

    flow_list = []
    for f in flows.values():
        f["drops"] = dict(f["drops"])
        flow_list.append(f)
    status = engine.status() if hasattr(engine, "status") else {}
    summary = {
        "capture": str(path),
        "packets": counts["packets"],
        "forwarded": counts["forwarded"],
        "dropped": counts["dropped"],
        "held": counts["held"],
        "drops": dict(drops),
        "by_ip_protocol": by_proto,
        "non_ipv4": counts["non_ipv4"],
        "lan_local": counts["lan_local"],
        "truncated": counts["truncated"],
        "checksums_repaired": counts["repaired"],
        "icmp_replies": counts["replies"],
        "lan_prefixes": [str(n) for n in config.lan_prefixes],
        "wan_addresses": [str(ipaddress.IPv4Address(a)) for a in config.wan_addresses],
        "switches": {k: config.passthrough.get(k) for k in ("pptp", "ipsec", "l2tp", "strict")},
        "flows": len(flow_list),
        "helpers": status.get("helpers", {}) if isinstance(status, dict) else {},
    }
    return ReplayResult(summary=summary, records=records, flows=flow_list)
