"""TCP control segments (RST, FIN, SYN on an established connection) count only inside the receive
window (Linux conntrack tcp_in_window, RFC 5961), for every TCP flow: PPTP's control connection
and plain ones."""

from __future__ import annotations

import struct
from typing import Any

from natpass.nat import verdict as V
from natpass.nat.config import NatConfig, Passthrough, Timeouts
from natpass.nat.engine import Engine
from natpass.nat.tcp_track import OUT_OF_WINDOW
from natpass.packets import pptp as P
from natpass.packets.gre import build_pptp_gre
from natpass.packets.ipv4 import str_to_addr
from natpass.packets.tcp import ACK, FIN, PSH, RST, SYN, build_tcp
from natpass.passthrough import build_engine

LAN = "192.168.1.10"
LAN2 = "192.168.1.11"
WAN = "203.0.113.1"
SERVER = "198.51.100.7"
T = Timeouts()


def _wscale(shift: int | None) -> bytes:
    return b"" if shift is None else bytes((1, 3, 3, shift))


class Conn:
    """Both ends of one TCP connection through the engine, with real sequence numbers."""

    def __init__(self, eng: Engine, lan: str = LAN, lport: int = 40000, remote: str = SERVER,
                 rport: int = 80, isn_lan: int = 0x10000000, isn_remote: int = 0xF0000000) -> None:
        self.eng, self.lan, self.lport, self.remote, self.rport = eng, lan, lport, remote, rport
        self.seq_lan, self.seq_remote = isn_lan, isn_remote
        self.wan_port = 0
        self.now = 0.0
        self.last = bytearray()

    def out(self, flags: int = ACK | PSH, payload: bytes = b"", seq: int | None = None,
            options: bytes = b"") -> int:
        pkt = build_tcp(self.lan, self.remote, self.lport, self.rport,
                        seq=self.seq_lan if seq is None else seq, ack=self.seq_remote, flags=flags,
                        payload=payload, options=options)
        code = self.eng.process(pkt, True, self.now)
        self.last = pkt
        if code == V.TO_WAN:
            self.wan_port = struct.unpack_from("!H", pkt, 20)[0]
            if seq is None:
                self.seq_lan = (self.seq_lan + len(payload) + bool(flags & (SYN | FIN))) % 2**32
        return int(code)

    def inb(self, flags: int = ACK | PSH, payload: bytes = b"", seq: int | None = None,
            ack: int | None = None, options: bytes = b"") -> int:
        pkt = build_tcp(self.remote, WAN, self.rport, self.wan_port,
                        seq=self.seq_remote if seq is None else seq,
                        ack=self.seq_lan if ack is None else ack, flags=flags, payload=payload,
                        options=options)
        code = self.eng.process(pkt, False, self.now)
        self.last = pkt
        if code == V.TO_LAN and seq is None:
            self.seq_remote = (self.seq_remote + len(payload) + bool(flags & (SYN | FIN))) % 2**32
        return int(code)

    def handshake(self, lan_scale: int | None = None, remote_scale: int | None = None) -> None:
        assert self.out(SYN, options=_wscale(lan_scale)) == V.TO_WAN
        assert self.inb(SYN | ACK, options=_wscale(remote_scale)) == V.TO_LAN
        assert self.out(ACK) == V.TO_WAN


def plain() -> Engine:
    return Engine(NatConfig(wan_addresses=(str_to_addr(WAN),), seed=3))


def only_flow(eng: Engine) -> Any:
    flows = list(eng.flows())
    assert len(flows) == 1
    return flows[0]


