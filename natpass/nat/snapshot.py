"""The engine's translation state as plain data, and back (state saved across a restart).

:func:`snapshot` turns flows (with their mappings and WAN ports, TCP state and window tracking,
idle time), the port allocator's random state and every helper's own state
(:meth:`natpass.nat.helper.Helper.snapshot`) into JSON-able lists and dicts. Times are kept
relative to the instant of the snapshot, so a restore continues them from wall-clock time.
Fragments are not kept (a datagram cut by a restart is resent by its sender).

:func:`restore` validates every record against the running configuration and inserts what is
still valid through the engine's own paths (mapping indexes, port counts, per-host counts, the
timer wheel, the early-drop queue), so the engine's invariants hold as if the traffic had been
seen. A record that no longer fits (WAN address or port outside the config, a LAN host outside
the LAN prefixes, a forward that is gone, idle past its timeout, a clash with state already
there, the table limits) is skipped and counted by reason. Port forwards' static mappings come
from the config, not from the snapshot.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from natpass.nat.ports import PORT_BYTES
from natpass.nat.state import PROTO_ICMP, PROTO_TCP, PROTO_UDP, NatState
from natpass.nat.table import (
    DEAD,
    MAP_HOLDER,
    OUTBOUND,
    RELEASED,
    REPLIED,
    STATE_SHIFT,
    Flow,
    Mapping,
    TcpFlow,
)

FORMAT = 1  # version of the plain-data layout below
# Flow.flags bits worth keeping: the rest (slow-path, holder bits) is re-derived. RELEASED (the
# owning helper needs no per-packet calls) holds only while that helper's switch and strictness
# are as they were: each helper's are saved beside the flows.
_KEPT_FLAGS = OUTBOUND | REPLIED | RELEASED


@dataclass
class RestoreReport:
    """What a restore put back and what it skipped (reason -> count)."""

    flows: int = 0
    helpers: dict[str, int] = field(default_factory=dict)  # helper -> records restored
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str, n: int = 1) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + n

    def summary(self) -> str:
        parts = [f"{self.flows} flows"]
        parts += [f"{n} {name} records" for name, n in sorted(self.helpers.items())]
        text = "restored " + ", ".join(parts)
        if self.skipped:
            text += "; skipped " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return text


def _flow_record(st: NatState, f: Flow, now: float) -> list[Any]:
    m = f.mapping
    if f.flags & MAP_HOLDER:
        kind, mkey = "holder", b""
    elif m is None:
        kind, mkey = "", b""
    elif m.static:
        kind, mkey = "static", m.lan_key
    else:
        kind, mkey = "shared", m.lan_key
    h = f.helper
    rec: list[Any] = [f.proto, f.out_key.hex(), f.in_key.hex(),
                      f.flags & _KEPT_FLAGS | (f.flags >> STATE_SHIFT) << STATE_SHIFT,
                      round(f.last - now, 3), kind, mkey.hex(), h.name if h is not None else ""]
    if isinstance(f, TcpFlow):
        rec += [f.o_seq, f.i_seq, f.o_wmax, f.i_wmax]
    return rec


def snapshot(st: NatState, now: float) -> dict[str, Any]:
    """The engine's translation state at engine time ``now`` as plain data."""
    seen: set[int] = set()
    flows: list[list[Any]] = []
    # unreplied flows first, oldest first: their order is the early-drop order
    for f in st._unreplied:
        if not f.flags & (REPLIED | DEAD) and id(f) not in seen:
            seen.add(id(f))
            flows.append(_flow_record(st, f, now))
    for f in st.table:
        if id(f) not in seen:
            flows.append(_flow_record(st, f, now))
    rng = st._ports.rng.getstate()
    return {
        "format": FORMAT,
        "port_range": [st._ports.lo, st._ports.hi],
        "wan_addresses": [w.hex() for w in st._wans],
        "mapping": str(st._mapping),
        "rng": [rng[0], list(rng[1]), rng[2]],
        "flows": flows,
        "helpers": {h.name: d for h in st._helpers if _holds(d := h.snapshot(now))},
        "switches": {h.name: [h.enabled, h.strict] for h in st._helpers},
        "ticks": [_rel(st._next_tick, now), _rel(st._last_helper_tick, now)],
    }


