"""Fuzz targets of natpass: every packet parser, each passthrough helper and the engine as a whole.

A target takes one input (``bytes``) and raises :class:`Violation` (or any exception that is a
bug) when natpass breaks an invariant on it; ``PacketError`` from a parser is the expected answer
to bad input. The same targets run under atheris (coverage-guided, ``bench/fuzz.py``) and as a
short fixed-seed slice in CI (``tests/fuzz``). Helper and engine targets read their input as a
script of operations (``Script``), so one input is a whole conversation: control messages of
several clients split and merged across TCP segments, retransmitted, out of window, with GRE/ESP
interleaved, time passing.

Invariants checked on every packet natpass emits (``Checker``):
- no exception escapes ``Engine.process``; a drop has a reason;
- IPv4 header: version 4, header checksum right, total length equal to the buffer, TTL > 0;
- TCP/UDP/ICMP checksums and the UDP length right whenever the packet that came in had them right
  (a NAT updates checksums incrementally: a wrong one stays wrong, as in Linux);
- the same judged by an independent decoder (dpkt) on a sample;
- a packet to the LAN goes to a LAN host that some flow, port forward or helper tunnel maps to
  (before or after this packet), or is the router's reply to the packet's own sender;
- a packet to the WAN leaves from a WAN address (no LAN address leaks);
- after each input, every table is within its configured bound (flows, fragments, helper state).
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dpkt

from natpass.nat import verdict as V
from natpass.nat.config import Limits, NatConfig, Passthrough, PortForward, Timeouts
from natpass.nat.engine import Engine
from natpass.packets import checksum as C
from natpass.packets import esp as E
from natpass.packets import gre as G
from natpass.packets import icmp as I
from natpass.packets import ike as K
from natpass.packets import ipv4 as IP
from natpass.packets import l2tp as L
from natpass.packets import pptp as P
from natpass.packets import tcp as T
from natpass.packets import udp as U
from natpass.packets.errors import PacketError
from natpass.passthrough import build_helpers
from natpass.passthrough.l2tp import read_l2tp


def mutate(rng: random.Random, seed: bytes) -> bytes:
    """``seed`` with 1..8 random byte changes, cuts and insertions (the mutation both the CI slice
    and bench/fuzz.py use without a coverage-guided engine)."""
    data = bytearray(seed)
    for _ in range(rng.randint(1, 8)):
        r = rng.random()
        if data and r < 0.6:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif data and r < 0.8:
            i = rng.randrange(len(data))
            del data[i:i + rng.randint(1, 16)]
        else:
            data[rng.randrange(len(data) + 1):0] = rng.randbytes(rng.randint(1, 24))
    return bytes(data)


class Violation(AssertionError):
    """natpass broke one of the invariants on this input."""


def need(cond: bool, what: str) -> None:
    if not cond:
        raise Violation(what)


# ------------------------------------------------------------------ the input as a script


class Script:
    """Reads a fuzz input as a sequence of small decisions (like atheris' FuzzedDataProvider,
    but the same on every Python and without atheris): exhausted input reads as zeros."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return self.byte() << 8 | self.byte()

    def u32(self) -> int:
        return self.u16() << 16 | self.u16()

    def pick(self, seq: list[Any] | tuple[Any, ...]) -> Any:
        return seq[self.byte() % len(seq)]

    def blob(self, limit: int) -> bytes:
        n = min(self.byte() % (limit + 1), self.left)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


# ------------------------------------------------------------------ addresses and config

WAN = "203.0.113.1"
WAN2 = "203.0.113.2"
LAN_NET = ipaddress.IPv4Network("192.168.1.0/24")
HOSTS = ("192.168.1.10", "192.168.1.11", "192.168.1.12")
REMOTES = ("198.51.100.7", "198.51.100.20", "192.0.2.5")
FORWARD_HOST = "192.168.1.50"
LIMITS = Limits(max_flows=64, max_flows_per_host=24, max_fragments=16)


