"""Following the passthrough protocols in a capture: PPTP (TCP 1723 + enhanced GRE), IKE and
NAT-T (UDP 500/4500, or IKE on a port of its own), raw ESP and AH, L2TP (UDP 1701).

Each packet updates one VPN session of the analyzer (``natpass.diagnose.analyzer``), which hands
over the new sessions it may create and the flows it may count by lookup from then on
(:class:`Sink`). IKE, L2TP, PPTP and GRE are read with the non-raising ``peek_*`` functions of
``natpass.packets``.
"""

from __future__ import annotations

from typing import Protocol

from natpass.diagnose import detect as d
from natpass.diagnose.model import MAX_EVIDENCE
from natpass.diagnose.session import (
    FAST_ESP_IN_UDP,
    FAST_GRE,
    FAST_RAW,
    PROTO_AH,
    PROTO_ESP,
    PROTO_GRE,
    PROTO_UDP,
    Session,
)
from natpass.packets import ike as ikep
from natpass.packets.gre import peek_pptp_call_id
from natpass.packets.l2tp import L2TP_PORT, peek_l2tp
from natpass.packets.pptp import OCRP, PPTP_PORT, SCCRP, SHORT_NAMES, peek_pptp

TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10
ZERO4 = b"\0\0\0\0"


class Sink(Protocol):
    """What the trackers need from the analyzer."""

    def new_session(self, s: Session, t: float) -> Session:
        """Record a new VPN session (raises when the bounded number is reached)."""

    def go_fast(self, proto: int, src: bytes, sp: int, dst: bytes, dp: int, s: Session | None,
                kind: int) -> None:
        """Count this flow's further packets by lookup (both directions)."""


def exchange_name(hdr: ikep.IkeHeader) -> str:
    """The exchange as a phase name: "sa_init", "auth" (IKEv2), "main mode" (IKEv1)..."""
    name = ikep.EXCHANGE_NAMES.get(hdr.exchange)
    if name is None:
        return f"exchange-{hdr.exchange}"
    return name.lower().removeprefix("ike_") if hdr.is_v2 else name.lower()