def _holds(data: Any) -> bool:
    """A helper's snapshot holds at least one record (not only empty tables)."""
    if isinstance(data, dict):
        return any(_holds(v) for v in data.values())
    if isinstance(data, list):
        return any(not isinstance(v, (list, dict)) or _holds(v) for v in data)
    return False


def _rel(t: float, now: float) -> float | None:
    return None if t == float("-inf") else round(t - now, 6)


def restore(st: NatState, data: dict[str, Any], now: float, elapsed: float = 0.0) -> RestoreReport:
    """Put ``data`` (from :func:`snapshot`) into an engine holding no dynamic state yet.

    ``now`` is the engine's time at the restore and ``elapsed`` the wall-clock time since the
    snapshot: a flow idle for its timeout by now is skipped. Bad records are skipped and counted,
    never raised; a layout this code does not know raises ValueError."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("unknown engine snapshot layout")
    rep = RestoreReport()
    then = now - max(0.0, float(elapsed))  # the snapshot's instant on the engine's clock
    if (data.get("port_range") == [st._ports.lo, st._ports.hi]
            and data.get("wan_addresses") == [w.hex() for w in st._wans]):
        # same pool: new ports continue the same sequence as without the restart
        try:
            r = data["rng"]
            st._ports.rng.setstate((int(r[0]), tuple(int(x) for x in r[1]), r[2]))
        except (KeyError, TypeError, ValueError, IndexError):
            rep.skip("port-allocator-state")
    ticks = data.get("ticks")
    if isinstance(ticks, list) and len(ticks) == 2:
        if isinstance(ticks[0], (int, float)):
            st._next_tick = then + float(ticks[0])
        if isinstance(ticks[1], (int, float)):
            st._last_helper_tick = then + float(ticks[1])
    saved_switches = data.get("switches")
    # helpers whose released flows stay released: switch and strictness as when saved
    unchanged = {h.name for h in st._helpers if isinstance(saved_switches, dict)
                 and saved_switches.get(h.name) == [h.enabled, h.strict]}
    for rec in data.get("flows", []):
        try:
            why = _restore_flow(st, rec, then, now, unchanged)
        except (TypeError, ValueError, IndexError, KeyError):
            why = "malformed"
        if why is None:
            rep.flows += 1
        else:
            rep.skip(f"flows:{why}")
    helpers = data.get("helpers", {})
    for h in st._helpers:
        hd = helpers.get(h.name) if isinstance(helpers, dict) else None
        if not isinstance(hd, dict) or not _holds(hd):
            continue
        if not h.enabled:
            rep.skip(f"{h.name}:switched-off")
            continue
        try:
            rep.helpers[h.name] = h.restore(hd, then)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError):
            rep.skip(f"{h.name}:malformed")
    st._count("flows_restored", rep.flows)
    return rep


def _restore_flow(st: NatState, rec: list[Any], then: float, now: float,
                  unchanged: AbstractSet[str] = frozenset()) -> str | None:
    proto, out_hex, in_hex, flags, last_rel, kind, _mkey, helper_name = rec[:8]
    proto = int(proto)
    if not 0 < proto < 256:
        return "malformed"
    out_key, in_key = bytes.fromhex(out_hex), bytes.fromhex(in_hex)
    lan, remote = out_key[0:4], out_key[4:8]
    wan = in_key[4:8]
    if proto in (PROTO_TCP, PROTO_UDP):
        if len(out_key) != 12 or len(in_key) != 12 or in_key[0:4] != remote:
            return "malformed"
        lport = out_key[8] << 8 | out_key[9]
        rport = out_key[10] << 8 | out_key[11]
        wport = in_key[10] << 8 | in_key[11]
        if in_key[8:10] != out_key[10:12]:
            return "malformed"
    elif proto == PROTO_ICMP:
        if len(out_key) != 10 or len(in_key) != 10 or in_key[0:4] != remote:
            return "malformed"
        lport, rport, wport = out_key[8] << 8 | out_key[9], 0, in_key[8] << 8 | in_key[9]
    else:
        if len(out_key) != 8 or len(in_key) != 8 or in_key[0:4] != remote or kind:
            return "malformed"
        lport = rport = wport = 0
    if not st._is_lan(lan):
        return "lan-host-outside-lan"
    if wan not in st._wan_set:
        return "wan-address-gone"
    helper = st._helper_by_name.get(helper_name) if helper_name else None
    if helper_name and helper is None:
        return "helper-gone"
    last = then + float(last_rel)
    fl = int(flags)
    table = st.table
    if table.lookup_out(proto, out_key) is not None or table.lookup_in(proto, in_key) is not None:
        return "duplicate"
    if (st._max_flows and table.count >= st._max_flows) or (
            st._max_per_host and st._hosts.get(lan, 0) >= st._max_per_host):
        return "table-limits"
    mapping: Mapping | None = None
    holder = False
    if kind == "static":
        m = st._maps_wan[proto].get(wan + PORT_BYTES[wport])
        if not isinstance(m, Mapping) or not m.static or m.lan_key[0:6] != lan + PORT_BYTES[lport]:
            return "forward-gone"
        mapping = m
    elif kind in ("holder", "shared"):
        if proto not in (PROTO_TCP, PROTO_UDP, PROTO_ICMP):
            return "malformed"
        in_range = st._ports.lo <= wport <= st._ports.hi
        if not in_range and not (helper is not None and wport == lport):
            return "wan-port-outside-range"
        key = st._mapping_key(proto, lan, lport, remote, rport)
        existing = st._maps_lan[proto].get(key)
        if isinstance(existing, Flow):
            existing = st._promote(existing)
        if existing is not None:
            if existing.wan_key != wan + PORT_BYTES[wport]:
                return "mapping-conflict"
            mapping = existing
        else:
            wkey = wan + PORT_BYTES[wport]
            if not st._ports.is_free(proto, wkey):
                return "wan-port-taken"
            st._ports.count(proto, wan, wport, 1)
            if st._holders:
                holder = True
            else:
                mapping = Mapping(proto, key, wkey)
                if st._track_remotes:
                    mapping.remotes = {}
                st._maps_lan[proto][key] = mapping
                st._maps_wan[proto][wkey] = mapping
    elif kind:
        return "malformed"
    f = st._new_flow(proto, out_key, in_key, lan, lport, wan, wport, mapping, helper,
                     bool(fl & OUTBOUND), last)
    if holder:
        f.flags |= MAP_HOLDER
        st._maps_lan[proto].set_ep(lan, lport, f)
        st._maps_wan[proto].set_at(wan, wport, f)
    f.flags = (f.flags & ((1 << STATE_SHIFT) - 1)) | (fl >> STATE_SHIFT) << STATE_SHIFT
    if fl & REPLIED:
        st._replied(f, not fl & OUTBOUND)
    if fl & RELEASED and helper is not None and helper.name in unchanged:
        st._release(f, True)  # released before the restart: not back on the slow path
    if isinstance(f, TcpFlow) and len(rec) >= 12:
        f.o_seq, f.i_seq, f.o_wmax, f.i_wmax = (int(x) for x in rec[8:12])
    f.timeout = st._timeout_for(f)
    if int(last + f.timeout) + 1 <= now:  # its timer bucket is due: the next tick expires it
        st._remove(f, "flows_restore_expired")
        return "idle-expired"
    st._schedule(f, last + f.timeout)
    return None
