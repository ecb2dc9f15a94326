"""PPTP helper through the engine: Call ID translation, GRE mapping, stream handling, switches.

Control messages are built with natpass.packets.pptp (RFC 2637 section 2 layouts); the real
captures are replayed in test_passthrough_replay.py.
"""

from __future__ import annotations

import dataclasses

from passthrough_util import HOSTS, SERVER, WAN, Conv, checksums_ok, config, dst, engine, messages, src

from natpass.nat import verdict as V
from natpass.nat.config import PortForward, Timeouts
from natpass.packets import gre as G
from natpass.packets import pptp as P
from natpass.packets.gre import build_gre, build_pptp_gre
from natpass.packets.ipv4 import PROTO_GRE, build_ipv4, str_to_addr
from natpass.packets.tcp import ACK, FIN, PSH, RST
from natpass.passthrough import build_engine

SERVER_CALL = 0x7A01


def open_call(eng, host: str, call_id: int, lport: int = 40000, server_call: int = SERVER_CALL,
              now: float = 0.0) -> tuple[Conv, int]:
    """A PPTP client on ``host`` opens a control connection and one call; returns the WAN id."""
    c = Conv(eng, host, lport, SERVER, 1723, now=now)
    c.handshake()
    assert c.from_lan(bytes(P.build_sccrq())) == V.TO_WAN
    assert c.from_remote(bytes(P.build_sccrp())) == V.TO_LAN
    assert c.from_lan(bytes(P.build_ocrq(call_id))) == V.TO_WAN
    assert checksums_ok(c.last)
    wan_id = messages(bytes(c.lan_out))[-1].call_id
    assert wan_id is not None
    assert c.from_remote(bytes(P.build_ocrp(server_call, wan_id))) == V.TO_LAN
    assert checksums_ok(c.last)
    back = messages(bytes(c.remote_out))[-1]
    assert back.ctrl_type == P.OCRP and back.peer_call_id == call_id and back.call_id == server_call
    return c, wan_id


def gre_out(eng, host: str, key: int, now: float = 1.0, seq: int = 1) -> tuple[int, bytearray]:
    pkt = build_pptp_gre(host, SERVER, key, b"\xff\x03\xc0\x21" + bytes(20), seq=seq)
    return eng.process(pkt, True, now), pkt


def gre_in(eng, key: int, now: float = 1.0, seq: int = 1) -> tuple[int, bytearray]:
    pkt = build_pptp_gre(SERVER, WAN, key, b"\xff\x03\xc0\x21" + bytes(20), seq=seq)
    return eng.process(pkt, False, now), pkt


def test_pptp_single_client_keeps_its_call_id_and_gre_flows_both_ways():
    eng = engine(pptp=True)
    c, wan_id = open_call(eng, HOSTS[0], 0x1234)
    assert wan_id == 0x1234  # free: no need to change it
    code, pkt = gre_out(eng, HOSTS[0], SERVER_CALL)
    assert code == V.TO_WAN and src(pkt) == WAN and G.get_call_id(pkt, 20) == SERVER_CALL
    code, pkt = gre_in(eng, wan_id)
    assert code == V.TO_LAN and dst(pkt) == HOSTS[0] and G.get_call_id(pkt, 20) == 0x1234
    st = eng.status()["helpers"]["pptp"]
    assert st["stats"]["tunnels"] == 1
    assert [t["lan"] for t in st["tunnels"]] == [HOSTS[0]]
    assert any(e["event"] == "tunnel-up" and e["proto"] == "pptp" for e in eng.events)


def test_pptp_two_clients_same_call_id():
    eng = engine(pptp=True)
    c1, w1 = open_call(eng, HOSTS[0], 0x4000, lport=40000, server_call=0x10)
    c2, w2 = open_call(eng, HOSTS[1], 0x4000, lport=40000, server_call=0x11)
    assert w1 != w2
    assert eng.counters.get("pptp:call-id-collision") == 1
    for key, host in ((w1, HOSTS[0]), (w2, HOSTS[1]), (w2, HOSTS[1]), (w1, HOSTS[0])):
        code, pkt = gre_in(eng, key)
        assert code == V.TO_LAN and dst(pkt) == host and G.get_call_id(pkt, 20) == 0x4000
    for host, server_call in ((HOSTS[0], 0x10), (HOSTS[1], 0x11)):
        code, pkt = gre_out(eng, host, server_call)
        assert code == V.TO_WAN and src(pkt) == WAN


