"""Benchmark of the NAT engine (natpass.nat.Engine), one process, one core.

    python bench/engine.py [--json] [--packets N] [--flows N] [--memory-flows N] [--profile]
                           [--natt] [--natt-packets N]

Phases (progress on stderr):
1. trace: a synthetic trace of >= --packets packets over --flows flows (60 % TCP with SYN,
   SYN-ACK, ACK, data both ways and FIN/FIN/ACK or RST; 30 % UDP; 10 % ICMP echo), packets of all
   flows interleaved. The buffers are copied out of per-flow templates before each timed chunk,
   so the timing is the engine's alone.
2. new flows/s: the first packet of every flow (each creates a mapping and a flow).
3. steady state packets/s: everything after the first packet (handshake rest, data, teardown),
   and separately the established data packets only.
4. memory per tracked flow: RSS growth while --memory-flows (default 1,000,000) UDP flows are
   created (one mapping each, 32 WAN addresses), divided by the flow count; the packet buffers
   are freed as they go.
5. reference: the same translation written plainly with scapy (parse, look up, rewrite, let scapy
   recompute the checksums) on a smaller sample; the ratio engine/reference.
6. with --passthrough: the established data of PPTP calls (enhanced GRE) and raw-ESP SAs, both
   ways, through the engine with the PPTP and IPsec helpers (`gre_pps`, `esp_pps`), next to
   established UDP through the same engine (`passthrough_udp_pps`).
7. with --natt: IKEv2 NAT-T (ESP-in-UDP on 4500, both ways) over 1,000 hosts each with its own
   gateway, through the engine with the IPsec helper, switch off and on (`natt_pps_off`,
   `natt_pps_on`), next to the same traffic on a port no helper claims (`natt_plain_udp_pps`).
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from natpass.nat import verdict as V  # noqa: E402
from natpass.nat.config import Limits, NatConfig  # noqa: E402
from natpass.nat.engine import Engine  # noqa: E402
from natpass.packets.checksum import internet_checksum, l4_checksum  # noqa: E402

CHUNK = 100_000
# CPU time of this process: the machine is shared, so wall time would measure the neighbours.
clock = time.process_time


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ip_header(src: bytes, dst: bytes, proto: int, length: int, ident: int) -> bytearray:
    h = bytearray(20)
    h[0] = 0x45
    h[2:4] = length.to_bytes(2, "big")
    h[4:6] = (ident & 0xFFFF).to_bytes(2, "big")
    h[8] = 64
    h[9] = proto
    h[12:16] = src
    h[16:20] = dst
    h[10:12] = internet_checksum(h).to_bytes(2, "big")
    return h


def tcp_packet(src: bytes, dst: bytes, sport: int, dport: int, flags: int, payload: bytes = b"",
               seq: int = 1, ack: int = 1) -> bytes:
    seg = bytearray(20)
    seg[0:2] = sport.to_bytes(2, "big")
    seg[2:4] = dport.to_bytes(2, "big")
    seg[4:8] = seq.to_bytes(4, "big")
    seg[8:12] = ack.to_bytes(4, "big")
    seg[12] = 0x50
    seg[13] = flags
    seg[14:16] = (65535).to_bytes(2, "big")
    seg += payload
    seg[16:18] = l4_checksum(src, dst, 6, seg).to_bytes(2, "big")
    return bytes(ip_header(src, dst, 6, 20 + len(seg), sport) + seg)


def udp_packet(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    seg = bytearray(8)
    seg[0:2] = sport.to_bytes(2, "big")
    seg[2:4] = dport.to_bytes(2, "big")
    seg[4:6] = (8 + len(payload)).to_bytes(2, "big")
    seg += payload
    c = l4_checksum(src, dst, 17, seg) or 0xFFFF
    seg[6:8] = c.to_bytes(2, "big")
    return bytes(ip_header(src, dst, 17, 20 + len(seg), dport) + seg)


def icmp_packet(src: bytes, dst: bytes, typ: int, ident: int, payload: bytes) -> bytes:
    m = bytearray(8)
    m[0] = typ
    m[4:6] = ident.to_bytes(2, "big")
    m[6:8] = (1).to_bytes(2, "big")
    m += payload
    m[2:4] = internet_checksum(m).to_bytes(2, "big")
    return bytes(ip_header(src, dst, 1, 20 + len(m), ident) + m)


SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


class FlowSpec:
    """One synthetic flow: its first (creating) packet and a generator of the rest, built once
    the WAN endpoint is known (the bench plays the far end, which only sees the translation)."""

    def __init__(self, kind: str, lan: bytes, lport: int, remote: bytes, rport: int,
                 length: int, rng: random.Random) -> None:
        self.kind = kind
        self.lan, self.lport, self.remote, self.rport = lan, lport, remote, rport
        self.length = length
        self.rst = rng.random() < 0.2
        self.payload_out = rng.randbytes(rng.choice((0, 40, 200)))
        self.payload_in = rng.randbytes(rng.choice((0, 100, 1000)))

    def first(self) -> bytes:
        if self.kind == "tcp":
            return tcp_packet(self.lan, self.remote, self.lport, self.rport, SYN)
        if self.kind == "udp":
            return udp_packet(self.lan, self.remote, self.lport, self.rport, self.payload_out)
        return icmp_packet(self.lan, self.remote, 8, self.lport, self.payload_out)

    def rest(self, wan: bytes, wport: int) -> tuple[list[tuple[bytes, bool]], int]:
        """Templates of the remaining packets (buffer, from_lan) and how many are 'data'."""
        L, R = self.lan, self.remote
        out: list[tuple[bytes, bool]] = []
        n = self.length - 1
        if self.kind == "tcp":
            d_out = tcp_packet(L, R, self.lport, self.rport, ACK | PSH, self.payload_out)
            d_in = tcp_packet(R, wan, self.rport, wport, ACK | PSH, self.payload_in)
            out.append((tcp_packet(R, wan, self.rport, wport, SYN | ACK), False))
            out.append((tcp_packet(L, R, self.lport, self.rport, ACK), True))
            if self.rst:
                tail = [(tcp_packet(R, wan, self.rport, wport, RST), False)]
            else:
                tail = [(tcp_packet(L, R, self.lport, self.rport, FIN | ACK), True),
                        (tcp_packet(R, wan, self.rport, wport, FIN | ACK), False),
                        (tcp_packet(L, R, self.lport, self.rport, ACK), True)]
            data = max(0, n - len(out) - len(tail))
            for i in range(data):
                out.append((d_out, True) if i % 2 else (d_in, False))
            out.extend(tail)
            return out, data
        if self.kind == "udp":
            d_out = udp_packet(L, R, self.lport, self.rport, self.payload_out)
            d_in = udp_packet(R, wan, self.rport, wport, self.payload_in)
        else:
            d_out = icmp_packet(L, R, 8, self.lport, self.payload_out)
            d_in = icmp_packet(R, wan, 0, wport, self.payload_out)
        for i in range(n):
            out.append((d_out, True) if i % 2 else (d_in, False))
        return out, n


def make_specs(flows: int, per_flow: int, rng: random.Random) -> list[FlowSpec]:
    specs = []
    remotes = [ipaddress.IPv4Address("198.51.100.0") + i for i in range(1, 250)]
    remotes += [ipaddress.IPv4Address("203.0.113.0") + i for i in range(100, 250)]
    for i in range(flows):
        host = ipaddress.IPv4Address("192.168.0.0") + 256 * (i % 8) + 2 + (i // 8) % 250
        r = rng.random()
        kind = "tcp" if r < 0.6 else ("udp" if r < 0.9 else "icmp")
        lport = 1024 + (i * 7919) % 60000
        rport = rng.choice((80, 443, 53, 123, 8080, 3478)) if kind != "icmp" else 0
        length = max(4, int(rng.expovariate(1 / per_flow)))
        specs.append(FlowSpec(kind, host.packed, lport, rng.choice(remotes).packed, rport,
                              length, rng))
    return specs


def config(max_flows: int = 0, wans: int = 1) -> NatConfig:
    return NatConfig(
        wan_addresses=tuple((ipaddress.IPv4Address("203.0.113.1") + i).packed for i in range(wans)),
        lan_prefixes=(ipaddress.IPv4Network("192.168.0.0/16"),),
        limits=Limits(max_flows=max_flows, max_flows_per_host=0, max_fragments=1024),
        seed=1,
    )


def run_trace(args: argparse.Namespace, result: dict[str, Any]) -> None:
    rng = random.Random(42)
    per_flow = max(4, args.packets // args.flows)
    log(f"[trace] {args.flows} flows, ~{per_flow} packets each")
    specs = make_specs(args.flows, per_flow, rng)
    eng = Engine(config())
    now = 1000.0
    # phase 2: new flows (first packets), timed in chunks of pre-copied buffers
    firsts = [bytearray(s.first()) for s in specs]
    gc.collect()
    t0 = clock()
    codes = [eng.process(b, True, now) for b in firsts]
    t_new = clock() - t0
    bad = sum(1 for c in codes if c != V.TO_WAN)
    result["new_flows_per_s"] = round(len(firsts) / t_new)
    log(f"[new flows] {len(firsts)} in {t_new:.3f} s = {len(firsts) / t_new:,.0f}/s (not TO_WAN: {bad})")
    # the far end learns each WAN endpoint from the translated first packet
    rests: list[list[tuple[bytes, bool]]] = []
    data_total = 0
    for s, b in zip(specs, firsts, strict=True):
        wan = bytes(b[12:16])
        wport = int.from_bytes(b[20:22] if s.kind != "icmp" else b[24:26], "big")
        r, d = s.rest(wan, wport)
        rests.append(r)
        data_total += d
    # interleave: round-robin over the flows in a shuffled order
    order = list(range(len(specs)))
    rng.shuffle(order)
    trace: list[tuple[bytes, bool]] = []
    pos = [0] * len(specs)
    active = order
    while active:
        nxt = []
        for i in active:
            r = rests[i]
            if pos[i] < len(r):
                trace.append(r[pos[i]])
                pos[i] += 1
                nxt.append(i)
        active = nxt
    total = len(trace) + len(firsts)
    log(f"[trace] {total:,} packets ({len(trace):,} after the first ones)")
    # phase 3: steady state
    t_all = 0.0
    n_done = 0
    for start in range(0, len(trace), CHUNK):
        part = trace[start:start + CHUNK]
        bufs = [bytearray(b) for b, _ in part]
        lans = [fl for _, fl in part]
        now += 0.1
        proc = eng.process
        t0 = clock()
        for b, fl in zip(bufs, lans):  # noqa: B905 - same length by construction
            proc(b, fl, now)
        t_all += clock() - t0
        n_done += len(part)
        log(f"[steady] {n_done:,}/{len(trace):,} packets, {n_done / t_all:,.0f} pps")
    result["pps"] = round(n_done / t_all)
    result["packets"] = total
    result["flows"] = len(specs)
    result["drops"] = dict(eng.drops)
    result["flows_left"] = len(eng.table)
    # data packets only (established state), a second pass on a fresh engine is not needed:
    # replay the data templates of live TCP/UDP flows through a new engine with flows set up
    eng2 = Engine(config())
    data_bufs: list[tuple[bytes, bool]] = []
    for s in specs[:5000]:
        b = bytearray(s.first())
        eng2.process(b, True, now)
        wan = bytes(b[12:16])
        wport = int.from_bytes(b[20:22] if s.kind != "icmp" else b[24:26], "big")
        r, d = s.rest(wan, wport)
        for pb, fl in r[:3]:
            eng2.process(bytearray(pb), fl, now)
        if s.kind != "icmp":
            data_bufs.extend(r[2:3 + min(d, 40)] if s.kind == "tcp" else r[:min(d, 40)])
    rng.shuffle(data_bufs)
    data_bufs = data_bufs[:CHUNK * 2]
    bufs = [bytearray(b) for b, _ in data_bufs]
    lans = [fl for _, fl in data_bufs]
    proc = eng2.process
    t0 = clock()
    for b, fl in zip(bufs, lans):  # noqa: B905
        proc(b, fl, now)
    t_est = clock() - t0
    result["established_pps"] = round(len(bufs) / t_est)
    log(f"[established] {len(bufs):,} TCP/UDP data packets: {len(bufs) / t_est:,.0f} pps")
    if args.profile:
        profile(eng2, data_bufs, now)


def profile(eng: Engine, data: list[tuple[bytes, bool]], now: float) -> None:
    from pyinstrument import Profiler
    bufs = [bytearray(b) for b, _ in data]
    lans = [fl for _, fl in data]
    p = Profiler(interval=0.0005)
    p.start()
    for b, fl in zip(bufs, lans):  # noqa: B905
        eng.process(b, fl, now)
    p.stop()
    log(p.output_text(unicode=False, color=False))


def run_memory(args: argparse.Namespace, result: dict[str, Any]) -> None:
    n = args.memory_flows
    wans = max(1, -(-n // 60000))
    eng = Engine(config(wans=wans))
    hosts = 4096
    remote = ipaddress.IPv4Address("198.51.100.9").packed
    gc.collect()
    base = rss_bytes()
    t0 = clock()
    tmpl = bytearray(udp_packet(bytes(4), remote, 0, 53, b""))
    tmpl[26:28] = b"\x00\x00"  # no UDP checksum: the buffers are patched per flow below
    tmpl[10:12] = b"\x00\x00"
    words = sum(int.from_bytes(tmpl[i:i + 2], "big") for i in range(0, 20, 2))
    made = 0
    for i in range(n):
        h = i % hosts
        lan = bytes((192, 168, h // 250, 1 + h % 250))
        port = 1024 + (i // hosts) % 64000
        b = bytearray(tmpl)
        b[12:16] = lan
        b[20:22] = port.to_bytes(2, "big")
        c = words + (192 << 8 | 168) + ((h // 250) << 8 | (1 + h % 250))
        c = (c & 0xFFFF) + (c >> 16)
        c = (c & 0xFFFF) + (c >> 16)
        b[10:12] = (~c & 0xFFFF).to_bytes(2, "big")
        if eng.process(b, True, 1.0) == V.TO_WAN:
            made += 1
        if (i + 1) % 200_000 == 0:
            log(f"[memory] {i + 1:,} flows, RSS +{(rss_bytes() - base) / 2**20:,.0f} MiB")
    dt = clock() - t0
    gc.collect()
    grown = rss_bytes() - base
    result["bytes_per_flow"] = round(grown / max(1, len(eng.table)))
    result["memory_flows"] = len(eng.table)
    result["memory_new_flows_per_s"] = round(n / dt)
    log(f"[memory] {len(eng.table):,} flows ({made:,} created), RSS +{grown / 2**20:,.1f} MiB = "
        f"{grown / max(1, len(eng.table)):,.0f} bytes/flow; {n / dt:,.0f} new flows/s at scale")


def best_rate(eng: Engine, trace: list[tuple[bytes, bool]], now: float = 2.0) -> float:
    """Packets per second of CPU through ``eng.process``, best of three passes over ``trace``."""
    best = 0.0
    for _ in range(3):
        bufs = [bytearray(b) for b, _ in trace]
        lans = [fl for _, fl in trace]
        proc = eng.process
        t0 = clock()
        for b, fl in zip(bufs, lans):  # noqa: B905
            proc(b, fl, now)
        best = max(best, len(bufs) / (clock() - t0))
    return best


def run_natt(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """NAT-T: IKE_AUTH moves to 4500, then ESP-in-UDP both ways (the IPsec helper's port)."""
    from natpass.nat.config import Passthrough
    from natpass.packets.ike import FLAG_INITIATOR, FLAG_RESPONSE, IKE_AUTH, NON_ESP_MARKER, build_ike
    from natpass.passthrough import build_engine
    hosts = 1000
    rng = random.Random(5)
    esp = (0x0C0FFEE0).to_bytes(4, "big") + bytes(4) + rng.randbytes(120)
    for label, on, port in (("natt_pps_off", False, 4500), ("natt_pps_on", True, 4500),
                            ("natt_plain_udp_pps", False, 4600)):
        cfg = NatConfig(wan_addresses=(ipaddress.IPv4Address("203.0.113.1").packed,),
                        lan_prefixes=(ipaddress.IPv4Network("192.168.0.0/16"),),
                        limits=Limits(max_flows=0, max_flows_per_host=0),
                        passthrough=Passthrough(ipsec=on), seed=1)
        eng = build_engine(cfg)
        data: list[tuple[bytes, bool]] = []
        for i in range(hosts):
            lan = bytes((192, 168, i // 250, 1 + i % 250))
            gw = (ipaddress.IPv4Address("198.51.100.0") + 1 + i % 250).packed
            gw = bytes((gw[0], gw[1], gw[2] ^ (i // 250), gw[3]))
            spi = i.to_bytes(8, "big")
            b = bytearray(udp_packet(lan, gw, port, port, NON_ESP_MARKER + bytes(
                build_ike(spi, bytes(8), IKE_AUTH, FLAG_INITIATOR))))
            eng.process(b, True, 1.0)
            wan, wport = bytes(b[12:16]), int.from_bytes(b[20:22], "big")
            eng.process(bytearray(udp_packet(gw, wan, port, wport, NON_ESP_MARKER + bytes(
                build_ike(spi, b"R" * 8, IKE_AUTH, FLAG_RESPONSE)))), False, 1.0)
            data.append((udp_packet(lan, gw, port, port, esp), True))
            data.append((udp_packet(gw, wan, port, wport, esp), False))
        trace = data * max(1, args.natt_packets // len(data))
        rng.shuffle(trace)
        best = best_rate(eng, trace)
        result[label] = round(best)
        log(f"[natt] {label}: {len(trace):,} ESP-in-UDP packets, best of 3: {best:,.0f} pps "
            f"(drops: {sum(eng.drops.values())})")


def run_passthrough(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Established GRE calls and ESP SAs (both ways) against established UDP, one engine."""
    from natpass.nat.config import Passthrough
    from natpass.packets import pptp as P
    from natpass.packets.esp import build_esp_packet
    from natpass.packets.gre import build_pptp_gre
    from natpass.passthrough import build_engine
    hosts = 200
    rng = random.Random(11)
    server = ipaddress.IPv4Address("198.51.100.7").packed
    gateway = ipaddress.IPv4Address("198.51.100.20").packed
    cfg = NatConfig(wan_addresses=(ipaddress.IPv4Address("203.0.113.1").packed,),
                    lan_prefixes=(ipaddress.IPv4Network("192.168.0.0/16"),),
                    limits=Limits(max_flows=0, max_flows_per_host=0),
                    passthrough=Passthrough(pptp=True, ipsec=True), seed=1)
    eng = build_engine(cfg)
    ppp = b"\xff\x03\x00\x21" + rng.randbytes(96)  # a PPP frame of 100 bytes
    gre: list[tuple[bytes, bool]] = []
    esp: list[tuple[bytes, bool]] = []
    udp: list[tuple[bytes, bool]] = []

    def through(pkt: bytes, from_lan: bool) -> bytearray:
        b = bytearray(pkt)
        if eng.process(b, from_lan, 1.0) == V.DROP:
            raise SystemExit(f"set-up packet dropped: {eng.last_drop}")
        return b

    for i in range(hosts):
        lan = bytes((192, 168, 1 + i // 250, 1 + i % 250))
        # a PPTP control connection and one call (RFC 2637: SCCRQ/SCCRP, OCRQ/OCRP)
        lseq, rseq = 1000, 5000
        syn = through(tcp_packet(lan, server, 40000, 1723, 0x02, seq=lseq, ack=0), True)
        wan, wport = bytes(syn[12:16]), int.from_bytes(syn[20:22], "big")
        lseq += 1
        through(tcp_packet(server, wan, 1723, wport, 0x12, seq=rseq, ack=lseq), False)
        rseq += 1
        for msg, from_lan in ((P.build_sccrq(), True), (P.build_sccrp(), False),
                              (P.build_ocrq(0x4000 + i), True)):
            if from_lan:
                out = through(tcp_packet(lan, server, 40000, 1723, 0x18, bytes(msg), lseq, rseq), True)
                lseq += len(msg)
            else:
                through(tcp_packet(server, wan, 1723, wport, 0x18, bytes(msg), rseq, lseq), False)
                rseq += len(msg)
        wan_call = int.from_bytes(out[20 + 20 + 12:20 + 20 + 14], "big")
        through(tcp_packet(server, wan, 1723, wport, 0x18, bytes(P.build_ocrp(0x7000 + i, wan_call)),
                           rseq, lseq), False)
        gre.append((bytes(build_pptp_gre(lan, server, 0x7000 + i, ppp, seq=1)), True))
        gre.append((bytes(build_pptp_gre(server, wan, wan_call, ppp, seq=1, ack=1)), False))
        # a raw-ESP SA pair with its own gateway per host
        gw = bytes((gateway[0], gateway[1], gateway[2] ^ (i // 250), 1 + i % 250))
        payload = rng.randbytes(112)
        esp.append((bytes(build_esp_packet(lan, gw, 0x1000 + i, 1, payload)), True))
        esp.append((bytes(build_esp_packet(gw, wan, 0x2000 + i, 1, payload)), False))
        # an established UDP flow of the same size
        u = through(udp_packet(lan, server, 20000, 5000, payload + bytes(8)), True)
        through(udp_packet(server, wan, 5000, int.from_bytes(u[20:22], "big"), payload + bytes(8)), False)
        udp.append((udp_packet(lan, server, 20000, 5000, payload + bytes(8)), True))
        udp.append((udp_packet(server, wan, 5000, int.from_bytes(u[20:22], "big"), payload + bytes(8)), False))
    for label, data in (("gre_pps", gre), ("esp_pps", esp), ("passthrough_udp_pps", udp)):
        for pkt, fl in data:  # the first packet of each direction binds the call / SA
            through(pkt, fl)
        trace = data * max(1, args.passthrough_packets // len(data))
        rng.shuffle(trace)
        drops = sum(eng.drops.values())
        best = best_rate(eng, trace)
        if sum(eng.drops.values()) != drops:
            raise SystemExit(f"{label}: the engine dropped packets: {eng.drops}")
        result[label] = round(best)
        log(f"[passthrough] {label}: {len(trace):,} packets, best of 3: {best:,.0f} pps "
            f"({1e6 / best:.2f} us/packet)")


def run_reference(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """The same NAPT written plainly with scapy: parse, look up, rewrite, recompute checksums."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    rng = random.Random(7)
    specs = make_specs(500, 20, rng)
    wan = ipaddress.IPv4Address("203.0.113.1").packed
    pkts: list[tuple[bytes, bool]] = []
    for s in specs:
        pkts.append((s.first(), True))
        r, _ = s.rest(wan, s.lport)
        pkts.extend(r)
    pkts = pkts[:args.reference_packets]
    out_map: dict[tuple[Any, ...], tuple[str, int]] = {}
    in_map: dict[tuple[Any, ...], tuple[str, int]] = {}
    wan_s = "203.0.113.1"
    t0 = clock()
    for raw, from_lan in pkts:
        p = IP(raw)
        l4 = p.payload
        if isinstance(l4, (TCP, UDP)):
            sp, dp = l4.sport, l4.dport
        elif isinstance(l4, ICMP):
            sp, dp = l4.id, 0
        else:
            continue
        if from_lan:
            k = (p.proto, p.src, sp, p.dst, dp)
            m = out_map.get(k)
            if m is None:
                m = out_map[k] = (wan_s, sp)
                in_map[(p.proto, p.dst, dp, wan_s, sp)] = (p.src, sp)
            p.src = m[0]
            if isinstance(l4, ICMP):
                l4.id = m[1]
            else:
                l4.sport = m[1]
        else:
            m = in_map.get((p.proto, p.src, sp if not isinstance(l4, ICMP) else 0, p.dst,
                            l4.dport if not isinstance(l4, ICMP) else l4.id))
            if m is None:
                m = in_map.get((p.proto, p.src, 0, p.dst, sp))
            if m is None:
                continue
            p.dst = m[0]
            if isinstance(l4, ICMP):
                l4.id = m[1]
            else:
                l4.dport = m[1]
        p.ttl -= 1
        del p.chksum
        del l4.chksum
        bytes(p)
    dt = clock() - t0
    result["reference_pps"] = round(len(pkts) / dt)
    log(f"[reference] scapy: {len(pkts):,} packets in {dt:.2f} s = {len(pkts) / dt:,.0f} pps")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--flows", type=int, default=10_000)
    ap.add_argument("--memory-flows", type=int, default=1_000_000)
    ap.add_argument("--reference-packets", type=int, default=5_000)
    ap.add_argument("--profile", action="store_true", help="pyinstrument the established path")
    ap.add_argument("--natt", action="store_true",
                    help="also measure NAT-T (ESP-in-UDP on 4500) with the IPsec switch off/on")
    ap.add_argument("--natt-packets", type=int, default=200_000)
    ap.add_argument("--passthrough", action="store_true",
                    help="also measure established PPTP GRE and raw ESP through the helpers")
    ap.add_argument("--passthrough-packets", type=int, default=200_000)
    ap.add_argument("--only-passthrough", action="store_true",
                    help="measure the passthrough phase alone (no trace, reference or memory)")
    args = ap.parse_args()
    result: dict[str, Any] = {}
    t0 = clock()
    if args.only_passthrough:
        run_passthrough(args, result)
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    run_trace(args, result)
    run_reference(args, result)
    result["ratio"] = round(result["pps"] / result["reference_pps"], 1)
    run_memory(args, result)
    if args.passthrough:
        run_passthrough(args, result)
    if args.natt:
        run_natt(args, result)
    result["seconds"] = round(clock() - t0, 1)
    result["python"] = sys.version.split()[0]
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(f"steady state:      {result['pps']:>12,} packets/s "
              f"(established data only: {result['established_pps']:,})")
        print(f"new flows:         {result['new_flows_per_s']:>12,} flows/s")
        print(f"memory per flow:   {result['bytes_per_flow']:>12,} bytes "
              f"(at {result['memory_flows']:,} flows)")
        print(f"scapy reference:   {result['reference_pps']:>12,} packets/s "
              f"(engine is {result['ratio']}x faster)")
        if args.passthrough:
            print(f"PPTP GRE / ESP:    {result['gre_pps']:>12,} / {result['esp_pps']:,} packets/s "
                  f"(established UDP: {result['passthrough_udp_pps']:,})")
        if args.natt:
            print(f"NAT-T (4500):      {result['natt_pps_off']:>12,} packets/s switch off, "
                  f"{result['natt_pps_on']:,} on (plain UDP: {result['natt_plain_udp_pps']:,})")


if __name__ == "__main__":
    main()
