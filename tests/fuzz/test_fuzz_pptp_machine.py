"""Stateful fuzzing of the PPTP helper against a model of the far end (hypothesis state machine).

Two LAN clients talk to one PPTP server through the engine and pick colliding Call IDs. Their
control messages are split and merged across TCP segments at any byte, retransmitted, sent out of
window, answered in any order, with GRE both ways interleaved. What the server receives is
reassembled by sequence number, as its TCP would. Invariants:
- a retransmission carries exactly the translated bytes the first copy carried;
- the Call IDs the server sees for live calls are unique (else it would mix two clients' GRE);
- GRE the server sends for a call reaches the client that made it, with that client's own Call
  ID, or is dropped: never another client, never another Call ID;
- every emitted packet keeps the checks of fuzz_targets.Checker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import fuzz_targets as F
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from natpass.nat import verdict as V
from natpass.packets import gre as G
from natpass.packets import pptp as P
from natpass.packets.errors import PacketError
from natpass.packets.tcp import ACK, PSH, SYN

SERVER = "198.51.100.7"
CLIENTS = ("192.168.1.10", "192.168.1.12")  # paired with the same WAN address: colliding Call IDs


@dataclass
class Direction:
    """One direction of a control connection: what the sender queued, sent and what arrived."""

    isn: int
    queued: bytearray = field(default_factory=bytearray)
    sent: int = 0  # bytes of ``queued`` sent in order so far
    received: bytearray = field(default_factory=bytearray)  # what the receiver assembled
    parsed: int = 0  # bytes of ``received`` already read as messages


@dataclass
class Client:
    host: str
    up: Direction
    down: Direction
    wan: str | None = None
    wan_port: int | None = None
    lan_ids: list[int] = field(default_factory=list)  # its live Call IDs
    asked: list[int] = field(default_factory=list)  # every Call ID it asked for, in stream order
    calls: dict[int, int] = field(default_factory=dict)  # WAN Call ID (as the server saw it) -> server's
    lan_of: dict[int, int] = field(default_factory=dict)  # WAN Call ID -> the client's own
    ocrqs_read: int = 0  # Outgoing-Call-Requests the server has read from it


class PptpMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ck = F.new_engine(ipsec=False, l2tp=False)
        self.now = 0.0
        self.clients: list[Client] = []
        self.server_next = 0x400
        # (peer address, Call ID) the server sees -> index of the client: the server tells calls
        # apart by both (two LAN clients may leave from two WAN addresses, paired pooling)
        self.server_live: dict[tuple[str | None, int], int] = {}

    @initialize()
    def connect(self) -> None:
        for i, host in enumerate(CLIENTS):
            c = Client(host, Direction(1000 + 7919 * i), Direction(50000 + 104729 * i))
            self.clients.append(c)
            assert self.tcp(c, True, c.up.isn, SYN, b"") is not None
            assert self.tcp(c, False, c.down.isn, SYN | ACK, b"") is not None
            self.queue(c, True, bytes(P.build_sccrq()))
            self.client_calls(i, 1)  # both clients start with Call ID 1: a collision at once

    # ------------------------------------------------------------------ transport

    def tcp(self, c: Client, from_lan: bool, seq: int, flags: int, payload: bytes) -> bytearray | None:
        if from_lan:
            pkt = F.T.build_tcp(c.host, SERVER, 40000, 1723, seq=seq & 0xFFFFFFFF, ack=c.down.isn + 1,
                                flags=flags, payload=payload)
        else:
            if c.wan is None:
                return None
            pkt = F.T.build_tcp(SERVER, c.wan, 1723, c.wan_port, seq=seq & 0xFFFFFFFF, ack=c.up.isn + 1,
                                flags=flags, payload=payload)
        out = self.ck.process(pkt, from_lan, self.now)
        if out.code == (V.TO_WAN if from_lan else V.TO_LAN):
            if from_lan and c.wan is None:
                c.wan, c.wan_port = F.IP.addr_to_str(pkt[12:16]), int.from_bytes(pkt[20:22], "big")
            if not from_lan:
                assert pkt[16:20] == F.IP.str_to_addr(c.host), "control data reached the wrong client"
            return pkt
        return None

    def queue(self, c: Client, from_lan: bool, msg: bytes) -> None:
        (c.up if from_lan else c.down).queued += msg

    def deliver(self, c: Client, from_lan: bool, start: int, pkt: bytearray) -> None:
        """The receiver's TCP: bytes in order are appended; a copy of bytes it already has must
        be identical (a retransmission rewritten like the original)."""
        d = c.up if from_lan else c.down
        data = payload_of(pkt)
        have = len(d.received)
        overlap = data[: max(0, min(len(data), have - start))]
        assert bytes(d.received[start:start + len(overlap)]) == overlap, "a retransmission differs"
        if start <= have < start + len(data):
            d.received += data[have - start:]

    def send(self, c: Client, from_lan: bool, start: int, n: int) -> None:
        d = c.up if from_lan else c.down
        payload = bytes(d.queued[start:start + n])
        if not payload:
            return
        pkt = self.tcp(c, from_lan, d.isn + 1 + start, ACK | PSH, payload)
        if pkt is not None:
            self.deliver(c, from_lan, start, pkt)
            if start <= d.sent:  # a retransmission may carry new bytes too
                d.sent = max(d.sent, start + len(payload))
        self.read_messages(c, from_lan)

    # ------------------------------------------------------------------ the two ends' logic

    def read_messages(self, c: Client, from_lan: bool) -> None:
        d = c.up if from_lan else c.down
        while len(d.received) - d.parsed >= P.HEADER_LEN:
            try:
                msg = P.parse_pptp(bytes(d.received), d.parsed)
            except PacketError:
                return
            d.parsed += msg.length
            if from_lan:
                self.server_reads(c, msg)

    def server_reads(self, c: Client, msg: P.PptpMessage) -> None:
        idx = self.clients.index(c)
        if msg.ctrl_type == P.SCCRQ:
            self.queue(c, False, bytes(P.build_sccrp()))
        elif msg.ctrl_type == P.OCRQ and msg.call_id is not None:
            assert (c.wan, msg.call_id) not in self.server_live, \
                f"the server sees Call ID {msg.call_id} from {c.wan} twice among live calls"
            self.server_live[(c.wan, msg.call_id)] = idx
            event("call made")
            c.lan_of[msg.call_id] = c.asked[c.ocrqs_read]  # the n-th request read is the n-th sent
            c.ocrqs_read += 1
            self.server_next += 1
            c.calls[msg.call_id] = self.server_next
            self.queue(c, False, bytes(P.build_ocrp(self.server_next, msg.call_id)))
        elif msg.ctrl_type == P.CCRQ and msg.call_id is not None:
            if self.server_live.get((c.wan, msg.call_id)) == idx:
                event("call cleared")
                del self.server_live[(c.wan, msg.call_id)]
                server_id = c.calls.pop(msg.call_id, 0)
                self.queue(c, False, bytes(P.build_cdn(server_id)))

    # ------------------------------------------------------------------ rules

    @rule(i=st.integers(0, 1), call_id=st.sampled_from([1, 2, 0x100]))
    def client_calls(self, i: int, call_id: int) -> None:
        c = self.clients[i]
        if call_id not in c.lan_ids and len(c.lan_ids) < 4:
            c.lan_ids.append(call_id)
            c.asked.append(call_id)
            self.queue(c, True, bytes(P.build_ocrq(call_id)))

    @rule(i=st.integers(0, 1))
    def client_clears(self, i: int) -> None:
        c = self.clients[i]
        if c.lan_ids:
            self.queue(c, True, bytes(P.build_ccrq(c.lan_ids.pop(0))))

    @rule(i=st.integers(0, 1), from_lan=st.booleans(),
          n=st.one_of(st.sampled_from([156, 168, 324, 1000]), st.integers(1, 200)))
    def send_next(self, i: int, from_lan: bool, n: int) -> None:
        c = self.clients[i]
        d = c.up if from_lan else c.down
        self.send(c, from_lan, d.sent, n)

    @rule(i=st.integers(0, 1), from_lan=st.booleans(), back=st.integers(1, 400), n=st.integers(1, 200))
    def retransmit(self, i: int, from_lan: bool, back: int, n: int) -> None:
        c = self.clients[i]
        d = c.up if from_lan else c.down
        if d.sent:
            self.send(c, from_lan, max(0, d.sent - back), n)

    @rule(i=st.integers(0, 1), from_lan=st.booleans(), ahead=st.integers(1, 3000))
    def out_of_window(self, i: int, from_lan: bool, ahead: int) -> None:
        c = self.clients[i]
        d = c.up if from_lan else c.down
        if len(d.queued) > d.sent + ahead:
            pkt = self.tcp(c, from_lan, d.isn + 1 + d.sent + ahead, ACK | PSH,
                           bytes(d.queued[d.sent + ahead:d.sent + ahead + 20]))
            assert pkt is None, "a segment beyond a hole was let through"

    @rule(i=st.integers(0, 1), pick=st.integers(0, 7))
    def server_gre(self, i: int, pick: int) -> None:
        c = self.clients[i]
        if c.wan is None or not c.calls:
            return
        event("GRE sent to a live call")
        wan_id = list(c.calls)[pick % len(c.calls)]
        pkt = G.build_pptp_gre(SERVER, c.wan, wan_id, b"\xff\x03" + bytes(8))
        out = self.ck.process(pkt, False, self.now)
        if out.code == V.TO_LAN:
            event("GRE delivered")
            assert pkt[16:20] == F.IP.str_to_addr(c.host), "GRE reached another client"
            assert G.get_call_id(pkt, 20) == c.lan_of[wan_id], "GRE carries another Call ID"

    @rule(i=st.integers(0, 1), pick=st.integers(0, 7))
    def client_gre(self, i: int, pick: int) -> None:
        c = self.clients[i]
        if not c.calls:
            return
        server_id = list(c.calls.values())[pick % len(c.calls)]
        pkt = G.build_pptp_gre(c.host, SERVER, server_id, b"\xff\x03" + bytes(8))
        out = self.ck.process(pkt, True, self.now)
        assert out.code in (V.TO_WAN, V.DROP)

    @rule(dt=st.sampled_from([0.0, 0.5, 5.0]))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @precondition(lambda self: bool(self.clients))
    @invariant()
    def tables_stay_bounded(self) -> None:
        self.ck.check_bounds()


def payload_of(pkt: bytearray) -> bytes:
    ihl = (pkt[0] & 15) * 4
    doff = (pkt[ihl + 12] >> 4) * 4
    return bytes(pkt[ihl + doff:int.from_bytes(pkt[2:4], "big")])


PptpMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=50, deadline=None,
                                         derandomize=True,
                                         suppress_health_check=[HealthCheck.too_slow])
test_pptp_control_streams_of_two_clients_against_a_model_server = PptpMachine.TestCase
