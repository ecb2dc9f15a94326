"""Record small captures of real VPN programs in the lab for the diagnose tests (tests/data/diagnose/).

    python tests/diagnose/derive/diagnose_record_lab.py OUT_DIR [NAME ...]

NAME: ikev2, ikev2-natt-blocked, ikev2-ipv6, ikev2-ipv6-blocked, wireguard, openvpn-static,
openvpn-tls-crypt, pptp, esp, plain.

Needs root and network namespaces (everything runs inside namespaces of the prefix ``npdiag``,
documentation and RFC 6598 addresses only, all processes stopped and namespaces deleted after).
For each VPN it records the client's LAN link and the home router's WAN link at once, in the
``basic`` topology (one NAT) and, for IKEv2, the ``cgnat`` topology (home NAT + carrier NAT), so
the tests can check that the diagnosis is the same from both capture points and that real IKE NAT-D
hashes reveal the carrier NAT. PPTP and raw ESP go through a natpass router, once with their switch
on and once off (the real failure: GRE/ESP dropped at the router). Raw ESP comes from the lab's
scapy-crafted ESP peer (no program here sends raw ESP), with real ESP encryption. OpenVPN runs
in static-key mode (``--secret``) and in TLS mode with ``--tls-crypt``; ``ikev2-natt-blocked``
drops UDP 4500 in the (kernel) home router with an nftables filter; ``plain`` is curl and
traceroute with no VPN, in the ``cgnat`` and ``double-nat`` topologies. ``ikev2-ipv6`` runs
strongSwan over IPv6 (natpass.lab.peers.ipv6 lays 2001:db8::/32 over the basic topology; no NAT),
``ikev2-ipv6-blocked`` with the home router's IPv6 firewall dropping IKE/NAT-T answers and ESP.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from natpass.lab import topology as T
from natpass.lab.capture import Capture
from natpass.lab.netns import Netns
from natpass.lab.peers.base import Peer
from natpass.lab.peers.esp import RawEsp
from natpass.lab.peers.ipsec import StrongSwan
from natpass.lab.peers.ipv6 import SERVER6, add_ipv6, reachable6
from natpass.lab.peers.openvpn import OpenVpn
from natpass.lab.peers.openvpn_tls import OpenVpnTls
from natpass.lab.peers.plain import PlainWeb
from natpass.lab.peers.pptp import Pptp
from natpass.lab.peers.wireguard import WireGuard

PREFIX = "npdiag"
IKE_BPF = "udp port 500 or udp port 4500 or ip proto 50"
IKE6_BPF = "udp port 500 or udp port 4500 or ip6 proto 50"
PEERS: dict[str, tuple[Callable[..., Peer], str]] = {
    "ikev2": (StrongSwan, IKE_BPF),
    "ikev2-natt-blocked": (StrongSwan, IKE_BPF + " or icmp"),
    "ikev2-ipv6": (partial(StrongSwan, server_addr=SERVER6), IKE6_BPF),
    "ikev2-ipv6-blocked": (partial(StrongSwan, server_addr=SERVER6), IKE6_BPF),
    "wireguard": (WireGuard, "udp"),
    "openvpn-static": (OpenVpn, "udp or tcp"),
    "openvpn-tls-crypt": (partial(OpenVpnTls, control="tls-crypt"), "udp or tcp"),
    "pptp": (Pptp, "tcp port 1723 or ip proto 47"),
    "esp": (RawEsp, "ip proto 50"),
    "plain": (PlainWeb, "tcp port 8080 or icmp or (udp and not port 53)"),
}
# An nftables filter in the home router that drops UDP 4500 both ways: NAT-T blocked at the router.
BLOCK_NATT = """table ip npdiag_block
delete table ip npdiag_block
table ip npdiag_block {
    chain block_natt {
        type filter hook forward priority -10; policy accept;
        udp dport 4500 drop
        udp sport 4500 drop
    }
}
"""
SWITCH_OF = {"pptp": "pptp", "l2tp": "l2tp", "esp": "ipsec"}  # the natpass switch each one needs


def record(name: str, topology: str, out_dir: Path, router: str = "kernel", switch: bool | None = None,
           expect_connected: bool = True) -> list[Path]:
    """Record one attempt; ``switch`` sets the natpass router's passthrough switch for ``name``."""
    peer_cls, bpf = PEERS[name]
    lab = Netns(PREFIX)
    with lab.session():
        switches = {SWITCH_OF[name]: switch} if switch is not None and name in SWITCH_OF else {}
        topo = T.build(lab, topology, router=router, **switches)
        T.wait_reachable(lab, "c1", topo.server_addrs[0])
        home = topo.home
        if name == "ikev2-natt-blocked":
            lab.nft(home.node, BLOCK_NATT)
        if name.startswith("ikev2-ipv6"):
            add_ipv6(lab, topo, block_ipsec=name.endswith("blocked"))
            reachable6(lab)
        stem = f"{name}-{topology}" + ("" if switch is None else f"-{router}-switch-{'on' if switch else 'off'}")
        lan = Capture(lab, "c1", "eth0", bpf, out_dir / f"{stem}-client.pcap").start()
        wan = Capture(lab, home.node, home.wan_if, bpf, out_dir / f"{stem}-router-wan.pcap").start()
        peer = peer_cls(lab, topo, timeout=8 if name == "esp" else 12)
        try:
            t0 = peer.start()
            res = peer.wait(t0)
            if name == "ikev2-natt-blocked":
                # Other traffic goes on while nothing arrives on UDP 4500, as in any real capture:
                # it shows how long the capture kept running after the last IKE packet.
                lab.run("c1", ["ping", "-c", "3", "-i", "1", topo.server_addrs[0]], check=False)
            time.sleep(2.0)  # tcpdump hands packets over per ring block: let the block time out
        finally:
            peer.stop()
            lan.stop()
            wan.stop()
        if res.connected != expect_connected:
            raise SystemExit(f"{stem}: connected={res.connected}, expected {expect_connected}: {res.detail}")
        return [lan.path, wan.path]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, str, str, bool | None, bool]] = []
    for name in argv[1:] or ["ikev2", "wireguard", "pptp"]:
        if name in ("pptp", "esp"):  # through natpass with the switch on (works) and off (dropped)
            jobs += [(name, "basic", "natpass", True, True), (name, "basic", "natpass", False, False)]
            continue
        if name == "plain":  # no VPN: only the topologies' NAT layers to find
            jobs += [(name, "cgnat", "kernel", None, True), (name, "double-nat", "kernel", None, True)]
            continue
        jobs.append((name, "basic", "kernel", None, not name.endswith("blocked")))
        if name == "ikev2":
            jobs.append((name, "cgnat", "kernel", None, True))
    for name, topology, router, switch, ok in jobs:
        for p in record(name, topology, out, router, switch, ok):
            print(p, p.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
