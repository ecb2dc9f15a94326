"""The PPTP call table: followed control connections, calls, WAN Call ID allocation, call up/end.

Each LAN side Call ID gets a WAN side Call ID unique per (far end, WAN address). A call lives in
``by_wan`` (inbound GRE, and the table of all calls) and, once the far end's Call ID is known, in
``by_out`` (outbound GRE). Ended calls are remembered (``ended_in``, ``ended_out``) so that their
late GRE is dropped rather than sent by address. The rules that decide when a call is made,
answered or ended are the helper's (:mod:`natpass.passthrough.pptp`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from natpass.nat.helper import HelperContext
from natpass.passthrough._common import LRU_GRANULARITY, HostLru, ip_text
from natpass.passthrough.pptp_records import Binding, Call, CallKey, Control, PptpLimits

# (remote, remote port, wan, wan port) of a control connection
ControlKey = tuple[bytes, int, bytes, int]
# Ends after which the far end may still hold the call: its WAN Call ID is not reused meanwhile.
HELD_AFTER: Final = frozenset({"timeout", "evicted"})


class CallTable:
    """Control connections and calls of the PPTP helper, bounded by :class:`PptpLimits`."""

    def __init__(self, limits: PptpLimits, count: Callable[[str], None],
                 context: Callable[[], HelperContext | None]) -> None:
        self.limits = limits
        self._count = count
        self._context = context
        self.controls: HostLru[ControlKey, Control] = HostLru(limits.controls, self._control_evicted)
        self.by_wan: HostLru[CallKey, Call] = HostLru(limits.calls, self._call_evicted)
        self.by_out: dict[CallKey, Call] = {}  # (lan, remote, remote id): outbound GRE
        self.ids: dict[tuple[bytes, bytes], set[int]] = {}  # WAN ids in use per (remote, wan)
        self.pairs: dict[tuple[bytes, bytes], int] = {}  # (lan, remote) -> calls
        self.ended_in: HostLru[CallKey, Binding] = HostLru(limits.ended_calls, self.forget)
        self.ended_out: HostLru[CallKey, Binding] = HostLru(limits.ended_calls, self.forget)
        self.gre_packets = 0  # GRE passed, by the helper (calls and by address) or the fast path

    def forget(self, key: object, entry: Binding, now: float) -> None:
        """An address-only binding or ended call pushed out by the limits."""
        self._count("pptp:state-evicted")

    def _call_evicted(self, key: CallKey, call: Call, now: float) -> None:
        self._count("pptp:calls-evicted")
        self._free_id(call)
        self.end(call, now, "evicted")

    def _free_id(self, call: Call) -> None:
        """The call's WAN Call ID is free again, unless the far end may still hold the call (it
        ended here without a clear on a connection that lives on): then it is held."""
        ctl = call.control
        if ctl.tracked and not ctl.evicted:
            ctl.held[call.wan_call_id] = call.lan_call_id
        else:
            self.ids.get((call.remote, call.wan), set()).discard(call.wan_call_id)

    def release_held(self, ctl: Control, wan_id: int | None = None) -> None:
        """Free the held WAN Call IDs of ``ctl`` (or only ``wan_id``)."""
        ids = self.ids.get((ctl.remote, ctl.wan), set())
        for w in ([wan_id] if wan_id is not None else list(ctl.held)):
            if ctl.held.pop(w, None) is not None:
                ids.discard(w)

    def _control_evicted(self, key: ControlKey, ctl: Control, now: float) -> None:
        self._count("pptp:controls-evicted")
        ctl.tracked = False
        ctl.evicted = True
        for call in list(ctl.by_lan.values()):
            self.end(call, now, "evicted")
        self.release_held(ctl)

    def tear_down(self, now: float) -> int:
        """End every call and stop following every control connection; the calls that were up."""
        torn = 0
        for call in self.by_wan.values():
            torn += 1 if call.up else 0
            self.end(call, now, "switched-off")
        for ctl in self.controls.values():
            ctl.tracked = False  # its stream position is lost; it stays ordinary TCP
            self.release_held(ctl)
        self.controls.clear()
        self.ended_in.clear()
        self.ended_out.clear()
        return torn

    def expire(self, now: float, limit: float) -> None:
        """End calls and forget ended calls idle for more than ``limit`` seconds."""
        for call in self.by_wan.values():
            self.fold(call)
            if now - call.last_seen > limit:
                self.end(call, now, "timeout")
        for ended in (self.ended_in, self.ended_out):
            for ekey, e in ended.items():
                if now - e.last_seen > limit:
                    ended.pop(ekey)

    # ------------------------------------------------------------------ calls

    def _alloc_wan_id(self, remote: bytes, wan: bytes, lan_id: int) -> int | None:
        used = self.ids.setdefault((remote, wan), set())
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

    def new_call(self, ctl: Control, lan_id: int, now: float) -> Call | None:
        """A new call of ``ctl`` with a WAN Call ID; None when the limits or the ids run out."""
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
        self.add(call, now)
        self.ended_in.pop((ctl.remote, ctl.wan, wan_id))
        return call

    def add(self, call: Call, now: float) -> None:
        """Enter ``call`` (its WAN Call ID free) in its control connection and the table."""
        ctl = call.control
        ctl.by_lan[call.lan_call_id] = call
        ctl.by_wan[call.wan_call_id] = call
        self.by_wan.add((call.remote, call.wan, call.wan_call_id), call, now)
        self.ids.setdefault((call.remote, call.wan), set()).add(call.wan_call_id)
        pair = (call.lan, call.remote)
        self.pairs[pair] = self.pairs.get(pair, 0) + 1

    def has_calls(self, lan: bytes, remote: bytes) -> bool:
        """``lan`` has a live call with the far end ``remote``."""
        return (lan, remote) in self.pairs

    def seen(self, call: Call, now: float) -> None:
        """The call was used (GRE or control traffic): it is its host's most recent."""
        if now - call.last_seen >= LRU_GRANULARITY:
            self.by_wan.touch((call.remote, call.wan, call.wan_call_id), call.lan, now)
            # a busy call keeps its control connection too (it is quiet between echoes)
            ctl = call.control
            self.controls.touch((ctl.remote, ctl.remote_port, ctl.wan, ctl.wan_port), ctl.lan, now)
        call.last_seen = now

    def fold(self, call: Call) -> None:
        """Bring what the engine's fast path saw of this call (natpass.nat.ipfast) into it."""
        latest = call.last_seen
        for e in (call.fast_out, call.fast_in):
            if e is not None:
                self.gre_packets += e.take_packets()
                if e.last > latest:
                    latest = e.last
        if latest > call.last_seen:
            self.seen(call, latest)

    def fold_all(self) -> None:
        """:meth:`fold` every call on the fast path (before counts or a snapshot are read)."""
        for call in self.by_wan.values():
            if call.fast_out is not None or call.fast_in is not None:
                self.fold(call)

    def _unfast(self, call: Call, out: bool = True, inb: bool = True) -> None:
        """Take the call's GRE off the engine's fast path (it ended or its ids changed)."""
        self.fold(call)
        ctx = self._context()
        if out and call.fast_out is not None:
            if ctx is not None:
                ctx.ip_fast_remove(call.fast_out)
            call.fast_out = None
        if inb and call.fast_in is not None:
            if ctx is not None:
                ctx.ip_fast_remove(call.fast_in)
            call.fast_in = None

    def set_remote(self, call: Call, remote_id: int) -> None:
        """The far end's Call ID of ``call`` (the key of its outbound GRE)."""
        self._unfast(call, inb=False)
        if call.remote_call_id is not None:
            self.by_out.pop((call.lan, call.remote, call.remote_call_id), None)
        call.remote_call_id = remote_id
        self.by_out[(call.lan, call.remote, remote_id)] = call
        self.ended_out.pop((call.lan, call.remote, remote_id))

    def up(self, call: Call, now: float) -> None:
        """The call was answered: the tunnel is up."""
        if call.up:
            return
        call.up = True
        self._count("pptp:tunnels-up")
        ctx = self._context()
        if ctx is not None:
            ctx.log("tunnel-up", proto="pptp", lan=ip_text(call.lan), remote=ip_text(call.remote),
                    wan=ip_text(call.wan), call_id=call.lan_call_id, wan_call_id=call.wan_call_id,
                    peer_call_id=call.remote_call_id)

    def end(self, call: Call, now: float, why: str) -> None:
        """The call ended (``why``): out of the table, remembered as ended."""
        self._unfast(call)
        ctl = call.control
        if ctl.by_lan.get(call.lan_call_id) is call:
            del ctl.by_lan[call.lan_call_id]
        if ctl.by_wan.get(call.wan_call_id) is call:
            del ctl.by_wan[call.wan_call_id]
        key_in = (call.remote, call.wan, call.wan_call_id)
        if self.by_wan.get(key_in) is call:
            self.by_wan.pop(key_in)
            if why in HELD_AFTER:
                self._free_id(call)
            else:
                self.ids.get((call.remote, call.wan), set()).discard(call.wan_call_id)
        if call.ended:
            return
        call.ended = True
        pair = (call.lan, call.remote)
        n = self.pairs.get(pair, 0) - 1
        if n > 0:
            self.pairs[pair] = n
        else:
            self.pairs.pop(pair, None)
        self.ended_in.add(key_in, Binding(call.lan, now), now)
        if call.remote_call_id is not None:
            key_out = (call.lan, call.remote, call.remote_call_id)
            if self.by_out.get(key_out) is call:
                del self.by_out[key_out]
            self.ended_out.add(key_out, Binding(call.lan, now), now)
        if call.up:
            call.up = False
            self._count("pptp:tunnels-down")
            ctx = self._context()
            if ctx is not None:
                ctx.log("tunnel-down", proto="pptp", lan=ip_text(call.lan),
                        remote=ip_text(call.remote), wan=ip_text(call.wan),
                        call_id=call.lan_call_id, wan_call_id=call.wan_call_id,
                        reason=why, duration=now - call.created)