class Tunnels:
    """PPTP, IKE/NAT-T, ESP, AH and L2TP sessions of one capture."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.pptp_calls: dict[tuple[bytes, int, bytes], Session] = {}
        self.gre_calls: dict[tuple[bytes, bytes], Session] = {}  # (client, server) -> pptp session
        self.ike: dict[bytes, Session] = {}  # SPIi -> session
        self.ike_pair: dict[tuple[bytes, bytes], Session] = {}  # (client, server) -> latest session
        self.natt_calls: dict[tuple[bytes, bytes], Session] = {}
        self.esp: dict[tuple[bytes, bytes], Session] = {}
        self.ah: dict[tuple[bytes, bytes], Session] = {}
        self.l2tp_calls: dict[tuple[bytes, int, bytes, int], Session] = {}
        self.frags: dict[tuple[bytes, bytes, int, int], tuple[int, bytes, int, bytes, int]] = {}

    def fragment(self, frame: int, t: float, key: tuple[int, bytes, int, bytes, int], src: bytes) -> None:
        _proto, a, ap, b, bp = key
        if ap in (500, 4500) or bp in (500, 4500):
            s = self.ike_between(a, b)
            if s is not None:
                s.count(src == s.client, t)
                s.steps.note("fragment", frame, t)
                s.extra["fragments"] = int(s.extra.get("fragments", 0)) + 1  # type: ignore[call-overload]

    def ike_between(self, a: bytes, b: bytes) -> Session | None:
        """The latest IKE session between two addresses (either way round)."""
        return self.ike_pair.get((a, b)) or self.ike_pair.get((b, a))

    def pptp(self, frame: int, t: float, src: bytes, sp: int, dst: bytes, dp: int, flags: int,
              pl: bytes) -> None:
        if dp == PPTP_PORT:
            client, cport, server = src, sp, dst
        else:
            client, cport, server = dst, dp, src
        outbound = src == client
        key = (client, cport, server)
        s = self.pptp_calls.get(key)
        if s is None:
            s = self.sink.new_session(Session("pptp", client, server, cport, PPTP_PORT, "tcp/1723"), t)
            self.pptp_calls[key] = s
            self.gre_calls[(client, server)] = s
        s.count(outbound, t)
        st = s.steps
        if flags & TCP_SYN:
            if outbound and not flags & TCP_ACK:
                st.mark("tcp-syn", frame, t, "out")
                st.note("syn", frame, t)
            elif not outbound and flags & TCP_ACK:
                st.mark("tcp-connect", frame, t, "in")
        if flags & TCP_RST and not outbound:
            st.note("rst-in", frame, t)
            if "tcp-connect" not in st.first:
                st.mark("tcp-reset", frame, t, "in")
        if pl:
            for msg in peek_pptp(pl):
                st.mark(SHORT_NAMES[msg.ctrl_type].lower(), frame, t, "out" if outbound else "in")
                if msg.ctrl_type == SCCRP:
                    s.extra["sccrp_result"] = msg.fields["result_code"]
                elif msg.call_id is not None and outbound:
                    s.extra.setdefault("client_call_id", msg.call_id)
                if msg.ctrl_type == OCRP:
                    s.extra["server_call_id"] = msg.call_id
                    s.extra["ocrp_result"] = msg.fields["result_code"]
                    st.note("ocrp", frame, t)

    def gre(self, frame: int, t: float, src: bytes, dst: bytes, p: bytes) -> None:
        call_id = peek_pptp_call_id(p)
        if call_id is None:
            return  # not the enhanced GRE (version 1, key present) of RFC 2637 section 4.1
        s = self.gre_calls.get((src, dst))
        outbound = True
        if s is None:
            s = self.gre_calls.get((dst, src))
            outbound = False
        if s is None:
            # GRE without its control connection in the capture: the private side is the client.
            client, server = src, dst
            if d.address_kind(dst) != "public" and d.address_kind(src) == "public":
                client, server = dst, src
            s = self.sink.new_session(Session("pptp", client, server, 0, 0, "gre"), t)
            s.extra["control_missing"] = True
            self.gre_calls[(client, server)] = s
            outbound = src == client
        s.last_t = t
        if outbound:
            s.gre_out += 1
            s.steps.mark("gre-out", frame, t, "out")
            s.steps.note("gre-out", frame, t)
            s.extra.setdefault("gre_out_call_id", call_id)
        else:
            s.gre_in += 1
            s.steps.mark("gre-in", frame, t, "in")
            s.steps.note("gre-in", frame, t)
            s.extra.setdefault("gre_in_call_id", call_id)
        ev = s.steps.ev
        if len(ev.get("gre-in", [])) >= MAX_EVIDENCE and len(ev.get("gre-out", [])) >= MAX_EVIDENCE:
            self.sink.go_fast(PROTO_GRE, src, 0, dst, 0, s, FAST_GRE)

    def ike_port(self, frame: int, t: float, src: bytes, sp: int, dst: bytes, dp: int, pl: bytes,
                  more_fragments: bool, ttl: int = 0, natt: bool | None = None) -> None:
        """IKE on UDP 500/4500, or on the port of a flow recognised as IKE (``natt``: the payload
        is framed as on UDP 4500, RFC 3948)."""
        if natt is None:
            natt = sp == 4500 or dp == 4500
        if natt:
            if pl == ikep.NATT_KEEPALIVE:
                ns = self.natt_session(src, sp, dst, dp, t)
                outbound = src == ns.client
                ns.count(outbound, t)
                ns.steps.mark("keepalive", frame, t, "out" if outbound else "in")
                ns.extra["keepalives"] = int(ns.extra.get("keepalives", 0)) + 1  # type: ignore[call-overload]
                return
            if pl[:4] != ikep.NON_ESP_MARKER:
                ns = self.natt_session(src, sp, dst, dp, t)
                outbound = src == ns.client
                ns.count(outbound, t)
                name = "esp-in-udp-out" if outbound else "esp-in-udp-in"
                ns.steps.mark(name, frame, t, "out" if outbound else "in")
                ns.steps.note(name, frame, t)
                ike = self.ike_between(src, dst)
                if ike is not None:
                    ike.steps.mark(name, frame, t, "out" if outbound else "in")
                if "esp-in-udp-out" in ns.steps.first and "esp-in-udp-in" in ns.steps.first:
                    self.sink.go_fast(PROTO_UDP, src, sp, dst, dp, ns, FAST_ESP_IN_UDP)
                return
            pl = pl[4:]
        hdr = ikep.peek_ike(pl)
        if hdr is None:
            return
        s = self.ike.get(hdr.spi_i)
        if s is None:
            if hdr.version == 2:
                initiator_sent = hdr.initiator
            else:
                initiator_sent = hdr.spi_r == b"\0" * 8 or not any(
                    x.client == dst and x.server == src for x in self.ike.values())
            if initiator_sent:
                client, cport, server, sport = src, sp, dst, dp
            else:
                client, cport, server, sport = dst, dp, src, sp
            name = "ikev2" if hdr.version == 2 else "ikev1"
            s = self.sink.new_session(Session(name, client, server, cport, sport, f"udp/{sport}"), t)
            if sport not in (ikep.IKE_PORT, ikep.NATT_PORT):
                s.hints.append(f"IKE_SA_INIT on UDP port {sport}: IKE recognised by its header, not the port")
            self.ike[hdr.spi_i] = s
            self.ike_pair[(client, server)] = s
        outbound = src == s.client
        s.count(outbound, t)
        if outbound:
            s.extra.setdefault("client_ttl", ttl)
        if natt:
            s.extra["natt"] = True
            if outbound:
                s.extra["out_4500"] = int(s.extra.get("out_4500", 0)) + 1  # type: ignore[call-overload]
                s.steps.mark("nat-t switch", frame, t, "out")
                s.steps.note("out-4500", frame, t)
            else:
                s.extra["in_4500"] = int(s.extra.get("in_4500", 0)) + 1  # type: ignore[call-overload]
                s.steps.mark("nat-t response", frame, t, "in")
            ns = self.natt_session(src, sp, dst, dp, t)
            ns.count(outbound, t)
            ns.steps.mark("ike-out" if outbound else "ike-in", frame, t, "out" if outbound else "in")
        else:
            key = "out_500" if outbound else "in_500"
            s.extra[key] = int(s.extra.get(key, 0)) + 1  # type: ignore[call-overload]
        if more_fragments:
            s.extra["fragments"] = int(s.extra.get("fragments", 0)) + 1  # type: ignore[call-overload]
        if hdr.version == 2:
            is_response = hdr.response
            ex = exchange_name(hdr)
            s.steps.mark(f"{ex} {'response' if is_response else 'request'}", frame, t,
                         "out" if outbound else "in")
            if hdr.exchange == ikep.IKE_SA_INIT:
                s.extra.setdefault("spi_r", hdr.spi_r if is_response else None)
        else:
            ex = exchange_name(hdr)
            s.steps.mark(f"{ex} {'initiator' if outbound else 'responder'}", frame, t,
                         "out" if outbound else "in")
            if not hdr.encrypted:
                for vid in d.ikev1_vendor_ids(pl):
                    vids = s.extra.setdefault("vids", [])
                    if isinstance(vids, list) and vid not in vids:
                        vids.append(vid)
        s.steps.note("out" if outbound else "in", frame, t)
        if not hdr.encrypted and hdr.exchange in (
                ikep.IKE_SA_INIT, ikep.V1_IDENTITY_PROTECTION, ikep.V1_AGGRESSIVE):
            self.natd(s, hdr, pl, src, sp, dst, dp, outbound, frame, t)

    def natd(self, s: Session, hdr: ikep.IkeHeader, pl: bytes, src: bytes, sp: int,
              dst: bytes, dp: int, outbound: bool, frame: int, t: float) -> None:
        """Compare the NAT-D hashes with the addresses seen here (RFC 7296 2.23, RFC 3947 3.2)."""
        if hdr.is_v2 and any(n == ikep.REDIRECT for n, _ in ikep.peek_notifies(pl)):
            s.steps.mark("redirect", frame, t, "in")
        found = ikep.peek_nat_d(pl)
        if not found:
            return
        source = [h.hash for h in found if h.kind == "source"]
        destination = [h.hash for h in found if h.kind == "destination"]
        res: dict[str, object] = s.extra.setdefault("natd", {})  # type: ignore[assignment]
        if source:
            ok = ikep.natd_hash_matches(source, hdr, src, sp)
            res["client_source" if outbound else "server_source"] = (ok, frame, t)
        if destination:
            ok = ikep.natd_hash_matches(destination, hdr, dst, dp)
            res["server_as_seen_by_client" if outbound else "client_as_seen_by_server"] = (ok, frame, t)

    def natt_session(self, src: bytes, sp: int, dst: bytes, dp: int, t: float) -> Session:
        s = self.natt_calls.get((src, dst)) or self.natt_calls.get((dst, src))
        if s is None:
            ike = self.ike_between(src, dst)
            if ike is not None:
                client, server = ike.client, ike.server
            elif dp == 4500 and sp != 4500:
                client, server = src, dst
            elif sp == 4500 and dp != 4500:
                client, server = dst, src
            else:
                client, server = src, dst  # first sender
            cport, sport = (sp, dp) if client == src else (dp, sp)
            s = self.sink.new_session(Session("nat-t", client, server, cport, sport, "udp/4500"), t)
            self.natt_calls[(client, server)] = s
        return s

    def raw_ipsec(self, table: dict[tuple[bytes, bytes], Session], name: str, frame: int, t: float,
                   src: bytes, dst: bytes) -> None:
        s = table.get((src, dst)) or table.get((dst, src))
        if s is None:
            ike = self.ike_between(src, dst)
            client, server = (ike.client, ike.server) if ike else (src, dst)
            s = self.sink.new_session(Session(name, client, server, 0, 0, name), t)
            table[(client, server)] = s
        outbound = src == s.client
        s.count(outbound, t)
        step = f"{name}-out" if outbound else f"{name}-in"
        s.steps.mark(step, frame, t, "out" if outbound else "in")
        s.steps.note(step, frame, t)
        if s.out and s.inn:
            self.sink.go_fast(PROTO_ESP if name == "esp" else PROTO_AH, src, 0, dst, 0, s, FAST_RAW)

    def l2tp(self, frame: int, t: float, src: bytes, sp: int, dst: bytes, dp: int, pl: bytes) -> None:
        msg = peek_l2tp(pl)
        if msg is None:
            return
        s = self.l2tp_calls.get((src, sp, dst, dp)) or self.l2tp_calls.get((dst, dp, src, sp))
        if s is None:
            if msg.name in ("sccrp", "icrp") or (dp != L2TP_PORT and sp == L2TP_PORT):
                src, sp, dst, dp = dst, dp, src, sp  # the reply's receiver is the client
                swapped = True
            else:
                swapped = False
            s = self.sink.new_session(Session("l2tp", src, dst, sp, dp, "udp/1701"), t)
            self.l2tp_calls[(src, sp, dst, dp)] = s
            if swapped:
                src, sp, dst, dp = dst, dp, src, sp
        outbound = src == s.client
        s.count(outbound, t)
        name = msg.name
        if name == "data":
            name = "data-out" if outbound else "data-in"
        if name != "zlb":
            s.steps.mark(name, frame, t, "out" if outbound else "in")
        s.steps.note(name, frame, t)
        s.extra["version"] = msg.version