def fuzz_config(**switches: bool) -> NatConfig:
    on = {"pptp": True, "ipsec": True, "l2tp": True} | switches
    return NatConfig(
        wan_addresses=(IP.str_to_addr(WAN), IP.str_to_addr(WAN2)),
        lan_prefixes=(LAN_NET,),
        passthrough=Passthrough(**on),
        limits=LIMITS,
        timeouts=Timeouts(udp=30.0, udp_natt=30.0, tcp_established=60.0, tcp_transitory=20.0,
                          icmp=10.0, gre=30.0, esp=40.0, fragment=5.0),
        forwards=(PortForward(6, 8080, IP.str_to_addr(FORWARD_HOST), 80),
                  PortForward(17, 1701, IP.str_to_addr(FORWARD_HOST), 1701)),
        wan_mtu=1400,
        seed=1,
    )


# ------------------------------------------------------------------ emitted-packet invariants


def l4_ok(pkt: bytes | bytearray) -> bool | None:
    """natpass' own judgement of a whole (unfragmented) packet's L4 checksum and length; None when
    there is nothing to judge (fragment, other protocol, too short to hold the header)."""
    ihl = (pkt[0] & 15) * 4
    total = len(pkt)
    if struct.unpack_from("!H", pkt, 6)[0] & 0x3FFF:
        return None
    seg = pkt[ihl:total]
    proto = pkt[9]
    if proto == 6 and len(seg) >= 20:
        return T.verify_tcp(pkt[12:16], pkt[16:20], seg)
    if proto == 17 and len(seg) >= 8:
        return struct.unpack_from("!H", seg, 4)[0] == len(seg) and U.verify_udp(pkt[12:16], pkt[16:20], seg)
    if proto == 1 and len(seg) >= 8:
        return I.verify_icmp(seg)
    return None


def dpkt_judges_ok(pkt: bytes | bytearray) -> bool:
    """An independent decoder's view: dpkt parses the headers and its own checksum routine
    (RFC 1071, pseudo-header for TCP/UDP) judges the header and, unfragmented, the L4 checksum."""
    raw = bytes(pkt)
    ip = dpkt.ip.IP(raw)
    hl = ip.hl * 4
    if ip.len != len(raw) or ip.v != 4 or dpkt.in_cksum(raw[:hl]) != 0:
        return False
    if ip.mf or ip.offset:
        return True
    body = raw[hl:]
    if ip.p == 1 and len(body) >= 8:
        return bool(dpkt.in_cksum(body) == 0)
    if ip.p in (6, 17) and len(body) >= (20 if ip.p == 6 else 8):
        if ip.p == 17:
            if struct.unpack_from("!H", body, 4)[0] != len(body):
                return False
            if body[6:8] == b"\0\0":
                return True  # no checksum (RFC 768)
        pseudo = struct.pack("!4s4sxBH", ip.src, ip.dst, ip.p, len(body))
        return bool(dpkt.in_cksum_done(dpkt.in_cksum_add(dpkt.in_cksum_add(0, pseudo), body)) == 0)
    return True


@dataclass
class Outcome:
    code: int
    packets: list[tuple[bool, bytearray]]  # (to LAN, packet)


