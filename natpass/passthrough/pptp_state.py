"""Snapshot and restore of the PPTP helper's state across a router restart.

Control connections (stream positions, pending rewrites), calls and their Call ID maps,
address-only GRE bindings and ended calls, as plain data with times relative to ``now``. A
control connection is restored only onto the engine flow it belonged to (same WAN address and
port), so a restore never invents a mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from natpass.nat.helper import HelperContext
from natpass.packets.ipv4 import PROTO_TCP
from natpass.passthrough._common import HostLru
from natpass.passthrough.pptp_calls import CallTable
from natpass.passthrough.pptp_records import Binding, Call, Control, StreamDir

# (remote, wan) of an address-only GRE binding
BindKey = tuple[bytes, bytes]


def snapshot(table: CallTable, bindings: HostLru[BindKey, Binding], now: float) -> dict[str, Any]:
    """The state of ``table`` and ``bindings`` as plain data."""
    def t(x: float) -> float:
        return round(x - now, 3)

    table.fold_all()
    controls = []
    for ctl in table.controls.values():
        calls = [[c.lan_call_id, c.wan_call_id, c.remote_call_id, c.up, t(c.created),
                  t(c.last_seen)] for c in ctl.by_lan.values() if not c.ended]
        controls.append([ctl.lan.hex(), ctl.lan_port, ctl.wan.hex(), ctl.wan_port,
                         ctl.remote.hex(), ctl.remote_port, ctl.outbound, t(ctl.last_seen),
                         ctl.tracked, ctl.from_lan.saved(), ctl.from_remote.saved(), calls,
                         None if ctl.far_end is None else ctl.far_end.saved()])
    ended = [[[k[0].hex(), k[1].hex(), k[2], b.lan.hex(), t(b.last_seen)] for k, b in e.items()]
             for e in (table.ended_in, table.ended_out)]
    binds = [[r.hex(), w.hex(), b.lan.hex(), t(b.last_seen)] for (r, w), b in bindings.items()]
    return {"controls": controls, "ended": ended, "bindings": binds}


def restore(table: CallTable, bindings: HostLru[BindKey, Binding], ctx: HelperContext,
            data: dict[str, Any], now: float, limit: float, count: Callable[[str], None]) -> int:
    """Put :func:`snapshot` data back (calls idle beyond ``limit`` are skipped); entries restored."""
    n = 0
    for rec in data.get("controls", []):
        lan, lport, wan, wport = bytes.fromhex(rec[0]), int(rec[1]), bytes.fromhex(rec[2]), int(rec[3])
        remote, rport = bytes.fromhex(rec[4]), int(rec[5])
        flow = ctx.find_flow(PROTO_TCP, lan, lport, remote, rport)
        if flow is None or flow.wan_addr != wan or flow.wan_port != wport:
            count("pptp:restore-skipped")
            continue
        ctl = Control(lan, lport, wan, wport, remote, rport, bool(rec[6]), now + float(rec[7]),
                      tracked=bool(rec[8]), from_lan=StreamDir.from_saved(rec[9]),
                      from_remote=StreamDir.from_saved(rec[10]),
                      far_end=None if rec[12] is None else StreamDir.from_saved(rec[12]))
        flow.helper_state = ctl
        table.controls.add((remote, rport, wan, wport), ctl, ctl.last_seen)
        n += 1
        for lan_id, wan_id, remote_id, up, created, seen in rec[11]:
            key = (remote, wan, int(wan_id))
            if key in table.by_wan or now + float(seen) + limit <= now:
                count("pptp:restore-skipped")
                continue
            call = Call(lan, remote, wan, int(lan_id), int(wan_id), ctl, now + float(created),
                        now + float(seen), None, bool(up))
            table.add(call, call.last_seen)
            if remote_id is not None:
                table.set_remote(call, int(remote_id))
            n += 1
    for ended, recs in zip((table.ended_in, table.ended_out), data.get("ended", [[], []]),
                           strict=False):
        for k0, k1, k2, lan_hex, seen in recs:
            ended.add((bytes.fromhex(k0), bytes.fromhex(k1), int(k2)),
                      Binding(bytes.fromhex(lan_hex), now + float(seen)), now + float(seen))
    for r, w, lan_hex, seen in data.get("bindings", []):
        wan = bytes.fromhex(w)
        if not ctx.is_wan_address(wan) or not ctx.is_lan(bytes.fromhex(lan_hex)):
            continue
        bindings.add((bytes.fromhex(r), wan), Binding(bytes.fromhex(lan_hex), now + float(seen)),
                     now + float(seen))
        n += 1
    return n
