"""Showing a Diagnosis: rich text tables, JSON, and a self-contained HTML report with ladders."""

from __future__ import annotations

import html
import json
import sys
from typing import IO, TYPE_CHECKING

from natpass.diagnose.model import Diagnosis, ProtocolReport

if TYPE_CHECKING:
    from natpass.diagnose.live import LiveDiagnosis

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
STATUS_STYLE = {"established": "green", "failed": "bold red", "incomplete": "yellow"}


def to_json(diag: Diagnosis) -> str:
    return json.dumps(diag.to_dict(), indent=2)


def print_text(diag: Diagnosis, file: IO[str] | None = None) -> None:
    """A readable report: capture facts, one table of protocols, one of findings."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = file or sys.stdout
    con = Console(file=out, highlight=False, soft_wrap=False, width=None if out.isatty() else 140)
    c = diag.capture
    con.print(f"[bold]{c.file}[/bold]: {c.packets} packets, {c.duration:.1f} s, {c.ipv4} IPv4, "
              f"{c.ipv6} IPv6, {c.duplicates} duplicate(s), {c.malformed} malformed")
    v = diag.vantage
    con.print(f"captured at: [bold]{v.point}[/bold] ({v.source}"
              + (f", own address {v.address}" if v.address else "") + f"): {escape('; '.join(v.basis))}")
    for problem in c.problems:
        con.print(f"[yellow]note:[/yellow] {escape(problem)}")
    if diag.protocols:
        t = Table(title="VPN protocols seen", title_justify="left")
        for col in ("protocol", "status", "client", "server", "transport", "out/in", "phases reached",
                    "stopped at"):
            t.add_column(col, overflow="fold")
        for p in diag.protocols:
            phases = " > ".join(f"{ph.name}#{ph.frame}" for ph in p.phases[:10])
            name = p.name if p.confidence == "structure" else f"{p.name} ({p.confidence})"
            t.add_row(name, f"[{STATUS_STYLE[p.status]}]{p.status}[/]", p.client, p.server, p.transport,
                      f"{p.packets_out}/{p.packets_in}", escape(phases), escape(p.stopped_at or ""))
        con.print(t)
    if diag.findings:
        t = Table(title="Findings", title_justify="left", show_lines=True)
        for col in ("severity", "code", "win", "evidence (frame@s)", "explanation / advice"):
            t.add_column(col, overflow="fold")
        for f in diag.findings:
            ev = ", ".join(f"#{e.frame}@{e.time:.3f}" for e in f.evidence[:6])
            t.add_row(f"[{SEVERITY_STYLE[f.severity]}]{f.severity}[/]", f.code,
                      str(f.windows_error or ""), ev,
                      f"{escape(f.explanation)}\n[bold]->[/bold] {escape(f.advice)}")
        con.print(t)
    else:
        con.print("No findings.")


def print_live(live: LiveDiagnosis, file: IO[str] | None = None) -> None:
    """Both sides of a live window, then what their comparison and the drop counters show."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = file or sys.stdout
    con = Console(file=out, highlight=False, soft_wrap=False, width=None if out.isatty() else 140)
    con.print(f"[bold]live window[/bold]: {live.seconds:.1f} s on {live.lan_interface} (LAN) and "
              f"{live.wan_interface} (WAN)")
    drops = ", ".join(f"{r} {n}" for r, n in live.drops.items()) or "none"
    con.print(f"router drops during the window: {drops if live.drops_known else 'unknown'}")
    for side, diag in (("LAN side", live.lan), ("WAN side", live.wan)):
        con.rule(side)
        print_text(diag, out)
    con.rule("both sides together")
    if not live.findings:
        con.print("Nothing stopped between the two sides.")
        return
    t = Table(show_lines=True)
    for col in ("severity", "code", "explanation / advice"):
        t.add_column(col, overflow="fold")
    for f in live.findings:
        t.add_row(f"[{SEVERITY_STYLE[f.severity]}]{f.severity}[/]", f.code,
                  f"{escape(f.explanation)}\n[bold]->[/bold] {escape(f.advice)}")
    con.print(t)


# ---------------------------------------------------------------- HTML
LADDER_W = 560
ROW_H = 26
TOP = 40


