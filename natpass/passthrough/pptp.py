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

The control stream is parsed here rather than with :class:`natpass.packets.pptp.PptpStream`,
which yields only complete messages: a Call ID must be rewritten in the very segment that carries
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
from natpass.nat.helper import FlowView
from natpass.packets import gre as G
from natpass.packets import pptp as P
from natpass.packets.ipv4 import OFF_DST, OFF_SRC, PROTO_GRE, PROTO_TCP
from natpass.passthrough._common import (
    HALF_SEQ,
    LRU_GRANULARITY,
    SEQ_MASK,
    HostLru,
    SwitchedHelper,
    dst_of,
    ip_text,
    need_ctx,
    set_ip_addr,
    src_of,
    u16,
    u32,
)
from natpass.passthrough.pptp_records import Binding, Call, CallKey, Control, PptpLimits, StreamDir

PPTP_PORT: Final = P.PPTP_PORT
OWN: Final = "own"  # the sender's own Call ID
PEER: Final = "peer"  # the receiver's Call ID (Peer's Call ID)
# Messages that bring a new call to life on the side that sends them (RFC 2637 2.7-2.10).
CREATING: Final = frozenset({P.OCRQ, P.OCRP, P.ICRQ, P.ICRP})
ANSWERS: Final = frozenset({P.OCRP, P.ICRP})
ENDING: Final = frozenset({P.CCRQ, P.CDN})
STOPPING: Final = frozenset({P.STOP_CCRQ, P.STOP_CCRP})
RESULT_OFFSET: Final = 16  # OCRP/ICRP Result Code (RFC 2637 2.8, 2.10)
RESULT_OK: Final = 1  # OCRP "Connected", ICRP "Connect"
# Ends after which the far end may still hold the call: its WAN Call ID is not reused meanwhile.
HELD_AFTER: Final = frozenset({"timeout", "evicted"})
GRE_MIN: Final = 4


def _fields_of(ctype: int) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    if ctype in P.CALL_ID_OFFSET:
        out.append((P.CALL_ID_OFFSET[ctype], OWN))
    if ctype in P.PEER_CALL_ID_OFFSET:
        out.append((P.PEER_CALL_ID_OFFSET[ctype], PEER))
    out.sort()
    return out


FIELDS: Final[dict[int, list[tuple[int, str]]]] = {t: _fields_of(t) for t in P.LENGTHS}