class Checker:
    """Runs packets through an engine and checks every invariant on what comes out."""

    def __init__(self, eng: Engine, helpers: list[Any], config: NatConfig, sample: int = 1) -> None:
        self.eng = eng
        self.helpers = helpers
        self.config = config
        self.sample = sample
        self.emitted = 0
        self.wans = set(config.wan_addresses)
        self.forward_hosts = {f.lan_addr for f in config.forwards}

    def known_lan_hosts(self) -> set[bytes]:
        known = {bytes(f.lan_addr) for f in self.eng.flows()} | self.forward_hosts
        for h in self.helpers:
            for t in h.tunnels():
                known.add(IP.str_to_addr(t["lan"]))
        return known

    def process(self, pkt: bytearray, from_lan: bool, now: float) -> Outcome:
        before = bytes(pkt)
        known = self.known_lan_hosts()
        input_l4 = l4_ok(before) if len(before) >= 20 and before[0] >> 4 == 4 else None
        code = self.eng.process(pkt, from_lan, now)
        need(isinstance(code, int), f"verdict {code!r} is not an int")
        out: list[tuple[bool, bytearray]] = []
        if code == V.DROP:
            need(bool(self.eng.last_drop), "a drop without a reason")
        elif code == V.HELD:
            pass  # a fragment kept until its first fragment arrives: nothing to emit yet
        elif code & V.REPLY:
            need(self.eng.reply is not None, "REPLY without a reply packet")
            assert self.eng.reply is not None
            out.append((code & 3 == V.TO_LAN, self.eng.reply))
        elif code & V.MULTI:
            out += [(code & 3 == V.TO_LAN, p) for p in self.eng.emitted]
        else:
            need(code in (V.TO_WAN, V.TO_LAN), f"unknown verdict {code}")
            out.append((code == V.TO_LAN, pkt))
        for to_lan, p in out:
            self.check_packet(p, to_lan, before, input_l4, known, bool(code & V.REPLY))
        return Outcome(code, out)

    def check_packet(self, p: bytearray, to_lan: bool, before: bytes, input_l4: bool | None,
                     known: set[bytes], reply: bool) -> None:
        need(len(p) >= 20 and p[0] >> 4 == 4 and (p[0] & 15) >= 5, "emitted packet is not IPv4")
        need(struct.unpack_from("!H", p, 2)[0] == len(p), "IPv4 total length differs from the packet")
        need(IP.header_checksum_ok(p), "bad IPv4 header checksum out")
        need(p[8] > 0, "TTL 0 out")
        if reply:
            need(I.verify_icmp(p[(p[0] & 15) * 4:]), "bad ICMP checksum in the router's reply")
        elif input_l4 is True and len(p) == len(before) and p[9] == before[9]:
            need(l4_ok(p) is not False, f"bad L4 checksum/length out (protocol {p[9]})")
        self.emitted += 1
        if self.emitted % self.sample == 0:
            need(dpkt_judges_ok(p) or not (input_l4 or reply),
                 "dpkt disagrees with natpass about an emitted packet")
        dst, src = bytes(p[16:20]), bytes(p[12:16])
        if to_lan:
            if reply:
                need(dst == before[12:16], "the router's reply goes to someone else than the sender")
            else:
                need(ipaddress.IPv4Address(dst) in LAN_NET, "a packet to the LAN leaves for a non-LAN address")
                need(dst in known | self.known_lan_hosts(),
                     f"packet to LAN host {IP.addr_to_str(dst)} that no flow or tunnel maps to")
        else:
            need(src in self.wans, f"packet to the WAN from {IP.addr_to_str(src)}, not a WAN address")

    def check_bounds(self) -> None:
        lim = self.config.limits
        st = self.eng.status()
        need(st["flows"]["total"] <= lim.max_flows, f"{st['flows']['total']} flows > max_flows")
        need(st["fragments_held"] <= lim.max_fragments, "held fragments above max_fragments")
        hosts: dict[bytes, int] = {}
        for f in self.eng.flows():
            hosts[f.lan_addr] = hosts.get(f.lan_addr, 0) + 1
        need(max(hosts.values(), default=0) <= lim.max_flows_per_host, "a host above max_flows_per_host")
        for h in self.helpers:
            s = h.stats()
            hl = h.limits
            for key, bound in helper_bounds(h.name, hl).items():
                need(s.get(key, 0) <= bound, f"{h.name} {key}={s.get(key)} above its bound {bound}")


def helper_bounds(name: str, hl: Any) -> dict[str, int]:
    if name == "ipsec":
        return {"sessions": hl.sessions.total, "ike_sas": hl.ike_sas.total,
                "ambiguous_spis": hl.ambiguous_spis,
                "inbound_spis": hl.sessions.total * hl.spis_per_session}
    if name == "pptp":
        return {"calls": hl.calls.total, "control_connections": hl.controls.total,
                "gre_address_bindings": hl.gre_bindings.total, "ended_calls": 2 * hl.ended_calls.total}
    if name == "l2tp":
        return {"tunnels_tracked": hl.tunnels.total, "sessions_tracked": hl.sessions.total}
    return {}


DPKT_SAMPLE = 1  # every n-th emitted packet is also judged by dpkt (the long runs raise it)


def new_engine(**switches: bool) -> Checker:
    cfg = fuzz_config(**switches)
    helpers = build_helpers(cfg)
    return Checker(Engine(cfg, helpers), helpers, cfg, DPKT_SAMPLE)


# ------------------------------------------------------------------ parser targets

ParserCall = Callable[[bytes], object]


def _parse_all(calls: list[ParserCall], data: bytes) -> None:
    for call in calls:
        try:
            call(data)
        except PacketError:
            pass