def test_pptp_three_clients_same_call_id_and_same_server_call_id():
    # A server that (wrongly) hands every peer the same Call ID: outbound GRE still maps by the
    # LAN host, inbound by the distinct WAN ids.
    eng = engine(pptp=True)
    wans = [open_call(eng, h, 1, server_call=9)[1] for h in HOSTS]
    assert len(set(wans)) == 3
    for h, w in zip(HOSTS, wans, strict=True):
        code, pkt = gre_in(eng, w)
        assert code == V.TO_LAN and dst(pkt) == h and G.get_call_id(pkt, 20) == 1
        code, pkt = gre_out(eng, h, 9)
        assert code == V.TO_WAN


def test_pptp_two_calls_in_one_control_connection():
    eng = engine(pptp=True)
    c, w1 = open_call(eng, HOSTS[0], 0x0101, server_call=0x20)
    assert c.from_lan(bytes(P.build_ocrq(0x0102))) == V.TO_WAN
    w2 = messages(bytes(c.lan_out))[-1].call_id
    assert c.from_remote(bytes(P.build_ocrp(0x21, w2))) == V.TO_LAN
    assert messages(bytes(c.remote_out))[-1].peer_call_id == 0x0102
    for key, orig in ((w1, 0x0101), (w2, 0x0102)):
        code, pkt = gre_in(eng, key)
        assert code == V.TO_LAN and G.get_call_id(pkt, 20) == orig
    # Clearing the first call leaves the second.
    assert c.from_lan(bytes(P.build_ccrq(0x0101))) == V.TO_WAN
    assert messages(bytes(c.lan_out))[-1].call_id == w1
    assert gre_in(eng, w1)[0] == V.DROP and eng.last_drop == "pptp:no-call"
    assert gre_in(eng, w2)[0] == V.TO_LAN


def test_pptp_several_messages_in_one_segment_are_all_translated():
    eng = engine(pptp=True)
    open_call(eng, HOSTS[0], 0x55)  # holds WAN id 0x55 toward the server
    c = Conv(eng, HOSTS[1], 40001, SERVER, 1723)
    c.handshake()
    seg = bytes(P.build_sccrq()) + bytes(P.build_ocrq(0x55)) + bytes(P.build_echo_request(7))
    assert c.from_lan(seg) == V.TO_WAN and checksums_ok(c.last)
    msgs = messages(bytes(c.lan_out))
    assert [m.ctrl_type for m in msgs] == [P.SCCRQ, P.OCRQ, P.ECHO_RQ]
    assert msgs[1].call_id not in (None, 0x55)
    w = msgs[1].call_id
    reply = bytes(P.build_sccrp()) + bytes(P.build_ocrp(0x30, w)) + bytes(P.build_sli(0x30))
    assert c.from_remote(reply) == V.TO_LAN and checksums_ok(c.last)
    back = messages(bytes(c.remote_out))
    assert back[1].peer_call_id == 0x55


def test_pptp_message_split_over_segments_even_inside_the_call_id():
    eng = engine(pptp=True)
    open_call(eng, HOSTS[0], 0x0A0B)
    c = Conv(eng, HOSTS[1], 40001, SERVER, 1723)
    c.handshake()
    msg = bytes(P.build_sccrq()) + bytes(P.build_ocrq(0x0A0B))
    cut = len(P.build_sccrq()) + 13  # between the two bytes of the OCRQ Call ID
    for part in (msg[:cut], msg[cut:cut + 40], msg[cut + 40:]):
        assert c.from_lan(part) == V.TO_WAN and checksums_ok(c.last)
    out = messages(bytes(c.lan_out))
    w = out[1].call_id
    assert w != 0x0A0B and w >> 8 == 0x0A  # the high byte had already gone out unchanged
    assert eng.counters.get("pptp:split-call-id") is None
    # The reply split too: its Peer's Call ID is restored.
    rep = bytes(P.build_ocrp(0x31, w))
    for part in (rep[:15], rep[15:]):
        assert c.from_remote(part) == V.TO_LAN and checksums_ok(c.last)
    assert messages(bytes(c.remote_out))[-1].peer_call_id == 0x0A0B


