"""Property tests: random interleavings of several clients' control messages (split at random
points) and GRE/ESP never deliver a packet to the wrong LAN host."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from passthrough_util import GATEWAY, HOSTS, SERVER, WAN, Conv, checksums_ok, dst, engine, messages, src, udp

from natpass.nat import verdict as V
from natpass.packets import gre as G
from natpass.packets import ike as K
from natpass.packets import pptp as P
from natpass.packets.esp import build_esp_packet
from natpass.packets.gre import build_pptp_gre
from natpass.packets.tcp import ACK, SYN

Step = Callable[[], None]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class PptpActor:
    eng: object
    host: str
    call_id: int
    server_call: int
    cuts: list[int]
    gre_rounds: int
    conv: Conv = field(init=False)
    wan_id: int | None = None

    def __post_init__(self) -> None:
        self.conv = Conv(self.eng, self.host, 40000 + HOSTS.index(self.host), SERVER, 1723)

    def send_split(self, msg: bytes, cut: int) -> list[Step]:
        parts = [msg[:cut], msg[cut:]] if 0 < cut < len(msg) else [msg]
        return [lambda p=p: self.out(p) for p in parts]

    def out(self, data: bytes) -> None:
        assert self.conv.from_lan(data) == V.TO_WAN
        assert checksums_ok(self.conv.last)

    def reply(self, data: bytes) -> None:
        assert self.conv.from_remote(data) == V.TO_LAN
        assert dst(self.conv.last) == self.host and checksums_ok(self.conv.last)

    def learn_and_answer(self) -> None:
        ocrq = messages(bytes(self.conv.lan_out))[-1]
        assert ocrq.ctrl_type == P.OCRQ
        self.wan_id = ocrq.call_id
        self.reply(bytes(P.build_ocrp(self.server_call, self.wan_id)))
        assert messages(bytes(self.conv.remote_out))[-1].peer_call_id == self.call_id

    def gre_out(self) -> None:
        pkt = build_pptp_gre(self.host, SERVER, self.server_call, b"\xff\x03" + bytes(10))
        assert self.eng.process(pkt, True, 1.0) == V.TO_WAN and src(pkt) == WAN

    def gre_in(self) -> None:
        assert self.wan_id is not None
        pkt = build_pptp_gre(SERVER, WAN, self.wan_id, b"\xff\x03" + bytes(10))
        code = self.eng.process(pkt, False, 1.0)
        assert code == V.TO_LAN, self.eng.last_drop
        assert dst(pkt) == self.host and G.get_call_id(pkt, 20) == self.call_id

    def steps(self) -> list[Step]:
        c = self.conv
        s: list[Step] = [lambda: self.out_flags(SYN), lambda: self.in_flags(SYN | ACK),
                         lambda: self.out_flags(ACK)]
        s += self.send_split(bytes(P.build_sccrq()), self.cuts[0])
        s.append(lambda: self.reply(bytes(P.build_sccrp())))
        s += self.send_split(bytes(P.build_ocrq(self.call_id)), self.cuts[1])
        s.append(self.learn_and_answer)
        for _ in range(self.gre_rounds):
            s += [self.gre_out, self.gre_in]
        s += self.send_split(bytes(P.build_ccrq(self.call_id)), self.cuts[2])
        assert c is self.conv
        return s

    def out_flags(self, flags: int) -> None:
        assert self.conv.from_lan(flags=flags) == V.TO_WAN

    def in_flags(self, flags: int) -> None:
        assert self.conv.from_remote(flags=flags) == V.TO_LAN


def interleave(scripts: list[list[Step]], schedule: list[int]) -> None:
    pos = [0] * len(scripts)
    for who in schedule:
        i = who % len(scripts)
        if pos[i] < len(scripts[i]):
            scripts[i][pos[i]]()
            pos[i] += 1
    for i, script in enumerate(scripts):
        for step in script[pos[i]:]:
            step()


@SETTINGS
@given(n=st.integers(2, 3), call_ids=st.lists(st.sampled_from([0, 1, 0x0100, 0x0101]), min_size=3, max_size=3),
       same_server_call=st.booleans(), cuts=st.lists(st.integers(0, 30), min_size=9, max_size=9),
       rounds=st.integers(1, 3), schedule=st.lists(st.integers(0, 2), max_size=80))
def test_pptp_random_interleavings_never_deliver_to_the_wrong_host(n, call_ids, same_server_call, cuts, rounds,
                                                                    schedule):
    eng = engine(pptp=True)
    actors = [PptpActor(eng, HOSTS[i], call_ids[i], 0x500 if same_server_call else 0x500 + i,
                        cuts[3 * i:3 * i + 3], rounds) for i in range(n)]
    interleave([a.steps() for a in actors], schedule)
    assert eng.status()["helpers"]["pptp"]["stats"]["calls"] == 0  # every call cleared


@dataclass
class EspActor:
    eng: object
    host: str
    tag: int
    rounds: int
    rekey: bool
    delivered: int = 0

    def ike(self) -> None:
        pkt = udp(self.host, GATEWAY, 500, 500, bytes(K.build_ike(bytes([self.tag]) * 8, bytes(8),
                                                                  K.V1_QUICK_MODE)))
        assert self.eng.process(pkt, True, 1.0) == V.TO_WAN

    def esp_out(self, spi: int) -> None:
        pkt = build_esp_packet(self.host, GATEWAY, spi, 1, bytes(16))
        assert self.eng.process(pkt, True, 1.0) == V.TO_WAN and src(pkt) == WAN

    def esp_in(self, spi: int) -> None:
        pkt = build_esp_packet(GATEWAY, WAN, spi, 1, bytes(16))
        code = self.eng.process(pkt, False, 1.0)
        if code == V.TO_LAN:
            assert dst(pkt) == self.host  # the property: never somebody else
            self.delivered += 1
        else:
            assert code == V.DROP and self.eng.last_drop in ("ipsec:ambiguous-spi", V.NO_MAPPING)

    def steps(self, gateway_first: bool) -> list[Step]:
        out1, in1 = self.tag << 16 | 1, self.tag << 16 | 2
        s: list[Step] = [self.ike]
        pair = [lambda: self.esp_in(in1), lambda: self.esp_out(out1)]
        s += pair if gateway_first else pair[::-1]
        for _ in range(self.rounds):
            s += [lambda: self.esp_out(out1), lambda: self.esp_in(in1)]
        if self.rekey:
            out2, in2 = self.tag << 16 | 3, self.tag << 16 | 4
            s += [self.ike, lambda: self.esp_out(out2), lambda: self.esp_in(in2), lambda: self.esp_in(in1)]
        return s


@SETTINGS
@given(n=st.integers(2, 3), rounds=st.integers(0, 3), rekey=st.booleans(),
       gateway_first=st.lists(st.booleans(), min_size=3, max_size=3),
       schedule=st.lists(st.integers(0, 2), max_size=60))
def test_esp_random_interleavings_never_deliver_to_the_wrong_host(n, rounds, rekey, gateway_first, schedule):
    eng = engine(ipsec=True)
    actors = [EspActor(eng, HOSTS[i], 0x10 * (i + 1), rounds, rekey) for i in range(n)]
    interleave([a.steps(gateway_first[i]) for i, a in enumerate(actors)], schedule)


@SETTINGS
@given(n=st.integers(1, 3), rounds=st.integers(0, 3), rekey=st.booleans(),
       gateway_first=st.lists(st.booleans(), min_size=3, max_size=3))
def test_esp_clients_one_after_the_other_all_get_their_traffic(n, rounds, rekey, gateway_first):
    eng = engine(ipsec=True)
    actors = [EspActor(eng, HOSTS[i], 0x10 * (i + 1), rounds, rekey) for i in range(n)]
    for i, a in enumerate(actors):
        for step in a.steps(gateway_first[i]):
            step()
    expected = 1 + rounds + (2 if rekey else 0)
    assert [a.delivered for a in actors] == [expected] * n
