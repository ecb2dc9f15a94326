"""What the diagnosis of each lab recording must say (shared by the test of the committed
captures and the lab test that records them again from the real programs)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from natpass.diagnose.model import Diagnosis
from natpass.diagnose.stalls import stall_for

CGNAT = ipaddress.ip_network("100.64.0.0/10")


def _no_vpn(diag: Diagnosis) -> None:
    assert not diag.protocols and "no-vpn-found" in diag.codes()


def plain_cgnat(client: Diagnosis, wan: Diagnosis) -> None:
    for diag in (client, wan):
        _no_vpn(diag)
        (cg,) = [f for f in diag.findings if f.code == "cgnat"]
        assert cg.evidence and all(e.frame >= 1 for e in cg.evidence)
    assert client.vantage.point == "client"  # the carrier NAT shows in the traceroute hops
    assert wan.vantage.point == "router-wan"
    assert wan.vantage.address is not None and ipaddress.ip_address(wan.vantage.address) in CGNAT
    assert "double-nat" not in wan.codes()


def plain_double_nat(client: Diagnosis, wan: Diagnosis) -> None:
    for diag in (client, wan):
        _no_vpn(diag)
        assert "double-nat" in diag.codes() and "cgnat" not in diag.codes()
    assert client.vantage.point == "client" and wan.vantage.point == "router-wan"
    assert wan.vantage.address is not None and ipaddress.ip_address(wan.vantage.address).is_private


def _one_openvpn(diag: Diagnosis, mode: str, confidence: str) -> None:
    (p,) = diag.protocols
    assert (p.name, p.status, p.confidence) == ("openvpn", "established", confidence)
    assert f"mode: {mode}" in p.notes and p.hints
    assert not diag.errors()


def openvpn_static(client: Diagnosis, wan: Diagnosis) -> None:
    for diag in (client, wan):
        _one_openvpn(diag, "static-key", "port+pattern")
    assert (client.vantage.point, wan.vantage.point) == ("client", "router-wan")


def openvpn_tls_crypt(client: Diagnosis, wan: Diagnosis) -> None:
    for diag in (client, wan):
        _one_openvpn(diag, "tls-crypt", "structure")


def ikev2_natt_blocked(client: Diagnosis, wan: Diagnosis) -> None:
    """UDP 4500 dropped in the home router: the client sees its 4500 packets unanswered, the
    router's WAN side sees no 4500 at all after NAT was detected (blocked at this router)."""
    for diag, point, stopped in ((client, "client", "nat-t response"), (wan, "router-wan", "nat-t switch")):
        assert diag.vantage.point == point
        ike = [p for p in diag.protocols if p.name == "ikev2"]
        assert ike and all((p.status, p.stopped_at) == ("failed", stopped) for p in ike)
        stall = stall_for("ikev2", stopped)
        assert stall is not None
        hits = [f for f in diag.findings if f.code == "natt-blocked" and stall.cause(point) in f.explanation]
        assert hits and hits[0].windows_error == 809
    assert "at this router" in next(f for f in wan.findings if f.code == "natt-blocked").explanation


def ikev2_ipv6(client: Diagnosis, wan: Diagnosis) -> None:
    """strongSwan over IPv6, no NAT: recognised like IPv4, established from both points."""
    for diag in (client, wan):
        assert diag.capture.ipv6 == diag.capture.packets > 0
        assert {p.name for p in diag.protocols} >= {"ikev2"}
        assert {p.status for p in diag.protocols} == {"established"} and not diag.errors()
        assert all(p.client.startswith("[2001:db8:") for p in diag.protocols)
    assert (client.vantage.point, wan.vantage.point) == ("client", "router-wan")


def ikev2_ipv6_blocked(client: Diagnosis, wan: Diagnosis) -> None:
    """The home router's IPv6 firewall drops the IKE answers: the client sees none (ike-no-response),
    the router's WAN side sees them arrive while the client keeps asking (ike-answers-dropped);
    both carry the RFC 6092 advice."""
    assert {"ike-no-response", "ipv6-ipsec-filtered"} <= client.codes()
    assert {"ike-answers-dropped", "ipv6-ipsec-filtered"} <= wan.codes()
    stall = stall_for("ikev2", "answer delivery")
    assert stall is not None
    (f,) = [f for f in wan.findings if f.code == "ike-answers-dropped"]
    assert stall.cause("router-wan") in f.explanation and f.windows_error == 809


EXPECT: dict[str, Callable[[Diagnosis, Diagnosis], None]] = {
    "ikev2-ipv6-basic": ikev2_ipv6,
    "ikev2-ipv6-blocked-basic": ikev2_ipv6_blocked,
    "plain-cgnat": plain_cgnat,
    "plain-double-nat": plain_double_nat,
    "openvpn-static-basic": openvpn_static,
    "openvpn-tls-crypt-basic": openvpn_tls_crypt,
    "ikev2-natt-blocked-basic": ikev2_natt_blocked,
}