def test_pptp_retransmission_is_rewritten_the_same_way_and_not_parsed_again():
    eng = engine(pptp=True)
    open_call(eng, HOSTS[0], 0x66)
    c = Conv(eng, HOSTS[1], 40001, SERVER, 1723)
    c.handshake()
    c.from_lan(bytes(P.build_sccrq()))
    seq = c.seq_lan
    ocrq = bytes(P.build_ocrq(0x66))
    assert c.from_lan(ocrq) == V.TO_WAN
    first = bytes(c.last)
    calls_before = len(eng.status()["helpers"]["pptp"]["tunnels"])
    # The same segment again, and a retransmission that overlaps old and new bytes.
    assert c.from_lan(ocrq, seq=seq) == V.TO_WAN
    assert bytes(c.last[20:]) == first[20:] and checksums_ok(c.last)
    assert len(eng.status()["helpers"]["pptp"]["tunnels"]) == calls_before
    echo = bytes(P.build_echo_request(1))
    assert c.from_lan(ocrq[100:] + echo, seq=seq + 100, advance=False) == V.TO_WAN
    assert checksums_ok(c.last)
    c.seq_lan = seq + len(ocrq) + len(echo)
    got = bytes(c.last[40:])
    assert got[:len(ocrq) - 100] == first[40 + 100:]


def test_pptp_out_of_order_segment_is_dropped_until_the_hole_is_filled():
    eng = engine(pptp=True)
    c = Conv(eng, HOSTS[0], 40000, SERVER, 1723)
    c.handshake()
    sccrq = bytes(P.build_sccrq())
    ocrq = bytes(P.build_ocrq(5))
    assert c.from_lan(ocrq, seq=c.seq_lan + len(sccrq), advance=False) == V.DROP
    assert eng.last_drop == "pptp:out-of-order"
    assert c.from_lan(sccrq) == V.TO_WAN
    assert c.from_lan(ocrq) == V.TO_WAN
    assert [m.ctrl_type for m in messages(bytes(c.lan_out))] == [P.SCCRQ, P.OCRQ]


def test_pptp_bad_magic_cookie_loses_the_stream_and_fails_closed():
    eng = engine(pptp=True)
    open_call(eng, HOSTS[1], 9, lport=40001)  # another client holds WAN id 9 with the server
    c = Conv(eng, HOSTS[0], 40000, SERVER, 1723)
    c.handshake()
    bad = bytearray(P.build_sccrq())
    bad[4:8] = b"\xde\xad\xbe\xef"
    assert c.from_lan(bytes(bad)) == V.DROP and eng.last_drop == "pptp:stream-lost"
    # an untranslated Call ID 9 must never reach the server: it would collide with the other call
    assert c.from_lan(bytes(P.build_ocrq(9))) == V.DROP and eng.last_drop == "pptp:stream-lost"
    assert eng.counters["pptp:bad-cookie"] == 1
    assert c.from_lan(flags=RST | ACK) == V.TO_WAN  # the connection can still end
    c2 = Conv(eng, HOSTS[0], 40002, SERVER, 1723)  # and the client's next one is followed
    c2.handshake()
    assert c2.from_lan(bytes(P.build_ocrq(9))) == V.TO_WAN
    assert messages(bytes(c2.lan_out))[-1].call_id != 9