def target_ipv4(data: bytes) -> None:
    def whole(d: bytes) -> None:
        h = IP.parse_ipv4(d)
        need(20 <= h.header_len <= h.total_length <= len(d), "IPv4 header/total length outside the buffer accepted")
    _parse_all([whole, lambda d: IP.parse_ipv4(d, False), IP.check_options, IP.option_types,
                IP.has_source_route, IP.header_checksum_ok], data)


def target_tcp(data: bytes) -> None:
    _parse_all([T.parse_tcp, lambda d: T.parse_tcp(d, 3),
                lambda d: T.verify_tcp(d[:4].ljust(4, b"\0"), d[4:8].ljust(4, b"\0"), d[8:])], data)


def target_udp(data: bytes) -> None:
    _parse_all([U.parse_udp, lambda d: U.verify_udp(d[:4].ljust(4, b"\0"), d[4:8].ljust(4, b"\0"), d[8:])],
               data)


def target_icmp(data: bytes) -> None:
    _parse_all([I.parse_icmp_header, I.parse_query, I.parse_error, lambda d: I.parse_inner(d, 0),
                I.may_send_error_about, I.verify_icmp], data)


def target_gre(data: bytes) -> None:
    def checked(d: bytes) -> None:  # the unchecked hot-path accessors, on what parse_gre accepted
        h = G.parse_gre(d)
        need(G.gre_version(d) == h.version, "gre_version differs from parse_gre")
        if h.version == G.GRE_VERSION_PPTP:
            need(G.call_id_offset(d) + 2 <= len(d), "GRE call ID offset past the buffer")
            G.get_call_id(d)
    _parse_all([checked, G.verify_gre_checksum], data)


def target_esp(data: bytes) -> None:
    def checked(d: bytes) -> None:
        h = E.parse_esp(d)
        need(E.get_spi(d) == h.spi, "get_spi differs from parse_esp")
    _parse_all([checked, E.parse_ah], data)


def target_ike(data: bytes) -> None:
    _parse_all([K.parse_ike, K.payloads, K.nat_d_payloads, K.classify_natt, K.ike_version,
                K.parse_notify_v2], data)


def target_l2tp(data: bytes) -> None:
    def avps(d: bytes) -> None:
        ctl = L.parse_control(d)
        for a in ctl.avps:
            if len(a.value) == 2:
                a.u16()
        for value in (ctl.assigned_tunnel_id, ctl.assigned_session_id):
            need(value is None or 0 <= value <= 0xFFFF, "an Assigned ID outside 16 bits")
    _parse_all([L.parse_l2tp, avps, read_l2tp], data)


def target_pptp(data: bytes) -> None:
    def stream(d: bytes) -> None:
        s = P.PptpStream(0)
        pos = 0
        while pos < len(d):
            n = 1 + d[pos] % 40
            s.feed(d[pos:pos + n])
            need(s.pending <= P.MAX_MESSAGE_LEN, "PPTP stream holds more than one message")
            pos += n
    _parse_all([P.parse_pptp, P.parse_pptp_header, stream], data)


def target_checksum(data: bytes) -> None:
    """RFC 1071/1624: a checksum put in verifies; an incremental update equals a recomputation."""
    body = bytearray(data[: len(data) & ~1] or b"\0\0")
    ck = C.internet_checksum(body)
    need(C.verify(body + ck.to_bytes(2, "big")) or len(body) % 2, "a freshly computed checksum does not verify")
    if len(body) >= 4:
        old = bytes(body[:4])
        new = bytes(body[-4:])
        changed = bytearray(new) + body[4:]
        inc = C.apply_delta(ck, C.delta(old, new))
        full = C.internet_checksum(changed)
        need(inc == full or {inc, full} == {0, 0xFFFF}, "RFC 1624 update differs from a recomputation")


# ------------------------------------------------------------------ packet builders for scripts


def ip_packet(s: Script, src: str, dst: str, proto: int, payload: bytes) -> bytearray:
    pkt = IP.build_ipv4(src, dst, proto, payload, ttl=s.pick((64, 64, 2, 1)))
    flags = s.byte()
    if flags < 24:  # a fragment now and then
        frag = (0x2000 if flags & 1 else 0) | (flags >> 1 if flags & 2 else 0)
        struct.pack_into("!HH", pkt, 4, s.u16(), frag)
        IP.fix_ip_checksum(pkt)
    return pkt


