"""The connection list: one engine flow as a row, and the filters, sort and page of the list."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from natpass.web.errors import WebError
from natpass.web.labels import (
    STATE_FILTERS,
    flow_state,
    proto_name,
)


def _endpoint(flow: Mapping[str, Any], side: str) -> str:
    addr, port = flow.get(f"{side}_addr"), flow.get(f"{side}_port")
    if addr is None:
        return ""
    return f"{addr}:{port}" if port not in (None, 0) else str(addr)


def _addr_key(text: str) -> tuple[int, int]:
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "0")
    try:
        return int(ipaddress.IPv4Address(host or text)), int(port or 0)
    except ValueError:
        return 0, 0


def flow_row(flow: Mapping[str, Any], now: float) -> dict[str, Any]:
    """One connection as the page and ``/api/flows`` show it."""
    proto = flow.get("proto")
    last = flow.get("last_seen")
    return {
        "proto": proto_name(proto),
        "lan": _endpoint(flow, "lan"),
        "wan": _endpoint(flow, "wan"),
        "remote": _endpoint(flow, "remote"),
        "direction": "outbound" if flow.get("outbound", True) else "inbound (port forward)",
        "state": flow_state(proto, flow.get("state")),
        "idle_s": round(max(0.0, now - last), 1) if isinstance(last, int | float) else None,
        "helper": flow.get("helper"),
    }


SORT_KEYS = ("proto", "lan", "remote", "wan", "state", "idle")


@dataclass(frozen=True, slots=True)
class FlowQuery:
    """Filters, sort order and page of the connection list (from the query string)."""

    proto: str = ""
    lan: str = ""
    state: str = ""
    sort: str = "lan"
    desc: bool = False
    page: int = 1
    size: int = 50

    @classmethod
    def parse(cls, q: Mapping[str, str], default_size: int) -> FlowQuery:
        def number(key: str, default: int, hi: int) -> int:
            text = q.get(key, "")
            if not text:
                return default
            if not text.isdigit() or not 1 <= int(text) <= hi:
                raise WebError(400, f"{key} must be a whole number from 1 to {hi}")
            return int(text)

        size = number("limit", default_size, 10_000)
        sort = q.get("sort", "lan")
        if sort not in SORT_KEYS:
            raise WebError(400, f"sort must be one of {', '.join(SORT_KEYS)}")
        state = q.get("state", "")
        if state and state not in STATE_FILTERS:
            raise WebError(400, f"state must be one of {', '.join(STATE_FILTERS)}")
        return cls(proto=q.get("proto", "").strip().upper()[:8], lan=q.get("lan", "").strip()[:64], state=state,
                   sort=sort, desc=q.get("order") == "desc", page=number("page", 1, 100_000), size=size)

    def apply(self, flows: Sequence[Mapping[str, Any]], now: float) -> tuple[list[dict[str, Any]], int]:
        rows = [flow_row(f, now) for f in flows]
        if self.proto:
            rows = [r for r in rows if r["proto"] == self.proto]
        if self.lan:
            rows = [r for r in rows if r["lan"].split(":")[0] == self.lan or r["lan"].startswith(self.lan + ":")]
        if self.state:
            rows = [r for r in rows if r["state"].startswith(self.state)]
        key = self.sort
        if key in ("lan", "remote", "wan"):
            rows.sort(key=lambda r: _addr_key(r[key]), reverse=self.desc)
        elif key == "idle":
            rows.sort(key=lambda r: r["idle_s"] if r["idle_s"] is not None else -1.0, reverse=self.desc)
        else:
            rows.sort(key=lambda r: str(r[key]), reverse=self.desc)
        start = (self.page - 1) * self.size
        return rows[start:start + self.size], len(rows)

    def link(self, **change: Any) -> str:
        values = {"proto": self.proto.lower(), "lan": self.lan, "state": self.state, "sort": self.sort,
                  "order": "desc" if self.desc else "", "page": str(self.page)}
        values.update({k: str(v) for k, v in change.items()})
        return "/connections?" + urlencode({k: v for k, v in values.items() if v and not (k == "page" and v == "1")})
