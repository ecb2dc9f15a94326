"""One pass over a capture: per-flow summaries of every VPN attempt, in bounded memory.

The analyzer keeps a small record per flow and per VPN session (counters, the first frame of each
handshake step, a capped list of evidence frames) and never the packets themselves, so a capture
of millions of packets is read in constant memory per flow. ``finish()`` turns the records into
protocol reports; ``natpass.diagnose.rules`` turns those into findings.

"Client" is always the initiator: the TCP SYN sender, the IKE initiator (I flag / the sender of an
exchange with a zero responder SPI), the WireGuard initiation sender, the OpenVPN hard-reset-client
sender. So the same logic holds whether the capture was taken on the client or on a router's WAN.
"""

from __future__ import annotations

from natpass.diagnose import detect as d
from natpass.diagnose import tls
from natpass.diagnose.model import MAX_EVIDENCE, CaptureInfo
from natpass.diagnose.network import MAX_HOSTS, MAX_TTLS, HostFact, IcmpHop, Opened
from natpass.diagnose.session import (
    FAST_ESP_IN_UDP,
    FAST_GRE,
    FAST_OTHER,
    FAST_OVPN,
    FAST_RAW,
    FAST_WG,
    PROTO_AH,
    PROTO_ESP,
    PROTO_GRE,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    DtlsSeen,
    Flow,
    Observation,
    Session,
    SessionLimit,
    TlsSeen,
)
from natpass.diagnose.tunnels import Tunnels
from natpass.packets.ike import IKE_PORT, NATT_PORT
from natpass.packets.ipproto import IPV6_EXTENSION_HEADERS, IPV6_FRAGMENT
from natpass.packets.l2tp import L2TP_PORT
from natpass.packets.pptp import PPTP_PORT

ICMP_TIME_EXCEEDED = b"\x0b"  # RFC 792 type 11
ICMPV6_TIME_EXCEEDED = b"\x03"  # RFC 4443 3.3
TCP_SYN = 0x02
TCP_ACK = 0x10
CLASSIFY_PACKETS = 8  # a flow not recognised within its first packets is ordinary traffic
MAX_FLOWS = 200_000  # beyond this, new unrecognised flows are only counted (bounded memory)
MAX_SESSIONS = 50_000  # VPN attempts tracked; beyond this new ones are counted, not followed
DUPLICATE_WINDOW = 0.001  # identical IP packets this close are one packet captured twice
ZERO4 = b"\0\0\0\0"
IPV6_HEADER = 40  # RFC 8200 section 3
STATIC_MIN_PACKETS = 4  # lengths needed before a length pattern means anything (1/16 chance each)
MAX_TLS = 4096  # TLS/DTLS handshakes followed for SSL-VPN hints


def _key(src: bytes, sp: int, dst: bytes, dp: int) -> bytes:
    """The fast-path key: the IPv4 source and destination then the two ports, as on the wire."""
    return src + dst + bytes(((sp >> 8) & 0xFF, sp & 0xFF, (dp >> 8) & 0xFF, dp & 0xFF))


