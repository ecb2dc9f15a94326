"""PPTP passthrough (RFC 2637): follow TCP 1723 control connections, translate Call IDs, map GRE.

Why Call IDs are translated: the far end tells calls apart by the Call ID it sees in enhanced GRE
(version 1) keys, and every LAN client behind one WAN address looks like the same peer to it. Two
LAN clients that picked the same Call ID (Windows starts from the same values after a reboot) would
collide, so each LAN side Call ID gets a WAN side Call ID unique per (far end, WAN address).

Rules, per call:
- LAN -> far end: the sender's own ``Call ID`` (OCRQ, OCRP, ICRQ, ICRP, CCRQ, CDN) is rewritten
  LAN id -> WAN id; far end -> LAN: the ``Peer's Call ID`` (OCRP, ICRP, ICCN, WEN, SLI) is rewritten
  WAN id -> LAN id. The far end's own ids are never changed (it chose them, it demultiplexes on
  them), but they are recorded: outbound GRE carries them as its key.
- Outbound GRE v1 from LAN host H to far end S with key K (S's Call ID) belongs to the call
  (H, S, K): its source becomes the WAN address. Inbound GRE v1 to the WAN address with key W
  belongs to the call (S, WAN, W): it goes to the LAN host with the key restored to its own id.
- GRE v0 and non-PPTP GRE (and GRE v1 of a host that has no followed control connection to that
  far end, e.g. a tunnel that was up before the router started) pass by address only: one LAN host
  per far end and WAN address; a second host is dropped (``pptp:gre-conflict``), never mixed.
- A call ends on Call-Clear-Request, Call-Disconnect-Notify, a failed OCRP/ICRP, Stop-Control-
  Connection-Request/Reply, the control connection closing, or ``timeouts.gre`` without traffic
  (GRE and control messages both refresh it). GRE v1 for an ended call is dropped ``pptp:no-call``.
  A call that ended here without the far end being told (idle, pushed out by the limits) keeps its
  WAN Call ID held while its control connection lives: the far end may still hold the call, so
  the id goes to no other client until the call is cleared or the connection ends.

The control stream is parsed by :mod:`natpass.passthrough.pptp_stream` rather than with
:class:`natpass.packets.pptp.PptpStream`, which yields only complete messages: a Call ID must be rewritten in the very segment that carries
it, even when the rest of its message arrives later. Per direction the parser keeps the next
expected sequence number; bytes before it (retransmissions) are not parsed again but get the same
rewrite as the first time; a segment beyond it (a hole) is dropped so that the sender retransmits
in order. A Call ID split across two segments is handled too: WAN ids keep the LAN id's high byte
whenever possible, so only the low byte, which is in the later segment, has to change. A direction
whose framing is lost (bad magic cookie, impossible length) fails closed: its data segments are
dropped (``pptp:stream-lost``) until the connection ends, because passing them untranslated could
put a Call ID on the wire that collides with another client's. Messages of an unknown type, or of
a known type with the wrong length, are counted and passed untouched (as Linux does).

State bounds (:class:`PptpLimits`, from ``[limits]``): control connections, calls, address-only
GRE bindings and the memory of ended calls are each held per LAN host like flows, least recently
used first out, and a host only pushes out its own (or a host's holding more). A call pushed out
ends (its GRE is then dropped ``pptp:no-call``); a control connection pushed out ends its calls
and fails closed like a lost stream (``pptp:stream-lost``) until the client reconnects.
"""

from __future__ import annotations

from typing import Any, Final

from natpass.nat import verdict as V
from natpass.nat.config import Limits, NatConfig, Timeouts
from natpass.nat.helper import FlowView, HelperContext
from natpass.packets import gre as G
from natpass.packets import pptp as P
from natpass.packets.ipv4 import OFF_DST, OFF_SRC, PROTO_GRE, PROTO_TCP
from natpass.passthrough import pptp_state
from natpass.passthrough._common import (
    LRU_GRANULARITY,
    HostLru,
    SwitchedHelper,
    dst_of,
    ip_text,
    need_ctx,
    set_ip_addr,
    src_of,
    u16,
)
from natpass.passthrough.pptp_calls import CallTable
from natpass.passthrough.pptp_records import Binding, Call, Control, PptpLimits, StreamDir
from natpass.passthrough.pptp_state import BindKey
from natpass.passthrough.pptp_stream import OWN, PEER, ControlStream

