"""Real VPN peers through natpass in hybrid mode (the kernel forwards ordinary traffic, natpass the
VPN protocols): the multi-client cases of tests/lab/test_lab_natpass_peers.py.

Raw ESP is crafted with scapy (no real stack here sends raw ESP). Needs root; prefix ``nphp``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import need_root

from natpass.lab import topology as T
from natpass.lab.netns import Netns
from natpass.lab.peers.base import run_together
from natpass.lab.peers.esp import RawEsp
from natpass.lab.peers.ipsec import StrongSwan
from natpass.lab.peers.l2tp import L2tp
from natpass.lab.peers.openvpn import OpenVpn
from natpass.lab.peers.pptp import Pptp
from natpass.lab.peers.wireguard import WireGuard

pytestmark = pytest.mark.root

PREFIX = "nphp"
TIMEOUT = 15.0


class HybridLab:
    def __init__(self, lab: Netns, topo: T.Topology) -> None:
        self.lab, self.topo = lab, topo

    def configure(self, **switches: bool) -> None:
        r = self.topo.home
        if all(getattr(r, k) == v for k, v in switches.items()) and r.pid and self.lab.alive(r.pid):
            return
        for k, v in switches.items():
            setattr(r, k, v)
        T.restart_router(self.lab, self.topo, r)
        assert r.pid and self.lab.alive(r.pid), r.error or self.lab.log("natpass-r1")[-800:]
        assert T.wait_reachable(self.lab, "c1", self.topo.server_addrs[0], timeout=8)

    def status(self) -> dict[str, Any]:
        st = T.natpass_status(self.lab, self.topo.home)
        assert st is not None
        return st


@pytest.fixture(scope="module")
def hy_lab() -> Iterator[HybridLab]:
    need_root()
    lab = Netns(PREFIX)
    with lab.session():
        topo = T.build(lab, "basic", router="natpass", clients=2, datapath="hybrid")
        r = topo.home
        assert r.pid and lab.alive(r.pid), r.error
        assert T.wait_reachable(lab, "c1", topo.server_addrs[0], timeout=8)
        yield HybridLab(lab, topo)


ALL_OFF = {"pptp": False, "ipsec": False, "l2tp": False}
ALL_ON = {"pptp": True, "ipsec": True, "l2tp": True}


@pytest.mark.parametrize("make", [
    pytest.param(lambda lab, topo: OpenVpn(lab, topo, timeout=TIMEOUT), id="openvpn-udp"),
    pytest.param(lambda lab, topo: WireGuard(lab, topo, timeout=TIMEOUT), id="wireguard"),
])
def test_ordinary_vpns_cross_the_kernel_half(root: None, hy_lab: HybridLab, make) -> None:  # type: ignore[no-untyped-def]
    hy_lab.configure(**ALL_OFF)
    rx_before = hy_lab.status()["datapath_counters"]["rx_lan"]
    res = make(hy_lab.lab, hy_lab.topo).run()
    assert res.connected, res.detail
    st = hy_lab.status()
    assert st["datapath"] == "hybrid"
    # The tunnel's packets went through the kernel, not through natpass's sockets.
    assert st["datapath_counters"]["rx_lan"] - rx_before < 5
    assert st["hybrid"]["kernel_conntrack"]["count"] >= 1


def test_pptp_switch_on_two_clients_at_once(root: None, hy_lab: HybridLab) -> None:
    hy_lab.configure(**ALL_ON)
    peers = [Pptp(hy_lab.lab, hy_lab.topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")]
    results = run_together(peers)
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]
    assert peers[0].server_log.read_text().count("LCP opened") >= 2


def test_l2tp_switch_on_two_clients(root: None, hy_lab: HybridLab) -> None:
    hy_lab.configure(**ALL_ON)
    results = run_together([L2tp(hy_lab.lab, hy_lab.topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")])
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]


def test_raw_esp_switch_on_two_hosts_to_one_gateway(root: None, hy_lab: HybridLab) -> None:
    """Crafted ESP (scapy): two LAN hosts, one gateway, set-ups one after the other."""
    hy_lab.configure(**ALL_ON)
    peers = [RawEsp(hy_lab.lab, hy_lab.topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")]
    results = run_together(peers, stagger=True, hold=2.5)
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]
    c2_up = peers[1].reply_times()[0]
    assert any(t > c2_up for t in peers[0].reply_times())


@pytest.mark.parametrize("ipsec", [False, True], ids=["ipsec-off", "ipsec-on"])
def test_two_strongswan_clients_at_once_to_one_gateway(root: None, hy_lab: HybridLab, ipsec: bool) -> None:
    hy_lab.configure(pptp=False, l2tp=False, ipsec=ipsec)
    results = run_together([StrongSwan(hy_lab.lab, hy_lab.topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")])
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]
    assert all(r.extra["nat_detected"] for r in results)


def test_natdiscovery_sees_the_kernels_behaviour_whatever_the_config_says(root: None, hy_lab: HybridLab,
                                                                        record_property) -> None:
    """STUN (RFC 5780, coturn) is ordinary UDP: the kernel's masquerade handles it in hybrid mode, so
    [nat] mapping/filtering (natpass's flows only) do not change what a STUN client measures."""
    from natpass.lab.peers.natdiscovery import NatDiscovery

    found = set()
    for mapping, filtering in (("address-dependent", "endpoint-independent"),
                               ("endpoint-independent", "address-and-port-dependent")):
        hy_lab.configure(**ALL_OFF, mapping=mapping, filtering=filtering)
        res = NatDiscovery(hy_lab.lab, hy_lab.topo, timeout=TIMEOUT).run()
        assert res.connected, res.detail
        found.add((res.extra["mapping"], res.extra["filtering"]))
    record_property("kernel_rfc4787", sorted(found))
    assert len(found) == 1  # the config did not change it: the kernel decided both times
    assert found == {("endpoint-independent", "address-and-port-dependent")}