def tcp_packet(s: Script, src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
               payload: bytes) -> bytearray:
    return T.build_tcp(src, dst, sport, dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF, flags=flags,
                       payload=payload)


# ------------------------------------------------------------------ PPTP helper target

PPTP_MESSAGES: list[Callable[[int, int], bytes]] = [
    lambda a, b: bytes(P.build_sccrq()), lambda a, b: bytes(P.build_sccrp()),
    lambda a, b: bytes(P.build_ocrq(a)), lambda a, b: bytes(P.build_ocrp(a, b)),
    lambda a, b: bytes(P.build_icrq(a)), lambda a, b: bytes(P.build_icrp(a, b)),
    lambda a, b: bytes(P.build_iccn(b)), lambda a, b: bytes(P.build_ccrq(a)),
    lambda a, b: bytes(P.build_cdn(a)), lambda a, b: bytes(P.build_sli(b)),
    lambda a, b: bytes(P.build_wen(b)), lambda a, b: bytes(P.build_echo_request(a)),
    lambda a, b: bytes(P.build_stop_ccrq()), lambda a, b: bytes(P.build_stop_ccrp()),
]
CALL_IDS = (0, 1, 2, 0x100, 0x101, 0xFFFF)


@dataclass
class TcpSide:
    """One direction of a TCP connection: the bytes queued for it and how far they were sent."""

    isn: int
    stream: bytearray
    sent: int = 0


def target_pptp_helper(data: bytes) -> None:
    run_pptp(Script(data), new_engine())


def run_pptp(s: Script, ck: Checker) -> None:
    now = 0.0
    conns: list[dict[str, Any]] = []
    for i in range(1 + s.byte() % 3):
        host = HOSTS[i % len(HOSTS)]
        conns.append({"host": host, "port": 40000 + s.byte() % 2, "server": s.pick(REMOTES[:2]),
                      "lan": TcpSide(s.u32(), bytearray()), "remote": TcpSide(s.u32(), bytearray()),
                      "wan": None, "wan_port": None, "seen_ids": list(CALL_IDS)})
    steps = 0
    while s.left and steps < 200:
        steps += 1
        c = s.pick(conns)
        op = s.byte() % 14
        now += s.pick((0.0, 0.0, 0.01, 1.0, 7.0, 40.0))
        from_lan = op % 2 == 0
        side: TcpSide = c["lan"] if from_lan else c["remote"]
        if op in (0, 1):  # queue a control message (valid, or with bytes of the input in it)
            msg = bytearray(s.pick(PPTP_MESSAGES)(s.pick(c["seen_ids"]), s.pick(c["seen_ids"])))
            if s.byte() < 32 and msg:
                msg[s.byte() % len(msg)] = s.byte()
            side.stream += msg
        elif op in (2, 3):  # send the next bytes: split or merged at any point
            n = s.byte() % 200 + 1
            send_tcp(s, ck, c, from_lan, side.sent, n, 0x18, now)
        elif op in (4, 5):  # retransmit something already sent
            if side.sent:
                start = s.u16() % side.sent
                send_tcp(s, ck, c, from_lan, start, s.byte() % 64 + 1, 0x18, now, advance=False)
        elif op in (6, 7):  # out of window: ahead of what was sent, or far behind
            off = side.sent + 1 + s.u16() if s.byte() & 1 else side.sent - 70000
            send_tcp(s, ck, c, from_lan, off, s.byte() % 40 + 1, 0x18, now, advance=False)
        elif op in (8, 9):  # SYN / FIN / RST (with any sequence number now and then)
            flags = s.pick((0x02, 0x12, 0x11, 0x04, 0x14))
            seq_off = side.sent if s.byte() < 200 else s.u32()
            send_tcp(s, ck, c, from_lan, seq_off, 0, flags, now, advance=False)
        elif op in (10, 11):  # GRE v1 of a call, either way
            key = s.pick(c["seen_ids"])
            if from_lan:
                pkt = G.build_pptp_gre(c["host"], c["server"], key, b"\xff\x03" + s.blob(16))
            else:
                pkt = G.build_pptp_gre(c["server"], s.pick((WAN, WAN2)), key, b"\xff\x03" + s.blob(16))
            ck.process(pkt, from_lan, now)
        elif op == 12:  # other GRE (v0, bad flags) from anywhere
            payload = s.blob(24)
            src, dst = (c["host"], c["server"]) if s.byte() & 1 else (c["server"], WAN)
            ck.process(ip_packet(s, src, dst, IP.PROTO_GRE, payload), src == c["host"], now)
        else:
            ck.eng.expire(now)
    ck.check_bounds()


