"""Helper state is bounded per LAN host like the flow table: a host flooding new IPsec, PPTP or
L2TP state pushes out its own least recently used entries, never another host's live tunnel."""

from __future__ import annotations

import ipaddress

from passthrough_util import GATEWAY, HOSTS, SERVER, WAN, Conv, engine, engine_with_helpers, messages, udp

from natpass.nat import verdict as V
from natpass.nat.config import Limits
from natpass.packets import gre as G
from natpass.packets import ike as K
from natpass.packets import l2tp as L
from natpass.packets import pptp as P
from natpass.packets.esp import build_esp_packet
from natpass.packets.gre import build_pptp_gre
from natpass.packets.ipv4 import PROTO_GRE, build_ipv4
from natpass.passthrough._common import HostLru, StateLimit

VICTIM, FLOODER, OTHER = HOSTS
CARRIER = ipaddress.IPv4Network("100.64.0.0/10")


def remotes(n: int) -> list[str]:
    """``n`` distinct far ends (carrier-grade NAT space: documentation ranges are too small)."""
    base = int(CARRIER.network_address)
    return [str(ipaddress.IPv4Address(base + 1 + i)) for i in range(n)]


def down_events(eng, lan: str) -> list[dict]:
    return [e for e in eng.drain_events() if e.get("event") == "tunnel-down" and e.get("lan") == lan]


# ------------------------------------------------------------------ IPsec


def live_sa(eng, host: str, out_spi: int, in_spi: int, now: float) -> None:
    ike = udp(host, GATEWAY, 500, 500, bytes(K.build_ike(b"V" * 8, bytes(8), K.V1_QUICK_MODE)))
    assert eng.process(ike, True, now) == V.TO_WAN
    assert eng.process(build_esp_packet(host, GATEWAY, out_spi, 1), True, now) == V.TO_WAN
    back = build_esp_packet(GATEWAY, WAN, in_spi, 1)
    assert eng.process(back, False, now) == V.TO_LAN and back[16:20] == ipaddress.IPv4Address(host).packed


def test_raw_esp_to_thousands_of_addresses_never_evicts_another_hosts_live_sa():
    eng, helpers = engine_with_helpers(ipsec=True)  # default limits
    live_sa(eng, VICTIM, 0x1001, 0x2001, 0.0)
    eng.drain_events()
    lost = 0
    now = 1.0
    for i, addr in enumerate(remotes(8192 + 300)):
        now += 0.001
        assert eng.process(build_esp_packet(FLOODER, addr, 0x5000 + i, 1), True, now) == V.TO_WAN
        if i % 64 == 0:  # the live SA keeps talking during the flood
            out = build_esp_packet(VICTIM, GATEWAY, 0x1001, i + 2)
            back = build_esp_packet(GATEWAY, WAN, 0x2001, i + 2)
            lost += eng.process(out, True, now) != V.TO_WAN
            code = eng.process(back, False, now)
            lost += code != V.TO_LAN or back[16:20] != ipaddress.IPv4Address(VICTIM).packed
    assert lost == 0
    assert down_events(eng, VICTIM) == []
    per_host = helpers["ipsec"].limits.sessions.per_host
    stats = eng.status()["helpers"]["ipsec"]["stats"]
    assert stats["sessions"] <= per_host + 1
    assert stats["sessions_evicted"] >= 8192 + 300 - per_host
    assert stats["tunnels"] == 1


def test_a_live_sa_outlives_a_flood_even_when_the_whole_table_is_full():
    # Three flooding hosts fill the table; the victim's one session is never the largest share.
    eng, helpers = engine_with_helpers(ipsec=True, limits=Limits(max_flows=64, max_flows_per_host=40))
    live_sa(eng, VICTIM, 0x1001, 0x2001, 0.0)
    hosts = [FLOODER, OTHER, "192.168.1.13"]
    for i, addr in enumerate(remotes(600)):
        now = 1.0 + i
        eng.process(build_esp_packet(hosts[i % 3], addr, 0x7000 + i, 1), True, now)
        back = build_esp_packet(GATEWAY, WAN, 0x2001, i + 2)
        assert eng.process(back, False, now) == V.TO_LAN
    stats = eng.status()["helpers"]["ipsec"]["stats"]
    assert stats["sessions"] <= 64 and stats["tunnels"] == 1
    assert down_events(eng, VICTIM) == []


