"""The frame every admin page shares (layout, navigation, tables) and the pages shown without a
login: log in, confirm an exposure, a refusal."""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from natpass.web.labels import (
    SWITCH_TITLES,
    human_duration,
)

if TYPE_CHECKING:
    from natpass.web.context import Principal

NAV = (("/", "Status"), ("/passthrough", "VPN Passthrough"), ("/connections", "Connections"),
       ("/forwards", "Port forwarding"),
       ("/diagnose", "Diagnose"), ("/backup", "Backup & restore"), ("/log", "Log"), ("/tokens", "API tokens"))


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def when(ts: float | None, now: float | None = None) -> str:
    """``2026-11-30 09:12 UTC (3 min ago)``."""
    if ts is None:
        return "never"
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))
    return f"{stamp} ({human_duration(now - ts)} ago)" if now >= ts else stamp


def scroll_table(label: str, head: Sequence[str], rows: Sequence[Sequence[str]], empty: str,
                 head_html: Sequence[str] | None = None) -> str:
    """A table in a labelled scroll box; cells are already HTML."""
    if not rows:
        return f'<p class="empty">{e(empty)}</p>'
    th = "".join(f'<th scope="col">{h}</th>' for h in (head_html or [e(h) for h in head]))
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return ('<p class="scroll-hint" aria-hidden="true">Swipe the table sideways to see every column →</p>'
            f'<div class="scroll" role="region" aria-label="{e(label)}" tabindex="0"><table>'
            f"<thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>")


def layout(title: str, body: str, who: Principal | None, current: str = "") -> str:
    nav = ""
    if who is not None:
        links = "".join(f'<a href="{href}"{" aria-current=page" if href == current else ""}>{e(text)}</a>'
                        for href, text in NAV)
        csrf = who.session.csrf if who.session else ""
        nav = (f'<nav aria-label="Pages">{links}</nav>'
               f'<form method="post" action="/logout" class="logout"><input type="hidden" name="csrf" '
               f'value="{e(csrf)}"><button type="submit">Log out</button></form>')
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)} · natpass</title>"
            '<link rel="stylesheet" href="/static/web.css"></head><body>'
            f'<header class="top"><a class="brand" href="/">natpass</a>{nav}</header>'
            f"<main><h1>{e(title)}</h1>{body}</main>"
            f'<footer>natpass router admin · page made {e(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))}'
            "</footer></body></html>")


def login_page(next_path: str, error: str | None = None, note: str | None = None) -> str:
    msg = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    msg += f'<p class="note">{e(note)}</p>' if note else ""
    body = (f'{msg}<form method="post" action="/login" class="login">'
            f'<input type="hidden" name="next" value="{e(next_path)}">'
            '<label for="password">Admin password</label>'
            '<input id="password" name="password" type="password" autocomplete="current-password" '
            'required autofocus>'
            '<button type="submit">Log in</button></form>'
            '<p class="small">Set the password on the router with <code>natpass passwd</code>. '
            "A router started without one prints a generated password once in its log.</p>")
    return layout("Log in", body, None)


def confirm_page(name: str, on: bool, exposure: str, csrf: str) -> str:
    title = SWITCH_TITLES[name]
    action = "on" if on else "off"
    body = (f'<div class="card warn"><p><strong>{e(exposure)}</strong></p>'
            f"<p>Turn {e(title)} passthrough {action}?</p>"
            f'<form method="post" action="/passthrough/{e(name)}" class="inline">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}"><input type="hidden" name="on" '
            f'value="{int(on)}"><input type="hidden" name="confirm" value="1">'
            f'<button type="submit" class="danger" id="confirm">Yes, turn {e(title)} {action}</button></form> '
            '<a class="button" href="/passthrough">Cancel</a></div>')
    return layout(f"Turn {title} {action}?", body, None)


def error_page(status: int, message: str) -> str:
    body = (f'<p class="error" role="alert">{e(message)}</p>'
            f'<p>(HTTP {status})</p><p><a href="/">Back to the status page</a></p>')
    return layout("Refused" if status < 500 else "Router busy", body, None)

