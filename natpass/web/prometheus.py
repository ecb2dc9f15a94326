"""``/metrics`` with prometheus-client: one status snapshot mapped into metric families.

The names and labels are the ones docs/ADMIN.md lists (the same as natpass.router.metrics).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from natpass.router import metrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_DIRECTION = re.compile(r"^(packets|bytes)_(?:from_)?(lan|wan|in|out)$")


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


class StatusCollector(Collector):
    """The metric families of one ``status()`` answer."""

    def __init__(self, status: Mapping[str, Any]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        st = self.status
        yield GaugeMetricFamily("natpass_up", "1 while the router answers.", value=1)
        uptime = _num(st.get("uptime"))
        if uptime is not None:
            yield GaugeMetricFamily("natpass_uptime_seconds", "Seconds since the router started.", value=uptime)

        packets = CounterMetricFamily("natpass_packets", "IPv4 packets received by the NAT engine, by side.",
                                      labels=["source"])
        volume = CounterMetricFamily("natpass_bytes", "IPv4 bytes received by the NAT engine, by side.",
                                     labels=["source"])
        events = CounterMetricFamily("natpass_engine_events", "Engine counters by name.", labels=["counter"])
        counters = st.get("counters")
        for name, value in (counters.items() if isinstance(counters, Mapping) else ()):
            number = _num(value)
            if number is None:
                continue
            m = _DIRECTION.match(str(name))
            if m:
                (packets if m.group(1) == "packets" else volume).add_metric([m.group(2)], number)
            else:
                events.add_metric([str(name)], number)
        yield from (packets, volume, events)

        flows = GaugeMetricFamily("natpass_flows", "Live NAT flows by protocol.", labels=["proto"])
        total, protos = metrics.flows_by_proto(st)
        for proto, count in protos.items():
            flows.add_metric([proto], count)
        if not protos and total is not None:
            flows.add_metric(["all"], total)
        yield flows
        for key, help_text in (("mappings", "Live NAT port mappings."),
                               ("fragments_held", "IPv4 fragments held until their first fragment arrives.")):
            number = _num(st.get(key))
            if number is not None:
                yield GaugeMetricFamily(f"natpass_{key}", help_text, value=number)

        drops = CounterMetricFamily("natpass_drops", "Dropped packets by reason.", labels=["reason"])
        raw_drops = st.get("drops")
        for reason, count in (raw_drops.items() if isinstance(raw_drops, Mapping) else ()):
            number = _num(count)
            if number is not None:
                drops.add_metric([str(reason)], number)
        yield drops

        enabled = GaugeMetricFamily("natpass_passthrough_enabled", "Passthrough switch state (1 on, 0 off).",
                                    labels=["switch"])
        for name, on in sorted(metrics.switch_states(st).items()):
            enabled.add_metric([name], 1.0 if on else 0.0)
        yield enabled
        tunnels = GaugeMetricFamily("natpass_tunnels", "Live passthrough tunnels by switch.", labels=["switch"])
        stats = GaugeMetricFamily("natpass_helper_stat", "Passthrough helper statistics.", labels=["switch", "stat"])
        for name, helper in sorted(metrics.helpers(st).items()):
            live = _num(helper["stats"].get("tunnels", len(helper["tunnels"])))
            if live is not None:
                tunnels.add_metric([name], live)
            for stat, value in helper["stats"].items():
                number = _num(value)
                if stat != "tunnels" and number is not None:
                    stats.add_metric([name, str(stat)], number)
        yield tunnels
        yield stats

        datapath = CounterMetricFamily("natpass_datapath_events", "Datapath counters by name.", labels=["counter"])
        raw_dp = st.get("datapath_counters")
        for name, value in (raw_dp.items() if isinstance(raw_dp, Mapping) else ()):
            if isinstance(value, Mapping):
                for sub, v in value.items():
                    number = _num(v)
                    if number is not None:
                        datapath.add_metric([f"{name}:{sub}"], number)
            elif (number := _num(value)) is not None:
                datapath.add_metric([str(name)], number)
        yield datapath

        hybrid = st.get("hybrid")  # datapath = "hybrid": the kernel's half
        if isinstance(hybrid, Mapping) and isinstance(hybrid.get("kernel_conntrack"), Mapping):
            ct = hybrid["kernel_conntrack"]
            for key, name, text in (("count", "natpass_kernel_conntrack_flows", "Flows the kernel tracks (hybrid datapath)."),
                                    ("max", "natpass_kernel_conntrack_max", "The kernel's conntrack table size.")):
                if (number := _num(ct.get(key))) is not None:
                    yield GaugeMetricFamily(name, text, value=number)
            dropped = hybrid.get("kernel_drops")
            if isinstance(dropped, Mapping):
                kernel = CounterMetricFamily(
                    "natpass_kernel_dropped_packets",
                    "Packets natpass's nftables table dropped in the kernel, by reason (hybrid datapath).",
                    labels=["reason"])
                for reason, value in dropped.items():
                    if (number := _num(value)) is not None:
                        kernel.add_metric([str(reason)], number)
                yield kernel


def render(status: Mapping[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return generate_latest(registry)