def test_a_hosts_own_least_recently_used_session_goes_first():
    eng, helpers = engine_with_helpers(ipsec=True, limits=Limits(max_flows=1000, max_flows_per_host=8))
    live_sa(eng, VICTIM, 0x1001, 0x2001, 0.0)
    for i, addr in enumerate(remotes(50)):  # the same host opens many more, using its SA between
        now = 2.0 + 2 * i
        eng.process(build_esp_packet(VICTIM, addr, 0x3000 + i, 1), True, now)
        back = build_esp_packet(GATEWAY, WAN, 0x2001, 1)
        assert eng.process(back, False, now + 1) == V.TO_LAN
    assert eng.status()["helpers"]["ipsec"]["stats"]["sessions"] == 8


def test_ike_spis_from_one_host_do_not_push_out_another_hosts_ike_route():
    eng, helpers = engine_with_helpers(ipsec=True)  # default limits

    def ike_from(host: str, spi: bytes) -> None:
        pkt = udp(host, GATEWAY, 500, 500, bytes(K.build_ike(spi, bytes(8), K.IKE_SA_INIT)))
        assert eng.process(pkt, True, 0.5) == V.TO_WAN

    ike_from(FLOODER, bytes(8 * [1]))  # the flooder holds WAN port 500, the victim another port
    ike_from(VICTIM, b"A" * 8)
    for n in range(8192 + 300):  # the flooder cycles through IKE initiator SPIs
        ike_from(FLOODER, (n + 2).to_bytes(8, "big"))
    # the gateway answers the victim's IKE SA on WAN port 500: its SPI route says whose it is
    back = udp(GATEWAY, WAN, 500, 500, bytes(K.build_ike(b"A" * 8, b"R" * 8, K.IKE_SA_INIT, K.FLAG_RESPONSE)))
    assert eng.process(back, False, 1.0) == V.TO_LAN and back[16:20] == ipaddress.IPv4Address(VICTIM).packed
    stats = eng.status()["helpers"]["ipsec"]["stats"]
    per_host = helpers["ipsec"].limits.ike_sas.per_host
    assert stats["ike_sas"] <= per_host + 1 and stats["ike_sas_evicted"] >= 8192 + 300 - per_host


# ------------------------------------------------------------------ PPTP


def pptp_call(eng, host: str, port: int, call_id: int, server_call: int, server: str = SERVER) -> tuple[Conv, int]:
    c = Conv(eng, host, port, server, 1723)
    c.handshake()
    assert c.from_lan(bytes(P.build_sccrq())) == V.TO_WAN
    assert c.from_remote(bytes(P.build_sccrp())) == V.TO_LAN
    assert c.from_lan(bytes(P.build_ocrq(call_id))) == V.TO_WAN
    wan_id = messages(bytes(c.lan_out))[-1].call_id
    assert c.from_remote(bytes(P.build_ocrp(server_call, wan_id))) == V.TO_LAN
    return c, wan_id


def gre_both_ways(eng, host: str, server_call: int, wan_id: int, lan_id: int, now: float,
                  server: str = SERVER) -> int:
    """Packets of a live call that did not arrive where they belong (0: the call works)."""
    out = build_pptp_gre(host, server, server_call, b"\xff\x03" + bytes(10))
    back = build_pptp_gre(server, WAN, wan_id, b"\xff\x03" + bytes(10))
    lost = eng.process(out, True, now) != V.TO_WAN
    ok = (eng.process(back, False, now) == V.TO_LAN and back[16:20] == ipaddress.IPv4Address(host).packed
          and G.get_call_id(back, 20) == lan_id)
    return int(lost) + int(not ok)


