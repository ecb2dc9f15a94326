"""The connection-state save at N flows: how long the packet loop stands still.

Prints the fork pause of the periodic (background) save, the time of the child's whole save, the
in-process save on stop, the file size and the restore time. Bounded: N flows (default 100,000),
one save of each kind, in a temporary state dir.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import tempfile
import time

from natpass.nat.config import Limits, NatConfig
from natpass.passthrough import build_engine
from natpass.router import statefile
from natpass.router.restart import StateKeeper


def udp(src: bytes, sport: int, dst: bytes) -> bytearray:
    b = bytearray(28)
    b[0], b[2:4], b[8], b[9] = 0x45, (28).to_bytes(2, "big"), 64, 17
    b[12:16], b[16:20] = src, dst
    b[20:22], b[22:24], b[24:26] = sport.to_bytes(2, "big"), (53).to_bytes(2, "big"), (8).to_bytes(2, "big")
    from natpass.packets.checksum import internet_checksum
    b[10:12] = internet_checksum(bytes(b[:20])).to_bytes(2, "big")
    return b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=100_000)
    args = ap.parse_args()
    # four WAN addresses: 100k mappings need more than one address's 64k ports
    cfg = NatConfig(wan_addresses=tuple(ipaddress.IPv4Address(f"203.0.113.{i}").packed
                                        for i in range(1, 5)),
                    lan_prefixes=(ipaddress.IPv4Network("192.168.0.0/16"),),
                    limits=Limits(max_flows=0, max_flows_per_host=0), port_range=(1024, 65535))
    e = build_engine(cfg)
    remote = ipaddress.IPv4Address("198.51.100.7").packed
    n = 0
    host = 0
    while n < args.flows:
        src = ipaddress.IPv4Address(int(ipaddress.IPv4Address("192.168.0.1")) + host).packed
        for port in range(20000, 20000 + min(1000, args.flows - n)):
            e.process(udp(src, port, remote), True, 1.0)
            n += 1
        host += 1
    print(f"flows: {len(e.table)}")
    with tempfile.TemporaryDirectory() as d:
        keeper = StateKeeper(d, 1)
        pauses = []
        for i in range(3):
            t0 = time.perf_counter()
            keeper.tick(e, cfg, 10.0 + 10 * i)
            pauses.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            keeper.close()
            child = time.perf_counter() - t1
        print(f"background save: packet loop pause (fork) best {min(pauses) * 1000:.1f} ms, "
              f"worst {max(pauses) * 1000:.1f} ms; the child's save took {child:.2f} s")
        took = keeper.save_now(e, cfg, 40.0)
        size = os.path.getsize(os.path.join(d, statefile.STATE_FILE))
        print(f"save on stop (in process): {took:.2f} s, file {size / 1e6:.1f} MB")
        fresh = build_engine(cfg)
        t0 = time.perf_counter()
        rep = StateKeeper(d, 1).restore(fresh, cfg, 41.0)
        print(f"restore: {time.perf_counter() - t0:.2f} s, {rep.flows if rep else 0} flows")


if __name__ == "__main__":
    main()
