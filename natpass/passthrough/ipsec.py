"""IPsec passthrough: IKE on UDP 500 kept at port 500, IKE demultiplexed by SPI, raw ESP/AH mapped.

IKE (UDP 500). The WAN source port stays 500 when free (some gateways only answer port 500). A
second LAN host talking IKE to the same gateway gets another WAN port; the router records every IKE
initiator SPI (the first 8 bytes of the IKE header, RFC 7296 3.1 / RFC 2408 3.1) it sees per
(gateway, WAN address), so an inbound IKE packet that a gateway sends to WAN:500 anyway is routed
by its initiator SPI to the LAN host that owns that IKE SA (``inbound_lookup``). An SPI seen from
two LAN hosts is marked ambiguous and then not used for routing.

NAT-T (UDP 4500, RFC 3947/3948). A flow on 4500 is NAT-T: ESP travels inside UDP and crosses the
NAT as ordinary UDP, so it needs no help. Every UDP flow with port 500 or 4500 on either side gets
``timeouts.udp_natt`` from the engine itself (``natpass.nat.engine.UDP_NATT_PORTS``, with the
switch on or off), so no per-flow timeout hook was added to the helper contract; the move of an IKE
SA from 500 to 4500 is detected (same initiator SPI) and counted. NAT-T works with the switch off.

Raw ESP (IP 50) and AH (IP 51) without NAT-T carry no ports: the only demultiplexing key is the SPI
the *receiver* chose, which the router cannot read from the (encrypted) IKE exchange. The rule:
- Outbound ESP/AH from LAN host H to gateway G: the source becomes H's WAN address. H becomes
  *pending* toward G when it runs an IKE exchange that creates SAs (IKEv1 Main, Aggressive and
  Quick Mode; IKEv2 IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA) or sends an SPI not seen before whose
  inbound partner has not arrived yet (SAs come in pairs: a new outbound SPI after an inbound one
  that came first is that inbound SA's partner and opens nothing).
- Inbound ESP/AH from G with a bound SPI goes to its LAN host. A new SPI from G (to that WAN
  address) is bound to the one LAN host pending toward G, which is then no longer pending. If no
  host is pending and exactly one LAN host has IPsec state with G, it is that host (e.g. the
  gateway rekeys first). If two or more hosts are pending, or none is and several talk to G, the SPI
  is *ambiguous*: it is dropped (``ipsec:ambiguous-spi``), and stays dropped while it keeps coming,
  rather than risking delivery of one host's traffic to another. Pending does not lapse with time
  (only with the host's IPsec state, after ``timeouts.esp`` idle, or its move to NAT-T): a
  negotiation that stays silent for minutes must not let another host's SA take its SPI.
  Non-overlapping negotiations of several hosts to one gateway therefore work (each host's first
  inbound SPI arrives before the next host negotiates); overlapping ones fail for the overlapping
  hosts (NAT-T, which carries ports, always works).
- Inbound ESP/AH from a gateway no LAN host talked to: ``no-mapping``.
AH authenticates the IP addresses (RFC 4302 3.3.3.1), so AH that crossed a NAT fails the receiver's
integrity check: it is forwarded anyway (the switch is on) and counted ``ipsec:ah-translated`` so
that diagnosis can explain the failure.

State bounds (:class:`IpsecLimits`, from ``[limits]``): raw ESP/AH sessions and IKE SPI routes are
held per LAN host like flows, least recently used first out, so raw ESP sprayed by one host to
thousands of addresses pushes out that host's own sessions, never another host's live SA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from natpass.nat import verdict as V
from natpass.nat.config import Limits, NatConfig, Timeouts
from natpass.nat.helper import FlowView
from natpass.nat.ipfast import IpFast
from natpass.packets.ipv4 import OFF_DST, OFF_SRC, PROTO_AH, PROTO_ESP, PROTO_UDP
from natpass.passthrough._common import (
    LRU_GRANULARITY,
    HostLru,
    StateLimit,
    SwitchedHelper,
    cap,
    dst_of,
    ip_text,
    need_ctx,
    set_ip_addr,
    src_of,
    u16,
    u32,
)

IKE_PORT: Final = 500  # RFC 7296 2
NATT_PORT: Final = 4500  # RFC 3947 4, RFC 3948 1
IKE_HEADER_LEN: Final = 28  # RFC 7296 3.1 / RFC 2408 3.1
IKE_OFF_EXCHANGE: Final = 18
NON_ESP_MARKER: Final = b"\x00\x00\x00\x00"  # RFC 3948 2.2
NATT_KEEPALIVE: Final = 0xFF  # RFC 3948 2.3
# Exchange types that create SAs (RFC 2408 4 / RFC 2409 5: Main=2, Aggressive=4, Quick=32;
# RFC 7296 3.1: IKE_SA_INIT=34, IKE_AUTH=35, CREATE_CHILD_SA=36).
SA_CREATING_EXCHANGES: Final = frozenset({2, 4, 32, 34, 35, 36})
ESP_SPI_OFFSET: Final = 0  # RFC 4303 2
AH_SPI_OFFSET: Final = 4  # RFC 4302 2 (next header, payload len, reserved, SPI)


@dataclass(frozen=True, slots=True)
class IpsecLimits:
    """Everything the IPsec helper keeps is bounded here (like netfilter's expectation policy).

    ``sessions``: raw ESP/AH state of one LAN host with one gateway (pending flag, SPIs), worth a
    flow each: ``max_flows_per_host`` per host, ``max_flows`` in all, least recently used out
    first, and a host only ever pushes out its own (see ``HostLru``). ``ike_sas``: IKE initiator
    SPI routes, the same way, owned by the LAN host that sent the SPI. ``spis_per_session``: SPIs
    per direction of one session (rekeys), least recently used out first. ``ambiguous_spis``:
    inbound SPIs refused as ambiguous; the WAN side feeds them and no LAN host owns them, so they
    are bounded in all, least recently seen out first (an SPI pushed out is judged again when it
    comes back)."""

    sessions: StateLimit
    ike_sas: StateLimit
    spis_per_session: int = 64
    ambiguous_spis: int = 4096

    @classmethod
    def from_config(cls, limits: Limits) -> IpsecLimits:
        flows = StateLimit.like_flows(limits)
        return cls(sessions=flows, ike_sas=flows)


@dataclass(slots=True, eq=False)
class Session:
    """Raw ESP/AH state of one LAN host with one gateway."""

    lan: bytes
    gateway: bytes
    wan: bytes
    created: float
    last_seen: float
    ike_pending: bool = False  # an SA-creating IKE exchange not yet followed by a new SA
    unmatched_out: int = 0  # new outbound SPIs whose inbound partner is not bound yet
    unmatched_in: int = 0  # inbound SPIs bound before their outbound partner was seen

    @property
    def pending(self) -> bool:
        """This host has a new SA whose inbound SPI the gateway has not sent yet."""
        return self.ike_pending or self.unmatched_out > 0

    def new_sa(self, outbound: bool) -> None:
        """A new SPI in one direction: SAs come in pairs, so it completes a pair whose other half
        came first, or waits for its partner. Either way the negotiation has produced its SA."""
        if outbound:
            if self.unmatched_in:
                self.unmatched_in -= 1
            else:
                self.unmatched_out += 1
        elif self.unmatched_out:
            self.unmatched_out -= 1
        else:
            self.unmatched_in += 1
        self.ike_pending = False
    out_spis: dict[tuple[int, int], float] = field(default_factory=dict)  # (proto, spi) -> last use
    in_spis: dict[tuple[int, int], float] = field(default_factory=dict)
    up: bool = False
    # (outbound?, ESP SPI) -> the engine's cached translation of that SA (natpass.nat.ipfast)
    fast: dict[tuple[bool, int], IpFast] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class IkeSa:
    """An IKE SA seen on UDP 500/4500, keyed by initiator SPI."""

    flow: FlowView | None  # None: two LAN hosts used this SPI (ambiguous)
    lan: bytes
    lan_port: int
    last_seen: float
    natt: bool = False


class IpsecHelper(SwitchedHelper):
    """IKE port preservation and demultiplexing, NAT-T flow timeouts, raw ESP/AH SPI mapping."""

    name = "ipsec"
    ip_protocols = frozenset({PROTO_ESP, PROTO_AH})
    udp_ports = frozenset({IKE_PORT, NATT_PORT})

    def __init__(self, timeouts: Timeouts | None = None, limits: Limits | None = None) -> None:
        super().__init__(timeouts)
        self.limits = IpsecLimits.from_config(limits or Limits())
        # (lan, gateway) -> raw ESP/AH state of that host with that gateway
        self._sessions: HostLru[tuple[bytes, bytes], Session] = HostLru(
            self.limits.sessions, self._session_evicted)
        # (gateway, wan) -> LAN host -> session: the candidates for a new inbound SPI
        self._by_gateway: dict[tuple[bytes, bytes], dict[bytes, Session]] = {}
        self._in: dict[tuple[bytes, bytes, int, int], Session] = {}  # (gateway, wan, proto, spi)
        self._poisoned: dict[tuple[bytes, bytes, int, int], float] = {}
        # (gateway, wan, initiator SPI) -> IKE SA; id(flow) -> its keys (cleared with the flow)
        self._ike: HostLru[tuple[bytes, bytes, bytes], IkeSa] = HostLru(
            self.limits.ike_sas, self._ike_evicted)
        self._ike_by_flow: dict[int, set[tuple[bytes, bytes, bytes]]] = {}
        self._natt_flows: dict[int, FlowView] = {}
        # gateway -> LAN host -> NAT-T flows: a NAT-T flow stays released from per-packet calls
        # only while its host is the only one with NAT-T flows to that gateway
        self._natt_hosts: dict[bytes, dict[bytes, int]] = {}
        self.esp_packets = 0  # raw ESP/AH forwarded: the traffic that needs the switch
        self.ah_packets = 0

    # ------------------------------------------------------------------ switch, timers, status

    def reconfigure(self, config: NatConfig, now: float) -> None:
        super().reconfigure(config, now)
        self.limits = IpsecLimits.from_config(config.limits)
        self._sessions.set_limit(self.limits.sessions, now)
        self._ike.set_limit(self.limits.ike_sas, now)

    def tear_down(self, now: float) -> int:
        torn = len(self._sessions)
        for sess in self._sessions.values():
            self._end(sess, now, "switched-off")
        self._poisoned.clear()
        self._ike.clear()
        self._ike_by_flow.clear()
        return torn

    def _session_evicted(self, key: tuple[bytes, bytes], sess: Session, now: float) -> None:
        self._count("ipsec:sessions-evicted")
        self._end(sess, now, "evicted")

    def _ike_evicted(self, key: tuple[bytes, bytes, bytes], sa: IkeSa, now: float) -> None:
        self._count("ipsec:ike-sas-evicted")
        self._unindex_ike(key, sa)

    def _unindex_ike(self, key: tuple[bytes, bytes, bytes], sa: IkeSa) -> None:
        if sa.flow is not None:
            keys = self._ike_by_flow.get(id(sa.flow))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._ike_by_flow[id(sa.flow)]

    def tick(self, now: float) -> None:
        esp = self.timeouts.esp
        for sess in self._sessions.values():
            if sess.fast:
                self._fold(sess)
            expired = False
            for spis in (sess.out_spis, sess.in_spis):
                for key in [k for k, t in spis.items() if now - t > esp]:
                    del spis[key]
                    expired = True
                    if spis is sess.in_spis:
                        self._in.pop((sess.gateway, sess.wan, key[0], key[1]), None)
            if expired and sess.fast:
                self._prune_fast(sess)
            if now - sess.last_seen > esp:
                self._end(sess, now, "timeout")
        for pkey in [k for k, t in self._poisoned.items() if now - t > esp]:
            del self._poisoned[pkey]
        idle = max(self.timeouts.udp, self.timeouts.udp_natt)
        for ikey, sa in self._ike.items():
            if now - sa.last_seen > idle:
                self._ike.pop(ikey)
                self._unindex_ike(ikey, sa)

    # ------------------------------------------------------------------ the engine's fast path

    def _fast(self, sess: Session, from_lan: bool, spi: int, src: bytes, dst: bytes,
              new_addr: bytes, now: float) -> None:
        """Let the engine translate this SA's later packets this way itself (natpass.nat.ipfast)."""
        e = sess.fast.get((from_lan, spi))
        if e is None or not e.live:
            sess.fast[(from_lan, spi)] = need_ctx(self.ctx).ip_fast_path(
                PROTO_ESP, from_lan, src, dst, spi, new_addr, None, now)

    def _fold(self, sess: Session) -> None:
        """Bring what the engine's fast path saw of this session's SAs into its state: packet
        counts, the SAs' and the session's last use (idle timeouts, least recently used order)."""
        latest = sess.last_seen
        for (from_lan, spi), e in list(sess.fast.items()):
            self.esp_packets += e.take_packets()
            spis = sess.out_spis if from_lan else sess.in_spis
            seen = spis.get((PROTO_ESP, spi))
            if seen is not None and e.last > seen:
                del spis[(PROTO_ESP, spi)]
                spis[(PROTO_ESP, spi)] = e.last
            if e.last > latest:
                latest = e.last
            if not e.live:
                del sess.fast[(from_lan, spi)]
        if latest > sess.last_seen:
            if latest - sess.last_seen >= LRU_GRANULARITY:
                self._sessions.touch((sess.lan, sess.gateway), sess.lan, latest)
            sess.last_seen = latest

    def _fold_all(self) -> None:
        for sess in self._sessions.values():
            if sess.fast:
                self._fold(sess)

    def _prune_fast(self, sess: Session, every: bool = False) -> None:
        """Take SAs the session no longer holds (or, with ``every``, all) off the fast path."""
        self._fold(sess)
        for (from_lan, spi), e in list(sess.fast.items()):
            spis = sess.out_spis if from_lan else sess.in_spis
            if every or (PROTO_ESP, spi) not in spis:
                if self.ctx is not None:
                    self.ctx.ip_fast_remove(e)
                del sess.fast[(from_lan, spi)]

    def _end(self, sess: Session, now: float, why: str) -> None:
        if sess.fast:
            self._prune_fast(sess, every=True)
        key = (sess.lan, sess.gateway)
        if self._sessions.get(key) is sess:
            self._sessions.pop(key)
        gw = self._by_gateway.get((sess.gateway, sess.wan))
        if gw is not None and gw.get(sess.lan) is sess:
            del gw[sess.lan]
            if not gw:
                del self._by_gateway[(sess.gateway, sess.wan)]
        for proto, spi in sess.in_spis:
            ikey = (sess.gateway, sess.wan, proto, spi)
            if self._in.get(ikey) is sess:
                del self._in[ikey]
        if sess.up:
            self._count("ipsec:tunnels-down")
            if self.ctx is not None:
                self.ctx.log("tunnel-down", proto="ipsec", lan=ip_text(sess.lan),
                             remote=ip_text(sess.gateway), wan=ip_text(sess.wan), reason=why,
                             duration=now - sess.created)

    def stats(self) -> dict[str, int]:
        self._fold_all()
        out = dict(self._counters)
        out["sessions"] = len(self._sessions)
        out["tunnels"] = sum(1 for s in self._sessions.values() if s.up)
        out["inbound_spis"] = len(self._in)
        out["ambiguous_spis"] = len(self._poisoned)
        out["ike_sas"] = len(self._ike)
        out["sessions_evicted"] = self._sessions.evicted
        out["ike_sas_evicted"] = self._ike.evicted
        out["natt_flows"] = len(self._natt_flows)
        # AH cannot survive address translation: diagnosis reads this to explain the failure.
        out["ah_translated"] = self._counters.get("ipsec:ah-translated", 0)
        out["esp_packets"] = self.esp_packets
        out["ah_packets"] = self.ah_packets
        return out

    def tunnels(self) -> list[dict[str, Any]]:
        self._fold_all()
        out: list[dict[str, Any]] = []
        for s in self._sessions.values():
            protos = {p for p, _ in s.out_spis} | {p for p, _ in s.in_spis}
            out.append({"proto": "ipsec", "mode": "ah" if protos == {PROTO_AH} else "esp",
                        "lan": ip_text(s.lan), "remote": ip_text(s.gateway), "wan": ip_text(s.wan),
                        "spis_out": [f"{spi:#010x}" for _, spi in s.out_spis],
                        "spis_in": [f"{spi:#010x}" for _, spi in s.in_spis],
                        "state": "up" if s.up else "negotiating", "since": s.created,
                        "last_seen": s.last_seen, "ah_breaks": PROTO_AH in protos})
        for f in self._natt_flows.values():
            out.append({"proto": "ipsec", "mode": "nat-t", "lan": ip_text(f.lan_addr),
                        "lan_port": f.lan_port, "remote": ip_text(f.remote_addr),
                        "wan": ip_text(f.wan_addr), "wan_port": f.wan_port, "state": "up"})
        return out

    # ------------------------------------------------------------------ restart

    def snapshot(self, now: float) -> dict[str, Any]:
        """Raw ESP/AH sessions with their SPI bindings and pending state, refused (ambiguous)
        SPIs, the IKE SA routes with their flows and the NAT-T flows; times relative to
        ``now``."""
        def t(x: float) -> float:
            return round(x - now, 3)

        self._fold_all()
        sessions = [[s.lan.hex(), s.gateway.hex(), s.wan.hex(), t(s.created), t(s.last_seen),
                     s.ike_pending, s.unmatched_out, s.unmatched_in,
                     [[p, spi, t(x)] for (p, spi), x in s.out_spis.items()],
                     [[p, spi, t(x)] for (p, spi), x in s.in_spis.items()], s.up]
                    for s in self._sessions.values()]
        poisoned = [[g.hex(), w.hex(), p, spi, t(x)] for (g, w, p, spi), x in self._poisoned.items()]
        ike = [[g.hex(), w.hex(), spi.hex(), sa.lan.hex(), sa.lan_port,
                None if sa.flow is None else sa.flow.remote_port, t(sa.last_seen), sa.natt]
               for (g, w, spi), sa in self._ike.items()]
        natt = [[f.lan_addr.hex(), f.lan_port, f.remote_addr.hex(), f.remote_port]
                for f in self._natt_flows.values()]
        return {"sessions": sessions, "poisoned": poisoned, "ike": ike, "natt": natt}

    def restore(self, data: dict[str, Any], now: float) -> int:
        ctx = need_ctx(self.ctx)
        n = 0
        for (lan_h, gw_h, wan_h, created, seen, pending, u_out, u_in, outs, ins,
             up) in data.get("sessions", []):
            lan, gateway, wan = bytes.fromhex(lan_h), bytes.fromhex(gw_h), bytes.fromhex(wan_h)
            if (not ctx.is_lan(lan) or ctx.wan_address_for(lan) != wan
                    or (lan, gateway) in self._sessions):
                self._count("ipsec:restore-skipped")
                continue
            sess = Session(lan, gateway, wan, now + float(created), now + float(seen),
                           bool(pending), int(u_out), int(u_in), up=bool(up))
            sess.out_spis = {(int(p), int(spi)): now + float(x) for p, spi, x in outs}
            for p, spi, x in ins:
                in_key = (gateway, wan, int(p), int(spi))
                if in_key not in self._in:
                    sess.in_spis[(int(p), int(spi))] = now + float(x)
                    self._in[in_key] = sess
            self._sessions.add((lan, gateway), sess, sess.last_seen)
            self._by_gateway.setdefault((gateway, wan), {})[lan] = sess
            n += 1
        for g, w, p, spi, x in data.get("poisoned", []):
            self._poisoned[(bytes.fromhex(g), bytes.fromhex(w), int(p), int(spi))] = now + float(x)
        for g, w, spi_h, lan_h, lan_port, rport, seen, natt in data.get("ike", []):
            gateway, wan, lan = bytes.fromhex(g), bytes.fromhex(w), bytes.fromhex(lan_h)
            flow = None
            if rport is not None:
                flow = ctx.find_flow(PROTO_UDP, lan, int(lan_port), gateway, int(rport))
                if flow is None or flow.wan_addr != wan:
                    self._count("ipsec:restore-skipped")
                    continue
            key = (gateway, wan, bytes.fromhex(spi_h))
            self._ike.add(key, IkeSa(flow, lan, int(lan_port), now + float(seen), bool(natt)),
                          now + float(seen))
            if flow is not None:
                self._ike_by_flow.setdefault(id(flow), set()).add(key)
            n += 1
        for lan_h, lport, remote_h, rport in data.get("natt", []):
            lan, remote = bytes.fromhex(lan_h), bytes.fromhex(remote_h)
            flow = ctx.find_flow(PROTO_UDP, lan, int(lport), remote, int(rport))
            if flow is None or id(flow) in self._natt_flows:
                self._count("ipsec:restore-skipped")
                continue
            self._natt_flows[id(flow)] = flow
            hosts = self._natt_hosts.setdefault(remote, {})
            hosts[lan] = hosts.get(lan, 0) + 1
            n += 1
        for f in self._natt_flows.values():
            if len(self._natt_hosts.get(f.remote_addr, ())) == 1:
                ctx.fast_path(f)  # as on_flow_packet leaves it: one host, nothing per packet
        return n

    # ------------------------------------------------------------------ IKE / NAT-T (UDP)

    @staticmethod
    def _server_port(flow: FlowView) -> int:
        return flow.remote_port if flow.outbound else flow.lan_port

    def choose_wan_port(self, proto: int, lan_addr: bytes, lan_port: int, remote_addr: bytes,
                        remote_port: int, wan_addr: bytes) -> int | None:
        if self.enabled and proto == PROTO_UDP and lan_port in (IKE_PORT, NATT_PORT):
            return lan_port
        return None

    def _ike_spi(self, buf: bytearray, ihl: int, port_4500: bool) -> tuple[bytes, int] | None:
        """(initiator SPI, exchange type) of an IKE message in this UDP datagram, if it is one."""
        total = u16(buf, 2)
        pay = ihl + 8
        if port_4500:
            if total - pay < 4 + IKE_HEADER_LEN or bytes(buf[pay:pay + 4]) != NON_ESP_MARKER:
                return None
            pay += 4
        elif total - pay < IKE_HEADER_LEN:
            return None
        spi = bytes(buf[pay:pay + 8])
        if spi == b"\x00" * 8:
            return None
        return spi, buf[pay + IKE_OFF_EXCHANGE]

    def inbound_lookup(self, proto: int, buf: bytearray, ihl: int, now: float) -> FlowView | None:
        if not self.enabled or proto != PROTO_UDP:
            return None
        dport = u16(buf, ihl + 2)
        if dport not in (IKE_PORT, NATT_PORT):
            return None
        ike = self._ike_spi(buf, ihl, dport == NATT_PORT)
        if ike is None:
            return None
        sa = self._ike.get((src_of(buf), dst_of(buf), ike[0]))
        if sa is None or sa.flow is None:
            return None
        if sa.flow.wan_port != dport:
            self._count("ipsec:ike-demux-by-spi")
        return sa.flow

    def on_flow_packet(self, flow: FlowView, buf: bytearray, ihl: int, from_lan: bool,
                       now: float) -> str | None:
        if flow.proto != PROTO_UDP:
            return None
        port = self._server_port(flow)
        natt = NATT_PORT in (flow.remote_port, flow.lan_port)
        if not self.enabled:
            # IKE and NAT-T are ordinary UDP when the switch is off. strict closes UDP 500 only:
            # 4500 carries NAT-T, which needs no passthrough and must keep working.
            if self.strict and port == IKE_PORT and not natt:
                return V.strict_blocked(self.name)
            # Nothing to do per packet (inbound_lookup answers None too) until the switch is
            # flipped, which makes the engine call again.
            need_ctx(self.ctx).fast_path(flow)
            return None
        if natt and id(flow) not in self._natt_flows:
            self._natt_flows[id(flow)] = flow
            self._count("ipsec:natt-flows")
            hosts = self._natt_hosts.setdefault(flow.remote_addr, {})
            hosts[flow.lan_addr] = hosts.get(flow.lan_addr, 0) + 1
            if len(hosts) == 2:
                # a second host's NAT-T with this gateway: IKE that the gateway sends to the
                # first host's WAN port may be this one's, so inbound_lookup is needed again
                ctx = need_ctx(self.ctx)
                for f in self._natt_flows.values():
                    if f.remote_addr == flow.remote_addr:
                        ctx.fast_path(f, False)
        why = self._ike_packet(flow, buf, ihl, from_lan, natt, now)
        if natt and why is None and len(self._natt_hosts.get(flow.remote_addr, ())) == 1:
            # ESP-in-UDP needs nothing per packet once the flow exists and the move of the IKE SA
            # to 4500 was seen on this first packet: the flow is released to the fast path.
            need_ctx(self.ctx).fast_path(flow)
        return why

    def _ike_packet(self, flow: FlowView, buf: bytearray, ihl: int, from_lan: bool, natt: bool,
                    now: float) -> str | None:
        """Index the IKE SA of an IKE message (what LAN hosts send), follow its move to 4500."""
        ike = self._ike_spi(buf, ihl, natt)
        if ike is None:
            return None
        spi, exchange = ike
        key = (flow.remote_addr, flow.wan_addr, spi)
        sa = self._ike.get(key)
        # Only what LAN hosts send is indexed: a WAN peer can neither fill nor spoil the index.
        if sa is None:
            if from_lan:
                self._ike.add(key, IkeSa(flow, flow.lan_addr, flow.lan_port, now, natt), now)
                self._ike_by_flow.setdefault(id(flow), set()).add(key)
        elif sa.lan != flow.lan_addr:
            if from_lan:
                if sa.flow is not None:
                    self._count("ipsec:ike-spi-collision")
                    self._unindex_ike(key, sa)
                sa.flow = None  # two LAN hosts use this SPI: it routes nothing any more
                sa.last_seen = now
        else:
            if natt and not sa.natt:
                self._count("ipsec:natt-switch")
                if self.ctx is not None:
                    self.ctx.log("natt-switch", proto="ipsec", lan=ip_text(flow.lan_addr),
                                 remote=ip_text(flow.remote_addr))
                sess = self._sessions.get((flow.lan_addr, flow.remote_addr))
                if sess is not None:
                    sess.ike_pending = False  # ESP now travels in UDP 4500, not raw
                    sess.unmatched_out = 0
            if sa.flow is not None and sa.flow is not flow:
                self._unindex_ike(key, sa)
                sa.flow = flow
                sa.lan_port = flow.lan_port
                self._ike_by_flow.setdefault(id(flow), set()).add(key)
            sa.natt = natt
            sa.last_seen = now
            self._ike.touch(key, sa.lan, now)
        if not natt and exchange in SA_CREATING_EXCHANGES:
            sess = self._session(flow.lan_addr, flow.remote_addr, flow.wan_addr, now)
            sess.ike_pending = True
        return None

    def on_flow_closed(self, flow: FlowView, now: float) -> None:
        if self._natt_flows.pop(id(flow), None) is not None:
            hosts = self._natt_hosts.get(flow.remote_addr)
            if hosts is not None:
                n = hosts.get(flow.lan_addr, 0) - 1
                if n > 0:
                    hosts[flow.lan_addr] = n
                else:
                    hosts.pop(flow.lan_addr, None)
                    if not hosts:
                        del self._natt_hosts[flow.remote_addr]
        for key in self._ike_by_flow.pop(id(flow), ()):
            sa = self._ike.get(key)
            if sa is not None and sa.flow is flow:
                self._ike.pop(key)

    # ------------------------------------------------------------------ raw ESP / AH

    def _session(self, lan: bytes, gateway: bytes, wan: bytes, now: float) -> Session:
        key = (lan, gateway)
        sess = self._sessions.get(key)
        if sess is None:
            sess = Session(lan, gateway, wan, now, now)
            self._sessions.add(key, sess, now)
            self._by_gateway.setdefault((gateway, wan), {})[lan] = sess
        else:
            self._sessions.touch(key, lan, now)
        sess.last_seen = now
        return sess

    @staticmethod
    def _use_spi(spis: dict[tuple[int, int], float], key: tuple[int, int], now: float) -> bool:
        """Refresh an SPI of a session (least recently used last); True when it is new."""
        seen = spis.get(key)
        if seen is not None and now - seen < LRU_GRANULARITY:
            return False
        if seen is not None:
            del spis[key]
        spis[key] = now
        return seen is None

    def on_ip_packet(self, buf: bytearray, ihl: int, from_lan: bool, now: float) -> int | str:
        proto = buf[9]
        if not self.enabled:
            return V.passthrough_disabled(self.name)
        ctx = need_ctx(self.ctx)
        off = ihl + (AH_SPI_OFFSET if proto == PROTO_AH else ESP_SPI_OFFSET)
        if u16(buf, 2) < off + 8:  # SPI and sequence number at least
            return V.MALFORMED
        spi = u32(buf, off)
        if spi == 0:  # RFC 4303 2.1: SPI 0 is reserved for local use, never sent
            return V.MALFORMED
        if from_lan:
            lan, gateway = src_of(buf), dst_of(buf)
            wan = ctx.wan_address_for(lan)
            sess = self._session(lan, gateway, wan, now)
            if self._use_spi(sess.out_spis, (proto, spi), now):
                sess.new_sa(outbound=True)
                self._count("ipsec:new-outbound-spi")
                if len(sess.out_spis) > self.limits.spis_per_session:
                    cap(sess.out_spis, self.limits.spis_per_session)
                    self._prune_fast(sess)
            set_ip_addr(buf, OFF_SRC, wan)
            self._forwarded(proto)
            if proto == PROTO_ESP:
                self._fast(sess, True, spi, lan, gateway, wan, now)
            return V.TO_WAN
        gateway, wan = src_of(buf), dst_of(buf)
        key = (gateway, wan, proto, spi)
        sess_in = self._in.get(key)
        if sess_in is None:
            if key in self._poisoned:
                del self._poisoned[key]
                self._poisoned[key] = now  # still in use: keep refusing it (and keep it longest)
                self._count("ipsec:ambiguous-spi")
                return "ipsec:ambiguous-spi"
            found = self._bind_inbound(key, now)
            if isinstance(found, str):
                return found
            sess_in = found
        if now - sess_in.last_seen >= LRU_GRANULARITY:
            self._sessions.touch((sess_in.lan, sess_in.gateway), sess_in.lan, now)
        sess_in.last_seen = now
        self._use_spi(sess_in.in_spis, (proto, spi), now)
        set_ip_addr(buf, OFF_DST, sess_in.lan)
        self._forwarded(proto)
        if proto == PROTO_ESP:
            self._fast(sess_in, False, spi, gateway, wan, sess_in.lan, now)
        return V.TO_LAN

    def _forwarded(self, proto: int) -> None:
        if proto == PROTO_AH:
            self.ah_packets += 1
            self._count("ipsec:ah-translated")
        else:
            self.esp_packets += 1

    def _bind_inbound(self, key: tuple[bytes, bytes, int, int], now: float) -> Session | str:
        """Bind a new inbound SPI to the one LAN host it can belong to, or refuse to guess."""
        gateway, wan, proto, spi = key
        cands = list(self._by_gateway.get((gateway, wan), {}).values())
        if not cands:
            return V.NO_MAPPING
        waiting = [s for s in cands if s.pending]
        if len(waiting) == 1:
            sess = waiting[0]
        elif not waiting and len(cands) == 1:
            sess = cands[0]
        else:
            self._poisoned[key] = now
            cap(self._poisoned, self.limits.ambiguous_spis)
            self._count("ipsec:ambiguous-spi")
            if self.ctx is not None:
                self.ctx.log("ambiguous-spi", proto="ipsec", remote=ip_text(gateway), spi=f"{spi:#010x}",
                             hosts=[ip_text(s.lan) for s in (waiting or cands)])
            return "ipsec:ambiguous-spi"
        self._in[key] = sess
        sess.in_spis[(proto, spi)] = now
        while len(sess.in_spis) > self.limits.spis_per_session:
            old = next(iter(sess.in_spis))
            del sess.in_spis[old]
            self._in.pop((gateway, wan, old[0], old[1]), None)
            if (False, old[1]) in sess.fast:
                self._prune_fast(sess)
        sess.new_sa(outbound=False)
        self._count("ipsec:inbound-spi-bound")
        if not sess.up:
            sess.up = True
            self._count("ipsec:tunnels-up")
            if self.ctx is not None:
                self.ctx.log("tunnel-up", proto="ipsec", lan=ip_text(sess.lan),
                             remote=ip_text(gateway), wan=ip_text(wan), spi_in=f"{spi:#010x}")
        return sess