def test_pptp_calls_of_one_host_are_bounded_and_never_push_out_another_hosts_call():
    eng, helpers = engine_with_helpers(pptp=True, limits=Limits(max_flows=1000, max_flows_per_host=32))
    _, wan_id = pptp_call(eng, VICTIM, 40000, 7, 0x700)
    eng.drain_events()
    lost = 0
    now = 1.0
    for conn in range(4):  # 4 control connections x 20 calls = 80 calls from one host
        c = Conv(eng, FLOODER, 41000 + conn, SERVER, 1723)
        c.now = now
        c.handshake()
        for k in range(20):
            now += 1.0
            c.now = now
            c.from_lan(bytes(P.build_ocrq(100 * conn + k + 1)))
            lost += gre_both_ways(eng, VICTIM, 0x700, wan_id, 7, now)
    assert lost == 0
    assert down_events(eng, VICTIM) == []
    stats = eng.status()["helpers"]["pptp"]["stats"]
    assert stats["calls"] <= 32 + 1 and stats["calls_evicted"] >= 80 - 32
    assert helpers["pptp"].calls.by_wan.held_by(ipaddress.IPv4Address(FLOODER).packed) <= 32


def test_pptp_a_hosts_busy_call_outlives_its_own_newer_quiet_ones():
    eng, _ = engine_with_helpers(pptp=True, limits=Limits(max_flows=1000, max_flows_per_host=8))
    _, wan_id = pptp_call(eng, VICTIM, 40000, 7, 0x700)
    for k in range(6):  # new connections and calls of the same host, which then stay quiet
        now = 2.0 + 2 * k
        c = Conv(eng, VICTIM, 40001 + k, "198.51.100.8", 1723)
        c.now = now
        c.handshake()
        for j in range(3):
            c.from_lan(bytes(P.build_ocrq(10 * k + j + 100)))
        assert gre_both_ways(eng, VICTIM, 0x700, wan_id, 7, now + 1) == 0  # the busy call
    stats = eng.status()["helpers"]["pptp"]["stats"]
    assert stats["calls"] <= 8 and stats["calls_evicted"] >= 18 + 1 - 8


def test_gre_address_bindings_of_one_host_never_push_out_another_hosts_binding():
    eng = engine(pptp=True, limits=Limits(max_flows=100, max_flows_per_host=10))
    gre_v0 = b"\x00\x00\x08\x00" + bytes(20)
    assert eng.process(build_ipv4(VICTIM, SERVER, PROTO_GRE, gre_v0), True, 0.0) == V.TO_WAN
    for n, addr in enumerate(remotes(300)):
        eng.process(build_ipv4(FLOODER, addr, PROTO_GRE, gre_v0), True, 0.1 + n * 0.001)
        back = build_ipv4(SERVER, WAN, PROTO_GRE, gre_v0)
        assert eng.process(back, False, 0.5) == V.TO_LAN and back[16:20] == ipaddress.IPv4Address(VICTIM).packed
    assert eng.status()["helpers"]["pptp"]["stats"]["gre_address_bindings"] <= 11


def test_pptp_control_connection_pushed_out_fails_closed():
    # Helper limits below the flow table's (0 = unbounded flows: helper defaults apply), forced
    # small: a control connection pushed out must not pass its Call IDs untranslated.
    eng, helpers = engine_with_helpers(pptp=True)
    h = helpers["pptp"]
    small = StateLimit(2, 100)
    h.calls.controls.set_limit(small, 0.0)
    first, _ = pptp_call(eng, VICTIM, 40000, 7, 0x700)
    for port in (40001, 40002):
        Conv(eng, VICTIM, port, SERVER, 1723).handshake()
    assert eng.status()["helpers"]["pptp"]["stats"]["controls_evicted"] == 1
    assert first.from_lan(bytes(P.build_ocrq(8))) == V.DROP and eng.last_drop == "pptp:stream-lost"


