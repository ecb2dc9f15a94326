"""Network facts from any traffic: capture point, carrier-grade NAT and double NAT without a VPN."""

from __future__ import annotations

from natpass.diagnose.run import diagnose_packets
from natpass.packets.icmp import build_error
from natpass.packets.tcp import ACK, SYN, build_tcp
from natpass.packets.udp import build_udp

SERVERS = ("198.51.100.10", "198.51.100.20", "203.0.113.77")


def web_and_dns(me: str, ttl: int, peer_ttl: int = 52) -> list[tuple[float, bytes]]:
    """Ordinary traffic opened by ``me`` (TCP 443 and UDP 53 to several servers), no VPN."""
    pk: list[tuple[float, bytes]] = []
    t = 0.0
    for i, srv in enumerate(SERVERS):
        port = 40000 + i
        pk.append((t, bytes(build_tcp(me, srv, port, 443, seq=1, flags=SYN, ttl=ttl))))
        pk.append((t + 0.01, bytes(build_tcp(srv, me, 443, port, seq=9, ack=2, flags=SYN | ACK, ttl=peer_ttl))))
        pk.append((t + 0.02, bytes(build_tcp(me, srv, port, 443, seq=2, ack=10, ttl=ttl))))
        pk.append((t + 0.03, bytes(build_udp(me, srv, 50000 + i, 53, b"q" * 30, ttl=ttl))))
        pk.append((t + 0.04, bytes(build_udp(srv, me, 53, 50000 + i, b"a" * 60, ttl=peer_ttl))))
        t += 0.5
    return pk


def test_router_wan_in_shared_address_space_is_cgnat_without_any_vpn() -> None:
    diag = diagnose_packets(web_and_dns("100.64.0.2", ttl=63))
    assert diag.vantage.point == "router-wan" and diag.vantage.address == "100.64.0.2"
    assert {"cgnat", "no-vpn-found"} <= diag.codes()
    (cg,) = [f for f in diag.findings if f.code == "cgnat"]
    assert cg.evidence and cg.evidence[0].frame == 1  # the first packet the WAN address sent


def test_private_address_on_the_router_wan_is_double_nat() -> None:
    diag = diagnose_packets(web_and_dns("192.168.2.2", ttl=63))
    assert diag.vantage.point == "router-wan"
    assert "double-nat" in diag.codes() and "cgnat" not in diag.codes()


def test_public_router_wan_is_a_single_nat() -> None:
    diag = diagnose_packets(web_and_dns("203.0.113.1", ttl=63))
    assert diag.vantage.point == "router-wan"
    assert not diag.codes() & {"double-nat", "cgnat"}


def test_client_with_a_private_address_is_not_double_nat_by_address() -> None:
    diag = diagnose_packets(web_and_dns("192.168.1.11", ttl=64))
    assert diag.vantage.point == "client"
    assert not diag.codes() & {"double-nat", "cgnat"}


def test_a_client_on_a_carrier_address_is_behind_cgnat() -> None:
    diag = diagnose_packets(web_and_dns("100.70.3.4", ttl=128))
    assert diag.vantage.point == "client" and "cgnat" in diag.codes()


def test_server_answers_flows_others_open() -> None:
    pk: list[tuple[float, bytes]] = []
    for i, client in enumerate(("203.0.113.5", "192.0.2.44", "203.0.113.99")):
        pk.append((i * 0.1, bytes(build_tcp(client, "198.51.100.10", 40000, 443, flags=SYN, ttl=50))))
        pk.append((i * 0.1 + 0.01, bytes(build_tcp("198.51.100.10", client, 443, 40000, flags=SYN | ACK,
                                                   ttl=64))))
    diag = diagnose_packets(pk)
    assert (diag.vantage.point, diag.vantage.address) == ("server", "198.51.100.10")


def test_several_lan_hosts_mean_the_router_lan_side() -> None:
    pk = []
    for i, host in enumerate(("192.168.1.11", "192.168.1.12", "192.168.1.13")):
        srv = SERVERS[i]
        pk.append((i * 0.1, bytes(build_tcp(host, srv, 40000, 443, flags=SYN, ttl=64))))
        pk.append((i * 0.1 + 0.01, bytes(build_tcp(srv, host, 443, 40000, flags=SYN | ACK, ttl=55))))
    diag = diagnose_packets(pk)
    assert diag.vantage.point == "router-lan"


def test_stated_vantage_wins_and_is_in_the_json() -> None:
    pk = web_and_dns("192.168.1.11", ttl=64)
    diag = diagnose_packets(pk, vantage="router-lan")
    assert diag.to_dict()["vantage"] == "router-lan"
    assert diag.to_dict()["vantage_detail"]["source"] == "stated"
    assert diagnose_packets(pk).to_dict()["vantage"] == "client"


def test_traceroute_through_two_private_routers_is_double_nat() -> None:
    me = "192.168.1.11"
    pk = web_and_dns(me, ttl=64)
    probe1 = build_udp(me, "198.51.100.10", 33434, 33435, b"x", ttl=1)
    probe2 = build_udp(me, "198.51.100.10", 33434, 33436, b"x", ttl=2)
    pk.append((3.0, bytes(probe1)))
    pk.append((3.01, bytes(build_error(probe1, 11, 0, "192.168.1.1"))))
    pk.append((3.1, bytes(probe2)))
    pk.append((3.11, bytes(build_error(probe2, 11, 0, "192.168.2.1", ttl=63))))
    assert "double-nat" in diagnose_packets(pk).codes()
    pk[-1] = (3.11, bytes(build_error(probe2, 11, 0, "100.64.0.1", ttl=63)))
    codes = diagnose_packets(pk).codes()
    assert "cgnat" in codes and "double-nat" not in codes