# ---------------------------------------------------------------------------------- plain TCP
def test_spoofed_rst_with_a_wrong_sequence_number_is_dropped_and_changes_nothing() -> None:
    eng = plain()
    c = Conn(eng)
    c.handshake()
    for guess in (0, c.seq_remote + 2**31, c.seq_remote - 200_000, c.seq_remote + 300_000):
        assert c.inb(RST, seq=guess) == V.DROP
        assert eng.last_drop == OUT_OF_WINDOW
    assert only_flow(eng).timeout == T.tcp_established
    assert c.out(payload=b"still here") == V.TO_WAN
    assert c.inb(payload=b"and here") == V.TO_LAN


def test_in_window_rst_ends_the_flow() -> None:
    eng = plain()
    c = Conn(eng)
    c.handshake()
    assert c.inb(RST | ACK) == V.TO_LAN
    assert only_flow(eng).timeout == T.tcp_transitory
    c.now = T.tcp_transitory + 2
    eng.expire(c.now)
    assert list(eng.flows()) == []


def test_window_follows_the_data_sent_on_the_fast_path() -> None:
    """Megabytes after the handshake, a genuine RST is at the current sequence number: the
    established fast path keeps the reference point up to date."""
    eng = plain()
    c = Conn(eng)
    c.handshake()
    isn_remote = c.seq_remote
    for _ in range(300):  # 300 kB each way, all on the fast path
        assert c.out(payload=bytes(1000)) == V.TO_WAN
        assert c.inb(payload=bytes(1000)) == V.TO_LAN
    assert c.inb(RST, seq=isn_remote) == V.DROP and eng.last_drop == OUT_OF_WINDOW
    assert c.out(RST, seq=c.seq_lan - 300_000) == V.DROP
    assert c.out(RST | ACK) == V.TO_WAN
    assert only_flow(eng).timeout == T.tcp_transitory


def test_window_scale_from_both_syns_widens_the_window() -> None:
    far = 3_000_000  # beyond 64 KiB, inside 65535 << 7
    scaled = plain()
    c = Conn(scaled)
    c.handshake(lan_scale=7, remote_scale=7)
    assert c.inb(RST, seq=c.seq_remote + far) == V.TO_LAN
    # RFC 7323: only one SYN with the option, no scaling
    half = plain()
    c = Conn(half)
    c.handshake(lan_scale=7, remote_scale=None)
    assert c.inb(RST, seq=c.seq_remote + far) == V.DROP and half.last_drop == OUT_OF_WINDOW


def test_fin_outside_the_window_does_not_make_the_flow_transitory() -> None:
    eng = plain()
    c = Conn(eng)
    c.handshake()
    assert c.inb(FIN | ACK, seq=c.seq_remote + 2**30) == V.DROP
    assert only_flow(eng).timeout == T.tcp_established
    assert c.inb(FIN | ACK) == V.TO_LAN
    assert only_flow(eng).timeout == T.tcp_transitory


def test_syn_on_an_established_flow_needs_the_window_and_changes_no_state() -> None:
    eng = plain()
    c = Conn(eng)
    c.handshake()
    assert c.inb(SYN, seq=c.seq_remote + 2**31) == V.DROP and eng.last_drop == OUT_OF_WINDOW
    assert c.inb(SYN, seq=c.seq_remote) == V.TO_LAN  # the LAN host answers it (RFC 5961 4.2)
    assert only_flow(eng).timeout == T.tcp_established


def test_rst_answering_a_syn_must_acknowledge_it() -> None:
    eng = plain()
    c = Conn(eng)
    assert c.out(SYN) == V.TO_WAN
    assert c.inb(RST | ACK, seq=0, ack=c.seq_lan + 100_000) == V.DROP
    assert eng.last_drop == OUT_OF_WINDOW
    assert c.inb(RST, seq=0, ack=0) == V.DROP  # no ACK: cannot be tied to the SYN
    assert c.inb(RST | ACK, seq=0) == V.TO_LAN  # connection refused: acknowledges the SYN
    assert only_flow(eng).timeout == T.tcp_transitory