def send_tcp(s: Script, ck: Checker, c: dict[str, Any], from_lan: bool, offset: int, n: int, flags: int,
             now: float, advance: bool = True) -> None:
    side: TcpSide = c["lan"] if from_lan else c["remote"]
    other: TcpSide = c["remote"] if from_lan else c["lan"]
    start = max(0, min(offset, len(side.stream)))
    payload = bytes(side.stream[start:start + n]) if flags & 0x18 == 0x18 else b""
    if flags & 0x18 == 0x18 and not payload:
        return
    seq = side.isn + 1 + offset
    if flags & 0x02:
        seq = side.isn
    ack = other.isn + 1 + other.sent
    if from_lan:
        pkt = tcp_packet(s, c["host"], c["server"], c["port"], 1723, seq, ack, flags, payload)
        out = ck.process(pkt, True, now)
        if out.code == V.TO_WAN:
            c["wan"], c["wan_port"] = IP.addr_to_str(pkt[12:16]), struct.unpack_from("!H", pkt, 20)[0]
            learn_ids(c, pkt)
    else:
        if c["wan"] is None:
            return
        pkt = tcp_packet(s, c["server"], c["wan"], 1723, c["wan_port"], seq, ack, flags, payload)
        out = ck.process(pkt, False, now)
    if advance and out.code != V.DROP and payload and offset == side.sent:
        side.sent += len(payload)


def learn_ids(c: dict[str, Any], pkt: bytearray) -> None:
    """Call IDs that went out (the far end answers with them): the script's servers use them."""
    ihl = (pkt[0] & 15) * 4
    doff = (pkt[ihl + 12] >> 4) * 4
    pay = bytes(pkt[ihl + doff:])
    for i in range(0, max(0, len(pay) - 13)):
        if pay[i + 4:i + 8] == b"\x1a\x2b\x3c\x4d":
            try:
                m = P.parse_pptp(pay, i)
            except PacketError:
                continue
            for v in (m.call_id, m.peer_call_id):
                if v is not None and v not in c["seen_ids"] and len(c["seen_ids"]) < 16:
                    c["seen_ids"].append(v)


# ------------------------------------------------------------------ IPsec helper target

SPIS = (1, 2, 0x100, 0x101, 0xDEAD, 0)


def target_ipsec_helper(data: bytes) -> None:
    s = Script(data)
    ck = new_engine()
    now = 0.0
    ike_spis = [bytes([i]) * 8 for i in range(1, 5)] + [bytes(8)]
    steps = 0
    while s.left and steps < 200:
        steps += 1
        op = s.byte() % 10
        now += s.pick((0.0, 0.0, 0.01, 1.0, 13.0, 50.0))
        host, gw = s.pick(HOSTS), s.pick(REMOTES)
        if op in (0, 1):  # IKE from a LAN host, on 500 or 4500 (NAT-T marker or ESP-in-UDP)
            port = s.pick((500, 4500))
            body = bytes(K.build_ike(s.pick(ike_spis), s.pick(ike_spis), s.pick((2, 4, 32, 34, 35, 36, 37)),
                                     s.pick((K.FLAG_INITIATOR, K.FLAG_RESPONSE))))
            if port == 4500:
                body = s.pick((K.NON_ESP_MARKER + body, s.u32().to_bytes(4, "big") + s.blob(20), b"\xff"))
            ck.process(U.build_udp(host, gw, s.pick((port, 500, 4500, 40000)), port, body), True, now)
        elif op in (2, 3):  # IKE from a gateway to a WAN address, any port
            port = s.pick((500, 4500, 1024 + s.byte()))
            body = bytes(K.build_ike(s.pick(ike_spis), s.pick(ike_spis), 34, K.FLAG_RESPONSE))
            if port != 500:
                body = K.NON_ESP_MARKER + body
            ck.process(U.build_udp(gw, s.pick((WAN, WAN2)), s.pick((500, 4500)), port, body), False, now)
        elif op in (4, 5):  # raw ESP / AH out
            spi = s.pick(SPIS) | (s.byte() << 24 if s.byte() < 16 else 0)
            pkt = (E.build_esp_packet(host, gw, spi, s.u16(), s.blob(20)) if op == 4 else
                   E.build_ah_packet(host, gw, spi, s.u16(), 4, payload=s.blob(20)))
            ck.process(pkt, True, now)
        elif op in (6, 7):  # raw ESP / AH in
            spi = s.pick(SPIS) | (s.byte() << 24 if s.byte() < 16 else 0)
            dst = s.pick((WAN, WAN2))
            pkt = (E.build_esp_packet(gw, dst, spi, s.u16(), s.blob(20)) if op == 6 else
                   E.build_ah_packet(gw, dst, spi, s.u16(), 4, payload=s.blob(20)))
            ck.process(pkt, False, now)
        elif op == 8:  # truncated / odd ESP and AH
            proto = s.pick((IP.PROTO_ESP, IP.PROTO_AH))
            src, dst, lan = (host, gw, True) if s.byte() & 1 else (gw, WAN, False)
            ck.process(ip_packet(s, src, dst, proto, s.blob(16)), lan, now)
        else:
            ck.eng.set_switch("ipsec", bool(s.byte() & 1), now) if s.byte() < 40 else ck.eng.expire(now)
    ck.check_bounds()