PPTP_PORT: Final = P.PPTP_PORT
# Messages that bring a new call to life on the side that sends them (RFC 2637 2.7-2.10).
CREATING: Final = frozenset({P.OCRQ, P.OCRP, P.ICRQ, P.ICRP})
ANSWERS: Final = frozenset({P.OCRP, P.ICRP})
ENDING: Final = frozenset({P.CCRQ, P.CDN})
STOPPING: Final = frozenset({P.STOP_CCRQ, P.STOP_CCRP})
RESULT_OFFSET: Final = 16  # OCRP/ICRP Result Code (RFC 2637 2.8, 2.10)
RESULT_OK: Final = 1  # OCRP "Connected", ICRP "Connect"
GRE_MIN: Final = 4


class PptpHelper(SwitchedHelper):
    """PPTP control connection follower and enhanced GRE mapper.

    The control stream's bytes are :class:`~natpass.passthrough.pptp_stream.ControlStream`'s,
    the calls :class:`~natpass.passthrough.pptp_calls.CallTable`'s; the rules of which Call ID
    becomes which, and when a call starts and ends, are here."""

    name = "pptp"
    ip_protocols = frozenset({PROTO_GRE})
    tcp_ports = frozenset({PPTP_PORT})

    def __init__(self, timeouts: Timeouts | None = None, limits: Limits | None = None) -> None:
        super().__init__(timeouts)
        lim = PptpLimits.from_config(limits or Limits())
        self.calls = CallTable(lim, self._count, lambda: self.ctx)
        self.stream = ControlStream(self)
        # (remote, wan) -> LAN host
        self._bind: HostLru[BindKey, Binding] = HostLru(lim.gre_bindings, self.calls.forget)

    @property
    def limits(self) -> PptpLimits:
        """The bounds of everything the helper keeps (the call table applies them)."""
        return self.calls.limits

    @limits.setter
    def limits(self, lim: PptpLimits) -> None:
        self.calls.limits = lim

    def reconfigure(self, config: NatConfig, now: float) -> None:
        super().reconfigure(config, now)
        self.limits = lim = PptpLimits.from_config(config.limits)
        self.calls.controls.set_limit(lim.controls, now)
        self.calls.by_wan.set_limit(lim.calls, now)
        self._bind.set_limit(lim.gre_bindings, now)
        self.calls.ended_in.set_limit(lim.ended_calls, now)
        self.calls.ended_out.set_limit(lim.ended_calls, now)

    # ------------------------------------------------------------------ bookkeeping

    def tear_down(self, now: float) -> int:
        torn = self.calls.tear_down(now)
        torn += len(self._bind)
        self._bind.clear()
        return torn

    def tick(self, now: float) -> None:
        limit = self.timeouts.gre
        self.calls.expire(now, limit)
        for bkey, b in self._bind.items():
            if now - b.last_seen > limit:
                self._bind.pop(bkey)

    def stats(self) -> dict[str, int]:
        calls = self.calls
        calls.fold_all()
        out = dict(self._counters)
        out["calls"] = len(calls.by_wan)
        out["tunnels"] = sum(1 for c in calls.by_wan.values() if c.up)
        out["control_connections"] = len(calls.controls)
        out["gre_address_bindings"] = len(self._bind)
        out["gre_packets"] = calls.gre_packets
        out["ended_calls"] = len(calls.ended_in) + len(calls.ended_out)
        out["calls_evicted"] = calls.by_wan.evicted
        out["controls_evicted"] = calls.controls.evicted
        return out

    def tunnels(self) -> list[dict[str, Any]]:
        self.calls.fold_all()
        out: list[dict[str, Any]] = []
        for c in self.calls.by_wan.values():
            out.append({"proto": "pptp", "lan": ip_text(c.lan), "remote": ip_text(c.remote),
                        "wan": ip_text(c.wan), "lan_call_id": c.lan_call_id,
                        "wan_call_id": c.wan_call_id, "remote_call_id": c.remote_call_id,
                        "state": "up" if c.up else "connecting", "since": c.created,
                        "last_seen": c.last_seen, "lan_is_server": not c.control.outbound})
        for (remote, wan), b in self._bind.items():
            out.append({"proto": "gre", "lan": ip_text(b.lan), "remote": ip_text(remote),
                        "wan": ip_text(wan), "state": "address-only", "last_seen": b.last_seen})
        return out

    def snapshot(self, now: float) -> dict[str, Any]:
        """Control connections (stream positions, pending rewrites), calls and their Call ID
        maps, address-only GRE bindings and ended calls; times relative to ``now``."""
        return pptp_state.snapshot(self.calls, self._bind, now)

    def restore(self, data: dict[str, Any], now: float) -> int:
        return pptp_state.restore(self.calls, self._bind, need_ctx(self.ctx), data, now,
                                  self.timeouts.gre, self._count)

    # ------------------------------------------------------------------ control connection

    def count(self, name: str) -> None:
        self._count(name)

    def context(self) -> HelperContext:
        return need_ctx(self.ctx)

    def _control_for(self, flow: FlowView, now: float) -> Control:
        ctl = flow.helper_state
        if isinstance(ctl, Control):
            return ctl
        ctl = Control(flow.lan_addr, flow.lan_port, flow.wan_addr, flow.wan_port, flow.remote_addr,
                      flow.remote_port, flow.outbound, now)
        flow.helper_state = ctl
        self.calls.controls.add((ctl.remote, ctl.remote_port, ctl.wan, ctl.wan_port), ctl, now)
        return ctl

    def on_flow_packet(self, flow: FlowView, buf: bytearray, ihl: int, from_lan: bool,
                       now: float) -> str | None:
        if flow.proto != PROTO_TCP:
            return None
        if not self.enabled:
            # Off: TCP 1723 is ordinary TCP (the control connection works, GRE then does not:
            # Windows error 619), unless strict closes the port.
            return V.strict_blocked(self.name) if self.strict else None
        ctl = self._control_for(flow, now)
        if not ctl.tracked:
            if buf[ihl + 13] & 0x12 != 0x02:
                if ctl.evicted and u16(buf, 2) > ihl + (buf[ihl + 12] >> 4) * 4:
                    return self.stream.lost(False)  # its Call IDs would leave untranslated
                return None
            flow.helper_state = None  # a SYN: a new control connection reusing this flow
            ctl = self._control_for(flow, now)
        if now - ctl.last_seen >= LRU_GRANULARITY:
            self.calls.controls.touch((ctl.remote, ctl.remote_port, ctl.wan, ctl.wan_port), ctl.lan,
                                      now)
        ctl.last_seen = now
        for call in ctl.by_lan.values():
            self.calls.seen(call, now)  # control traffic (echo) keeps the calls known
        d = ctl.from_lan if from_lan else ctl.from_remote
        return self.stream.segment(ctl, d, buf, ihl, from_lan, False, now)

    def on_flow_closed(self, flow: FlowView, now: float) -> None:
        ctl = flow.helper_state
        if not isinstance(ctl, Control):
            return
        for d in (ctl.from_lan, ctl.from_remote):
            if d.partial and d.broken is None:
                self._count("pptp:truncated")
        ctl.tracked = False
        for call in list(ctl.by_lan.values()):
            self.calls.end(call, now, "control-closed")
        self.calls.release_held(ctl)
        key = (ctl.remote, ctl.remote_port, ctl.wan, ctl.wan_port)
        if self.calls.controls.get(key) is ctl:
            self.calls.controls.pop(key)

    def translate_call_id(self, ctl: Control, ctype: int, kind: str, value: int, from_lan: bool,
                          far_end: bool, now: float) -> int | None:
        """The new value of one Call ID field, or None to leave it."""
        if far_end:
            # Inbound as captured: the far end named the untranslated LAN id; it would have used
            # the WAN id natpass gave it.
            if kind == PEER:
                call = ctl.by_lan.get(value)
                return call.wan_call_id if call is not None else None
            return None
        if from_lan and kind == OWN:
            call = ctl.by_lan.get(value)
            if call is None:
                held = next((w for w, lan in ctl.held.items() if lan == value), None)
                if held is not None and ctype not in CREATING:
                    return held  # e.g. the clear of a call that idled out here
                if ctype not in CREATING:
                    self._count("pptp:unknown-call")
                    return None
                call = self.calls.new_call(ctl, value, now)
                if call is None:
                    # No WAN id to give: the LAN id must not go out untranslated (it could be
                    # another client's WAN id), so this connection fails closed.
                    d = ctl.from_lan
                    d.broken = "no WAN Call ID available"
                    return None
            return call.wan_call_id
        if not from_lan and kind == PEER:
            call = ctl.by_wan.get(value)
            if call is None:
                self._count("pptp:unknown-call")
                return None
            return call.lan_call_id
        return None

    def message_done(self, ctl: Control, d: StreamDir, from_lan: bool, now: float) -> None:
        """State changes once a whole message has been seen."""
        calls = self.calls
        ctype = d.ctype
        own = d.values.get(OWN)
        peer = d.values.get(PEER)
        if ctype in STOPPING:
            for c in list(ctl.by_lan.values()):
                calls.end(c, now, "stop-control-connection")
            calls.release_held(ctl)
            return
        call: Call | None = None
        if ctype in ANSWERS:
            if from_lan:  # the LAN side answers a call the far end asked for
                call = ctl.by_lan.get(own) if own is not None else None
                remote_id = peer
            else:
                call = ctl.by_wan.get(peer) if peer is not None else None
                remote_id = own
            if call is None or remote_id is None:
                return
            calls.set_remote(call, remote_id)
            if d.partial[RESULT_OFFSET] == RESULT_OK:
                calls.up(call, now)
            else:
                calls.end(call, now, "call-refused")
        elif ctype in ENDING and own is not None:
            if from_lan:
                call = ctl.by_lan.get(own)
            else:
                call = next((c for c in ctl.by_lan.values() if c.remote_call_id == own), None)
                if call is None:
                    # Some servers put the peer's id (ours, the WAN id) in their CDN.
                    call = ctl.by_wan.get(own)
            if call is not None:
                calls.end(call, now, "call-cleared")
            elif from_lan:
                held = next((w for w, lan in ctl.held.items() if lan == own), None)
                if held is not None:
                    calls.release_held(ctl, held)
            elif own in ctl.held:
                calls.release_held(ctl, own)

    # ------------------------------------------------------------------ GRE

    def on_ip_packet(self, buf: bytearray, ihl: int, from_lan: bool, now: float) -> int | str:
        if not self.enabled:
            return V.passthrough_disabled(self.name)
        r = self._gre(buf, ihl, from_lan, now)
        if not isinstance(r, str):
            self.calls.gre_packets += 1  # what the usage record calls "used"
        return r

    def _gre(self, buf: bytearray, ihl: int, from_lan: bool, now: float) -> int | str:
        ctx = need_ctx(self.ctx)
        total = u16(buf, 2)
        if total - ihl < GRE_MIN:
            return V.MALFORMED
        version = buf[ihl + 1] & G.VERSION_MASK
        call_id: int | None = None
        if version == G.GRE_VERSION_PPTP:
            # RFC 2637 4.1: K set, C and R clear, protocol 0x880B, key + optional seq/ack present
            b0 = buf[ihl]
            need = 8 + (4 if b0 & G.FLAG_S else 0) + (4 if buf[ihl + 1] & G.FLAG_A else 0)
            if (b0 & (G.FLAG_C | G.FLAG_R) or not b0 & G.FLAG_K or total - ihl < need
                    or u16(buf, ihl + 2) != G.PPTP_GRE_PROTO):
                return V.MALFORMED
            call_id = G.get_call_id(buf, ihl)
        src = src_of(buf)
        dst = dst_of(buf)
        if from_lan:
            if call_id is not None:
                call = self.calls.by_out.get((src, dst, call_id))
                if call is not None:
                    self.calls.seen(call, now)
                    set_ip_addr(buf, OFF_SRC, call.wan)
                    if call.fast_out is None or not call.fast_out.live:
                        # the call's later GRE this way is the engine's (natpass.nat.ipfast)
                        call.fast_out = ctx.ip_fast_path(PROTO_GRE, True, src, dst, call_id, call.wan,
                                                         None, now)
                    return V.TO_WAN
                if (src, dst, call_id) in self.calls.ended_out or self.calls.has_calls(src, dst):
                    self._count("pptp:gre-without-call")
                    return "pptp:no-call"
            wan = ctx.wan_address_for(src)
            b = self._bind.get((dst, wan))
            if b is not None and b.lan != src and now - b.last_seen <= self.timeouts.gre:
                self._count("pptp:gre-conflict")
                return "pptp:gre-conflict"
            if b is None or b.lan != src:
                self._bind.add((dst, wan), Binding(src, now), now)
                if call_id is not None:
                    self._count("pptp:gre-without-call")
            else:
                if now - b.last_seen >= LRU_GRANULARITY:
                    self._bind.touch((dst, wan), src, now)
                b.last_seen = now
            set_ip_addr(buf, OFF_SRC, wan)
            return V.TO_WAN
        if call_id is not None:
            call = self.calls.by_wan.get((src, dst, call_id))
            if call is not None:
                self.calls.seen(call, now)
                set_ip_addr(buf, OFF_DST, call.lan)
                G.set_call_id(buf, ihl, call.lan_call_id)
                if call.fast_in is None or not call.fast_in.live:
                    call.fast_in = ctx.ip_fast_path(PROTO_GRE, False, src, dst, call_id, call.lan,
                                                    call.lan_call_id, now)
                return V.TO_LAN
            if (src, dst, call_id) in self.calls.ended_in:
                self._count("pptp:gre-without-call")
                return "pptp:no-call"
        b = self._bind.get((src, dst))
        if b is not None and now - b.last_seen <= self.timeouts.gre:
            if now - b.last_seen >= LRU_GRANULARITY:
                self._bind.touch((src, dst), b.lan, now)
            b.last_seen = now
            set_ip_addr(buf, OFF_DST, b.lan)
            return V.TO_LAN
        if call_id is not None:
            self._count("pptp:gre-without-call")
            return "pptp:no-call"
        return V.NO_MAPPING

    # ------------------------------------------------------------------ replay

    def far_end_view(self, buf: bytearray, ihl: int, now: float) -> None:
        if not self.enabled:
            return
        ctx = need_ctx(self.ctx)
        total = u16(buf, 2)
        proto = buf[9]
        src = src_of(buf)
        dst = dst_of(buf)
        if proto == PROTO_GRE:
            lan = dst if ctx.is_lan(dst) else None
            wan = ctx.wan_address_for(dst) if lan is not None else dst
            if total - ihl >= 8 and buf[ihl + 1] & G.VERSION_MASK == G.GRE_VERSION_PPTP:
                lan_id = G.get_call_id(buf, ihl)
                cands = [c for c in self.calls.by_wan.values() if c.remote == src and c.wan == wan
                         and c.lan_call_id == lan_id and (lan is None or c.lan == lan)]
                if len(cands) == 1:  # several LAN hosts with this id and no LAN address: leave it
                    G.set_call_id(buf, ihl, cands[0].wan_call_id)
            if lan is not None:
                ctx.set_dst(buf, wan)
            return
        if proto != PROTO_TCP or total < ihl + 20:
            return
        sport = u16(buf, ihl)
        dport = u16(buf, ihl + 2)
        ctl = self.calls.controls.get((src, sport, dst, dport))
        if ctl is None and ctx.is_lan(dst):
            ctl = next((c for c in self.calls.controls.values() if c.remote == src and c.remote_port == sport
                        and c.lan == dst and c.lan_port == dport), None)
        if ctl is None or not ctl.tracked:
            return
        if ctl.far_end is None:
            ctl.far_end = StreamDir()
        self.stream.segment(ctl, ctl.far_end, buf, ihl, False, True, now)
