"""Several LAN clients to one PPTP server and to one IPsec gateway, from real captures.

The multi-client captures are derived from the public ones by passthrough_multiclient (addresses,
timing, per-client SPIs and server Call IDs; checksums recomputed). Each is replayed through the
lead's ``replay_capture`` for the summary, and packet by packet here as well, the same way
(``far_end_view`` then ``process`` for inbound packets) so that every delivered packet can be
checked against the LAN host it was really meant for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from passthrough_multiclient import (
    Client,
    Packet,
    ipsec_clients,
    pptp_clients,
    write,
)
from passthrough_util import WAN, checksums_ok, config, tcp_payload

from natpass.datapath.replay import replay_capture
from natpass.nat import verdict as V
from natpass.packets import gre as G
from natpass.packets import pptp as P
from natpass.passthrough import build_engine

A, B, C = "192.168.1.10", "192.168.1.11", "192.168.1.12"


@dataclass
class Outcome:
    from_lan: bool
    proto: int
    meant_for: str  # the LAN host of the packet as captured
    code: int
    reason: str | None
    out: bytearray
    orig: bytearray  # as captured


def ip(b: bytes | bytearray) -> str:
    return ".".join(str(x) for x in b)


def run(packets: list[Packet], **switches: bool) -> tuple[object, list[Outcome]]:
    eng = build_engine(config(**switches))
    res = []
    for ts, orig in packets:
        buf = bytearray(orig)
        from_lan = buf[12] == 192 and buf[13] == 168
        meant = ip(buf[12:16] if from_lan else buf[16:20])
        if not from_lan:
            eng.far_end_view(buf, ts)
        code = eng.process(buf, from_lan, ts)
        res.append(Outcome(from_lan, orig[9], meant, code, eng.last_drop if code == V.DROP else None, buf,
                           orig))
    return eng, res


def assert_never_misdelivered(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if o.code == V.TO_LAN:
            assert ip(o.out[16:20]) == o.meant_for
        if o.code == V.TO_WAN:
            assert ip(o.out[12:16]) == WAN
        if o.code != V.DROP:
            assert checksums_ok(o.out)


@pytest.fixture(scope="module")
def pptp_two(captures: Path) -> list[Packet]:
    return pptp_clients(captures, [Client(A), Client(B, offset=0.3, server_call_delta=1)])


def gre_in(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.proto == 47 and not o.from_lan]


def test_pptp_two_clients_same_call_id_overlapping_real_traffic(pptp_two):
    eng, out = run(pptp_two, pptp=True)
    assert_never_misdelivered(out)
    delivered = gre_in(out)
    assert delivered and all(o.code == V.TO_LAN for o in delivered)
    assert {o.meant_for for o in delivered} == {A, B}
    # the LAN hosts get their own Call ID back in the GRE key (both picked the same)
    assert all(G.get_call_id(o.out, 20) == G.get_call_id(o.orig, 20) for o in delivered)
    assert len({G.get_call_id(o.orig, 20) for o in delivered}) == 1
    assert all(o.code == V.TO_WAN for o in out if o.from_lan and o.proto == 47)
    # and the server saw two different Call IDs from the one WAN address
    pays = [tcp_payload(o.out) for o in out if o.from_lan and o.proto == 6 and o.code == V.TO_WAN]
    ocrqs = [P.parse_pptp(p) for p in pays if len(p) > 12 and p[9] == P.OCRQ]
    assert len({m.call_id for m in ocrqs}) == 2
    assert eng.counters["pptp:call-id-collision"] == 1


def test_pptp_two_clients_same_server_call_id_too(captures):
    # A server that gives both peers the same Call ID: only the LAN address tells them apart.
    packets = pptp_clients(captures, [Client(A), Client(B, offset=0.7)])
    _, out = run(packets, pptp=True)
    assert_never_misdelivered(out)
    assert all(o.code == V.TO_LAN for o in gre_in(out))
    outbound = [o for o in out if o.from_lan and o.proto == 47]
    assert all(o.code == V.TO_WAN and G.get_call_id(o.out, 20) == G.get_call_id(o.orig, 20) for o in outbound)
    assert len({G.get_call_id(o.orig, 20) for o in outbound}) == 1  # one server Call ID for both


def test_pptp_three_clients_not_overlapping_and_overlapping(captures):
    clients = [Client(A), Client(B, offset=45.0, server_call_delta=1),
               Client(C, offset=45.2, server_call_delta=2)]
    eng, out = run(pptp_clients(captures, clients), pptp=True)
    assert_never_misdelivered(out)
    assert {o.meant_for for o in gre_in(out) if o.code == V.TO_LAN} == {A, B, C}
    assert not [o for o in out if o.code == V.DROP and o.proto == 47]
    ups = [e for e in eng.events if e["event"] == "tunnel-up" and e["proto"] == "pptp"]
    downs = [e for e in eng.events if e["event"] == "tunnel-down" and e["proto"] == "pptp"]
    assert len(ups) == 3 and len(downs) == 3


def test_pptp_multi_client_replay_summary_with_switch_on_and_off(pptp_two, tmp_path):
    path = write(tmp_path / "pptp2.pcap", pptp_two)
    on = replay_capture(path, config(pptp=True), lan=["192.168.1.0/24"]).summary
    assert on["dropped"] == 0
    gre = on["by_ip_protocol"]["gre"]
    assert gre["in_forwarded"] > 0 and gre["out_forwarded"] > 0
    off = replay_capture(path, config(pptp=False), lan=["192.168.1.0/24"]).summary
    assert off["drops"] == {"passthrough-disabled:pptp": gre["in_forwarded"] + gre["out_forwarded"]}
    assert off["by_ip_protocol"]["tcp"]["out_dropped"] == 0  # TCP 1723 still passes (error 619)
    strict = replay_capture(path, config(pptp=False, strict=True), lan=["192.168.1.0/24"]).summary
    tcp = strict["by_ip_protocol"]["tcp"]
    assert tcp["out_forwarded"] == tcp["in_forwarded"] == 0
    assert strict["drops"]["strict-blocked:pptp"] == tcp["out_dropped"] + tcp["in_dropped"]


def esp(outcomes: list[Outcome], inbound: bool) -> list[Outcome]:
    return [o for o in outcomes if o.proto == 50 and o.from_lan != inbound]


def test_ipsec_two_clients_one_gateway_negotiating_apart(captures):
    packets = ipsec_clients(captures, [Client(A), Client(B, offset=60.0, spi_tag=0x11)])
    eng, out = run(packets, ipsec=True)
    assert_never_misdelivered(out)
    assert all(o.code == V.TO_LAN for o in esp(out, True))
    assert {o.meant_for for o in esp(out, True)} == {A, B}
    assert eng.status()["helpers"]["ipsec"]["stats"]["tunnels"] == 2


def test_ipsec_two_clients_overlapping_negotiations_are_refused_not_crossed(captures):
    packets = ipsec_clients(captures, [Client(A), Client(B, offset=0.3, spi_tag=0x11)])
    eng, out = run(packets, ipsec=True)
    assert_never_misdelivered(out)
    inbound = esp(out, True)
    assert inbound and all(o.code == V.DROP and o.reason == "ipsec:ambiguous-spi" for o in inbound)
    assert all(o.code == V.TO_WAN for o in esp(out, False))
    # IKE itself is never ambiguous: ports and initiator SPIs tell the hosts apart
    ike = [o for o in out if o.proto == 17]
    assert all(o.code in (V.TO_LAN, V.TO_WAN) for o in ike)
    assert eng.drops["ipsec:ambiguous-spi"] == len(inbound)


def test_ipsec_three_clients_ikev2_apart_then_all_traffic_mixed(captures):
    clients = [Client(A), Client(B, offset=10.0, spi_tag=0x21), Client(C, offset=20.0, spi_tag=0x31)]
    packets = ipsec_clients(captures, clients, capture="esp_ah/ndpi__esp.pcapng")
    _, out = run(packets, ipsec=True)
    assert_never_misdelivered(out)
    assert {o.meant_for for o in esp(out, True) if o.code == V.TO_LAN} == {A, B, C}


def test_ipsec_multi_client_replay_with_switch_off_and_strict(captures, tmp_path):
    packets = ipsec_clients(captures, [Client(A), Client(B, offset=60.0, spi_tag=0x11)])
    path = write(tmp_path / "ipsec2.pcap", packets)
    off = replay_capture(path, config(ipsec=False), lan=["192.168.1.0/24"]).summary
    esp_total = sum(off["by_ip_protocol"]["esp"].values())
    assert esp_total > 0 and off["drops"] == {"passthrough-disabled:ipsec": esp_total}
    assert off["by_ip_protocol"]["udp"]["out_dropped"] == 0
    strict = replay_capture(path, config(ipsec=False, strict=True), lan=["192.168.1.0/24"]).summary
    udp = strict["by_ip_protocol"]["udp"]  # all of it is IKE on port 500 in this capture
    assert udp["out_forwarded"] == udp["in_forwarded"] == 0
    assert strict["drops"]["strict-blocked:ipsec"] == udp["out_dropped"] + udp["in_dropped"]
