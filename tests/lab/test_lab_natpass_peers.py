"""Real VPN peers through natpass itself (``natpass run`` in the router namespace), switches off and on.

Same peers as test_lab_kernel_peers.py (raw ESP is crafted with scapy: no real stack here sends raw
ESP). The router is restarted with a rewritten config whenever a test needs other switches or NAT
behaviours.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from natpass.lab import topology as T
from natpass.lab.capture import Capture, tshark_fields
from natpass.lab.netns import Netns
from natpass.lab.peers.base import run_together
from natpass.lab.peers.esp import RawEsp
from natpass.lab.peers.ipsec import Pvpn, StrongSwan
from natpass.lab.peers.l2tp import L2tp
from natpass.lab.peers.natdiscovery import HairpinDiscovery, NatDiscovery
from natpass.lab.peers.openvpn import OpenVpn
from natpass.lab.peers.pptp import Pptp
from natpass.lab.peers.wireguard import WireGuard

PREFIX = "nplab"
TIMEOUT = 15.0
BEHAVIOURS = ("endpoint-independent", "address-dependent", "address-and-port-dependent")
FORWARD_PORT = 8080


class NatpassLab:
    """The lab with a natpass home router whose config a test can change."""

    def __init__(self, lab: Netns, topo: T.Topology) -> None:
        self.lab, self.topo = lab, topo

    @property
    def router(self) -> T.Router:
        return self.topo.home

    def configure(self, **settings: Any) -> None:
        """Restart natpass with these switches/behaviours (only when they differ)."""
        r = self.router
        if all(getattr(r, k) == v for k, v in settings.items()) and r.pid and self.lab.alive(r.pid):
            return
        for k, v in settings.items():
            setattr(r, k, v)
        T.restart_router(self.lab, self.topo, r)
        assert r.pid and self.lab.alive(r.pid), r.error or self.lab.log("natpass-r1")[-800:]
        assert T.wait_reachable(self.lab, "c1", self.topo.server_addrs[0], timeout=8)

    def drops(self) -> dict[str, int]:
        return T.drops_of(T.natpass_status(self.lab, self.router))


@pytest.fixture(scope="module")
def np_lab(root: None) -> Iterator[NatpassLab]:
    lab = Netns(PREFIX)
    with lab.session():
        topo = T.build(lab, "basic", router="natpass", clients=2,
                       forwards=[T.Forward("tcp", FORWARD_PORT, f"192.168.1.11:{FORWARD_PORT}")])
        r = topo.home
        assert r.pid and lab.alive(r.pid), r.error
        assert T.wait_reachable(lab, "c1", topo.server_addrs[0], timeout=8)
        yield NatpassLab(lab, topo)


ALL_OFF = {"pptp": False, "ipsec": False, "l2tp": False}
ALL_ON = {"pptp": True, "ipsec": True, "l2tp": True}
DEFAULT_NAT = {"mapping": "endpoint-independent", "filtering": "address-and-port-dependent"}


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda lab, topo: OpenVpn(lab, topo, timeout=TIMEOUT), id="openvpn-udp"),
        pytest.param(lambda lab, topo: OpenVpn(lab, topo, tcp=True, timeout=TIMEOUT), id="openvpn-tcp"),
        pytest.param(lambda lab, topo: WireGuard(lab, topo, timeout=TIMEOUT), id="wireguard"),
        pytest.param(lambda lab, topo: StrongSwan(lab, topo, timeout=TIMEOUT), id="strongswan-ikev2-natt"),
        pytest.param(lambda lab, topo: Pvpn(lab, topo, timeout=TIMEOUT), id="pvpn-ikev2-natt"),
    ],
)
def test_modern_vpns_connect_through_natpass_with_every_switch_off(root: None, np_lab: NatpassLab, make) -> None:
    np_lab.configure(**ALL_OFF, **DEFAULT_NAT)
    res = make(np_lab.lab, np_lab.topo).run()
    assert res.connected, res.detail


def test_pptp_switch_off_control_connection_up_gre_dropped(root: None, np_lab: NatpassLab) -> None:
    np_lab.configure(**ALL_OFF, **DEFAULT_NAT)
    before = np_lab.drops().get("passthrough-disabled:pptp", 0)
    peer = Pptp(np_lab.lab, np_lab.topo, timeout=6)
    pcap = np_lab.lab.path("pptp-off-lan.pcap")
    with Capture(np_lab.lab, "c1", "eth0", "tcp port 1723 or ip proto 47", pcap):
        res = peer.run()
    assert not res.connected
    # The TCP 1723 control connection gets through: the client receives the server's
    # Outgoing-Call-Reply (RFC 2637 message type 8); only GRE is dropped.
    types = {row[0] for row in tshark_fields(pcap, "pptp", ["pptp.control_message_type"])}
    assert "8" in types, types
    inbound_gre = tshark_fields(pcap, f"gre && ip.dst == {np_lab.topo.client_addrs['c1']}", ["gre.key.call_id"])
    assert inbound_gre == []
    assert np_lab.drops().get("passthrough-disabled:pptp", 0) > before


def test_pptp_switch_on_two_clients_at_once(root: None, np_lab: NatpassLab) -> None:
    np_lab.configure(**ALL_ON, **DEFAULT_NAT)
    peers = [Pptp(np_lab.lab, np_lab.topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")]
    results = run_together(peers)
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]
    assert peers[0].server_log.read_text().count("LCP opened") >= 2


def test_l2tp_switch_on_two_clients_through_natpass(root: None, np_lab: NatpassLab) -> None:
    np_lab.configure(**ALL_ON, **DEFAULT_NAT)
    results = run_together([L2tp(np_lab.lab, np_lab.topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")])
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]


def test_raw_esp_switch_off_is_dropped_as_passthrough_disabled(root: None, np_lab: NatpassLab) -> None:
    """Crafted ESP (scapy; no real stack here sends raw ESP)."""
    np_lab.configure(**ALL_OFF, **DEFAULT_NAT)
    before = np_lab.drops().get("passthrough-disabled:ipsec", 0)
    res = RawEsp(np_lab.lab, np_lab.topo, timeout=4).run()
    assert not res.connected
    assert np_lab.drops().get("passthrough-disabled:ipsec", 0) > before


def test_raw_esp_switch_on_two_hosts_to_one_gateway(root: None, np_lab: NatpassLab) -> None:
    """Crafted ESP (scapy): two LAN hosts, one gateway, set-ups one after the other, sessions side by side."""
    np_lab.configure(**ALL_ON, **DEFAULT_NAT)
    peers = [RawEsp(np_lab.lab, np_lab.topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")]
    results = run_together(peers, stagger=True, hold=2.5)
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]
    # c1's replies keep coming under its own SPI after c2's session is up.
    c2_up = peers[1].reply_times()[0]
    assert any(t > c2_up for t in peers[0].reply_times())


def test_raw_esp_overlapping_setups_of_two_hosts_recorded(root: None, np_lab: NatpassLab, record_property) -> None:
    """Crafted ESP (scapy): both hosts start at once, so the gateway's first SPIs are ambiguous.

    natpass's documented rule (natpass/passthrough/ipsec.py) drops such SPIs as
    ``ipsec:ambiguous-spi`` rather than risk delivering one host's ESP to the other; recorded here.
    """
    np_lab.configure(**ALL_ON, **DEFAULT_NAT)
    T.restart_router(np_lab.lab, np_lab.topo, np_lab.router)  # no IPsec state left from the last test
    results = run_together([RawEsp(np_lab.lab, np_lab.topo, client=c, timeout=5) for c in ("c1", "c2")])
    drops = np_lab.drops()
    record_property("natpass_esp_overlapping", json.dumps(
        {"connected": [r.connected for r in results], "drops": drops}))
    for r in results:
        assert r.connected or drops.get("ipsec:ambiguous-spi", 0) > 0, r.detail


def test_natpass_icmp_errors_reach_the_client_with_its_own_inner_header(root: None, np_lab: NatpassLab) -> None:
    np_lab.configure(**ALL_OFF, **DEFAULT_NAT)
    topo = np_lab.topo
    cases = (
        (1, 11, topo.home.lan_addr),  # TTL expires at natpass itself
        (2, 11, T.INET_WAN),  # TTL expires one hop beyond: a traceroute's second line
        (64, 3, topo.server_addrs[0]),  # closed UDP port on the server
    )
    for ttl, icmp_type, sender in cases:
        out = json.loads(np_lab.lab.run("c1", [sys.executable, "-m", "natpass.lab.probe", "udp-icmp",
                                               topo.server_addrs[0], "33434", str(ttl)]).stdout)
        assert "icmp" in out, f"no ICMP error for TTL {ttl}"
        icmp = out["icmp"]
        assert (icmp["type"], icmp["from"]) == (icmp_type, sender), out
        assert (icmp["inner_src"], icmp["inner_sport"]) == (out["sent"]["src"], out["sent"]["sport"]), out
        assert icmp["checksum_ok"], out


def _peer_addr_via(np_lab: NatpassLab, node: str, addr: str) -> str:
    """Connect from ``node`` to ``addr``:8080 (forwarded to c1) and return the peer address c1 saw."""
    proc = np_lab.lab.run(node, ["socat", "-T3", "-", f"TCP:{addr}:{FORWARD_PORT},connect-timeout=3"],
                          check=False, timeout=8, input="")
    return proc.stdout.strip()


@pytest.fixture
def forward_server(np_lab: NatpassLab) -> Iterator[None]:
    """c1 answers each TCP connection on 8080 with the peer address it sees."""
    lab = np_lab.lab
    pid = lab.spawn("c1", ["socat", f"TCP-LISTEN:{FORWARD_PORT},reuseaddr,fork",
                           "SYSTEM:echo $SOCAT_PEERADDR"], label="forward-server")
    lab.wait_for(lambda: f":{FORWARD_PORT}" in lab.run("c1", ["ss", "-ltn"], check=False).stdout, 5)
    try:
        yield
    finally:
        lab.kill(pid)


def test_port_forward_reaches_the_lan_server_from_the_internet(root: None, np_lab: NatpassLab,
                                                               forward_server: None) -> None:
    np_lab.configure(**ALL_OFF, **DEFAULT_NAT)
    seen = _peer_addr_via(np_lab, "srv", np_lab.topo.home.wan_addr)
    assert seen == np_lab.topo.server_addrs[0]


def test_hairpinning_lan_client_reaches_forwarded_port_on_wan_address(root: None, np_lab: NatpassLab,
                                                                      forward_server: None) -> None:
    """RFC 5382 REQ-8 / RFC 4787 REQ-9: c2 -> WAN:8080 loops back to c1, seen from the WAN address."""
    np_lab.configure(**ALL_OFF, **DEFAULT_NAT)
    seen = _peer_addr_via(np_lab, "c2", np_lab.topo.home.wan_addr)
    assert seen == np_lab.topo.home.wan_addr


@pytest.mark.parametrize("mapping", BEHAVIOURS)
@pytest.mark.parametrize("filtering", BEHAVIOURS)
def test_natdiscovery_reports_the_configured_behaviour(root: None, np_lab: NatpassLab, mapping: str,
                                                       filtering: str) -> None:
    np_lab.configure(**ALL_OFF, mapping=mapping, filtering=filtering)
    time.sleep(0.2)
    res = NatDiscovery(np_lab.lab, np_lab.topo, timeout=TIMEOUT).run()
    assert res.connected, res.detail
    assert (res.extra["mapping"], res.extra["filtering"]) == (mapping, filtering)


def test_everything_natpass_emits_decodes_with_correct_checksums(root: None, np_lab: NatpassLab) -> None:
    """Real VPN traffic through natpass, captured where natpass's frames arrive, checked by tshark."""
    from tshark_check import bad_checksums, frame_count, in_natpass_layers

    np_lab.configure(**ALL_ON, **DEFAULT_NAT)
    lab, topo = np_lab.lab, np_lab.topo
    wan = Capture(lab, "inet", "wan0", f"ip and src host {topo.home.wan_addr}", lab.path("emitted-wan.pcap"))
    lan = Capture(lab, "c1", "eth0", "ip and not src host 192.168.1.11 and not src host 192.168.1.12",
                  lab.path("emitted-lan.pcap"))
    with wan, lan:
        for peer in (OpenVpn(lab, topo, timeout=TIMEOUT), OpenVpn(lab, topo, tcp=True, timeout=TIMEOUT),
                     Pptp(lab, topo, timeout=TIMEOUT), L2tp(lab, topo, timeout=TIMEOUT),
                     RawEsp(lab, topo, timeout=TIMEOUT)):
            res = peer.run()
            assert res.connected, (res.protocol, res.detail)
        for ttl in ("1", "2", "64"):
            lab.run("c1", [sys.executable, "-m", "natpass.lab.probe", "udp-icmp", topo.server_addrs[0], "33434", ttl])
    for cap in (wan, lan):
        assert frame_count(cap.path) > 20, cap.path
        # Payloads natpass never touches may show as malformed: tshark's OpenVPN dissector only
        # knows TLS mode, and a translated port can land on a port tshark guesses an application
        # from. What natpass writes (headers, checksums, tunnel IDs) is checked.
        flagged = in_natpass_layers(bad_checksums(cap.path))
        assert flagged == [], (cap.path, flagged)