def test_pptp_unknown_type_and_wrong_length_are_counted_and_skipped():
    eng = engine(pptp=True)
    c = Conv(eng, HOSTS[0], 40000, SERVER, 1723)
    c.handshake()
    unknown = bytearray(P.build_echo_request(1))
    unknown[8:10] = (99).to_bytes(2, "big")
    short = bytearray(P.build_ocrq(3)[:16])
    short[0:2] = (16).to_bytes(2, "big")  # an OCRQ that claims 16 bytes
    assert c.from_lan(bytes(unknown) + bytes(short) + bytes(P.build_ocrq(4))) == V.TO_WAN
    assert eng.counters["pptp:unknown-type"] == 1
    assert eng.counters["pptp:truncated"] == 1
    assert [t["lan_call_id"] for t in eng.status()["helpers"]["pptp"]["tunnels"]] == [4]


def test_pptp_gre_after_call_disconnect_notify_is_dropped_no_call():
    eng = engine(pptp=True)
    c, w = open_call(eng, HOSTS[0], 0x77)
    assert gre_in(eng, w)[0] == V.TO_LAN
    assert c.from_remote(bytes(P.build_cdn(SERVER_CALL))) == V.TO_LAN
    assert gre_in(eng, w)[0] == V.DROP and eng.last_drop == "pptp:no-call"
    assert gre_out(eng, HOSTS[0], SERVER_CALL)[0] == V.DROP and eng.last_drop == "pptp:no-call"
    assert any(e["event"] == "tunnel-down" for e in eng.events)
    assert eng.counters["pptp:tunnels-down"] == 1


def test_pptp_stop_control_connection_ends_every_call():
    eng = engine(pptp=True)
    c, w1 = open_call(eng, HOSTS[0], 1)
    c.from_lan(bytes(P.build_ocrq(2)))
    w2 = messages(bytes(c.lan_out))[-1].call_id
    c.from_remote(bytes(P.build_ocrp(0x99, w2)))
    assert eng.status()["helpers"]["pptp"]["stats"]["tunnels"] == 2
    c.from_lan(bytes(P.build_stop_ccrq()))
    assert eng.status()["helpers"]["pptp"]["stats"]["tunnels"] == 0
    assert gre_in(eng, w1)[0] == V.DROP and gre_in(eng, w2)[0] == V.DROP


def test_pptp_control_connection_close_ends_calls():
    eng = engine(pptp=True)
    c, w = open_call(eng, HOSTS[0], 3)
    c.close()
    assert eng.status()["helpers"]["pptp"]["stats"]["calls"] == 0
    assert gre_in(eng, w)[0] == V.DROP and eng.last_drop == "pptp:no-call"
    c2, w2 = open_call(eng, HOSTS[1], 4, lport=40002)
    c2.from_remote(flags=RST | ACK)
    assert gre_in(eng, w2)[0] == V.DROP


def test_pptp_refused_outgoing_call_does_not_bring_a_tunnel_up():
    eng = engine(pptp=True)
    c = Conv(eng, HOSTS[0], 40000, SERVER, 1723)
    c.handshake()
    c.from_lan(bytes(P.build_ocrq(8)))
    c.from_remote(bytes(P.build_ocrp(1, 8, result_code=2)))
    assert eng.status()["helpers"]["pptp"]["tunnels"] == []
    assert gre_in(eng, 8)[0] == V.DROP


def test_pptp_call_times_out_without_traffic_and_gre_refreshes_it():
    eng = build_engine(config(pptp=True, timeouts=Timeouts(gre=30.0)))
    c, w = open_call(eng, HOSTS[0], 3)
    for t in (20.0, 40.0, 60.0):  # GRE every 20 s keeps it
        assert gre_in(eng, w, now=t)[0] == V.TO_LAN
    eng.expire(95.0)
    assert gre_in(eng, w, now=95.0)[0] == V.DROP and eng.last_drop == "pptp:no-call"


def test_pptp_reload_with_a_shorter_gre_timeout_applies_to_live_calls():
    cfg = config(pptp=True, timeouts=Timeouts(gre=300.0))
    eng = build_engine(cfg)
    c, w = open_call(eng, HOSTS[0], 3)
    assert gre_in(eng, w, now=10.0)[0] == V.TO_LAN
    eng.reconfigure(dataclasses.replace(cfg, timeouts=Timeouts(gre=30.0)), 11.0)
    eng.expire(50.0)  # 40 s idle: over the new 30 s, well under the old 300 s
    assert gre_in(eng, w, now=50.0)[0] == V.DROP and eng.last_drop == "pptp:no-call"


