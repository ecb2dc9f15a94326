"""A diagnosis report as HTML: the capture, each VPN protocol with its phases and timeline, the
findings with their evidence and advice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from natpass.web.frame import e, scroll_table

# A live window from the page: long enough to retry a VPN, short enough for one HTTP request
# (natpass diagnose --live allows up to 600 s from a shell).
LIVE_SECONDS = (3, 120)
LIVE_DEFAULT = 30

PHASE_DIRECTION = {"out": "client → server", "in": "server → client"}
VANTAGE_TEXT = {"client": "on the VPN client (or the router's LAN side)",
                "router-wan": "on the router's WAN side", "server": "on the VPN server's side"}


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def phase_item(ph: Mapping[str, Any]) -> str:
    t = ph.get("time")
    at = f"{t:.3f}" if isinstance(t, int | float) else "?"
    way = PHASE_DIRECTION.get(str(ph.get("direction")), str(ph.get("direction") or ""))
    return (f'<li><span class="num">{e(at)} s</span> {e(ph.get("name"))} '
            f'<span class="small">(frame {e(ph.get("frame"))}{", " + e(way) if way else ""})</span></li>')


def timelines(report: Mapping[str, Any]) -> str:
    """Each protocol's phases in capture order, with frame, time and direction."""
    out = []
    for p in report.get("protocols") or []:
        phases = [ph for ph in p.get("phases") or [] if isinstance(ph, Mapping)]
        items = "".join(phase_item(ph) for ph in phases)
        stop = (f'<li class="stopped">never reached: {e(p["stopped_at"])}</li>' if p.get("stopped_at") else "")
        if items or stop:
            out.append(f'<details class="timeline"><summary>Timeline of {e(str(p.get("name")).upper())} '
                       f'{e(p.get("client") or "")} → {e(p.get("server") or "")}</summary>'
                       f"<ol>{items}{stop}</ol></details>")
    return "".join(out)


def report_html(report: Mapping[str, Any]) -> str:
    cap = _map(report.get("capture"))
    detail = _map(report.get("vantage_detail"))
    vantage = str(report.get("vantage") or "")
    how = "as given" if detail.get("source") == "stated" else "worked out from the capture"
    basis = "".join(f"<li>{e(b)}</li>" for b in detail.get("basis") or [])
    problems = "".join(f"<li>{e(p)}</li>" for p in cap.get("problems") or [])
    facts = (f'<dl class="facts"><dt>File</dt><dd><code>{e(cap.get("file"))}</code></dd>'
             f"<dt>Packets</dt><dd>{e(report.get('packets'))} ({e(cap.get('malformed', 0))} malformed)</dd>"
             f"<dt>Taken</dt><dd>{e(VANTAGE_TEXT.get(vantage, vantage or '?'))} ({e(how)})"
             + (f'<ul class="small">{basis}</ul>' if basis else "") + "</dd></dl>"
             + (f'<ul class="small">{problems}</ul>' if problems else ""))
    rows = []
    for p in report.get("protocols") or []:
        phases = " → ".join(str(ph.get("name")) for ph in p.get("phases") or [] if isinstance(ph, Mapping))
        stopped = f' <span class="small">(stopped before {e(p["stopped_at"])})</span>' if p.get("stopped_at") else ""
        rows.append([e(str(p.get("name") or "?").upper()), f'<span class="status {e(p.get("status"))}">'
                     f"{e(p.get('status'))}</span>", e(p.get("client") or ""), e(p.get("server") or ""),
                     f'<span class="wrap">{e(phases or "none")}{stopped}</span>'])
    protocols = scroll_table("VPN protocols seen", ["Protocol", "Result", "Client", "Server", "Phases reached"],
                             rows, "No VPN protocol seen in this capture.") + timelines(report)
    items = []
    for f in report.get("findings") or []:
        evidence = ", ".join(f"frame {ev.get('frame')} ({ev.get('what')})" for ev in (f.get("evidence") or [])[:8]
                             if isinstance(ev, Mapping))
        more = len(f.get("evidence") or []) - 8
        win = f'<p class="small">Windows error {e(f["windows_error"])}</p>' if f.get("windows_error") else ""
        items.append(
            f'<li class="{e(f.get("severity"))}" id="finding-{e(f.get("code"))}">'
            f'<strong>{e(f.get("severity"))}</strong> <code>{e(f.get("code"))}</code>'
            f'{" (" + e(str(f.get("protocol")).upper()) + ")" if f.get("protocol") else ""}'
            f"<p>{e(f.get('explanation'))}</p><p><em>{e(f.get('advice'))}</em></p>{win}"
            + (f'<p class="small">Evidence: {e(evidence)}{f" and {more} more" if more > 0 else ""}</p>'
               if evidence else "") + "</li>")
    findings = (f'<section class="findings"><ul>{"".join(items)}</ul></section>' if items
                else '<p class="empty">No findings: nothing in this capture looks wrong.</p>')
    return (f"<section><h2>Report</h2>{facts}</section><section><h2>VPN protocols</h2>{protocols}</section>"
            f"<section><h2>Findings</h2>{findings}</section>")


def live_report_html(live: Mapping[str, Any]) -> str:
    """A live window: what the two sides show together, the router's drops, then each side."""
    info = _map(live.get("live"))
    drops = _map(info.get("drops"))
    rows = [[e(reason), e(count)] for reason, count in sorted(drops.items(), key=lambda kv: -int(kv[1] or 0))]
    known = "" if info.get("drops_known") else '<p class="small">The drop counters could not be read.</p>'
    items = "".join(
        f'<li class="{e(f.get("severity"))}" id="finding-{e(f.get("code"))}"><strong>{e(f.get("severity"))}</strong> '
        f'<code>{e(f.get("code"))}</code><p>{e(f.get("explanation"))}</p><p><em>{e(f.get("advice"))}</em></p></li>'
        for f in live.get("findings") or [] if isinstance(f, Mapping))
    both = (f'<section class="findings"><ul>{items}</ul></section>' if items
            else '<p class="empty">Nothing stopped at this router in this window.</p>')
    head = (f'<section id="live-report"><h2>Live capture: {e(info.get("seconds"))} s on '
            f'{e(info.get("lan_interface"))} and {e(info.get("wan_interface"))}</h2>{both}'
            + scroll_table("Dropped by the router in this window", ["Reason", "Packets"], rows,
                           "No drops.") + known + "</section>")
    sides = "".join(f'<section class="side"><h2>{title}</h2>{report_html(_side(live, key))}</section>'
                    for key, title in (("lan", "LAN side"), ("wan", "WAN side")))
    return head + sides


def _side(live: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """One side's report, its capture named by the interface (the temporary file is gone)."""
    side = dict(_map(live.get(key)))
    iface = _map(live.get("live")).get(f"{key}_interface")
    side["capture"] = {**_map(side.get("capture")), "file": f"{iface} (captured live)"}
    return side
