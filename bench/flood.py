"""Floods against the NAT engine, measured: do established sessions survive, does memory stay bounded?

    python bench/flood.py [--json] [--table N] [--factor F] [--only NAME ...]

One process, the engine with the three passthrough helpers switched on (``build_engine``), a
table of ``--table`` flows (default 10,000; ``max_flows_per_host`` 4,096, ``max_fragments``
1,024). Before each flood four sessions are set up and keep talking during it, one round every
50 flood packets: a TCP connection, a UDP exchange, a PPTP call (control connection on TCP 1723
and GRE both ways, an echo on the control connection every 20 rounds) and a raw ESP SA. A session
packet that does not come out where it belongs is *lost*. The flood sends ``--factor`` x table
size packets (default 10 x 10,000), bounded, with the injected clock advancing 0.1 ms a packet
(10,000 packets/s, so no flow times out during a flood).

Printed per flood: session packets lost (goal 0), memory (tracemalloc: peak above the level
before the flood; growth between the flood's half and its end, which stays near 0 when memory is
bounded by the table rather than by the flood's length), table occupancy against its limits,
and drops by reason. Floods:

- lan-new-flows: new UDP/TCP flows from 250 LAN hosts to random remotes (10 x the table);
- lan-one-host: the same from one LAN host (its per-host limit);
- wan-syn: TCP SYNs from random sources to random WAN ports and to a forwarded port;
- wan-udp: UDP from random sources to random WAN ports and to the UDP session's port;
- wan-gre: GRE v1 with random Call IDs and GRE v0 from random sources to the WAN address;
- wan-esp: ESP with random SPIs from random sources and from the live SA's gateway;
- fragments: first fragments with fresh IP IDs from the LAN and through the port forward, and
  later fragments that never get a first (held until the cap);
- port-exhaustion: a 1,000-port range, new flows from 250 hosts until no port is left;
- spoofed-rst: RSTs with random sequence numbers from the TCP and PPTP servers' address and port
  to the sessions' WAN ports;
- esp-spray: raw ESP from one LAN host to 10 x table addresses (helper state per host).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import ipaddress
import json
import random
import struct
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from natpass.nat import verdict as V  # noqa: E402
from natpass.nat.config import Limits, NatConfig, Passthrough, PortForward  # noqa: E402
from natpass.packets import pptp as P  # noqa: E402
from natpass.packets.esp import build_esp_packet  # noqa: E402
from natpass.packets.gre import build_gre, build_pptp_gre  # noqa: E402
from natpass.packets.ipv4 import PROTO_GRE, build_ipv4, str_to_addr  # noqa: E402
from natpass.packets.tcp import ACK, PSH, RST, SYN, build_tcp, build_tcp_segment  # noqa: E402
from natpass.packets.udp import build_udp, build_udp_datagram  # noqa: E402
from natpass.passthrough import build_engine  # noqa: E402

WAN = "203.0.113.1"
TCP_SERVER, UDP_SERVER, PPTP_SERVER, GATEWAY = "198.51.100.7", "198.51.100.8", "198.51.100.9", "198.51.100.20"
TCP_HOST, UDP_HOST, PPTP_HOST, ESP_HOST = "192.168.1.2", "192.168.1.3", "192.168.1.4", "192.168.1.5"
FORWARD_HOST = "192.168.1.6"
ROUND_EVERY = 50
TICK = 0.0001
CARRIER = int(ipaddress.IPv4Address("100.64.0.0"))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def flood_config(table: int, port_range: tuple[int, int] = (1024, 65535)) -> NatConfig:
    return NatConfig(wan_addresses=(str_to_addr(WAN),),
                     lan_prefixes=(ipaddress.IPv4Network("192.168.0.0/16"),),
                     passthrough=Passthrough(pptp=True, ipsec=True, l2tp=True),
                     limits=Limits(max_flows=table, max_flows_per_host=4096, max_fragments=1024),
                     forwards=(PortForward(6, 8080, str_to_addr(FORWARD_HOST), 80),
                               PortForward(17, 5060, str_to_addr(FORWARD_HOST), 5060)),
                     port_range=port_range, seed=1)


def remote(rng: random.Random) -> str:
    """A random far end in 100.64.0.0/10 (documentation ranges are too small for a flood)."""
    return str(ipaddress.IPv4Address(CARRIER + 1 + rng.randrange(0x3FFFFE)))


def lan_host(i: int) -> str:
    return f"192.168.{10 + i // 250}.{1 + i % 250}"


class Sessions:
    """Four established sessions that keep talking during a flood; counts what gets lost."""

    def __init__(self, eng: Any, now: float) -> None:
        self.eng = eng
        self.lost: dict[str, int] = {"tcp": 0, "udp": 0, "pptp": 0, "esp": 0}
        self.sent = 0
        self.rounds = 0
        self.tcp_seq, self.tcp_rseq = 1000, 90000
        self.ctl_seq, self.ctl_rseq = 5000, 70000
        # TCP
        assert self._p(build_tcp(TCP_HOST, TCP_SERVER, 40000, 443, seq=self.tcp_seq - 1, flags=SYN), True, now)
        self.tcp_wan = self._last_sport
        self._p(build_tcp(TCP_SERVER, WAN, 443, self.tcp_wan, seq=self.tcp_rseq - 1, ack=self.tcp_seq,
                          flags=SYN | ACK), False, now)
        self._p(build_tcp(TCP_HOST, TCP_SERVER, 40000, 443, seq=self.tcp_seq, ack=self.tcp_rseq, flags=ACK), True, now)
        # UDP
        assert self._p(build_udp(UDP_HOST, UDP_SERVER, 40001, 5000, b"hello"), True, now)
        self.udp_wan = self._last_sport
        assert self._p(build_udp(UDP_SERVER, WAN, 5000, self.udp_wan, b"hi"), False, now)
        # PPTP: control connection, call, GRE
        assert self._p(build_tcp(PPTP_HOST, PPTP_SERVER, 40002, 1723, seq=self.ctl_seq - 1, flags=SYN), True, now)
        self.ctl_wan = self._last_sport
        self._p(build_tcp(PPTP_SERVER, WAN, 1723, self.ctl_wan, seq=self.ctl_rseq - 1, ack=self.ctl_seq,
                          flags=SYN | ACK), False, now)
        self._ctl(True, bytes(P.build_sccrq()), now)
        self._ctl(False, bytes(P.build_sccrp()), now)
        out = self._ctl(True, bytes(P.build_ocrq(7)), now)
        self.wan_call = P.parse_pptp(out, (out[0] & 15) * 4 + 20).call_id
        self._ctl(False, bytes(P.build_ocrp(0x700, self.wan_call)), now)
        # raw ESP
        assert self._p(build_esp_packet(ESP_HOST, GATEWAY, 0x1001, 1, bytes(32)), True, now)
        assert self._p(build_esp_packet(GATEWAY, WAN, 0x2001, 1, bytes(32)), False, now)

    _last_sport = 0

    def _p(self, pkt: bytearray, from_lan: bool, now: float) -> bytearray | None:
        code = self.eng.process(pkt, from_lan, now)
        if code == (V.TO_WAN if from_lan else V.TO_LAN):
            if from_lan and pkt[9] in (6, 17):
                self._last_sport = struct.unpack_from("!H", pkt, 20)[0]
            return pkt
        return None

    def _ctl(self, from_lan: bool, payload: bytes, now: float) -> bytearray:
        if from_lan:
            pkt = build_tcp(PPTP_HOST, PPTP_SERVER, 40002, 1723, seq=self.ctl_seq, ack=self.ctl_rseq,
                            flags=ACK | PSH, payload=payload)
            self.ctl_seq += len(payload)
        else:
            pkt = build_tcp(PPTP_SERVER, WAN, 1723, self.ctl_wan, seq=self.ctl_rseq, ack=self.ctl_seq,
                            flags=ACK | PSH, payload=payload)
            self.ctl_rseq += len(payload)
        out = self._p(pkt, from_lan, now)
        if out is None:
            raise RuntimeError(f"PPTP control message lost while setting up: {self.eng.last_drop}")
        return out

    def _expect(self, name: str, pkt: bytearray, from_lan: bool, now: float, lan: str | None = None) -> None:
        self.sent += 1
        out = self._p(pkt, from_lan, now)
        if out is None or (lan is not None and out[16:20] != str_to_addr(lan)):
            self.lost[name] += 1

    def round(self, now: float) -> None:
        self.rounds += 1
        self._expect("tcp", build_tcp(TCP_HOST, TCP_SERVER, 40000, 443, seq=self.tcp_seq, ack=self.tcp_rseq,
                                      flags=ACK | PSH, payload=b"x" * 20), True, now)
        self.tcp_seq += 20
        self._expect("tcp", build_tcp(TCP_SERVER, WAN, 443, self.tcp_wan, seq=self.tcp_rseq, ack=self.tcp_seq,
                                      flags=ACK | PSH, payload=b"y" * 20), False, now, TCP_HOST)
        self.tcp_rseq += 20
        self._expect("udp", build_udp(UDP_HOST, UDP_SERVER, 40001, 5000, b"ping"), True, now)
        self._expect("udp", build_udp(UDP_SERVER, WAN, 5000, self.udp_wan, b"pong"), False, now, UDP_HOST)
        self._expect("pptp", build_pptp_gre(PPTP_HOST, PPTP_SERVER, 0x700, b"\xff\x03" + bytes(30)), True, now)
        self._expect("pptp", build_pptp_gre(PPTP_SERVER, WAN, self.wan_call, b"\xff\x03" + bytes(30)), False, now,
                     PPTP_HOST)
        if self.rounds % 20 == 0:
            echo = bytes(P.build_echo_request(self.rounds))
            self._expect("pptp", build_tcp(PPTP_HOST, PPTP_SERVER, 40002, 1723, seq=self.ctl_seq, ack=self.ctl_rseq,
                                           flags=ACK | PSH, payload=echo), True, now)
            self.ctl_seq += len(echo)
            reply = bytes(P.build_echo_reply(self.rounds))
            self._expect("pptp", build_tcp(PPTP_SERVER, WAN, 1723, self.ctl_wan, seq=self.ctl_rseq,
                                           ack=self.ctl_seq, flags=ACK | PSH, payload=reply), False, now, PPTP_HOST)
            self.ctl_rseq += len(reply)
        self._expect("esp", build_esp_packet(ESP_HOST, GATEWAY, 0x1001, self.rounds + 1, bytes(32)), True, now)
        self._expect("esp", build_esp_packet(GATEWAY, WAN, 0x2001, self.rounds + 1, bytes(32)), False, now, ESP_HOST)


# ------------------------------------------------------------------ the floods

Flood = Iterator[tuple[bytearray, bool]]


def lan_new_flows(rng: random.Random, n: int, s: Sessions, hosts: int = 250) -> Flood:
    for i in range(n):
        host = lan_host(rng.randrange(hosts))
        if i % 3:
            yield build_udp(host, remote(rng), 1024 + rng.randrange(60000), 1 + rng.randrange(65535), b"u"), True
        else:
            yield build_tcp(host, remote(rng), 1024 + rng.randrange(60000), 80, seq=rng.getrandbits(32), flags=SYN), True


def lan_one_host(rng: random.Random, n: int, s: Sessions) -> Flood:
    return lan_new_flows(rng, n, s, hosts=1)


def wan_syn(rng: random.Random, n: int, s: Sessions) -> Flood:
    for i in range(n):
        port = 8080 if i % 2 else rng.randrange(1, 65536)
        yield build_tcp(remote(rng), WAN, rng.randrange(1024, 65536), port, seq=rng.getrandbits(32), flags=SYN), False


def wan_udp(rng: random.Random, n: int, s: Sessions) -> Flood:
    for i in range(n):
        port = s.udp_wan if i % 4 == 0 else (5060 if i % 4 == 1 else rng.randrange(1, 65536))
        yield build_udp(remote(rng), WAN, rng.randrange(1, 65536), port, b"flood"), False


def wan_gre(rng: random.Random, n: int, s: Sessions) -> Flood:
    for i in range(n):
        src = PPTP_SERVER if i % 4 == 0 else remote(rng)
        if i % 2:
            yield build_pptp_gre(src, WAN, rng.randrange(65536), b"\xff\x03" + bytes(20)), False
        else:
            yield build_ipv4(src, WAN, PROTO_GRE, bytes(build_gre(0x0800, bytes(20)))), False


def wan_esp(rng: random.Random, n: int, s: Sessions) -> Flood:
    for i in range(n):
        src = GATEWAY if i % 2 else remote(rng)
        yield build_esp_packet(src, WAN, 1 + rng.getrandbits(31), 1, bytes(32)), False


def fragments(rng: random.Random, n: int, s: Sessions) -> Flood:
    for i in range(n):
        ident = rng.randrange(65536)
        kind = i % 3
        if kind == 0:  # a LAN first fragment with a fresh IP ID (and a new flow)
            host = lan_host(rng.randrange(250))
            seg = build_udp_datagram(host, remote(rng), 1024 + rng.randrange(60000), 53, bytes(64))
            yield build_ipv4(host, remote(rng), 17, bytes(seg[:48]), ident=ident, mf=True), True
        elif kind == 1:  # a WAN first fragment through the forward
            src = remote(rng)
            seg = build_udp_datagram(src, WAN, rng.randrange(1024, 65536), 5060, bytes(64))
            yield build_ipv4(src, WAN, 17, bytes(seg[:48]), ident=ident, mf=True), False
        else:  # a later fragment whose first never comes (held)
            yield build_ipv4(remote(rng), WAN, 17, bytes(32), ident=ident, frag_offset=8 * (1 + rng.randrange(100))), False


def port_exhaustion(rng: random.Random, n: int, s: Sessions) -> Flood:
    return lan_new_flows(rng, n, s)


def spoofed_rst(rng: random.Random, n: int, s: Sessions) -> Flood:
    for i in range(n):
        if i % 2:
            yield build_tcp(TCP_SERVER, WAN, 443, s.tcp_wan, seq=rng.getrandbits(32), flags=RST), False
        else:
            yield build_tcp(PPTP_SERVER, WAN, 1723, s.ctl_wan, seq=rng.getrandbits(32), flags=RST), False


def esp_spray(rng: random.Random, n: int, s: Sessions) -> Flood:
    host = lan_host(0)
    for i in range(n):
        yield build_esp_packet(host, str(ipaddress.IPv4Address(CARRIER + 1 + i)), 0x10000 + i, 1, bytes(16)), True


FLOODS: dict[str, tuple[Callable[[random.Random, int, Sessions], Flood], str]] = {
    "lan-new-flows": (lan_new_flows, ""),
    "lan-one-host": (lan_one_host, ""),
    "wan-syn": (wan_syn, ""),
    "wan-udp": (wan_udp, ""),
    "wan-gre": (wan_gre, ""),
    "wan-esp": (wan_esp, ""),
    "fragments": (fragments, ""),
    "port-exhaustion": (port_exhaustion, "ports"),
    "spoofed-rst": (spoofed_rst, ""),
    "esp-spray": (esp_spray, ""),
}
_ = build_tcp_segment  # the flood builders above use the packet layer's builders only


def occupancy(eng: Any) -> dict[str, int]:
    st = eng.status()
    out = {"flows": st["flows"]["total"], "fragments_held": st["fragments_held"], "mappings": st["mappings"]}
    for name, h in st["helpers"].items():
        for key in ("sessions", "ike_sas", "inbound_spis", "ambiguous_spis", "calls", "control_connections",
                    "gre_address_bindings", "ended_calls", "tunnels_tracked", "sessions_tracked"):
            if key in h["stats"]:
                out[f"{name}:{key}"] = h["stats"][key]
    return out


def run_flood(name: str, table: int, factor: float, seed: int) -> dict[str, Any]:
    make, variant = FLOODS[name]
    cfg = flood_config(table, (20000, 20999) if variant == "ports" else (1024, 65535))
    eng = build_engine(cfg)
    now = 1.0
    sessions = Sessions(eng, now)
    n = int(table * factor)
    rng = random.Random(seed)
    drops_before = dict(eng.drops)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    half_mem = 0
    t0 = time.process_time()
    for i, (pkt, from_lan) in enumerate(make(rng, n, sessions)):
        now += TICK
        eng.process(pkt, from_lan, now)
        if i % ROUND_EVERY == 0:
            sessions.round(now)
        if i == n // 2:
            half_mem = tracemalloc.get_traced_memory()[0]
    cpu = time.process_time() - t0
    sessions.round(now)
    end_mem, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    drops = {k: v - drops_before.get(k, 0) for k, v in eng.drops.items() if v - drops_before.get(k, 0)}
    return {
        "flood": name, "packets": n, "cpu_s": round(cpu, 2),
        "session_packets": sessions.sent, "lost": dict(sessions.lost), "lost_total": sum(sessions.lost.values()),
        "memory_peak_mib": round((peak - base) / 2**20, 2),
        "memory_growth_second_half_mib": round((end_mem - half_mem) / 2**20, 2),
        "bytes_per_table_slot_at_peak": round((peak - base) / table),
        "limits": dataclasses.asdict(cfg.limits), "occupancy": occupancy(eng),
        "drops": dict(sorted(drops.items(), key=lambda kv: -kv[1])),
        "counters": {k: v for k, v in eng.counters.items() if k in ("flows_created", "flows_evicted", "flows_expired")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--table", type=int, default=10_000, help="max_flows of the engine")
    ap.add_argument("--factor", type=float, default=10.0, help="flood packets = factor x table")
    ap.add_argument("--only", action="append", choices=list(FLOODS), help="one flood (repeatable)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    results = []
    for name in args.only or list(FLOODS):
        log(f"{name}: {int(args.table * args.factor):,} packets ...")
        r = run_flood(name, args.table, args.factor, args.seed)
        results.append(r)
        if not args.json:
            top = ", ".join(f"{k} {v:,}" for k, v in list(r["drops"].items())[:4])
            print(f"{name:16s} lost {r['lost_total']:>4} of {r['session_packets']:,} "
                  f"(tcp {r['lost']['tcp']}, udp {r['lost']['udp']}, pptp {r['lost']['pptp']}, esp {r['lost']['esp']}); "
                  f"memory peak {r['memory_peak_mib']:.1f} MiB, +{r['memory_growth_second_half_mib']:.1f} MiB in the "
                  f"second half; flows {r['occupancy']['flows']:,}/{args.table:,}; drops: {top}", flush=True)
    if args.json:
        print(json.dumps({"table": args.table, "factor": args.factor, "floods": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