class Analyzer:
    """Feed IPv4 packets in capture order with :meth:`feed`; read the result with :meth:`finish`."""

    def __init__(self, name: str = "") -> None:
        self.info = CaptureInfo(file=name)
        self.t0: float | None = None
        self.flows: dict[tuple[int, bytes, int, bytes, int], Flow] = {}
        self.sessions: list[Session] = []
        self.tun = Tunnels(self)
        self.stun: list[tuple[int, float, bytes, int, str, int]] = []  # frame, t, seen addr/port, mapped
        self._last_ip = b""
        self._last_ts = -1.0
        self.hosts: dict[bytes, HostFact] = {}
        self.tls: dict[tuple[bytes, int, bytes, int], TlsSeen] = {}
        self.dtls: dict[tuple[bytes, int, bytes, int], DtlsSeen] = {}
        self.hops: list[IcmpHop] = []
        # fast path: raw key -> (session or None for ordinary traffic, outbound, steady kind)
        self.fast: dict[int, dict[bytes, tuple[Session | None, bool, int]]] = {
            PROTO_UDP: {}, PROTO_TCP: {}, PROTO_ESP: {}, PROTO_AH: {}, PROTO_GRE: {}}
        self._fast_get = {proto: table.get for proto, table in self.fast.items()}.get
        self._tmax = 0.0
        self._fed = 0  # IPv4 packets given to feed (ipv4 = fed - malformed - duplicates)
        self._bad6 = 0  # IPv6 packets counted malformed or duplicate
        self.untracked = 0  # packets of sessions beyond MAX_SESSIONS

    def go_fast(self, proto: int, src: bytes, sp: int, dst: bytes, dp: int, s: Session | None,
                 kind: int) -> None:
        """Count this flow's packets by lookup from now on (both directions)."""
        table = self.fast[proto]
        if len(table) >= 2 * MAX_FLOWS:
            return
        raw_ip = proto in (PROTO_ESP, PROTO_AH, PROTO_GRE)
        if raw_ip:
            k1, k2 = src + dst, dst + src
        else:
            k1, k2 = _key(src, sp, dst, dp), _key(dst, dp, src, sp)
        out1 = s is not None and src == s.client and (sp == s.cport or raw_ip)
        table[k1] = (s, out1, kind)
        table[k2] = (s, not out1 if s is not None else False, kind)

    # ------------------------------------------------------------------ packets
    def skip(self) -> None:
        """Count a frame that carried no IP packet."""
        self.info.other += 1

    def feed(self, frame: int, ts: float, ip: bytes) -> None:
        """One IPv4 packet (frame number, capture time, bytes from the IP header on)."""
        self._fed += 1
        t0 = self.t0
        if t0 is None:
            t0 = self.t0 = ts
            self.info.first_time = ts
        t = ts - t0
        if t > self._tmax:
            self._tmax = t
        n = len(ip)
        if n < 20 or ip[0] >> 4 != 4:
            self.info.malformed += 1
            return
        hl = (ip[0] & 15) << 2
        total = (ip[2] << 8) | ip[3]
        if total < hl or hl < 20:
            self.info.malformed += 1
            return
        end = total if total <= n else n
        if end < n:
            ip = ip[:end]  # drop link-layer padding so that duplicates compare equal
        if ip == self._last_ip and 0 <= ts - self._last_ts < DUPLICATE_WINDOW:
            self.info.duplicates += 1
            return
        self._last_ip = ip
        self._last_ts = ts
        proto = ip[9]
        table = self._fast_get(proto)
        if table is not None and not (ip[6] & 0x3F or ip[7]):
            if proto == PROTO_UDP or proto == PROTO_TCP:
                e = table(ip[12:24] if hl == 20 else ip[12:20] + ip[hl:hl + 4])
            else:
                e = table(ip[12:20])
            if e is not None:
                s, outbound, kind = e
                if s is None:
                    return
                if kind == FAST_RAW:
                    s.count(outbound, t)
                    return
                if kind == FAST_GRE:
                    s.count_gre(outbound, t)
                    return
                if end > hl + 8:
                    b0 = ip[hl + 8]
                    if (kind == FAST_WG and b0 == 4 or kind == FAST_OVPN and b0 >> 3 in d.OVPN_DATA
                            or kind == FAST_ESP_IN_UDP and end > hl + 9 and ip[hl + 8:hl + 12] != ZERO4):
                        s.count(outbound, t)
                        return
        try:
            self._dispatch(frame, t, ip, hl, end, proto)
        except SessionLimit:
            self.untracked += 1

    def _dispatch(self, frame: int, t: float, ip: bytes, hl: int, end: int, proto: int) -> None:
        """The slow path: classify and follow the packet's flow and session."""
        src = ip[12:16]
        dst = ip[16:20]
        frag = ((ip[6] & 0x1F) << 8) | ip[7]
        if frag:  # a non-first fragment: count it for the flow its first fragment opened
            key = (src, dst, (ip[4] << 8) | ip[5], proto)
            fl = self.tun.frags.get(key)
            if fl is not None:
                self.tun.fragment(frame, t, fl, src)
            return
        p = ip[hl:end]
        more = bool(ip[6] & 0x20)
        if more and proto == PROTO_UDP and len(p) >= 8:
            if len(self.tun.frags) < 4096:
                sp = (p[0] << 8) | p[1]
                dp = (p[2] << 8) | p[3]
                self.tun.frags[(src, dst, (ip[4] << 8) | ip[5], proto)] = (proto, src, sp, dst, dp)
        self._transport(frame, t, src, dst, proto, p, more, ip[8])

    def feed6(self, frame: int, ts: float, ip: bytes) -> None:
        """One IPv6 packet (RFC 8200): the same recognition as IPv4, by the slow path."""
        t0 = self.t0
        if t0 is None:
            t0 = self.t0 = ts
            self.info.first_time = ts
        t = ts - t0
        if t > self._tmax:
            self._tmax = t
        self.info.ipv6 += 1
        n = len(ip)
        if n < IPV6_HEADER or ip[0] >> 4 != 6:
            self.info.malformed += 1
            self._bad6 += 1
            return
        end = IPV6_HEADER + ((ip[4] << 8) | ip[5])
        if end > n:
            end = n  # cut by the snap length: read what is there
        nxt = ip[6]
        pos = IPV6_HEADER
        more = False
        while nxt in IPV6_EXTENSION_HEADERS:
            if end - pos < 8:
                self.info.malformed += 1
                self._bad6 += 1
                return
            if nxt == IPV6_FRAGMENT:
                if ((ip[pos + 2] << 8) | ip[pos + 3]) & 0xFFF8:
                    return  # a non-first fragment: no transport header to read
                more = bool(ip[pos + 3] & 1)
                hlen = 8
            else:
                hlen = (ip[pos + 1] + 1) * 8
            nxt = ip[pos]
            pos += hlen
        if pos > end:
            self.info.malformed += 1
            self._bad6 += 1
            return
        if ip == self._last_ip and 0 <= ts - self._last_ts < DUPLICATE_WINDOW:
            self.info.duplicates += 1
            self._bad6 += 1
            return
        self._last_ip = ip
        self._last_ts = ts
        try:
            self._transport(frame, t, ip[8:24], ip[24:40], nxt, ip[pos:end], more, ip[7])
        except SessionLimit:
            self.untracked += 1

    def _transport(self, frame: int, t: float, src: bytes, dst: bytes, proto: int, p: bytes,
                   more_fragments: bool, ttl: int) -> None:
        """Follow one transport payload ``p`` of IP protocol ``proto`` (IPv4 or IPv6 addresses)."""
        h = self.hosts.get(src)
        if h is None and len(self.hosts) < MAX_HOSTS:
            h = self.hosts[src] = HostFact(frame, t)
        if h is not None:
            h.packets += 1
            ttls = h.ttls
            if ttl in ttls:
                ttls[ttl] += 1
            elif len(ttls) < MAX_TTLS:
                ttls[ttl] = 1
        if proto == PROTO_UDP:
            if len(p) < 8:
                self.info.malformed += 1
                return
            sp = (p[0] << 8) | p[1]
            dp = (p[2] << 8) | p[3]
            pl = p[8:]
            if sp == NATT_PORT or dp == NATT_PORT or sp == IKE_PORT or dp == IKE_PORT:
                self.tun.ike_port(frame, t, src, sp, dst, dp, pl, more_fragments, ttl)
            elif sp == L2TP_PORT or dp == L2TP_PORT:
                self.tun.l2tp(frame, t, src, sp, dst, dp, pl)
            else:
                self._udp(frame, t, src, sp, dst, dp, pl)
        elif proto == PROTO_TCP:
            if len(p) < 20:
                self.info.malformed += 1
                return
            sp = (p[0] << 8) | p[1]
            dp = (p[2] << 8) | p[3]
            self._tcp(frame, t, src, sp, dst, dp, p[13], p[(p[12] >> 4) * 4:])
        elif proto == PROTO_GRE:
            self.tun.gre(frame, t, src, dst, p)
        elif proto == PROTO_ESP:
            self.tun.raw_ipsec(self.tun.esp, "esp", frame, t, src, dst)
        elif proto == PROTO_AH:
            self.tun.raw_ipsec(self.tun.ah, "ah", frame, t, src, dst)
        elif (proto == PROTO_ICMP and p[:1] == ICMP_TIME_EXCEEDED
              or proto == PROTO_ICMPV6 and p[:1] == ICMPV6_TIME_EXCEEDED):
            if len(self.hops) < MAX_EVIDENCE * 8:
                self.hops.append(IcmpHop(src, frame, t))

    def new_session(self, s: Session, t: float) -> Session:
        if len(self.sessions) >= MAX_SESSIONS:
            raise SessionLimit
        s.first_t = s.last_t = t
        self.sessions.append(s)
        return s

    # ------------------------------------------------------------------ TCP: OpenVPN, TLS, PPTP
    def _tcp(self, frame: int, t: float, src: bytes, sp: int, dst: bytes, dp: int, flags: int,
             pl: bytes) -> None:
        if sp == PPTP_PORT or dp == PPTP_PORT:
            self.tun.pptp(frame, t, src, sp, dst, dp, flags, pl)
            return
        key = (PROTO_TCP, src, sp, dst, dp) if (src, sp) < (dst, dp) else (PROTO_TCP, dst, dp, src, sp)
        fl = self.flows.get(key)
        if fl is None:
            if len(self.flows) >= MAX_FLOWS:
                return
            fl = self.flows[key] = Flow(src, sp, dst, dp, PROTO_TCP, frame, t)
        if flags & TCP_SYN and not flags & TCP_ACK:
            fl.syn_from = (src, sp)
        kind = fl.kind
        if kind == "openvpn":
            s = fl.sess
            assert s is not None
            outbound = src == s.client and sp == s.cport
            s.count(outbound, t)
            if pl:
                rec = d.openvpn_tcp_record(pl)
                pkt = d.openvpn_packet(rec) if rec else None
                if pkt is not None:
                    self._ovpn_step(s, pkt, frame, t, outbound, rec)
            return
        if kind == "openvpn-static":
            if pl:
                self._static_packet(fl, PROTO_TCP, frame, t, src, sp, dst, dp)
            return
        if kind or not pl:
            return
        fl.tries += 1
        if fl.tries > CLASSIFY_PACKETS:
            if not self._by_port(fl, "tcp", frame, t, src, sp, dst, dp):
                fl.kind = "other"
                fl.tent = None
                self.go_fast(PROTO_TCP, src, sp, dst, dp, None, FAST_OTHER)
            return
        self._pending(fl, frame, t, src, sp, ((pl[0] << 8) | pl[1]) if len(pl) >= 2 else 0)
        if pl[0] == tls.TLS_HANDSHAKE:
            self._tls(fl, frame, t, src, sp, pl)
        rec = d.openvpn_tcp_record(pl)
        pkt = d.openvpn_packet(rec) if rec else None
        if pkt is None:
            return
        self._ovpn_classify(fl, pkt, frame, t, src, sp, dst, dp, "tcp", rec)

    # ------------------------------------------------------------------ UDP: WireGuard, OpenVPN, STUN
    def _udp(self, frame: int, t: float, src: bytes, sp: int, dst: bytes, dp: int, pl: bytes) -> None:
        key = (PROTO_UDP, src, sp, dst, dp) if (src, sp) < (dst, dp) else (PROTO_UDP, dst, dp, src, sp)
        fl = self.flows.get(key)
        if fl is None:
            if len(self.flows) >= MAX_FLOWS:
                return
            fl = self.flows[key] = Flow(src, sp, dst, dp, PROTO_UDP, frame, t)
        kind = fl.kind
        if kind == "wireguard":
            s = fl.sess
            assert s is not None
            outbound = src == s.client and sp == s.cport
            s.count(outbound, t)
            wt = d.wireguard_type(pl)
            if wt == d.WG_TRANSPORT:
                first = s.steps.first
                if outbound:
                    if "data-out" not in first:
                        s.steps.mark("data-out", frame, t, "out")
                elif "data-in" not in first:
                    s.steps.mark("data-in", frame, t, "in")
                if "data-out" in first and "data-in" in first:
                    self.go_fast(PROTO_UDP, src, sp, dst, dp, s, FAST_WG)
            elif wt:
                self._wg_step(s, wt, pl, frame, t, outbound)
            return
        if kind == "openvpn":
            s = fl.sess
            assert s is not None
            outbound = src == s.client and sp == s.cport
            s.count(outbound, t)
            pkt = d.openvpn_packet(pl)
            if pkt is not None:
                self._ovpn_step(s, pkt, frame, t, outbound, pl)
                if "data-out" in s.steps.first and "data-in" in s.steps.first:
                    self.go_fast(PROTO_UDP, src, sp, dst, dp, s, FAST_OVPN)
            return
        if len(pl) >= 20 and pl[4:8] == d.STUN_MAGIC:
            m = d.stun_mapped(pl)
            if isinstance(m, tuple) and len(self.stun) < MAX_EVIDENCE * 4:
                self.stun.append((frame, t, dst, dp, m[0], m[1]))
            if m is not False:
                return
        if kind == "other":
            return
        if kind == "ike":
            self.tun.ike_port(frame, t, src, sp, dst, dp, pl, False, 0, pl[:4] == ZERO4)
            return
        if kind == "openvpn-static":
            self._static_packet(fl, PROTO_UDP, frame, t, src, sp, dst, dp)
            return
        fl.tries += 1
        if fl.tries > CLASSIFY_PACKETS:
            if not self._by_port(fl, "udp", frame, t, src, sp, dst, dp):
                fl.kind = "other"
                fl.tent = None
                self.go_fast(PROTO_UDP, src, sp, dst, dp, None, FAST_OTHER)
            return
        if d.ikev2_sa_init(pl) or pl[:4] == ZERO4 and d.ikev2_sa_init(pl[4:]):
            fl.kind = "ike"
            fl.tent = None
            self.tun.ike_port(frame, t, src, sp, dst, dp, pl, False, 0, pl[:4] == ZERO4)
            return
        self._pending(fl, frame, t, src, sp, len(pl))
        if tls.is_dtls(pl):
            self._dtls(fl, frame, t, src)
        wt = d.wireguard_type(pl)
        if wt:
            self._wg_classify(fl, wt, pl, frame, t, src, sp, dst, dp)
            if fl.kind:
                return
        pkt = d.openvpn_packet(pl)
        if pkt is not None:
            self._ovpn_classify(fl, pkt, frame, t, src, sp, dst, dp, "udp", pl)

    @staticmethod
    def _pending(fl: Flow, frame: int, t: float, src: bytes, sp: int, n: int = 0) -> None:
        """Remember a packet seen before the flow was recognised, to count it once it is."""
        if fl.tent is None:
            fl.tent = {}
        pend = fl.tent.setdefault("pending", [])
        pend.append((frame, t, src, sp, n))  # type: ignore[attr-defined]

    @staticmethod
    def _count_pending(fl: Flow, s: Session, frame: int) -> None:
        pend = fl.tent.get("pending", []) if fl.tent else []
        for f, t, src, sp, _n in pend:  # type: ignore[attr-defined]
            if f != frame:
                s.count(src == s.client and sp == s.cport, t)
                if t < s.first_t:
                    s.first_t = t

    def _wg_classify(self, fl: Flow, wt: int, pl: bytes, frame: int, t: float, src: bytes, sp: int,
                     dst: bytes, dp: int) -> None:
        if wt == d.WG_INITIATION:
            client, cport, server, sport = src, sp, dst, dp
        elif wt in (d.WG_RESPONSE, d.WG_COOKIE):
            client, cport, server, sport = dst, dp, src, sp
        else:
            # Transport data only (the handshake happened before the capture): wait for a few
            # packets with the same receiver index before believing it.
            tent = fl.tent if fl.tent is not None else {}
            fl.tent = tent
            idx = (src, pl[4:8])
            seen = int(tent.get(idx, 0)) + 1  # type: ignore[call-overload]
            tent[idx] = seen
            if seen < 3:
                return
            client, cport, server, sport = src, sp, dst, dp
            if d.address_kind(dst) == "private" and d.address_kind(src) != "private":
                client, cport, server, sport = dst, dp, src, sp
        s = self.new_session(Session("wireguard", client, server, cport, sport, f"udp/{sport}"), t)
        self._count_pending(fl, s, frame)
        fl.kind = "wireguard"
        fl.sess = s
        fl.tent = None
        outbound = src == client and sp == cport
        s.count(outbound, t)
        if wt == d.WG_TRANSPORT:
            s.extra["handshake_missing"] = True
            s.steps.mark("data-out" if outbound else "data-in", frame, t, "out" if outbound else "in")
        else:
            self._wg_step(s, wt, pl, frame, t, outbound)

    def _wg_step(self, s: Session, wt: int, pl: bytes, frame: int, t: float, outbound: bool) -> None:
        st = s.steps
        direction = "out" if outbound else "in"
        if wt == d.WG_INITIATION:
            st.mark("initiation", frame, t, direction)
            st.note("initiation-out" if outbound else "initiation-in", frame, t)
            s.extra.setdefault("sender_index", bytes(pl[4:8]))
        elif wt == d.WG_RESPONSE:
            st.mark("response", frame, t, direction)
            st.note("response", frame, t)
            if pl[8:12] == s.extra.get("sender_index"):
                s.extra["index_matched"] = True
        elif wt == d.WG_COOKIE:
            st.mark("cookie-reply", frame, t, direction)

    def _ovpn_classify(self, fl: Flow, pkt: d.OvpnPacket, frame: int, t: float, src: bytes, sp: int,
                       dst: bytes, dp: int, transport: str, raw: bytes | None = None) -> None:
        tent = fl.tent if fl.tent is not None else {}
        fl.tent = tent
        confirmed = False
        client = server = None
        if pkt.opcode in d.OVPN_CLIENT_RESETS:
            prev = tent.get(("reset", src))
            if prev == pkt.session_id:
                confirmed = True  # a retransmitted reset with the same session id
            tent[("reset", src)] = pkt.session_id
            tent.setdefault("first", (frame, t, src))
            client = src
        elif pkt.opcode in d.OVPN_SERVER_RESETS:
            if tent.get(("reset", dst)) is not None:
                confirmed = True
            client = dst
        elif pkt.opcode in d.OVPN_CONTROL:
            if tent.get(("reset", src)) == pkt.session_id or tent.get(("sid", src)) == pkt.session_id:
                confirmed = True
                client = src if tent.get(("reset", src)) is not None else dst
            tent[("sid", src)] = pkt.session_id
        elif pkt.opcode == d.OVPN_DATA_V2 and transport == "udp":
            pid = ("peer", src, pkt.session_id)  # the 3-byte peer id stays the same
            seen = int(tent.get(pid, 0)) + 1  # type: ignore[call-overload]
            tent[pid] = seen
            if seen >= 4:
                confirmed = True
                client = src
                if d.address_kind(dst) == "private" and d.address_kind(src) != "private":
                    client = dst
        if not confirmed or client is None:
            return
        if fl.syn_from is not None:  # TCP: the SYN sender is the client, whatever the opcodes say
            client = fl.syn_from[0]
            from_client = fl.syn_from == (src, sp)
        else:
            from_client = client == src
        server = dst if from_client else src
        cport, sport = (sp, dp) if from_client else (dp, sp)
        s = self.new_session(Session("openvpn", client, server, cport, sport, f"{transport}/{sport}"), t)
        first = tent.get("first")
        self._count_pending(fl, s, frame)
        fl.kind = "openvpn"
        fl.sess = s
        fl.tent = None
        if isinstance(first, tuple) and first[0] != frame:
            s.steps.mark("hard-reset-client", first[0], first[1], "out")
            s.steps.note("reset-out", first[0], first[1])
        outbound = from_client
        s.count(outbound, t)
        self._ovpn_step(s, pkt, frame, t, outbound, raw)

    def _ovpn_step(self, s: Session, pkt: d.OvpnPacket, frame: int, t: float, outbound: bool, raw: bytes | None = None) -> None:
        st = s.steps
        direction = "out" if outbound else "in"
        op = pkt.opcode
        if raw and op in d.OVPN_CONTROL and "mode" not in s.extra:
            t0 = self.info.first_time
            mode = d.openvpn_control_mode(raw, None if t0 is None else t0 + t)
            if mode:
                s.extra["mode"] = mode
                s.hints.append(d.OVPN_MODE_HINT[mode])
        if op in d.OVPN_CLIENT_RESETS:
            st.mark("hard-reset-client", frame, t, direction)
            st.note("reset-out", frame, t)
        elif op in d.OVPN_SERVER_RESETS:
            st.mark("hard-reset-server", frame, t, direction)
        elif op in (d.OVPN_CONTROL_V1, d.OVPN_CONTROL_WKC_V1):
            st.mark("tls-out" if outbound else "tls-in", frame, t, direction)
        elif op in d.OVPN_DATA:
            st.mark("data-out" if outbound else "data-in", frame, t, direction)

    # ------------------------------------------------------------------ by port and pattern
    def _by_port(self, fl: Flow, transport: str, frame: int = 0, t: float = 0.0, src: bytes = b"",
                 sp: int = 0, dst: bytes = b"", dp: int = 0) -> bool:
        """An unrecognised flow on OpenVPN's port: static-key mode when every packet length fits
        its layout (HMAC, IV, whole cipher blocks), else OpenVPN by the port alone."""
        if d.OVPN_PORT not in (fl.ap, fl.bp) or not fl.tent:
            return False
        pend = fl.tent.get("pending")
        if not isinstance(pend, list) or not pend:
            return False
        if fl.syn_from is not None:
            client, cport = fl.syn_from
        elif fl.bp == d.OVPN_PORT or fl.ap != d.OVPN_PORT:
            client, cport = fl.a, fl.ap
        else:
            client, cport = fl.b, fl.bp
        server, sport = (fl.b, fl.bp) if client == fl.a and cport == fl.ap else (fl.a, fl.ap)
        lengths = [n for *_, n in pend]
        hmac = d.openvpn_static_hmac(lengths) if len(lengths) >= STATIC_MIN_PACKETS else None
        try:
            s = self.new_session(Session("openvpn", client, server, cport, sport, f"{transport}/{sport}"), pend[0][1])
        except SessionLimit:
            return False
        if hmac:
            s.extra["mode"] = "static-key"
            s.confidence = "port+pattern"
            s.hints += [f"{transport.upper()} port {sport} (IANA openvpn) with no OpenVPN opcode structure",
                        f"all {len(lengths)} packet lengths are a {hmac}-byte HMAC + 16-byte IV + whole "
                        "16-byte cipher blocks: static-key mode (--secret)"]
        else:
            s.extra["mode"] = "unknown"
            s.confidence = "port"
            s.hints.append(f"{transport.upper()} port {sport} (IANA openvpn) only: the payload fits no "
                           "OpenVPN mode")
        fl.kind = "openvpn-static"
        fl.sess = s
        fl.tent = None
        proto = PROTO_TCP if transport == "tcp" else PROTO_UDP
        for f, pt, psrc, psp, _n in pend:
            self._static_mark(s, f, pt, psrc == client and psp == cport)
        if src:
            self._static_packet(fl, proto, frame, t, src, sp, dst, dp)
        return True

    def _static_packet(self, fl: Flow, proto: int, frame: int, t: float, src: bytes, sp: int, dst: bytes,
                       dp: int) -> None:
        s = fl.sess
        assert s is not None
        self._static_mark(s, frame, t, src == s.client and sp == s.cport)
        if "data-out" in s.steps.first and "data-in" in s.steps.first:
            self.go_fast(proto, src, sp, dst, dp, s, FAST_RAW)

    @staticmethod
    def _static_mark(s: Session, frame: int, t: float, outbound: bool) -> None:
        s.count(outbound, t)
        step = "data-out" if outbound else "data-in"
        if step not in s.steps.first:
            s.steps.mark(step, frame, t, "out" if outbound else "in")
        s.steps.note(step, frame, t)

    # ------------------------------------------------------------------ TLS / DTLS (SSL VPNs)
    def _tls(self, fl: Flow, frame: int, t: float, src: bytes, sp: int, pl: bytes) -> None:
        key = (fl.a, fl.ap, fl.b, fl.bp)
        seen = self.tls.get(key)
        if seen is None:
            ch = tls.client_hello(pl)
            if ch is None or len(self.tls) >= MAX_TLS:
                return
            self.tls[key] = seen = TlsSeen(src, sp, fl.b if src == fl.a else fl.a,
                                           fl.bp if src == fl.a else fl.ap, frame, t, ch.sni, ch.alpn)
            return
        if src == seen.client and sp == seen.cport:
            return
        if seen.server_hello is None and tls.HS_SERVER_HELLO in tls.handshake_types(pl):
            seen.server_hello = (frame, t)
        for name in tls.certificate_names(pl):
            if name not in seen.names and len(seen.names) < tls.MAX_NAMES:
                seen.names.append(name)

    def _dtls(self, fl: Flow, frame: int, t: float, src: bytes) -> None:
        key = (fl.a, fl.ap, fl.b, fl.bp)
        seen = self.dtls.get(key)
        if seen is None:
            if len(self.dtls) >= MAX_TLS:
                return
            seen = self.dtls[key] = DtlsSeen()
        if src == fl.a:
            seen.out += 1
            seen.first_out = seen.first_out or (frame, t)
        else:
            seen.inn += 1
            seen.first_in = seen.first_in or (frame, t)

    def _ssl_vpns(self) -> None:
        """TLS connections with SSL-VPN hints (names, ports, DTLS beside them) become sessions."""
        dtls_by_server: dict[tuple[bytes, bytes, int], DtlsSeen] = {}
        for (a, _ap, b, bp), v in self.dtls.items():
            dtls_by_server[(a, b, bp)] = v
        for seen in self.tls.values():
            hints = tls.vendor_hints([n for n in (seen.sni, *seen.names) if n], seen.sport)
            dt = dtls_by_server.get((seen.client, seen.server, seen.sport))
            if not hints and dt is None:
                continue
            try:
                s = self.new_session(Session("tls-vpn", seen.client, seen.server, seen.cport, seen.sport,
                                      f"tcp/{seen.sport}"), seen.t)
            except SessionLimit:
                return
            vendor = hints[0][0] if hints else "anyconnect"
            s.extra["vendor"] = vendor
            s.confidence = "port"
            s.hints = [why for _v, why in hints]
            if seen.sni:
                s.hints.append(f"SNI {seen.sni}")
            if seen.alpn:
                s.hints.append("ALPN " + ", ".join(seen.alpn))
            s.steps.mark("client-hello", seen.frame, seen.t, "out")
            s.count(True, seen.t)
            if seen.server_hello is not None:
                s.steps.mark("server-hello", seen.server_hello[0], seen.server_hello[1], "in")
                s.count(False, seen.server_hello[1])
            if dt is not None:
                s.confidence = "port+pattern"
                s.hints.append(f"DTLS on UDP {seen.sport} beside the TLS connection to the same server "
                               "(AnyConnect/OpenConnect, Fortinet)")
                if vendor == "ssl-vpn":
                    s.extra["vendor"] = "anyconnect"
                s.extra["dtls"] = (dt.out, dt.inn)
                if dt.first_out is not None:
                    s.steps.mark("dtls-out", dt.first_out[0], dt.first_out[1], "out")
                if dt.first_in is not None:
                    s.steps.mark("dtls-in", dt.first_in[0], dt.first_in[1], "in")


    # ------------------------------------------------------------------ result
    def finish(self) -> Observation:
        for fl in self.flows.values():
            if not fl.kind and fl.proto in (PROTO_UDP, PROTO_TCP):
                self._by_port(fl, "udp" if fl.proto == PROTO_UDP else "tcp")
        self._ssl_vpns()
        info = self.info
        info.flows = len(self.flows)
        info.duration = self._tmax
        info.packets = self._fed + info.ipv6 + info.other
        info.ipv4 = self._fed - (info.malformed + info.duplicates - self._bad6)
        if self.untracked:
            info.problems.append(f"more than {MAX_SESSIONS} VPN sessions: {self.untracked} packet(s) of "
                                 "further sessions were counted but not followed")
        opened = [Opened(s.client, s.server, 0, s.first_t) for s in self.sessions]
        for fl in self.flows.values():
            if fl.sess is None:
                a, b = (fl.a, fl.b) if fl.syn_from is None or fl.syn_from[0] == fl.a else (fl.b, fl.a)
                opened.append(Opened(a, b, fl.frame, fl.t))
        return Observation(info, self.sessions, self.stun, self.hosts, opened, self.hops)