# ------------------------------------------------------------------ L2TP


def test_l2tp_tunnels_and_sessions_of_one_host_never_push_out_another_hosts_tunnel():
    eng = engine(l2tp=True, limits=Limits(max_flows=1000, max_flows_per_host=8))
    lns = SERVER

    def lac_tunnel(host: str, port: int, tid: int, peer_tid: int, now: float) -> int:
        assert eng.process(udp(host, lns, port, 1701, bytes(L.build_sccrq(tid))), True, now) == V.TO_WAN
        return peer_tid

    lac_tunnel(VICTIM, 1701, 11, 900, 0.0)
    back = udp(lns, WAN, 1701, 1701, bytes(L.build_sccrp(11, 900)))
    assert eng.process(back, False, 0.0) == V.TO_LAN
    eng.process(udp(VICTIM, lns, 1701, 1701, bytes(L.build_control_message(L.SCCCN, 900, ns=1, nr=1))), True, 0.0)
    assert eng.status()["helpers"]["l2tp"]["stats"]["tunnels"] == 1
    for n in range(40):  # many tunnels from another host, each with many sessions
        now = 1.0 + n
        port = 20000 + n
        eng.process(udp(FLOODER, lns, port, 1701, bytes(L.build_sccrq(50 + n))), True, now)
        for s in range(10):
            eng.process(udp(FLOODER, lns, port, 1701, bytes(L.build_icrq(1, 100 + s, ns=1 + s))), True, now)
        # the victim's tunnel: LNS replies routed to it by Tunnel ID (also to a WAN port that is
        # not its own mapping's: what inbound_lookup is for)
        data = udp(lns, WAN, 1701, 1701, bytes(L.build_data(11, 0, b"\xff\x03")))
        assert eng.process(data, False, now) == V.TO_LAN and data[16:20] == ipaddress.IPv4Address(VICTIM).packed
    stats = eng.status()["helpers"]["l2tp"]["stats"]
    assert stats["tunnels"] == 1  # the victim's, up
    assert stats["tunnels_tracked"] <= 9 and stats["sessions_tracked"] <= 8
    assert down_events(eng, VICTIM) == []


# ------------------------------------------------------------------ the bound itself


class Entry:
    def __init__(self, lan: bytes) -> None:
        self.lan = lan


def test_host_lru_keeps_each_host_within_its_share():
    evicted: list[tuple[int, bytes]] = []
    lru: HostLru[int, Entry] = HostLru(StateLimit(5, 12), lambda k, e, now: evicted.append((k, e.lan)))
    a, b, c = b"A", b"B", b"C"
    lru.add(0, Entry(b), 0.0)
    for k in range(1, 40):
        lru.add(k, Entry(a if k % 2 else c), float(k))
    assert len(lru) <= 12 and lru.held_by(a) <= 5 and lru.held_by(c) <= 5
    assert 0 in lru and all(lan != b for _, lan in evicted)
    # the least recently used go first: touching the oldest of A keeps it
    oldest_a = next(k for k in lru if lru.get(k).lan == a)
    lru.touch(oldest_a, a, 100.0)
    lru.add(1000, Entry(a), 101.0)
    assert oldest_a in lru


def test_host_lru_total_pressure_takes_from_the_largest_holder():
    lru: HostLru[int, Entry] = HostLru(StateLimit(8, 10), lambda k, e, now: None)
    for k in range(8):
        lru.add(k, Entry(b"A"), 0.0)
    lru.add(100, Entry(b"B"), 0.0)
    lru.add(101, Entry(b"B"), 0.0)
    lru.add(200, Entry(b"C"), 0.0)  # full: A holds the most
    assert lru.held_by(b"A") == 7 and lru.held_by(b"B") == 2 and lru.held_by(b"C") == 1
