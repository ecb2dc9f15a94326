"""Prometheus text exposition (format 0.0.4) of the router status, for ``GET /metrics``.

Built from the daemon's ``status()`` dict only, so it never touches the packet path. The reader
is tolerant: a key the engine does not report simply yields no sample.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SWITCH_NAMES = ("pptp", "ipsec", "l2tp")
# Engine.counters: packets_from_lan, bytes_from_wan, ... (docs/ENGINE-API.md).
_DIRECTION = re.compile(r"^(packets|bytes)_from_(lan|wan)$")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _fmt(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Families:
    """Samples grouped by metric family, each family with one HELP and one TYPE line."""

    def __init__(self) -> None:
        self._order: list[str] = []
        self._meta: dict[str, tuple[str, str]] = {}
        self._samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}

    def add(self, name: str, kind: str, help_text: str, value: Any, **labels: str) -> None:
        number = _number(value)
        if number is None:
            return
        if name not in self._meta:
            self._order.append(name)
            self._meta[name] = (kind, help_text)
            self._samples[name] = {}
        key = tuple(sorted((k, str(v)) for k, v in labels.items()))
        series = self._samples[name]
        series[key] = series.get(key, 0.0) + number if kind == "counter" else number

    def render(self) -> str:
        out: list[str] = []
        for name in self._order:
            kind, help_text = self._meta[name]
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in self._samples[name].items():
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                out.append(f"{name}{{{label_text}}} {_fmt(value)}" if label_text else f"{name} {_fmt(value)}")
        return "\n".join(out) + "\n"


def switch_states(status: Mapping[str, Any], with_strict: bool = False) -> dict[str, bool]:
    """``{"pptp": bool, ...}`` from the status, whether switches is a dict of bools or of dicts;
    ``with_strict``: also the strict setting (not a passthrough switch of its own)."""
    raw = status.get("switches")
    states: dict[str, bool] = {}
    if isinstance(raw, Mapping):
        for name, value in raw.items():
            if name == "strict" and not with_strict:
                continue
            if isinstance(value, Mapping):
                value = value.get("on", value.get("enabled"))
            if isinstance(value, bool):
                states[str(name)] = value
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                states[item["name"]] = bool(item.get("on", item.get("enabled")))
    return states


def helpers(status: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-helper ``{"stats": {...}, "tunnels": [...]}`` by switch name."""
    raw = status.get("helpers")
    found: dict[str, dict[str, Any]] = {}
    if isinstance(raw, Mapping):
        items: Iterable[tuple[Any, Any]] = raw.items()
    elif isinstance(raw, list):
        items = ((h.get("name"), h) for h in raw if isinstance(h, Mapping))
    else:
        items = ()
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, Mapping):
            continue
        stats = value.get("stats")
        tunnels = value.get("tunnels")
        found[name] = {
            "stats": dict(stats) if isinstance(stats, Mapping) else {},
            "tunnels": list(tunnels) if isinstance(tunnels, list) else [],
        }
    return found


def flows_by_proto(status: Mapping[str, Any]) -> tuple[int | None, dict[str, int]]:
    """(total, {proto: count}) from ``status["flows"]`` (a number or a dict)."""
    raw = status.get("flows")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw, {}
    if not isinstance(raw, Mapping):
        return None, {}
    total = raw.get("total")
    by = next((raw[k] for k in ("by_proto", "by_protocol", "protocols", "proto") if isinstance(raw.get(k), Mapping)),
              None)
    if by is None:  # flat: {"total": 3, "tcp": 2, "udp": 1}
        by = {k: v for k, v in raw.items() if k != "total"}
    protos = {str(k): int(v) for k, v in by.items() if _number(v) is not None}
    if not isinstance(total, int):
        total = sum(protos.values()) if protos else None
    return total, protos


def render(status: Mapping[str, Any]) -> str:
    """The Prometheus text for one status snapshot."""
    fam = _Families()
    fam.add("natpass_up", "gauge", "1 while the router answers.", 1)
    fam.add("natpass_uptime_seconds", "gauge", "Seconds since the router started.",
            status.get("uptime"))

    counters = status.get("counters")
    if isinstance(counters, Mapping):
        for name, value in counters.items():
            match = _DIRECTION.match(str(name))
            if match:
                what, source = match.groups()
                fam.add(f"natpass_{what}_total", "counter", f"IPv4 {what} received by the NAT engine, by side.",
                        value, source=source)
            else:
                fam.add("natpass_engine_events_total", "counter",
                        "Engine counters (flows created/expired, helper events) by name.", value, counter=str(name))

    total, protos = flows_by_proto(status)
    for proto, count in protos.items():
        fam.add("natpass_flows", "gauge", "Live NAT flows by protocol.", count, proto=proto)
    if not protos and total is not None:
        fam.add("natpass_flows", "gauge", "Live NAT flows by protocol.", total, proto="all")

    fam.add("natpass_mappings", "gauge", "Live NAT port mappings.", status.get("mappings"))
    fam.add("natpass_fragments_held", "gauge", "IPv4 fragments held until their first fragment arrives.",
            status.get("fragments_held"))

    drops = status.get("drops")
    if isinstance(drops, Mapping):
        for reason, count in drops.items():
            fam.add("natpass_drops_total", "counter", "Dropped packets by reason.", count, reason=str(reason))

    states = switch_states(status)
    for name in sorted(set(SWITCH_NAMES) | set(states)):
        if name in states:
            fam.add("natpass_passthrough_enabled", "gauge", "Passthrough switch state (1 on, 0 off).",
                    states[name], switch=name)
    for name, helper in sorted(helpers(status).items()):
        stats = helper["stats"]
        live = stats.get("tunnels", len(helper["tunnels"]))
        fam.add("natpass_tunnels", "gauge", "Live passthrough tunnels by switch.", live, switch=name)
        for stat, value in stats.items():
            if stat != "tunnels":
                fam.add("natpass_helper_stat", "gauge", "Passthrough helper statistics.", value,
                        switch=name, stat=str(stat))

    datapath = status.get("datapath_counters")
    if isinstance(datapath, Mapping):
        for name, value in datapath.items():
            if isinstance(value, Mapping):
                for sub, v in value.items():
                    fam.add("natpass_datapath_events_total", "counter", "Datapath counters by name.", v,
                            counter=f"{name}:{sub}")
            else:
                fam.add("natpass_datapath_events_total", "counter", "Datapath counters by name.", value,
                        counter=str(name))

    hybrid = status.get("hybrid")  # datapath = "hybrid": the kernel's half
    if isinstance(hybrid, Mapping) and isinstance(hybrid.get("kernel_conntrack"), Mapping):
        ct = hybrid["kernel_conntrack"]
        fam.add("natpass_kernel_conntrack_flows", "gauge", "Flows the kernel tracks (hybrid datapath).",
                ct.get("count"))
        fam.add("natpass_kernel_conntrack_max", "gauge", "The kernel's conntrack table size.", ct.get("max"))
        drops = hybrid.get("kernel_drops")
        if isinstance(drops, Mapping):
            for reason, value in drops.items():
                fam.add("natpass_kernel_dropped_packets_total", "counter",
                        "Packets natpass's nftables table dropped in the kernel, by reason (hybrid datapath).",
                        value, reason=str(reason))

    return fam.render()
