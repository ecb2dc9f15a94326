"""Record small captures of real programs in the lab, to commit as test data (tests/data/lab/).

``python -m natpass.lab.record l2tp OUT_DIR`` runs the real xl2tpd pair through a kernel NAT and
writes ``l2tp-xl2tpd-lan.pcap`` (client side, before NAT) and ``l2tp-xl2tpd-wan.pcap`` (server side,
after NAT): the control exchange SCCRQ/SCCRP/SCCCN/ICRQ/ICRP/ICCN, ZLB acks, and PPP (LCP) data
frames from the stand-in pppd.
"""

from __future__ import annotations

import sys
from pathlib import Path

from natpass.lab import topology as T
from natpass.lab.capture import Capture
from natpass.lab.netns import Netns
from natpass.lab.peers.l2tp import L2tp


def record_l2tp(out_dir: Path, prefix: str = "nprec") -> list[Path]:
    lab = Netns(prefix)
    with lab.session():
        topo = T.build(lab, "basic", router="kernel")
        T.wait_reachable(lab, "c1", topo.server_addrs[0])
        lan = Capture(lab, "c1", "eth0", "udp port 1701", out_dir / "l2tp-xl2tpd-lan.pcap").start()
        wan = Capture(lab, "srv", "eth0", "udp port 1701", out_dir / "l2tp-xl2tpd-wan.pcap").start()
        peer = L2tp(lab, topo, timeout=15)
        try:
            t0 = peer.start()
            res = peer.wait(t0)
            # a few LCP echoes so the capture also holds data frames both ways
            lab.wait_for(lambda: peer.client_log.read_text().count("recv LCP Echo-Reply") >= 2, 4)
        finally:
            peer.stop()
            lan.stop()
            wan.stop()
        if not res.connected:
            raise SystemExit(f"l2tp did not connect: {res.detail}")
        return [lan.path, wan.path]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "l2tp":
        print("usage: python -m natpass.lab.record l2tp OUT_DIR", file=sys.stderr)
        return 2
    for p in record_l2tp(Path(argv[1])):
        print(p, p.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
