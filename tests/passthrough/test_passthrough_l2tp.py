"""L2TP helper through the engine, and how the l2tp and ipsec switches combine.

No real L2TPv2 control exchange is public (see the public captures' README): the control
messages here are built from the RFC 2661 formats with natpass.packets.l2tp. The public L2TP
captures (a fuzzed stream, one data packet) are replayed in test_passthrough_replay.py; xl2tpd's
own exchange, recorded in the lab, is in tests/lab/test_lab_recorded_captures.py.
"""

from __future__ import annotations

from passthrough_util import GATEWAY, HOSTS, SERVER, WAN, dport, dst, engine, sport, udp

from natpass.nat import verdict as V
from natpass.packets import l2tp as L
from natpass.packets.esp import build_esp_packet

LNS = SERVER


class L2tpPeer:
    """A LAN L2TP LAC talking to the LNS through the engine."""

    def __init__(self, eng, host: str, tunnel_id: int, port: int = 1701) -> None:
        self.eng, self.host, self.tid, self.port = eng, host, tunnel_id, port
        self.wan_port: int | None = None
        self.peer_tid = 0

    def send(self, msg: bytes, now: float = 0.0) -> int:
        pkt = udp(self.host, LNS, self.port, 1701, msg)
        code = self.eng.process(pkt, True, now)
        if code == V.TO_WAN and self.wan_port is None:
            self.wan_port = sport(pkt)
        return int(code)

    def recv(self, msg: bytes, now: float = 0.0, to_port: int | None = None) -> tuple[int, bytearray]:
        assert self.wan_port is not None
        pkt = udp(LNS, WAN, 1701, to_port or self.wan_port, msg)
        return self.eng.process(pkt, False, now), pkt

    def open_tunnel(self, lns_tid: int) -> None:
        assert self.send(bytes(L.build_sccrq(self.tid))) == V.TO_WAN
        code, _ = self.recv(bytes(L.build_sccrp(self.tid, lns_tid)))
        assert code == V.TO_LAN
        self.peer_tid = lns_tid
        assert self.send(bytes(L.build_control_message(L.SCCCN, lns_tid, ns=1, nr=1))) == V.TO_WAN


def test_l2tp_keeps_port_1701_and_tracks_tunnel_and_sessions():
    eng = engine(l2tp=True)
    lac = L2tpPeer(eng, HOSTS[0], 11)
    lac.open_tunnel(900)
    assert lac.wan_port == 1701
    st = eng.status()["helpers"]["l2tp"]
    assert st["stats"]["tunnels"] == 1
    (t,) = st["tunnels"]
    assert (t["lan_tunnel_id"], t["remote_tunnel_id"], t["wan_port"]) == (11, 900, 1701)
    assert lac.send(bytes(L.build_icrq(900, 5, ns=2, nr=1))) == V.TO_WAN
    assert lac.recv(bytes(L.build_icrp(11, 5, 77, ns=1, nr=3)))[0] == V.TO_LAN
    assert eng.status()["helpers"]["l2tp"]["stats"]["sessions"] == 1
    cdn = L.build_control_message(L.CDN, 900, 77, ns=3, nr=2, avps=[
        L.avp_u16(L.AVP_ASSIGNED_SESSION_ID, 5), L.build_avp(L.AVP_RESULT_CODE, b"\x00\x01")])
    assert lac.send(bytes(cdn)) == V.TO_WAN
    assert eng.status()["helpers"]["l2tp"]["stats"]["sessions"] == 0
    stop = L.build_control_message(L.STOPCCN, 900, 0, ns=4, nr=2, avps=[
        L.avp_u16(L.AVP_ASSIGNED_TUNNEL_ID, 11), L.build_avp(L.AVP_RESULT_CODE, b"\x00\x01")])
    assert lac.send(bytes(stop)) == V.TO_WAN
    assert eng.status()["helpers"]["l2tp"]["stats"]["tunnels"] == 0
    events = [e["event"] for e in eng.events if e.get("proto") == "l2tp"]
    assert events == ["tunnel-up", "tunnel-down"]


def test_l2tp_second_host_to_the_same_lns_is_routed_by_tunnel_id():
    eng = engine(l2tp=True)
    a = L2tpPeer(eng, HOSTS[0], 11)
    a.open_tunnel(900)
    b = L2tpPeer(eng, HOSTS[1], 12)
    b.open_tunnel(901)
    assert b.wan_port != 1701
    # an LNS that answers every peer at port 1701: the header Tunnel ID is the LAN host's own
    code, pkt = b.recv(bytes(L.build_zlb(12, 1, 2)), to_port=1701)
    assert code == V.TO_LAN and dst(pkt) == HOSTS[1]
    code, pkt = a.recv(bytes(L.build_zlb(11, 1, 2)), to_port=1701)
    assert code == V.TO_LAN and dst(pkt) == HOSTS[0]
    data = L.build_data(12, 77, b"\xff\x03\xc0\x21" + bytes(8))
    code, pkt = b.recv(bytes(data), to_port=1701)
    assert code == V.TO_LAN and dst(pkt) == HOSTS[1] and dport(pkt) == 1701


def test_l2tp_unreadable_datagram_is_counted_and_passes_as_udp():
    eng = engine(l2tp=True)
    lac = L2tpPeer(eng, HOSTS[0], 11)
    assert lac.send(b"\xc8\x02\x00\x40" + bytes(4)) == V.TO_WAN  # length runs past the datagram
    assert eng.counters["l2tp:unreadable"] == 1


def test_l2tp_switch_off_is_ordinary_udp_and_strict_blocks_1701():
    eng = engine(l2tp=False)
    lac = L2tpPeer(eng, HOSTS[0], 11)
    lac.open_tunnel(900)
    assert eng.status()["helpers"]["l2tp"]["tunnels"] == []
    eng = engine(l2tp=False, strict=True)
    lac = L2tpPeer(eng, HOSTS[0], 11)
    assert lac.send(bytes(L.build_sccrq(11))) == V.DROP
    assert eng.last_drop == V.strict_blocked("l2tp")


def test_l2tp_switch_off_at_run_time_forgets_tunnels():
    eng = engine(l2tp=True)
    L2tpPeer(eng, HOSTS[0], 11).open_tunnel(900)
    assert eng.set_switch("l2tp", False, 1.0) == 1
    assert eng.status()["helpers"]["l2tp"]["tunnels"] == []


def l2tp_ipsec_esp(eng) -> tuple[int, int]:
    """Raw ESP of an L2TP/IPsec session without NAT-T (L2TP is inside, encrypted)."""
    out = build_esp_packet(HOSTS[0], GATEWAY, 0xC001, 1, bytes(48))
    back = build_esp_packet(GATEWAY, WAN, 0xD001, 1, bytes(48))
    return eng.process(out, True, 0.0), eng.process(back, False, 0.1)


def test_l2tp_over_ipsec_without_natt_needs_the_ipsec_switch_only():
    assert l2tp_ipsec_esp(engine(ipsec=True, l2tp=False)) == (V.TO_WAN, V.TO_LAN)
    eng = engine(ipsec=False, l2tp=True)
    assert l2tp_ipsec_esp(eng) == (V.DROP, V.DROP)  # Windows error 809
    assert eng.drops == {"passthrough-disabled:ipsec": 2}
    eng = engine(ipsec=False, l2tp=False, strict=True)
    assert l2tp_ipsec_esp(eng) == (V.DROP, V.DROP)
