"""Real VPN peers through the Linux kernel's NAT (nftables masquerade + PPTP helper): the reference.

Every peer here is a real program from Debian (OpenVPN, wireguard-go, strongSwan, pvpn, pptpd and
pptp-linux with the lab's stand-in pppd, xl2tpd, coturn) except raw ESP, which no real stack here
sends (no kernel ESP, libipsec only does ESP in UDP): it is crafted with scapy's
SecurityAssociation.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from natpass.lab import topology as T
from natpass.lab.netns import Netns
from natpass.lab.peers.base import run_together
from natpass.lab.peers.esp import RawEsp
from natpass.lab.peers.ipsec import Pvpn, StrongSwan
from natpass.lab.peers.l2tp import L2tp
from natpass.lab.peers.natdiscovery import NatDiscovery
from natpass.lab.peers.openvpn import OpenVpn
from natpass.lab.peers.pptp import Pptp
from natpass.lab.peers.wireguard import WireGuard

PREFIX = "nplab"
TIMEOUT = 15.0


@pytest.fixture(scope="module")
def kernel_lab(root: None) -> Iterator[tuple[Netns, T.Topology]]:
    lab = Netns(PREFIX)
    with lab.session():
        topo = T.build(lab, "basic", router="kernel", clients=2)
        assert T.wait_reachable(lab, "c1", topo.server_addrs[0])
        yield lab, topo


def test_openvpn_udp_static_key_connects_through_kernel_nat(root: None, kernel_lab) -> None:
    lab, topo = kernel_lab
    res = OpenVpn(lab, topo, timeout=TIMEOUT).run()
    assert res.connected, res.detail


def test_openvpn_tcp_connects_through_kernel_nat(root: None, kernel_lab) -> None:
    lab, topo = kernel_lab
    res = OpenVpn(lab, topo, tcp=True, timeout=TIMEOUT).run()
    assert res.connected, res.detail


def test_wireguard_go_handshake_and_ping_through_kernel_nat(root: None, kernel_lab) -> None:
    lab, topo = kernel_lab
    res = WireGuard(lab, topo, timeout=TIMEOUT).run()
    assert res.connected, res.detail


def test_strongswan_ikev2_detects_nat_and_floats_to_4500(root: None, kernel_lab) -> None:
    lab, topo = kernel_lab
    res = StrongSwan(lab, topo, timeout=TIMEOUT).run()
    assert res.connected, res.detail
    assert res.extra["nat_detected"] is True
    assert "4500" in res.extra["ports"]


def test_pvpn_answers_strongswan_through_kernel_nat(root: None, kernel_lab) -> None:
    lab, topo = kernel_lab
    res = Pvpn(lab, topo, timeout=TIMEOUT).run()
    assert res.connected, res.detail


def test_pptp_two_clients_lcp_frames_cross_kernel_nat_in_gre(root: None, kernel_lab) -> None:
    lab, topo = kernel_lab
    peers = [Pptp(lab, topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")]
    results = run_together(peers)
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]
    # The far end's stand-in pppd saw our frames too: both directions crossed in GRE.
    server_events = peers[0].server_log.read_text()
    assert server_events.count("LCP opened") >= 2


def test_l2tp_xl2tpd_two_clients_through_kernel_nat(root: None, kernel_lab) -> None:
    lab, topo = kernel_lab
    results = run_together([L2tp(lab, topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")])
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]


def test_raw_esp_crafted_with_scapy_one_host_through_kernel_nat(root: None, kernel_lab) -> None:
    """Crafted ESP (no real stack here sends raw ESP): the kernel tracks it by addresses only."""
    lab, topo = kernel_lab
    res = RawEsp(lab, topo, timeout=TIMEOUT).run()
    assert res.connected, res.detail


def test_raw_esp_second_host_behind_kernel_nat_recorded(root: None, kernel_lab, record_property) -> None:
    """Two LAN hosts to one ESP gateway through the kernel: recorded, the first must work.

    The kernel has no ESP tracker: ESP is "unknown" protocol 50 keyed by addresses only, so a second
    host's ESP to the same gateway has no distinct tuple after masquerade. What happens to it is
    recorded (not asserted: it is the kernel's behaviour, the reference natpass is compared to).
    """
    lab, topo = kernel_lab
    peers = [RawEsp(lab, topo, client=c, timeout=8) for c in ("c1", "c2")]
    results = run_together(peers, stagger=True)
    assert results[0].connected, results[0].detail
    record_property("kernel_esp_second_host", json.dumps({"connected": results[1].connected,
                                                          "detail": results[1].detail}))


def test_natdiscovery_kernel_masquerade_is_eim_apdf(root: None, kernel_lab) -> None:
    lab, topo = kernel_lab
    res = NatDiscovery(lab, topo, timeout=TIMEOUT).run()
    assert res.connected, res.detail
    assert res.extra["mapping"] == "endpoint-independent"
    assert res.extra["filtering"] == "address-and-port-dependent"


def test_kernel_icmp_errors_quote_the_clients_own_header(root: None, kernel_lab) -> None:
    lab, topo = kernel_lab
    for ttl, icmp_type, sender in ((2, 11, T.INET_WAN), (64, 3, topo.server_addrs[0])):
        out = json.loads(lab.run("c1", [sys.executable, "-m", "natpass.lab.probe", "udp-icmp",
                                        topo.server_addrs[0], "33434", str(ttl)]).stdout)
        icmp = out["icmp"]
        assert (icmp["type"], icmp["from"]) == (icmp_type, sender)
        assert icmp["inner_src"] == out["sent"]["src"] and icmp["inner_sport"] == out["sent"]["sport"]
        assert icmp["checksum_ok"]