def test_pptp_switch_off_drops_gre_and_passes_tcp_1723_as_ordinary_tcp():
    eng = engine(pptp=False)
    c = Conv(eng, HOSTS[0], 40000, SERVER, 1723)
    c.handshake()
    assert c.from_lan(bytes(P.build_ocrq(0x4000))) == V.TO_WAN
    assert messages(bytes(c.lan_out))[-1].call_id == 0x4000
    assert gre_out(eng, HOSTS[0], 1)[0] == V.DROP
    assert eng.last_drop == V.passthrough_disabled("pptp")
    assert gre_in(eng, 0x4000)[0] == V.DROP and eng.last_drop == "passthrough-disabled:pptp"


def test_pptp_strict_blocks_tcp_1723_when_switched_off():
    eng = engine(pptp=False, strict=True)
    c = Conv(eng, HOSTS[0], 40000, SERVER, 1723)
    assert c.from_lan(flags=0x02) == V.DROP
    assert eng.last_drop == V.strict_blocked("pptp")
    other = Conv(eng, HOSTS[0], 40001, SERVER, 443)
    other.handshake()  # other TCP is untouched


def test_pptp_switch_off_at_run_time_tears_down_tunnels_and_keeps_other_flows():
    eng = engine(pptp=True)
    web = Conv(eng, HOSTS[2], 50000, SERVER, 443)
    web.handshake()
    open_call(eng, HOSTS[0], 1)
    open_call(eng, HOSTS[1], 1, lport=40001, server_call=0x3)
    assert eng.set_switch("pptp", False, 2.0) == 2
    assert gre_in(eng, 1, now=2.0)[0] == V.DROP and eng.last_drop == "passthrough-disabled:pptp"
    web.now = 2.0
    assert web.from_lan(b"GET /") == V.TO_WAN and web.from_remote(b"200") == V.TO_LAN
    assert eng.set_switch("pptp", True, 3.0) == 0
    c, w = open_call(eng, HOSTS[0], 2, lport=40005, now=3.0)
    assert gre_in(eng, w, now=3.0)[0] == V.TO_LAN


def test_pptp_server_on_the_lan_behind_a_port_forward():
    lan_server = "192.168.1.50"
    client = "198.51.100.99"
    fwd = PortForward(proto=6, wan_port=1723, lan_addr=str_to_addr(lan_server), lan_port=1723)
    eng = build_engine(config(pptp=True, forwards=(fwd,)))
    open_call(eng, HOSTS[0], 0x0042)  # a LAN client elsewhere already holds WAN id 0x42... to SERVER
    c = Conv(eng, lan_server, 1723, client, 33000, lan_opens=False, wan=WAN, wan_port=1723)
    c.handshake()
    assert c.from_remote(bytes(P.build_sccrq())) == V.TO_LAN
    assert c.from_lan(bytes(P.build_sccrp())) == V.TO_WAN
    assert c.from_remote(bytes(P.build_ocrq(0x0500))) == V.TO_LAN  # the remote client's id
    assert messages(bytes(c.remote_out))[-1].call_id == 0x0500
    assert c.from_lan(bytes(P.build_ocrp(0x0042, 0x0500))) == V.TO_WAN  # the LAN server's id
    w = messages(bytes(c.lan_out))[-1].call_id
    assert w == 0x0042  # another far end: the id is free there
    code = eng.process(build_pptp_gre(client, WAN, w, b"x" * 8), False, 1.0)
    assert code == V.TO_LAN
    pkt = build_pptp_gre(lan_server, client, 0x0500, b"y" * 8)
    assert eng.process(pkt, True, 1.0) == V.TO_WAN and src(pkt) == WAN