# ------------------------------------------------------------------ L2TP helper target

L2TP_TYPES = (L.SCCRQ, L.SCCRP, L.SCCCN, L.STOPCCN, L.ICRQ, L.ICRP, L.OCRQ, L.OCRP, L.CDN, 6, 20)


def l2tp_message(s: Script) -> bytes:
    kind = s.byte() % 6
    tid, sid = s.pick((0, 1, 11, 900)), s.pick((0, 1, 5, 77))
    if kind == 0:
        return bytes(L.build_sccrq(s.pick((1, 11, 12)), ns=s.byte()))
    if kind == 1:
        return bytes(L.build_sccrp(tid, s.pick((900, 901))))
    if kind == 2:
        return bytes(L.build_icrq(tid, s.pick((5, 6, 7)), ns=s.byte()))
    if kind == 3:
        avps = L.avp_u16(L.AVP_ASSIGNED_SESSION_ID, s.pick((5, 6, 77))) if s.byte() & 1 else b""
        return bytes(L.build_control_message(s.pick(L2TP_TYPES), tid, sid, ns=s.byte(), nr=s.byte(),
                                             avps=[avps] if avps else None))
    if kind == 4:
        return bytes(L.build_data(tid, sid, s.blob(12)))
    return s.blob(40)


def target_l2tp_helper(data: bytes) -> None:
    s = Script(data)
    ck = new_engine()
    now = 0.0
    wan_ports: dict[tuple[str, int], int] = {}
    steps = 0
    while s.left and steps < 200:
        steps += 1
        op = s.byte() % 4
        now += s.pick((0.0, 0.01, 1.0, 31.0))
        host, lns = s.pick(HOSTS), s.pick(REMOTES[:2])
        port = s.pick((1701, 1701, 40001))
        if op in (0, 1):
            pkt = U.build_udp(host, lns, port, 1701, l2tp_message(s))
            if ck.process(pkt, True, now).code == V.TO_WAN:
                wan_ports[(host, port)] = struct.unpack_from("!H", pkt, 20)[0]
        elif op == 2:
            dport = s.pick(list(wan_ports.values()) or [1701]) if s.byte() & 1 else s.pick((1701, 40001))
            ck.process(U.build_udp(lns, s.pick((WAN, WAN2)), 1701, dport, l2tp_message(s)), False, now)
        else:
            ck.eng.expire(now)
    ck.check_bounds()


# ------------------------------------------------------------------ the engine as a whole