@pytest.mark.parametrize("filtering", ["endpoint-independent", "address-and-port-dependent"])
def test_udp_hairpinning_to_own_mapping_follows_filtering(root: None, np_lab: NatpassLab, filtering: str) -> None:
    """RFC 4787 REQ-9: natpass hairpins; the hairpinned datagram (from the WAN address) then passes
    the mapping's filtering like any inbound one: endpoint-independent lets it in, APDF does not."""
    np_lab.configure(**ALL_OFF, mapping="endpoint-independent", filtering=filtering)
    before = np_lab.drops().get("filtered", 0)
    res = HairpinDiscovery(np_lab.lab, np_lab.topo, timeout=8).run()
    if filtering == "endpoint-independent":
        assert res.connected, res.detail
    else:
        assert not res.connected
        assert np_lab.drops().get("filtered", 0) > before


def test_l2tp_switch_off_crosses_as_ordinary_udp_for_two_clients(root: None, np_lab: NatpassLab) -> None:
    """Bare L2TP with the l2tp switch off is plain UDP (natpass/passthrough/l2tp.py): xl2tpd answers
    the second client on the WAN port it came from, so both connect."""
    np_lab.configure(**ALL_OFF, **DEFAULT_NAT, strict=False)
    results = run_together([L2tp(np_lab.lab, np_lab.topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")])
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]


def test_strict_with_switches_off_blocks_l2tp_and_pptp_control(root: None, np_lab: NatpassLab) -> None:
    np_lab.configure(**ALL_OFF, **DEFAULT_NAT, strict=True)
    try:
        before = np_lab.drops()
        for peer in (L2tp(np_lab.lab, np_lab.topo, timeout=5), Pptp(np_lab.lab, np_lab.topo, timeout=5)):
            res = peer.run()
            assert not res.connected, res.protocol
        after = np_lab.drops()
        for switch in ("l2tp", "pptp"):
            key = f"strict-blocked:{switch}"
            assert after.get(key, 0) > before.get(key, 0), after
    finally:
        np_lab.configure(strict=False)


@pytest.mark.parametrize("ipsec", [False, True], ids=["ipsec-off", "ipsec-on"])
def test_two_strongswan_clients_at_once_to_one_gateway(root: None, np_lab: NatpassLab, ipsec: bool) -> None:
    """IKEv2 from two LAN hosts at the same time: one WAN address, two IKE SAs, ESP in UDP 4500."""
    np_lab.configure(pptp=False, l2tp=False, ipsec=ipsec, **DEFAULT_NAT)
    results = run_together([StrongSwan(np_lab.lab, np_lab.topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")])
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]
    assert all(r.extra["nat_detected"] for r in results)