def test_pptp_gre_version_0_passes_by_address_for_one_host_per_remote():
    eng = engine(pptp=True)
    p1 = build_ipv4(HOSTS[0], SERVER, PROTO_GRE, build_gre(0x0800, b"\x45" + bytes(19), key=5))
    assert eng.process(p1, True, 0.0) == V.TO_WAN and src(p1) == WAN
    back = build_ipv4(SERVER, WAN, PROTO_GRE, build_gre(0x0800, b"\x45" + bytes(19), key=5))
    assert eng.process(back, False, 0.0) == V.TO_LAN and dst(back) == HOSTS[0]
    p2 = build_ipv4(HOSTS[1], SERVER, PROTO_GRE, build_gre(0x0800, b"\x45" + bytes(19)))
    assert eng.process(p2, True, 0.0) == V.DROP and eng.last_drop == "pptp:gre-conflict"


def test_pptp_gre_from_nowhere_is_dropped():
    eng = engine(pptp=True)
    assert gre_in(eng, 1)[0] == V.DROP and eng.last_drop == "pptp:no-call"
    v0 = build_ipv4(SERVER, WAN, PROTO_GRE, build_gre(0x0800, b"\x45" + bytes(19)))
    assert eng.process(v0, False, 0.0) == V.DROP and eng.last_drop == V.NO_MAPPING
    broken = build_ipv4(SERVER, WAN, PROTO_GRE, b"\x00\x01\x88\x0b")  # v1 without the key bit
    assert eng.process(broken, False, 0.0) == V.DROP and eng.last_drop == V.MALFORMED


def test_pptp_wan_error_and_set_link_info_from_server_get_the_lan_call_id():
    eng = engine(pptp=True)
    open_call(eng, HOSTS[0], 0x10)
    c, w = open_call(eng, HOSTS[1], 0x10, lport=40001, server_call=0x44)
    assert w != 0x10
    c.from_remote(bytes(P.build_wen(w)) + bytes(P.build_sli(w)))
    got = messages(bytes(c.remote_out))[-2:]
    assert [m.peer_call_id for m in got] == [0x10, 0x10]
    c.from_lan(bytes(P.build_sli(0x44)))  # the client's SLI names the server's id: untouched
    assert messages(bytes(c.lan_out))[-1].peer_call_id == 0x44


def test_pptp_fin_with_data_is_parsed():
    eng = engine(pptp=True)
    c, w = open_call(eng, HOSTS[0], 0x21)
    c.from_lan(bytes(P.build_ccrq(0x21)), flags=FIN | ACK | PSH)
    assert messages(bytes(c.lan_out))[-1].ctrl_type == P.CCRQ
    assert gre_in(eng, w)[0] == V.DROP
    assert ACK  # flags imported for readability


def test_pptp_server_disconnect_naming_the_clients_call_id_also_ends_the_call():
    # The nDPI capture's server sends its Call-Disconnect-Notify with the client's Call ID.
    eng = engine(pptp=True)
    open_call(eng, HOSTS[0], 0x30)
    c, w = open_call(eng, HOSTS[1], 0x30, lport=40001, server_call=0x31)
    c.from_remote(bytes(P.build_cdn(w)))
    assert gre_in(eng, w)[0] == V.DROP and eng.last_drop == "pptp:no-call"
    assert eng.status()["helpers"]["pptp"]["stats"]["calls"] == 1  # the other client's is intact


def test_pptp_call_that_idled_out_keeps_its_wan_call_id_while_its_connection_lives():
    # The far end still holds a call that idled out here: giving its WAN Call ID to another
    # client would make the far end see one id for two calls and send one client's GRE to the
    # other (found by tests/fuzz/test_fuzz_pptp_machine.py).
    eng = build_engine(config(pptp=True, timeouts=Timeouts(gre=30.0)))
    first, w1 = open_call(eng, HOSTS[0], 1)
    eng.expire(40.0)  # no GRE, no control traffic: the call is forgotten here
    second, w2 = open_call(eng, HOSTS[1], 1, now=41.0)
    assert w2 != w1
    # the first client clears its call: the far end is told the id it knows
    first.now = 42.0
    assert first.from_lan(bytes(P.build_ccrq(1))) == V.TO_WAN
    assert messages(bytes(first.lan_out))[-1].call_id == w1
    third, w3 = open_call(eng, HOSTS[2], 1, lport=40003, now=43.0)
    assert w3 == w1  # released by the clear