def engine_packet(s: Script, from_lan: bool) -> bytearray:
    """A packet of any protocol, mostly with a valid IPv4 header so the input reaches deeper."""
    mode = s.byte() % 8
    if mode == 0:
        return bytearray(s.blob(80))
    src = s.pick(HOSTS + (FORWARD_HOST, "192.168.2.1")) if from_lan else s.pick(REMOTES)
    dst = s.pick(REMOTES + (WAN, WAN2)) if from_lan else s.pick((WAN, WAN2, HOSTS[0]))
    proto = s.pick((6, 6, 17, 17, 1, 47, 50, 51, 132, 0))
    sport, dport = s.pick((40000, 40001, 500, 4500, 1701, 1723, 80)), s.pick((80, 8080, 500, 4500, 1701, 1723, 40000))
    if proto == 6:
        seg = T.build_tcp_segment(src, dst, sport, dport, seq=s.u32(), ack=s.u32(),
                                  flags=s.pick((0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, s.byte())),
                                  payload=s.blob(40))
    elif proto == 17:
        seg = U.build_udp_datagram(src, dst, sport, dport, s.blob(40))
    elif proto == 1:
        if mode < 4:
            seg = I.build_icmp(s.pick((8, 0, 13)), 0, s.u32(), s.blob(16))
        else:  # an error quoting a packet
            inner = T.build_tcp(dst, src, dport, sport, seq=s.u32()) if s.byte() & 1 else \
                U.build_udp(dst, src, dport, sport, s.blob(8))
            seg = I.build_icmp(s.pick((3, 11, 12, 5)), s.byte() % 5, 0, bytes(inner[: 28 + s.byte() % 40]))
    else:
        seg = bytearray(s.blob(40))
    if mode == 7 and seg:  # a corrupted byte somewhere (the checksums then mostly do not match)
        seg[s.byte() % len(seg)] ^= 1 + s.byte() % 255
    return ip_packet(s, src, dst, proto, bytes(seg))


def target_engine(data: bytes) -> None:
    s = Script(data)
    ck = new_engine()
    now = 0.0
    steps = 0
    while s.left and steps < 150:
        steps += 1
        op = s.byte()
        now += (0.0, 0.001, 0.5, 3.0, 61.0)[op % 5]
        if op >= 250:
            ck.eng.set_switch(s.pick(("pptp", "ipsec", "l2tp")), bool(op & 1), now)
            continue
        from_lan = bool(op & 8)
        ck.process(engine_packet(s, from_lan), from_lan, now)
    ck.check_bounds()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "ipv4": target_ipv4, "tcp": target_tcp, "udp": target_udp, "icmp": target_icmp, "gre": target_gre,
    "esp": target_esp, "ike": target_ike, "l2tp": target_l2tp, "pptp": target_pptp,
    "checksum": target_checksum,
    "pptp-helper": target_pptp_helper, "ipsec-helper": target_ipsec_helper,
    "l2tp-helper": target_l2tp_helper, "engine": target_engine,
}


def seeds(name: str) -> list[bytes]:
    """Starting inputs: well-formed packets for the parsers, some valid-ish scripts for the rest."""
    tcp = bytes(T.build_tcp("192.168.1.10", "198.51.100.7", 40000, 1723, payload=bytes(P.build_sccrq())))
    udp = bytes(U.build_udp("192.168.1.10", "198.51.100.7", 500, 500,
                            bytes(K.build_ike(b"A" * 8, bytes(8), K.IKE_SA_INIT))))
    per: dict[str, list[bytes]] = {
        "ipv4": [tcp, udp, bytes(IP.build_ipv4("192.0.2.1", "192.0.2.2", 47, b"\x30\x01\x88\x0b" + bytes(8)))],
        "tcp": [tcp[20:]], "udp": [udp[20:]],
        "icmp": [bytes(I.build_icmp(3, 4, 1400, tcp[:28])), bytes(I.build_icmp(8, 0, 0x10001, b"ping"))],
        "gre": [bytes(G.build_gre_v1(7, b"\xff\x03", seq=1, ack=2)), bytes(G.build_gre(0x0800, b"x", key=5))],
        "esp": [bytes(E.build_esp(5, 1, b"x" * 16)), bytes(E.build_ah(5, 1, 4))],
        "ike": [udp[28:], K.NON_ESP_MARKER + udp[28:]],
        "l2tp": [bytes(L.build_sccrq(11)), bytes(L.build_icrq(900, 5)), bytes(L.build_data(11, 5, b"ab"))],
        "pptp": [bytes(P.build_sccrq()) + bytes(P.build_ocrq(1)), bytes(P.build_cdn(3))],
        "checksum": [tcp, udp],
    }
    if name in per:
        return per[name]
    # scripts: an ascending byte ramp walks every operation once; a few fixed patterns
    return [bytes(range(256)), bytes([1, 0, 2, 1, 0, 2, 3, 2]) * 30, bytes([i * 37 % 256 for i in range(600)])]