class PptpHelper(SwitchedHelper):
    """PPTP control connection follower and enhanced GRE mapper."""

    name = "pptp"
    ip_protocols = frozenset({PROTO_GRE})
    tcp_ports = frozenset({PPTP_PORT})

    def __init__(self, timeouts: Timeouts | None = None, limits: Limits | None = None) -> None:
        super().__init__(timeouts)
        self.limits = lim = PptpLimits.from_config(limits or Limits())
        # (remote, rport, wan, wport) -> followed control connection
        self._controls: HostLru[tuple[bytes, int, bytes, int], Control] = HostLru(
            lim.controls, self._control_evicted)
        # (remote, wan, wan id) -> call: inbound GRE, and the table of all calls
        self._by_wan: HostLru[CallKey, Call] = HostLru(lim.calls, self._call_evicted)
        self._by_out: dict[CallKey, Call] = {}  # (lan, remote, remote id): outbound GRE
        self._ids: dict[tuple[bytes, bytes], set[int]] = {}  # WAN ids in use per (remote, wan)
        self._pairs: dict[tuple[bytes, bytes], int] = {}  # (lan, remote) -> calls
        self._ended_in: HostLru[CallKey, Binding] = HostLru(lim.ended_calls, self._forget)
        self._ended_out: HostLru[CallKey, Binding] = HostLru(lim.ended_calls, self._forget)
        # (remote, wan) -> LAN host
        self._bind: HostLru[tuple[bytes, bytes], Binding] = HostLru(lim.gre_bindings, self._forget)
        self.gre_packets = 0

    def reconfigure(self, config: NatConfig, now: float) -> None:
        super().reconfigure(config, now)
        self.limits = lim = PptpLimits.from_config(config.limits)
        self._controls.set_limit(lim.controls, now)
        self._by_wan.set_limit(lim.calls, now)
        self._bind.set_limit(lim.gre_bindings, now)
        self._ended_in.set_limit(lim.ended_calls, now)
        self._ended_out.set_limit(lim.ended_calls, now)

    def _forget(self, key: object, entry: Binding, now: float) -> None:
        self._count("pptp:state-evicted")

    def _call_evicted(self, key: CallKey, call: Call, now: float) -> None:
        self._count("pptp:calls-evicted")
        self._free_id(call)
        self._end(call, now, "evicted")

    def _free_id(self, call: Call) -> None:
        """The call's WAN Call ID is free again, unless the far end may still hold the call (it
        ended here without a clear on a connection that lives on): then it is held."""
        ctl = call.control
        if ctl.tracked and not ctl.evicted:
            ctl.held[call.wan_call_id] = call.lan_call_id
        else:
            self._ids.get((call.remote, call.wan), set()).discard(call.wan_call_id)

    def _release_held(self, ctl: Control, wan_id: int | None = None) -> None:
        ids = self._ids.get((ctl.remote, ctl.wan), set())
        for w in ([wan_id] if wan_id is not None else list(ctl.held)):
            if ctl.held.pop(w, None) is not None:
                ids.discard(w)

    def _control_evicted(self, key: tuple[bytes, int, bytes, int], ctl: Control, now: float) -> None:
        self._count("pptp:controls-evicted")
        ctl.tracked = False
        ctl.evicted = True
        for call in list(ctl.by_lan.values()):
            self._end(call, now, "evicted")
        self._release_held(ctl)

    # ------------------------------------------------------------------ bookkeeping

    def tear_down(self, now: float) -> int:
        torn = 0
        for call in self._by_wan.values():
            torn += 1 if call.up else 0
            self._end(call, now, "switched-off")
        for ctl in self._controls.values():
            ctl.tracked = False  # its stream position is lost; it stays ordinary TCP
            self._release_held(ctl)
        self._controls.clear()
        torn += len(self._bind)
        self._bind.clear()
        self._ended_in.clear()
        self._ended_out.clear()
        return torn

    def tick(self, now: float) -> None:
        limit = self.timeouts.gre
        for call in self._by_wan.values():
            self._fold(call)
            if now - call.last_seen > limit:
                self._end(call, now, "timeout")
        for bkey, b in self._bind.items():
            if now - b.last_seen > limit:
                self._bind.pop(bkey)
        for ended in (self._ended_in, self._ended_out):
            for ekey, e in ended.items():
                if now - e.last_seen > limit:
                    ended.pop(ekey)

    def stats(self) -> dict[str, int]:
        self._fold_all()
        out = dict(self._counters)
        out["calls"] = len(self._by_wan)
        out["tunnels"] = sum(1 for c in self._by_wan.values() if c.up)
        out["control_connections"] = len(self._controls)
        out["gre_address_bindings"] = len(self._bind)
        out["gre_packets"] = self.gre_packets
        out["ended_calls"] = len(self._ended_in) + len(self._ended_out)
        out["calls_evicted"] = self._by_wan.evicted
        out["controls_evicted"] = self._controls.evicted
        return out

    def tunnels(self) -> list[dict[str, Any]]:
        self._fold_all()
        out: list[dict[str, Any]] = []
        for c in self._by_wan.values():
            out.append({"proto": "pptp", "lan": ip_text(c.lan), "remote": ip_text(c.remote),
                        "wan": ip_text(c.wan), "lan_call_id": c.lan_call_id,
                        "wan_call_id": c.wan_call_id, "remote_call_id": c.remote_call_id,
                        "state": "up" if c.up else "connecting", "since": c.created,
                        "last_seen": c.last_seen, "lan_is_server": not c.control.outbound})
        for (remote, wan), b in self._bind.items():
            out.append({"proto": "gre", "lan": ip_text(b.lan), "remote": ip_text(remote),
                        "wan": ip_text(wan), "state": "address-only", "last_seen": b.last_seen})
        return out

    # ------------------------------------------------------------------ restart

    def snapshot(self, now: float) -> dict[str, Any]:
        """Control connections (stream positions, pending rewrites), calls and their Call ID
        maps, address-only GRE bindings and ended calls; times relative to ``now``."""
        def t(x: float) -> float:
            return round(x - now, 3)

        self._fold_all()
        controls = []
        for ctl in self._controls.values():
            calls = [[c.lan_call_id, c.wan_call_id, c.remote_call_id, c.up, t(c.created),
                      t(c.last_seen)] for c in ctl.by_lan.values() if not c.ended]
            controls.append([ctl.lan.hex(), ctl.lan_port, ctl.wan.hex(), ctl.wan_port,
                             ctl.remote.hex(), ctl.remote_port, ctl.outbound, t(ctl.last_seen),
                             ctl.tracked, ctl.from_lan.saved(), ctl.from_remote.saved(), calls,
                             None if ctl.far_end is None else ctl.far_end.saved()])
        ended = [[[k[0].hex(), k[1].hex(), k[2], b.lan.hex(), t(b.last_seen)] for k, b in e.items()]
                 for e in (self._ended_in, self._ended_out)]
        binds = [[r.hex(), w.hex(), b.lan.hex(), t(b.last_seen)] for (r, w), b in self._bind.items()]
        return {"controls": controls, "ended": ended, "bindings": binds}

    def restore(self, data: dict[str, Any], now: float) -> int:
        ctx = need_ctx(self.ctx)

        n = 0
        limit = self.timeouts.gre
        for rec in data.get("controls", []):
            lan, lport, wan, wport = bytes.fromhex(rec[0]), int(rec[1]), bytes.fromhex(rec[2]), int(rec[3])
            remote, rport = bytes.fromhex(rec[4]), int(rec[5])
            flow = ctx.find_flow(PROTO_TCP, lan, lport, remote, rport)
            if flow is None or flow.wan_addr != wan or flow.wan_port != wport:
                self._count("pptp:restore-skipped")
                continue
            ctl = Control(lan, lport, wan, wport, remote, rport, bool(rec[6]), now + float(rec[7]),
                          tracked=bool(rec[8]), from_lan=StreamDir.from_saved(rec[9]),
                          from_remote=StreamDir.from_saved(rec[10]),
                          far_end=None if rec[12] is None else StreamDir.from_saved(rec[12]))
            flow.helper_state = ctl
            self._controls.add((remote, rport, wan, wport), ctl, ctl.last_seen)
            n += 1
            for lan_id, wan_id, remote_id, up, created, seen in rec[11]:
                key = (remote, wan, int(wan_id))
                if key in self._by_wan or now + float(seen) + limit <= now:
                    self._count("pptp:restore-skipped")
                    continue
                call = Call(lan, remote, wan, int(lan_id), int(wan_id), ctl, now + float(created),
                            now + float(seen), None, bool(up))
                ctl.by_lan[call.lan_call_id] = call
                ctl.by_wan[call.wan_call_id] = call
                self._by_wan.add(key, call, call.last_seen)
                self._ids.setdefault((remote, wan), set()).add(call.wan_call_id)
                pair = (lan, remote)
                self._pairs[pair] = self._pairs.get(pair, 0) + 1
                if remote_id is not None:
                    self._set_remote(call, int(remote_id))
                n += 1
        for table, recs in zip((self._ended_in, self._ended_out), data.get("ended", [[], []]),
                               strict=False):
            for k0, k1, k2, lan_hex, seen in recs:
                table.add((bytes.fromhex(k0), bytes.fromhex(k1), int(k2)),
                          Binding(bytes.fromhex(lan_hex), now + float(seen)), now + float(seen))
        for r, w, lan_hex, seen in data.get("bindings", []):
            wan = bytes.fromhex(w)
            if not ctx.is_wan_address(wan) or not ctx.is_lan(bytes.fromhex(lan_hex)):
                continue
            self._bind.add((bytes.fromhex(r), wan), Binding(bytes.fromhex(lan_hex), now + float(seen)),
                           now + float(seen))
            n += 1
        return n

    # ------------------------------------------------------------------ calls

    def _alloc_wan_id(self, remote: bytes, wan: bytes, lan_id: int) -> int | None:
        used = self._ids.setdefault((remote, wan), set())
        if lan_id not in used:
            return lan_id
        hi = lan_id & 0xFF00
        for low in range(1, 256):  # same high byte first: a split Call ID then still translates
            cand = hi | ((lan_id + low) & 0xFF)
            if cand and cand not in used:
                return cand
        for step in range(1, 0x10000):
            cand = (lan_id + step) & 0xFFFF
            if cand and cand not in used:
                return cand
        return None

    def _new_call(self, ctl: Control, lan_id: int, now: float) -> Call | None:
        if len(ctl.by_lan) + len(ctl.held) >= self.limits.calls_per_control:
            self._count("pptp:call-limit")
            return None
        wan_id = self._alloc_wan_id(ctl.remote, ctl.wan, lan_id)
        if wan_id is None:
            self._count("pptp:call-ids-exhausted")
            return None
        if wan_id != lan_id:
            self._count("pptp:call-id-collision")
        call = Call(ctl.lan, ctl.remote, ctl.wan, lan_id, wan_id, ctl, now, now)
        ctl.by_lan[lan_id] = call
        ctl.by_wan[wan_id] = call
        self._by_wan.add((ctl.remote, ctl.wan, wan_id), call, now)
        self._ids.setdefault((ctl.remote, ctl.wan), set()).add(wan_id)
        pair = (ctl.lan, ctl.remote)
        self._pairs[pair] = self._pairs.get(pair, 0) + 1
        self._ended_in.pop((ctl.remote, ctl.wan, wan_id))
        return call

    def _seen(self, call: Call, now: float) -> None:
        """The call was used (GRE or control traffic): it is its host's most recent."""
        if now - call.last_seen >= LRU_GRANULARITY:
            self._by_wan.touch((call.remote, call.wan, call.wan_call_id), call.lan, now)
            # a busy call keeps its control connection too (it is quiet between echoes)
            ctl = call.control
            self._controls.touch((ctl.remote, ctl.remote_port, ctl.wan, ctl.wan_port), ctl.lan, now)
        call.last_seen = now

    def _fold(self, call: Call) -> None:
        """Bring what the engine's fast path saw of this call (natpass.nat.ipfast) into it."""
        latest = call.last_seen
        for e in (call.fast_out, call.fast_in):
            if e is not None:
                self.gre_packets += e.take_packets()
                if e.last > latest:
                    latest = e.last
        if latest > call.last_seen:
            self._seen(call, latest)

    def _fold_all(self) -> None:
        for call in self._by_wan.values():
            if call.fast_out is not None or call.fast_in is not None:
                self._fold(call)

    def _unfast(self, call: Call, out: bool = True, inb: bool = True) -> None:
        """Take the call's GRE off the engine's fast path (it ended or its ids changed)."""
        self._fold(call)
        ctx = self.ctx
        if out and call.fast_out is not None:
            if ctx is not None:
                ctx.ip_fast_remove(call.fast_out)
            call.fast_out = None
        if inb and call.fast_in is not None:
            if ctx is not None:
                ctx.ip_fast_remove(call.fast_in)
            call.fast_in = None

    def _set_remote(self, call: Call, remote_id: int) -> None:
        self._unfast(call, inb=False)
        if call.remote_call_id is not None:
            self._by_out.pop((call.lan, call.remote, call.remote_call_id), None)
        call.remote_call_id = remote_id
        self._by_out[(call.lan, call.remote, remote_id)] = call
        self._ended_out.pop((call.lan, call.remote, remote_id))

    def _up(self, call: Call, now: float) -> None:
        if call.up:
            return
        call.up = True
        self._count("pptp:tunnels-up")
        if self.ctx is not None:
            self.ctx.log("tunnel-up", proto="pptp", lan=ip_text(call.lan), remote=ip_text(call.remote),
                         wan=ip_text(call.wan), call_id=call.lan_call_id, wan_call_id=call.wan_call_id,
                         peer_call_id=call.remote_call_id)

    def _end(self, call: Call, now: float, why: str) -> None:
        self._unfast(call)
        ctl = call.control
        if ctl.by_lan.get(call.lan_call_id) is call:
            del ctl.by_lan[call.lan_call_id]
        if ctl.by_wan.get(call.wan_call_id) is call:
            del ctl.by_wan[call.wan_call_id]
        key_in = (call.remote, call.wan, call.wan_call_id)
        if self._by_wan.get(key_in) is call:
            self._by_wan.pop(key_in)
            if why in HELD_AFTER:
                self._free_id(call)
            else:
                self._ids.get((call.remote, call.wan), set()).discard(call.wan_call_id)
        if call.ended:
            return
        call.ended = True
        pair = (call.lan, call.remote)
        n = self._pairs.get(pair, 0) - 1
        if n > 0:
            self._pairs[pair] = n
        else:
            self._pairs.pop(pair, None)
        self._ended_in.add(key_in, Binding(call.lan, now), now)
        if call.remote_call_id is not None:
            key_out = (call.lan, call.remote, call.remote_call_id)
            if self._by_out.get(key_out) is call:
                del self._by_out[key_out]
            self._ended_out.add(key_out, Binding(call.lan, now), now)
        if call.up:
            call.up = False
            self._count("pptp:tunnels-down")
            if self.ctx is not None:
                self.ctx.log("tunnel-down", proto="pptp", lan=ip_text(call.lan),
                             remote=ip_text(call.remote), wan=ip_text(call.wan),
                             call_id=call.lan_call_id, wan_call_id=call.wan_call_id,
                             reason=why, duration=now - call.created)

    # ------------------------------------------------------------------ control connection

    def _control_for(self, flow: FlowView, now: float) -> Control:
        ctl = flow.helper_state
        if isinstance(ctl, Control):
            return ctl
        ctl = Control(flow.lan_addr, flow.lan_port, flow.wan_addr, flow.wan_port, flow.remote_addr,
                      flow.remote_port, flow.outbound, now)
        flow.helper_state = ctl
        self._controls.add((ctl.remote, ctl.remote_port, ctl.wan, ctl.wan_port), ctl, now)
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
                    return self._lost(False)  # its Call IDs would leave untranslated
                return None
            flow.helper_state = None  # a SYN: a new control connection reusing this flow
            ctl = self._control_for(flow, now)
        if now - ctl.last_seen >= LRU_GRANULARITY:
            self._controls.touch((ctl.remote, ctl.remote_port, ctl.wan, ctl.wan_port), ctl.lan, now)
        ctl.last_seen = now
        for call in ctl.by_lan.values():
            self._seen(call, now)  # control traffic (echo) keeps the calls known
        d = ctl.from_lan if from_lan else ctl.from_remote
        return self._segment(ctl, d, buf, ihl, from_lan, False, now)

    def on_flow_closed(self, flow: FlowView, now: float) -> None:
        ctl = flow.helper_state
        if not isinstance(ctl, Control):
            return
        for d in (ctl.from_lan, ctl.from_remote):
            if d.partial and d.broken is None:
                self._count("pptp:truncated")
        ctl.tracked = False
        for call in list(ctl.by_lan.values()):
            self._end(call, now, "control-closed")
        self._release_held(ctl)
        key = (ctl.remote, ctl.remote_port, ctl.wan, ctl.wan_port)
        if self._controls.get(key) is ctl:
            self._controls.pop(key)

    def _segment(self, ctl: Control, d: StreamDir, buf: bytearray, ihl: int, from_lan: bool,
                 far_end: bool, now: float) -> str | None:
        """Parse (and rewrite) the payload of one TCP segment of a control connection."""
        total = u16(buf, 2)
        if total > len(buf) or total < ihl + 20:
            return None
        doff = (buf[ihl + 12] >> 4) * 4
        pay = ihl + doff
        if doff < 20 or pay > total:
            return None
        seq = u32(buf, ihl + 4)
        if buf[ihl + 13] & 0x02:  # SYN occupies one sequence number
            seq = (seq + 1) & SEQ_MASK
            if d.next_seq != seq:  # first SYN, or a new connection on the same 4-tuple
                self._restart(d, seq)
        plen = total - pay
        if plen == 0:
            return None  # SYN, ACK, FIN, RST without data always pass: the connection can end
        if d.broken is not None:
            return self._lost(far_end)
        if d.next_seq is None:
            d.next_seq = seq  # picked up mid-stream: assume a message starts here (cookie checks it)
        ahead = (seq - d.next_seq) & SEQ_MASK
        if ahead and ahead < HALF_SEQ:
            if not far_end:
                self._count("pptp:out-of-order")
            return "pptp:out-of-order"
        old = 0 if ahead == 0 else min((d.next_seq - seq) & SEQ_MASK, plen)
        if old:
            self._replay_rewrites(d, buf, pay, seq, old)
        if old == plen:
            return None
        pos = old
        while pos < plen and d.broken is None:
            if not d.partial:
                d.msg_seq = (seq + pos) & SEQ_MASK
            want = (P.HEADER_LEN if d.msg_len == 0 else d.msg_len) - len(d.partial)
            take = min(want, plen - pos)
            d.partial += buf[pay + pos:pay + pos + take]
            pos += take
            if d.msg_len == 0:
                if len(d.partial) < P.HEADER_LEN:
                    break
                self._header(d, far_end)
                if d.broken is not None:
                    return self._lost(far_end)
            for off, kind in list(d.pending):
                if len(d.partial) >= off + 2:
                    d.pending.remove((off, kind))
                    self._field(ctl, d, buf, pay, seq, plen, off, kind, from_lan, far_end, now)
            if d.broken is not None:
                return self._lost(far_end)
            if len(d.partial) == d.msg_len:
                if not d.skip and not far_end:
                    self._message(ctl, d, from_lan, now)
                d.partial = bytearray()
                d.msg_len = 0
                d.pending = []
                d.values = {}
                d.skip = False
        d.next_seq = (seq + plen) & SEQ_MASK
        return None

    def _lost(self, far_end: bool) -> str:
        """The framing of this direction is lost (bad cookie or length): its data is dropped from
        now on. Passing it untranslated could put a LAN Call ID on the wire that collides with
        another client's WAN id, and GRE would then reach the wrong host; failing closed makes
        the client reconnect on a fresh, followed, connection."""
        if not far_end:
            self._count("pptp:stream-lost-drops")
        return "pptp:stream-lost"

    @staticmethod
    def _restart(d: StreamDir, seq: int) -> None:
        d.next_seq = seq
        d.partial = bytearray()
        d.msg_len = 0
        d.skip = False
        d.pending = []
        d.values = {}
        d.broken = None
        d.rewrites.clear()

    def _header(self, d: StreamDir, far_end: bool) -> None:
        h = d.partial
        length = u16(h, 0)
        mtype = u16(h, 2)
        cookie = u32(h, 4)
        ctype = u16(h, 8)
        count = (lambda name: None) if far_end else self._count
        if length < P.HEADER_LEN or length > P.MAX_MESSAGE_LEN:
            d.broken = f"bad length {length}"
            count("pptp:bad-length")
            count("pptp:stream-lost")
            d.partial = bytearray()
            return
        if cookie != P.MAGIC_COOKIE:
            d.broken = f"bad magic cookie {cookie:#010x}"
            count("pptp:bad-cookie")
            count("pptp:stream-lost")
            d.partial = bytearray()
            return
        d.msg_len = length
        d.ctype = ctype
        d.skip = False
        d.pending = []
        if mtype != P.MESSAGE_TYPE_CONTROL or ctype not in P.LENGTHS:
            count("pptp:unknown-type")
            d.skip = True
        elif length < P.LENGTHS[ctype]:
            count("pptp:truncated")
            d.skip = True
        elif length > P.LENGTHS[ctype]:
            count("pptp:bad-length")
            d.skip = True
        else:
            d.pending = list(FIELDS[ctype])

    def _field(self, ctl: Control, d: StreamDir, buf: bytearray, pay: int, seq: int, plen: int,
               off: int, kind: str, from_lan: bool, far_end: bool, now: float) -> None:
        old = bytes(d.partial[off:off + 2])
        value = (old[0] << 8) | old[1]
        d.values[kind] = value
        new_value = self._translate(ctl, d.ctype, kind, value, from_lan, far_end, now)
        if new_value is None or new_value == value:
            return
        new = bytes(((new_value >> 8) & 0xFF, new_value & 0xFF))
        start = (d.msg_seq + off) & SEQ_MASK
        if not self._write(buf, pay, seq, plen, start, old, new, far_end):
            # Half of the Call ID already went out unchanged: the value on the wire would be
            # nobody's (or somebody else's) id. Fail closed.
            if not far_end:
                self._count("pptp:split-call-id")
            d.broken = "split Call ID"
        d.rewrites.append((start, old, new))

    def _write(self, buf: bytearray, pay: int, seq: int, plen: int, start: int, old: bytes,
               new: bytes, far_end: bool) -> bool:
        """Put ``new`` at stream position ``start`` where it falls inside this segment; False when
        a byte that must change already left in an earlier segment."""
        ctx = need_ctx(self.ctx)
        idx = [(start + j - seq) & SEQ_MASK for j in range(len(new))]
        ok = True
        for j in range(len(new)):
            if idx[j] < plen:
                ctx.rewrite(buf, pay + idx[j], new[j:j + 1])
            elif old[j] != new[j]:
                ok = False
        return ok

    def _replay_rewrites(self, d: StreamDir, buf: bytearray, pay: int, seq: int, n: int) -> None:
        """A retransmission: give the bytes already parsed the same rewrite as the first time."""
        ctx = need_ctx(self.ctx)
        for start, old, new in d.rewrites:
            for j in range(len(new)):
                i = (start + j - seq) & SEQ_MASK
                if i < n and buf[pay + i] == old[j]:
                    ctx.rewrite(buf, pay + i, new[j:j + 1])

    def _translate(self, ctl: Control, ctype: int, kind: str, value: int, from_lan: bool,
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
                call = self._new_call(ctl, value, now)
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

    def _message(self, ctl: Control, d: StreamDir, from_lan: bool, now: float) -> None:
        """State changes once a whole message has been seen."""
        ctype = d.ctype
        own = d.values.get(OWN)
        peer = d.values.get(PEER)
        if ctype in STOPPING:
            for c in list(ctl.by_lan.values()):
                self._end(c, now, "stop-control-connection")
            self._release_held(ctl)
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
            self._set_remote(call, remote_id)
            if d.partial[RESULT_OFFSET] == RESULT_OK:
                self._up(call, now)
            else:
                self._end(call, now, "call-refused")
        elif ctype in ENDING and own is not None:
            if from_lan:
                call = ctl.by_lan.get(own)
            else:
                call = next((c for c in ctl.by_lan.values() if c.remote_call_id == own), None)
                if call is None:
                    # Some servers put the peer's id (ours, the WAN id) in their CDN.
                    call = ctl.by_wan.get(own)
            if call is not None:
                self._end(call, now, "call-cleared")
            elif from_lan:
                held = next((w for w, lan in ctl.held.items() if lan == own), None)
                if held is not None:
                    self._release_held(ctl, held)
            elif own in ctl.held:
                self._release_held(ctl, own)

    # ------------------------------------------------------------------ GRE

    def on_ip_packet(self, buf: bytearray, ihl: int, from_lan: bool, now: float) -> int | str:
        if not self.enabled:
            return V.passthrough_disabled(self.name)
        r = self._gre(buf, ihl, from_lan, now)
        if not isinstance(r, str):
            self.gre_packets += 1  # what the usage record calls "used"
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
                call = self._by_out.get((src, dst, call_id))
                if call is not None:
                    self._seen(call, now)
                    set_ip_addr(buf, OFF_SRC, call.wan)
                    if call.fast_out is None or not call.fast_out.live:
                        # the call's later GRE this way is the engine's (natpass.nat.ipfast)
                        call.fast_out = ctx.ip_fast_path(PROTO_GRE, True, src, dst, call_id, call.wan,
                                                         None, now)
                    return V.TO_WAN
                if (src, dst, call_id) in self._ended_out or self._has_calls(src, dst):
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
            call = self._by_wan.get((src, dst, call_id))
            if call is not None:
                self._seen(call, now)
                set_ip_addr(buf, OFF_DST, call.lan)
                G.set_call_id(buf, ihl, call.lan_call_id)
                if call.fast_in is None or not call.fast_in.live:
                    call.fast_in = ctx.ip_fast_path(PROTO_GRE, False, src, dst, call_id, call.lan,
                                                    call.lan_call_id, now)
                return V.TO_LAN
            if (src, dst, call_id) in self._ended_in:
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

    def _has_calls(self, lan: bytes, remote: bytes) -> bool:
        return (lan, remote) in self._pairs

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
                cands = [c for c in self._by_wan.values() if c.remote == src and c.wan == wan
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
        ctl = self._controls.get((src, sport, dst, dport))
        if ctl is None and ctx.is_lan(dst):
            ctl = next((c for c in self._controls.values() if c.remote == src and c.remote_port == sport
                        and c.lan == dst and c.lan_port == dport), None)
        if ctl is None or not ctl.tracked:
            return
        if ctl.far_end is None:
            ctl.far_end = StreamDir()
        self._segment(ctl, ctl.far_end, buf, ihl, False, True, now)
