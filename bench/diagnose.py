"""Benchmark of ``natpass diagnose`` on a large synthetic capture, one process, one core.

    python bench/diagnose.py [--packets N] [--flows N] [--json] [--keep FILE]

Writes a classic Ethernet pcap of N packets (default 500,000) to a temporary file: interleaved
flows of WireGuard (handshake then transport data both ways, 40 %), NAT-T ESP-in-UDP with an IKEv2
start (20 %), plain TCP (20 %), PPTP GRE both ways behind a control connection (10 %), raw ESP
(5 %) and DNS-like UDP (5 %). Then times the whole diagnosis (reading, analysis, findings) and
reports packets/s and peak RSS growth. The packets are written once; timing covers only the read.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from natpass.diagnose.run import diagnose  # noqa: E402
from natpass.packets.esp import build_esp_packet  # noqa: E402
from natpass.packets.gre import build_pptp_gre  # noqa: E402
from natpass.packets.ike import build_ike  # noqa: E402
from natpass.packets.tcp import ACK, PSH, SYN, build_tcp  # noqa: E402
from natpass.packets.udp import build_udp  # noqa: E402

ETH = b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02\x08\x00"
SERVER_NET = "198.51.100."
CLIENT_NET = "192.168.1."


def flow_packets(kind: str, i: int, rng: random.Random) -> list[bytes]:
    """The packet templates of one flow: its opening packets, then a repeating data pair."""
    c = f"{CLIENT_NET}{2 + i % 250}"
    s = f"{SERVER_NET}{1 + i % 200}"
    cp = 20000 + i
    if kind == "wireguard":
        init = b"\x01\0\0\0" + struct.pack("<I", i) + rng.randbytes(140)
        resp = b"\x02\0\0\0" + struct.pack("<I", i + 1) + struct.pack("<I", i) + rng.randbytes(80)
        data_out = b"\x04\0\0\0" + struct.pack("<I", i + 1) + rng.randbytes(8 + 96)
        data_in = b"\x04\0\0\0" + struct.pack("<I", i) + rng.randbytes(8 + 96)
        return [build_udp(c, s, cp, 51820, init), build_udp(s, c, 51820, cp, resp),
                build_udp(c, s, cp, 51820, data_out), build_udp(s, c, 51820, cp, data_in)]
    if kind == "natt":
        spi = struct.pack(">Q", i + 1)
        req = build_ike(spi, bytes(8), 34, flags=0x08)
        rsp = build_ike(spi, spi[::-1], 34, flags=0x20)
        return [build_udp(c, s, cp, 4500, b"\0\0\0\0" + req), build_udp(s, c, 4500, cp, b"\0\0\0\0" + rsp),
                build_udp(c, s, cp, 4500, struct.pack(">II", 0x1000 + i, 1) + rng.randbytes(120)),
                build_udp(s, c, 4500, cp, struct.pack(">II", 0x2000 + i, 1) + rng.randbytes(120))]
    if kind == "tcp":
        return [build_tcp(c, s, cp, 443, seq=1, flags=SYN), build_tcp(s, c, 443, cp, seq=1, ack=2, flags=SYN | ACK),
                build_tcp(c, s, cp, 443, seq=2, ack=2, flags=PSH | ACK, payload=rng.randbytes(200)),
                build_tcp(s, c, 443, cp, seq=2, ack=202, flags=PSH | ACK, payload=rng.randbytes(600))]
    if kind == "gre":
        return [build_tcp(c, s, cp, 1723, seq=1, flags=SYN), build_tcp(s, c, 1723, cp, seq=1, ack=2, flags=SYN | ACK),
                build_pptp_gre(c, s, i & 0xFFFF, rng.randbytes(100)),
                build_pptp_gre(s, c, (i + 7) & 0xFFFF, rng.randbytes(100))]
    if kind == "esp":
        return [build_esp_packet(c, s, 0x3000 + i, 1, rng.randbytes(100)),
                build_esp_packet(s, c, 0x4000 + i, 1, rng.randbytes(100))]
    return [build_udp(c, s, cp, 53, rng.randbytes(40)), build_udp(s, c, 53, cp, rng.randbytes(120))]


MIX = [("wireguard", 40), ("natt", 20), ("tcp", 20), ("gre", 10), ("esp", 5), ("dns", 5)]


def write_capture(path: Path, packets: int, flows: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    kinds = [k for k, w in MIX for _ in range(w)]
    templates = [flow_packets(kinds[i % len(kinds)], i, rng) for i in range(flows)]
    written = 0
    ts = 1_700_000_000.0
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        opened = [0] * flows
        while written < packets:
            i = rng.randrange(flows)
            tpl = templates[i]
            n_open = len(tpl) - 2
            if opened[i] < n_open:
                pkt = tpl[opened[i]]
                opened[i] += 1
            else:
                pkt = tpl[-2 + (written & 1)]
            frame = ETH + bytes(pkt)
            ts += 0.00002
            sec = int(ts)
            fh.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)))
            fh.write(frame)
            written += 1
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=500_000)
    ap.add_argument("--flows", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", metavar="FILE", help="write the capture here and keep it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="natpass-bench-") as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "bench.pcap"
        print(f"writing {args.packets:,} packets over {args.flows:,} flows to {path}", file=sys.stderr)
        n = write_capture(path, args.packets, args.flows)
        size = os.path.getsize(path)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        c0 = time.process_time()
        diag = diagnose(path)
        dt = time.perf_counter() - t0
        cpu = time.process_time() - c0
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "packets": n, "bytes": size, "seconds": round(dt, 3), "packets_per_second": round(n / dt),
        "cpu_seconds": round(cpu, 3), "packets_per_cpu_second": round(n / cpu),
        "protocol_sessions": len(diag.protocols), "findings": sorted(diag.codes()),
        "peak_rss_growth_mb": round((rss1 - rss0) / 1024, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"diagnose: {n:,} packets ({size / 1e6:.0f} MB) in {dt:.2f} s = {n / dt:,.0f} packets/s "
              f"(CPU {cpu:.2f} s = {n / cpu:,.0f} packets/CPU-s); "
              f"{len(diag.protocols)} VPN sessions; peak RSS growth {result['peak_rss_growth_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