def test_new_connection_after_close_reuses_the_tuple_with_a_fresh_sequence_number() -> None:
    eng = plain()
    c = Conn(eng)
    c.handshake()
    assert c.out(FIN | ACK) == V.TO_WAN
    assert c.inb(FIN | ACK) == V.TO_LAN
    assert c.out(ACK) == V.TO_WAN
    c.seq_lan, c.seq_remote = 0x77777777, 0x12345678
    c.handshake()
    assert only_flow(eng).timeout == T.tcp_established
    assert c.inb(RST, seq=0xF0000000) == V.DROP  # the old connection's numbers no longer count


def test_flow_taken_up_mid_connection_learns_from_the_acknowledgment() -> None:
    """No SYN seen (e.g. after a restart): the remote side's RST answering the LAN host's
    segment carries the sequence number the LAN host acknowledged."""
    eng = plain()
    c = Conn(eng)
    assert c.out(ACK | PSH, payload=b"x") == V.TO_WAN
    assert c.inb(RST, seq=c.seq_remote ^ 0x40000000) == V.DROP
    assert c.inb(RST, seq=c.seq_remote) == V.TO_LAN


# ---------------------------------------------------------------------------------- PPTP
def pptp_engine() -> Any:
    return build_engine(NatConfig(wan_addresses=(str_to_addr(WAN),),
                                  passthrough=Passthrough(pptp=True), seed=7))


def _stream(buf: bytearray) -> bytes:
    doff = (buf[32] >> 4) * 4
    return bytes(buf[20 + doff:])


def open_call(eng: Any, lan: str, lport: int, call_id: int) -> tuple[Conn, int]:
    c = Conn(eng, lan=lan, lport=lport, rport=1723)
    c.handshake()
    assert c.out(payload=bytes(P.build_sccrq())) == V.TO_WAN
    assert c.inb(payload=bytes(P.build_sccrp())) == V.TO_LAN
    assert c.out(payload=bytes(P.build_ocrq(call_id))) == V.TO_WAN
    wan_call = P.parse_pptp(_stream(c.last), 0).call_id
    assert wan_call is not None
    assert c.inb(payload=bytes(P.build_ocrp(0x7A01, wan_call))) == V.TO_LAN
    return c, wan_call


def gre_in(eng: Any, wan_call: int) -> int:
    pkt = build_pptp_gre(SERVER, WAN, wan_call, b"\xff\x03\xc0\x21" + bytes(20), seq=1)
    return int(eng.process(pkt, False, 1.0))


def test_pptp_spoofed_rst_does_not_tear_the_call_down() -> None:
    eng = pptp_engine()
    c, wan_call = open_call(eng, LAN, 40000, 0x1234)
    for guess in (0, 1, 0x7FFFFFFF, c.seq_remote + 2**31):
        assert c.inb(RST, seq=guess) == V.DROP and eng.last_drop == OUT_OF_WINDOW
    assert gre_in(eng, wan_call) == V.TO_LAN  # the call is up
    # The control connection is still followed: a second client's call with the same LAN
    # Call ID is translated, and the first client's next call is too.
    c2, wan_call2 = open_call(eng, LAN2, 40001, 0x1234)
    assert wan_call2 != wan_call
    assert c.out(payload=bytes(P.build_ocrq(0x1234 + 1))) == V.TO_WAN
    sent = P.parse_pptp(_stream(c.last), 0)
    assert sent.ctrl_type == P.OCRQ and sent.call_id not in (wan_call, wan_call2)
    assert eng.status()["helpers"]["pptp"]["stats"]["calls"] == 3


def test_pptp_in_window_rst_ends_the_call() -> None:
    eng = pptp_engine()
    c, wan_call = open_call(eng, LAN, 40000, 0x1234)
    assert c.inb(RST | ACK) == V.TO_LAN
    assert gre_in(eng, wan_call) == V.DROP and eng.last_drop == "pptp:no-call"
    assert eng.status()["helpers"]["pptp"]["stats"]["calls"] == 0
