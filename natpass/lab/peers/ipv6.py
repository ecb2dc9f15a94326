"""IPv6 beside IPv4 in the lab's ``basic`` topology (documentation prefix 2001:db8::/32 only), for
VPN traffic over IPv6: no NAT there, the kernel forwards (r1 and inet), an optional nftables
filter in r1 stands for a home router's IPv6 firewall that drops IPsec.

    c1 2001:db8:1::11 ── r1 (lan0 2001:db8:1::1, wan0 2001:db8:2::1) ── inet ── srv 2001:db8:3::10
"""

from __future__ import annotations

import ipaddress

from natpass.lab.netns import LabError, Netns
from natpass.lab.topology import Topology

DOC6 = ipaddress.ip_network("2001:db8::/32")  # RFC 3849
CLIENT6 = "2001:db8:1::11"
SERVER6 = "2001:db8:3::10"
# (node, interface, address/64) and (node, destination, via)
ADDRS = (("c1", "eth0", "2001:db8:1::11/64"), ("r1", "lan0", "2001:db8:1::1/64"),
         ("r1", "wan0", "2001:db8:2::1/64"), ("inet", "wan0", "2001:db8:2::fe/64"),
         ("inet", "srv0", "2001:db8:3::1/64"), ("srv", "eth0", "2001:db8:3::10/64"))
ROUTES = (("c1", "default", "2001:db8:1::1"), ("r1", "default", "2001:db8:2::fe"),
          ("inet", "2001:db8:1::/64", "2001:db8:2::1"), ("srv", "default", "2001:db8:3::1"))
# A home router's IPv6 firewall that drops what answers IPsec from outside (RFC 6092 3.2.4 says
# a residential gateway should not): IKE and NAT-T replies and ESP arriving on the WAN side.
BLOCK_IPSEC6 = """table ip6 npdiag_fw6
delete table ip6 npdiag_fw6
table ip6 npdiag_fw6 {
    chain cpe_filter {
        type filter hook forward priority -10; policy accept;
        iifname "wan0" udp sport { 500, 4500 } drop
        iifname "wan0" meta l4proto esp drop
    }
}
"""


def _check(text: str) -> None:
    if text != "default" and not ipaddress.ip_network(text, strict=False).subnet_of(DOC6):  # type: ignore[arg-type]
        raise LabError(f"{text} is outside 2001:db8::/32")


def add_ipv6(lab: Netns, topo: Topology, block_ipsec: bool = False) -> None:
    """Give the ``basic`` topology IPv6 addresses, routes and forwarding (optionally the filter)."""
    if topo.name != "basic":
        raise LabError("IPv6 is laid over the basic topology only")
    for node, ifname, cidr in ADDRS:
        _check(cidr)
        lab.run(node, ["ip", "-6", "addr", "add", cidr, "dev", ifname, "nodad"])
    for node, dest, via in ROUTES:
        _check(dest)
        _check(via)
        lab.run(node, ["ip", "-6", "route", "replace", dest, "via", via])
    for node in ("r1", "inet"):
        lab.sysctl(node, "net.ipv6.conf.all.forwarding", 1)
    if block_ipsec:
        lab.nft("r1", BLOCK_IPSEC6)


def reachable6(lab: Netns, timeout: float = 5.0) -> bool:
    """c1 reaches the server over IPv6 (neighbour discovery done)."""
    return lab.wait_for(lambda: lab.run("c1", ["ping", "-6", "-c1", "-W1", SERVER6], check=False).returncode == 0,
                        timeout)