def ladder_svg(p: ProtocolReport, ident: int = 0) -> str:
    """A ladder (sequence) diagram: client and server columns, one arrow per handshake step, the
    packet counts each way, and a dashed red line where the exchange stopped."""
    phases = p.phases
    rows = len(phases) + (1 if p.stopped_at else 0) + 1
    height = TOP + ROW_H * max(rows, 1) + 20
    cx, sx = 90, LADDER_W - 90
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{LADDER_W}" height="{height}" '
           f'viewBox="0 0 {LADDER_W} {height}" role="img" aria-label="{e(p.name)} ladder">',
           f'<defs><marker id="ah{ident}" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
           '<path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>',
           f'<text x="{cx}" y="16" text-anchor="middle" font-weight="bold">client</text>',
           f'<text x="{cx}" y="30" text-anchor="middle" font-size="10">{e(p.client)}</text>',
           f'<text x="{sx}" y="16" text-anchor="middle" font-weight="bold">server</text>',
           f'<text x="{sx}" y="30" text-anchor="middle" font-size="10">{e(p.server)}</text>',
           f'<line x1="{cx}" y1="{TOP - 4}" x2="{cx}" y2="{height - 8}" stroke="#888"/>',
           f'<line x1="{sx}" y1="{TOP - 4}" x2="{sx}" y2="{height - 8}" stroke="#888"/>']
    y = TOP + 10
    for ph in phases:
        x1, x2 = (cx, sx) if ph.direction == "out" else (sx, cx)
        out.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y + 8}" stroke="#333" marker-end="url(#ah{ident})"/>')
        out.append(f'<text x="{(cx + sx) / 2}" y="{y}" text-anchor="middle" font-size="11">'
                   f'{e(ph.name)} (#{ph.frame}, {ph.time:.3f} s)</text>')
        y += ROW_H
    if p.stopped_at:
        out.append(f'<line x1="{cx}" y1="{y}" x2="{sx}" y2="{y}" stroke="#c00" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{(cx + sx) / 2}" y="{y - 3}" text-anchor="middle" font-size="11" '
                   f'fill="#c00">stopped: {e(p.stopped_at)} never seen</text>')
        y += ROW_H
    out.append(f'<text x="{(cx + sx) / 2}" y="{y}" text-anchor="middle" font-size="11">'
               f'{p.packets_out} packet(s) client to server, {p.packets_in} server to client</text>')
    out.append("</svg>")
    return "".join(out)


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f3f3f3}.error{color:#b00;font-weight:bold}
.warning{color:#a60}.info{color:#06c}.established{color:#080}.failed{color:#b00;font-weight:bold}
.incomplete{color:#a60}.ladder{display:inline-block;margin:0 1em 1em 0;border:1px solid #ddd;padding:6px}"""


def to_html(diag: Diagnosis) -> str:
    """One self-contained page (inline CSS and SVG, no scripts, no external resources)."""
    e = html.escape
    c = diag.capture
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>natpass diagnose: {e(c.file)}</title><style>{CSS}</style></head><body>",
             f"<h1>VPN diagnosis: {e(c.file)}</h1>",
             f"<p>{c.packets} packets over {c.duration:.1f} s ({c.ipv4} IPv4, {c.ipv6} IPv6, "
             f"{c.duplicates} duplicate, {c.malformed} malformed).</p>"]
    v = diag.vantage
    parts.append(f"<p>Captured at: <b>{e(v.point)}</b> ({e(v.source)}): {e('; '.join(v.basis))}</p>")
    parts += [f"<p class='warning'>Note: {e(p)}</p>" for p in c.problems]
    parts.append("<h2>Findings</h2>")
    if diag.findings:
        parts.append("<table><tr><th>severity</th><th>code</th><th>Windows error</th><th>evidence</th>"
                     "<th>explanation</th><th>advice</th></tr>")
        for f in diag.findings:
            ev = ", ".join(f"#{x.frame} ({x.time:.3f} s, {e(x.what)})" for x in f.evidence)
            parts.append(f"<tr><td class='{f.severity}'>{f.severity}</td><td>{e(f.code)}</td>"
                         f"<td>{f.windows_error or ''}</td><td>{ev}</td><td>{e(f.explanation)}</td>"
                         f"<td>{e(f.advice)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No findings.</p>")
    parts.append("<h2>Protocols and timeline</h2>")
    if diag.protocols:
        parts.append("<table><tr><th>protocol</th><th>status</th><th>client</th><th>server</th>"
                     "<th>transport</th><th>packets out/in</th><th>notes</th></tr>")
        for p in diag.protocols:
            parts.append(f"<tr><td>{e(p.name)}</td><td class='{p.status}'>{p.status}</td>"
                         f"<td>{e(p.client)}</td><td>{e(p.server)}</td><td>{e(p.transport)}</td>"
                         f"<td>{p.packets_out}/{p.packets_in}</td><td>{e('; '.join(p.notes))}</td></tr>")
        parts.append("</table>")
        for i, p in enumerate(diag.protocols[:50]):
            parts.append(f"<div class='ladder'><h3>{e(p.name)} <span class='{p.status}'>{p.status}</span>"
                         f"</h3>{ladder_svg(p, i)}</div>")
    else:
        parts.append("<p>No VPN protocol recognised.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
