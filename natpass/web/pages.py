"""The admin pages as server-rendered HTML (complete without JavaScript; forms post back).

Tables sit in a scroll box with a visible hint on narrow screens; charts are inline SVG.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from natpass.nat.config import SWITCHES
from natpass.router import metrics
from natpass.router.settings import EXPOSURES
from natpass.router.switches import SWITCH_INFO
from natpass.web import charts
from natpass.web.flowlist import FlowQuery
from natpass.web.frame import e, layout, scroll_table, when
from natpass.web.labels import (
    ADVISE_PROTOCOL,
    COUNTERS,
    STATE_FILTERS,
    SWITCH_TITLES,
    counter_label,
    drop_label,
    human_bytes,
    human_count,
    human_duration,
    is_bytes,
)
from natpass.web.report import LIVE_DEFAULT, LIVE_SECONDS, VANTAGE_TEXT, live_report_html, report_html

if TYPE_CHECKING:
    from natpass.web.context import Principal, WebState

USAGE_DAYS = 14
LOG_ROWS = 300
STALE_WHEN_LIVE = frozenset({"switch-unused", "switch-recently-enabled", "usage-unknown"})
LOG_KINDS = {
    "login": "Login", "login-failed": "Login refused", "logout": "Logout", "refused": "Request refused",
    "switch": "Switch", "reload": "Reload", "token": "API token", "tunnel-up": "Tunnel up",
    "tunnel-down": "Tunnel down", "packets": "Traffic", "drop": "Drops", "config": "Config",
    "diagnose": "Diagnose", "forward": "Port forward",
}


def _counter_order(item: tuple[str, Any]) -> tuple[int, str]:
    """Traffic first (in the order COUNTERS lists them), then the rest by name."""
    order = list(COUNTERS)
    return (order.index(item[0]), "") if item[0] in COUNTERS else (len(order), item[0])


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


KERNEL_DROP_LABELS = {
    "natpass_share": "Kernel's copy of what natpass handles (expected)",
    "forward_refused": "New connections not from the LAN, refused",
    "input_refused": "Internet traffic to the router itself, refused",
    "kernel_icmp_errors": "Kernel's own ICMP errors about natpass's traffic",
}


def _datapath(st: Mapping[str, Any]) -> str:
    if st.get("datapath") == "hybrid":
        return "hybrid: the kernel forwards ordinary traffic, natpass handles the VPN protocols"
    return "packet: every packet goes through natpass"


def _kernel_half(st: Mapping[str, Any]) -> str:
    """The hybrid datapath's kernel half: who handles what, the kernel's flows and drops."""
    hybrid = _map(st.get("hybrid"))
    if not hybrid:
        return ""
    ct = _map(hybrid.get("kernel_conntrack"))
    def count(v: Any) -> str:  # -1: /proc could not be read
        return human_count(v) if isinstance(v, int | float) and v >= 0 else "?"

    facts = (f"<dt>Kernel connections</dt><dd>{e(count(ct.get('count')))} "
             f"(of at most {e(count(ct.get('max')))})</dd>")
    for who, title in (("natpass", "natpass handles"), ("kernel", "The kernel handles")):
        what = hybrid.get(who)
        if isinstance(what, list):
            facts += f"<dt>{e(title)}</dt><dd>{e('; '.join(str(w) for w in what))}</dd>"
    drops = _map(hybrid.get("kernel_drops"))
    rows = [[e(KERNEL_DROP_LABELS.get(k, k)) + f' <code class="raw">{e(k)}</code>',
             f'<span class="num">{e(human_count(v))}</span>']
            for k, v in drops.items() if isinstance(v, int | float)]
    table = (scroll_table("Dropped in the kernel", ["Why", "Packets"], rows, "Nothing dropped.") if drops
             else '<p class="small">The kernel\'s drop counters could not be read (nft).</p>')
    return f'<section><h2>Kernel fast path</h2><dl class="facts">{facts}</dl>{table}</section>'


def _interfaces(st: Mapping[str, Any]) -> tuple[str, str]:
    ifs = _map(st.get("interfaces"))
    lan, wan = _map(ifs.get("lan")), _map(ifs.get("wan"))
    lan_text = f"{lan.get('address') or '?'} on {lan.get('name') or '?'}"
    addrs = ", ".join(str(a) for a in wan.get("addresses") or [] if a) or "?"
    gw = f", gateway {wan['gateway']}" if wan.get("gateway") else ""
    return lan_text, f"{addrs} on {wan.get('name') or '?'}{gw}"


class Views:
    """The pages of one web app (reads the usage database and the router's config)."""

    def __init__(self, web: WebState) -> None:
        self.web = web

    # ----- usage database ----------------------------------------------------------------------
    def _usage(self) -> tuple[Any, str | None]:
        from natpass.router.usage import UsageDB, UsageDBError

        if not self.web.usage_path:
            return None, "no usage database configured"
        try:
            return UsageDB(self.web.usage_path, timeout=1.0), None
        except UsageDBError as exc:
            return None, str(exc)

    # ----- status --------------------------------------------------------------------------------
    def status(self, who: Principal, st: dict[str, Any], q: Mapping[str, str]) -> str:
        lan, wan = _interfaces(st)
        total, protos = metrics.flows_by_proto(st)
        by = ", ".join(f"{p.upper()} {n}" for p, n in sorted(protos.items(), key=lambda kv: -kv[1]))
        started = st.get("started")
        summary = (
            '<dl class="facts">'
            f"<dt>Up for</dt><dd>{e(human_duration(st.get('uptime')))}"
            f"{' (since ' + e(when(started)) + ')' if isinstance(started, int | float) else ''}</dd>"
            f"<dt>LAN</dt><dd>{e(lan)}</dd><dt>WAN</dt><dd>{e(wan)}</dd>"
            f"<dt>Connections</dt><dd>{e(total if total is not None else '?')}{' (' + e(by) + ')' if by else ''}</dd>"
            f"<dt>Datapath</dt><dd>{e(_datapath(st))}</dd>"
            f"<dt>Config file</dt><dd><code>{e(st.get('config_path') or '?')}</code></dd></dl>"
        )
        flash = '<p class="ok" role="status">Config reloaded.</p>' if q.get("reloaded") else ""
        rates = self.web.history.rates()
        now = self.web.control.clock()
        xs = [r.t - now for r in rates]
        ticks = [(-m * 60.0, f"-{m} min" if m else "now") for m in (60, 45, 30, 15, 0)]
        graph = charts.line_chart("Traffic, last hour (bits per second)", xs,
                                  {"LAN → internet": [r.lan_bps for r in rates],
                                   "internet → LAN": [r.wan_bps for r in rates]},
                                  lambda v: human_bytes(v / 8).replace("B", "b") + "/s"
                                  if v else "0", ticks)
        counters = _map(st.get("counters"))
        c_rows = [[e(counter_label(k)), f'<span class="num">{e(human_bytes(v) if is_bytes(k) else human_count(v))}</span>']
                  for k, v in sorted(counters.items(), key=_counter_order) if isinstance(v, int | float)]
        drops = _map(st.get("drops"))
        d_rows = [[e(drop_label(k)) + f' <code class="raw">{e(k)}</code>', f'<span class="num">{e(human_count(v))}</span>']
                  for k, v in sorted(drops.items(), key=lambda kv: -kv[1]) if isinstance(v, int | float)]
        usage = self._usage_chart()
        csrf = who.session.csrf if who.session else ""
        body = (
            f"{flash}<section>{summary}</section>"
            f"<section><h2>Traffic</h2>{graph}"
            f"{scroll_table('Traffic counters', ['What', 'Since start'], c_rows, 'No traffic yet.')}</section>"
            f"<section><h2>Dropped packets</h2>{scroll_table('Drops by reason', ['Why', 'Packets'], d_rows, 'Nothing dropped.')}</section>"
            f"{_kernel_half(st)}"
            f"<section><h2>VPN passthrough use</h2>{usage}</section>"
            '<section><h2>Config</h2><form method="post" action="/reload" class="inline">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            '<button type="submit">Reload the config file</button></form>'
            '<p class="small">Re-reads the config file; an invalid file is refused whole and the running '
            "config is kept.</p></section>"
        )
        return layout("Status", body, who, "/")

    def _usage_chart(self) -> str:
        db, problem = self._usage()
        if db is None:
            return f'<p class="empty">No usage record yet ({e(problem)}).</p>'
        try:
            per_switch = {s: {d["day"]: d for d in db.days(s)} for s in SWITCHES}
            summaries = {s: db.summary(s) for s in SWITCHES}
        except Exception as exc:  # a locked or damaged database: say so, keep the page
            return f'<p class="empty">Usage record unreadable: {e(exc)}</p>'
        finally:
            db.close()
        today = time.time()
        days = [time.strftime("%Y-%m-%d", time.gmtime(today - 86400 * i)) for i in range(USAGE_DAYS - 1, -1, -1)]
        series = {SWITCH_TITLES[s]: [float(per_switch[s].get(d, {}).get("packets", 0) or 0) for d in days]
                  for s in SWITCHES}
        if not any(v for values in series.values() for v in values):
            chart = f'<p class="empty">No passthrough traffic recorded in the last {USAGE_DAYS} days.</p>'
        else:
            chart = charts.bar_chart(f"Passthrough packets per day, last {USAGE_DAYS} days", [d[5:] for d in days],
                                     series, lambda v: f"{v:,.0f}" if v >= 10 or v == int(v) else f"{v:.1f}")
        rows = [[e(SWITCH_TITLES[s]), f'<span class="num">{e(human_count(summaries[s]["packets"]))}</span>',
                 f'<span class="num">{e(summaries[s]["tunnels_up"])}</span>',
                 e(when(summaries[s]["last_seen"]))] for s in SWITCHES]
        return chart + scroll_table("Usage per protocol", ["Protocol", "Packets", "Tunnels opened", "Last used"],
                                    rows, "Nothing recorded.")

    # ----- passthrough ---------------------------------------------------------------------------
    def passthrough(self, who: Principal, st: dict[str, Any], q: Mapping[str, str]) -> str:
        from natpass.diagnose.audit import audit

        states = metrics.switch_states(st)
        helpers = metrics.helpers(st)
        cfg = self.web.control.config
        runtime = dataclasses.replace(cfg.nat.passthrough, **{s: states.get(s, cfg.nat.passthrough.get(s))
                                                             for s in SWITCHES})
        db, problem = self._usage()
        try:
            findings = audit(dataclasses.replace(cfg.nat, passthrough=runtime), db, usage_problem=problem)
            last_used = {s: db.last_used(s) if db else None for s in SWITCHES}
            since = {s: db.enabled_since(s) if db else None for s in SWITCHES}
        except Exception as exc:  # noqa: BLE001  (an unreadable record must not hide the switches)
            findings, last_used, since = [], dict.fromkeys(SWITCHES), dict.fromkeys(SWITCHES)
            problem = str(exc)
        finally:
            if db is not None:
                db.close()
        csrf = who.session.csrf if who.session else ""
        now = self.web.control.clock()
        flash = self._flash(q, csrf)
        general = [f for f in findings if f.switch is None or f.switch not in SWITCHES]
        intro = ('<p class="note">Turn a switch on only for a VPN that needs it (see the advice on each card). '
                 "<strong>Changes made here apply at once and are saved</strong> in "
                 f"<code>{e(cfg.path)}</code> (its comments kept), so a restart or reload keeps them; the "
                 "replaced version stays in the <a href=\"/backup\">config history</a>, one click from a rollback.</p>")
        # The usage record lags by a few seconds: a switch with a live tunnel is in use, whatever it says.
        live = {s for s in SWITCHES if helpers.get(s, {}).get("tunnels")}
        findings = [f for f in findings if not (f.switch in live and f.code in STALE_WHEN_LIVE)]
        cards = [self._card(name, states.get(name, False), helpers.get(name, {}), last_used[name], since[name],
                            [f for f in findings if f.switch == name], csrf, now) for name in SWITCHES]
        strict = runtime.strict
        cards.append(
            f'<article class="card switch {"on" if strict else "off"}" id="switch-strict">'
            f'<h2>Strict <span class="badge">{"ON" if strict else "OFF"}</span></h2>'
            f'<p>{e(SWITCH_INFO["strict"].what)}</p><p class="note">{e(SWITCH_INFO["strict"].note)}</p>'
            '<p class="small">Set in the config file (<code>[passthrough] strict</code>), then reload.</p></article>')
        body = (flash + intro + self._findings(general, "Audit") + '<div class="cards">' + "".join(cards) + "</div>"
                + (f'<p class="small">Usage record: {e(problem)}</p>' if problem else ""))
        return layout("VPN Passthrough", body, who, "/passthrough")

    @staticmethod
    def _flash(q: Mapping[str, str], csrf: str) -> str:
        name = q.get("done", "")
        if name not in SWITCHES or q.get("on") not in ("0", "1"):
            return ""
        on = q.get("on") == "1"
        torn = q.get("torn", "0")
        torn_text = f" {e(torn)} tunnel(s) were closed." if torn.isdigit() and int(torn) else ""
        why = q.get("why", "")[:300]
        saved = (" Saved in the config file: a restart or reload keeps it." if q.get("saved") == "1"
                 else " <strong>Not saved in the config file</strong>: it holds until the router restarts or "
                      f"reloads{' (' + e(why) + ')' if why else ''}.")
        undo_note = EXPOSURES.get((name, not on))
        return (f'<div class="ok" role="status"><p>{e(SWITCH_TITLES[name])} passthrough is now '
                f'<strong>{"on" if on else "off"}</strong>.{torn_text}{saved}</p>'
                f'<form method="post" action="/passthrough/{e(name)}" class="inline">'
                f'<input type="hidden" name="csrf" value="{e(csrf)}"><input type="hidden" name="on" '
                f'value="{int(not on)}"><input type="hidden" name="confirm" value="1">'
                f'<button type="submit" id="undo">Undo (turn it {"off" if on else "on"} again)</button></form>'
                + (f'<p class="small">Undo turns it back on: {e(undo_note)}</p>' if undo_note else "") + "</div>")

    @staticmethod
    def _findings(findings: Sequence[Any], title: str) -> str:
        if not findings:
            return ""
        items = "".join(f'<li class="{e(f.severity)}"><strong>{e(f.severity)}</strong>: {e(f.explanation)} '
                        f"<em>{e(f.advice)}</em></li>" for f in findings)
        return f'<section class="findings"><h3>{e(title)}</h3><ul>{items}</ul></section>'

    def _card(self, name: str, on: bool, helper: Mapping[str, Any], last_used: float | None,
              since: float | None, findings: Sequence[Any], csrf: str, now: float) -> str:
        from natpass.diagnose.advise import advise

        what, note = SWITCH_INFO[name].what, SWITCH_INFO[name].note
        title = SWITCH_TITLES[name]
        adv = advise(ADVISE_PROTOCOL[name]).switches[name]
        tunnels = [t for t in helper.get("tunnels", []) if isinstance(t, Mapping)]
        rows = []
        for t in tunnels:
            start = t.get("since")
            age = human_duration(now - start) if isinstance(start, int | float) else "?"
            kind = str(t.get("proto") or name).upper()
            state = str(t.get("state") or "up") + ("" if kind == title.upper() else f" ({kind})")
            rows.append([e(t.get("lan") or "?"), e(t.get("remote") or "?"), e(age), e(state)])
        table = scroll_table(f"{title} live tunnels", ["LAN host", "Server", "Age", "State"], rows,
                             "No live tunnels.")
        button = (f'<form method="post" action="/passthrough/{e(name)}" class="inline">'
                  f'<input type="hidden" name="csrf" value="{e(csrf)}"><input type="hidden" name="on" '
                  f'value="{int(not on)}"><button type="submit" id="toggle-{e(name)}" '
                  f'class="{"" if on else "primary"}">Turn {e(title)} {"off" if on else "on"}</button></form>')
        used = "In use now." if tunnels else f"Last used: {e(when(last_used))}."
        on_since = f" On since {e(when(since))}." if on and since else ""
        return (f'<article class="card switch {"on" if on else "off"}" id="switch-{e(name)}">'
                f'<h2>{e(title)} <span class="badge">{"ON" if on else "OFF"}</span></h2>'
                f"<p>{e(what)}</p><p class=\"note\">{e(note)}</p>"
                f'<details><summary>When is it needed?</summary><p>For {e(ADVISE_PROTOCOL[name].upper())} '
                f"VPNs: {e(adv.why)}</p><p>Cost: {e(adv.cost)}</p></details>"
                f"<h3>Live tunnels ({len(tunnels)})</h3>{table}"
                f'<p class="small">{used}{on_since}</p>'
                f"{self._findings(findings, 'Audit')}{button}</article>")

    # ----- connections ---------------------------------------------------------------------------
    def connections(self, who: Principal, query: FlowQuery, flows: Sequence[Mapping[str, Any]]) -> str:
        now = self.web.control.clock()
        shown, total = query.apply(flows, now)
        pages = max(1, (total + query.size - 1) // query.size)
        protos = ["", "TCP", "UDP", "ICMP", "GRE", "ESP"]
        proto_opts = "".join(f'<option value="{p.lower()}"{" selected" if p == query.proto else ""}>{p or "any"}</option>'
                             for p in protos)
        state_opts = "".join(f'<option value="{s}"{" selected" if s == query.state else ""}>{s or "any"}</option>'
                             for s in ("", *STATE_FILTERS))
        filters = (
            '<form method="get" action="/connections" class="filters">'
            f'<label>Protocol <select name="proto">{proto_opts}</select></label>'
            f'<label>LAN host <input name="lan" value="{e(query.lan)}" placeholder="192.168.1.10" size="14"></label>'
            f'<label>State <select name="state">{state_opts}</select></label>'
            f'<input type="hidden" name="sort" value="{e(query.sort)}">'
            '<button type="submit">Filter</button> <a href="/connections">Clear</a></form>'
        )
        cols = [("proto", "Protocol"), ("lan", "LAN host"), ("remote", "Server"), ("wan", "WAN"),
                ("state", "State"), ("idle", "Idle")]
        head_html = []
        for key, label in cols:
            arrow = (" ▼" if query.desc else " ▲") if key == query.sort else ""
            link = query.link(sort=key, order="desc" if key == query.sort and not query.desc else "", page=1)
            head_html.append(f'<a href="{e(link)}">{e(label)}{arrow}</a>')
        rows = [[e(r["proto"]), e(r["lan"]), e(r["remote"]), e(r["wan"]),
                 e(r["state"]) + (f' <span class="small">({e(r["helper"])})</span>' if r["helper"] else ""),
                 e(human_duration(r["idle_s"]) if r["idle_s"] is not None else "?")] for r in shown]
        nav = [f"Page {query.page} of {pages} · {total} connection(s)"]
        if query.page > 1:
            nav.insert(0, f'<a href="{e(query.link(page=query.page - 1))}" rel="prev">← Previous</a>')
        if query.page < pages:
            nav.append(f'<a href="{e(query.link(page=query.page + 1))}" rel="next">Next →</a>')
        body = (filters + scroll_table("Connections", [c[1] for c in cols], rows, "No connections match.", head_html)
                + f'<p class="pager">{" · ".join(nav)}</p>')
        return layout("Connections", body, who, "/connections")

    # ----- log -------------------------------------------------------------------------------------
    def log_entries(self) -> list[dict[str, Any]]:
        entries = [{"ts": x.ts, "kind": x.kind, "text": x.text, "source": x.source}
                   for x in self.web.log.newest_first()]
        db, _problem = self._usage()
        if db is not None:
            try:
                for ev in db.events(since=time.time() - 7 * 86400, limit=LOG_ROWS):
                    kind = str(ev.get("event") or "")
                    kind = kind.split(":")[-1] if ":" in kind else kind
                    switch = SWITCH_TITLES.get(str(ev.get("switch")), str(ev.get("switch") or ""))
                    if kind in ("switch-on", "switch-off"):
                        if float(ev["ts"] or 0) >= self.web.started:
                            continue  # the web log has it, with who asked
                        kind, text = "switch", f"{switch} passthrough {kind[7:]} (recorded at start or reload)"
                    else:
                        what = LOG_KINDS.get(kind, kind)
                        text = f"{switch} {what.lower()}" + (f": {ev['detail']}" if ev.get("detail") else "")
                    entries.append({"ts": ev["ts"], "kind": kind, "text": text, "source": None})
            except Exception:  # noqa: BLE001  (the in-memory log is still worth showing)
                pass
            finally:
                db.close()
        entries.sort(key=lambda x: -float(x["ts"] or 0))
        return entries[:LOG_ROWS]

    def log(self, who: Principal) -> str:
        now = time.time()
        rows = [[e(when(x["ts"], now)), e(LOG_KINDS.get(x["kind"], x["kind"])), e(x["text"]), e(x["source"] or "")]
                for x in self.log_entries()]
        body = ('<p class="note">Newest first: logins, refused requests, switch changes, reloads and '
                "tunnels going up or down (tunnels from the usage record, the rest since the router started).</p>"
                + scroll_table("Log", ["When", "What", "Detail", "From"], rows, "Nothing logged yet."))
        return layout("Log", body, who, "/log")

    # ----- tokens ----------------------------------------------------------------------------------
    def tokens(self, who: Principal, tokens: Sequence[Mapping[str, Any]],
               created: tuple[str, str] | None = None) -> str:
        csrf = who.session.csrf if who.session else ""
        shown = ""
        if created is not None:
            name, secret = created
            shown = (f'<div class="ok" role="status"><p>Token <strong>{e(name)}</strong> created. Copy it now: '
                     f'it is not shown again.</p><p><code class="secret" id="new-token">{e(secret)}</code></p>'
                     '<p class="small">Use it as <code>Authorization: Bearer TOKEN</code>, e.g. '
                     "<code>curl -H 'Authorization: Bearer TOKEN' http://ROUTER:PORT/api/status</code></p></div>")
        rows = [[e(t["name"]), e(when(t["created"])), e(when(t["last_used"])),
                 f'<form method="post" action="/tokens" class="inline"><input type="hidden" name="csrf" '
                 f'value="{e(csrf)}"><input type="hidden" name="action" value="revoke"><input type="hidden" '
                 f'name="name" value="{e(t["name"])}"><button type="submit" class="danger">Revoke</button></form>']
                for t in tokens]
        body = (shown + '<p class="note">API tokens let scripts use the API without a login. Each has a name; '
                "only a hash of it is kept on the router.</p>"
                + scroll_table("API tokens", ["Name", "Created", "Last used", ""], rows, "No API tokens.")
                + '<h2>New token</h2><form method="post" action="/tokens" class="inline">'
                f'<input type="hidden" name="csrf" value="{e(csrf)}"><input type="hidden" name="action" value="create">'
                '<label>Name <input name="name" required pattern="[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}" '
                'placeholder="grafana"></label> <button type="submit">Create</button></form>'
                '<p class="small">The API is described at <a href="/api/openapi.json">/api/openapi.json</a>.</p>')
        return layout("API tokens", body, who, "/tokens")


    # ----- backup & restore ------------------------------------------------------------------------
    def backup(self, who: Principal, versions: Sequence[Mapping[str, Any]], flash: str = "",
               error: str = "") -> str:
        csrf = who.session.csrf if who.session else ""
        top = (f'<p class="ok" role="status">{e(flash)}</p>' if flash else "") + (
            f'<div class="error" role="alert"><p><strong>Refused:</strong> {e(error)}</p>'
            "<p>Nothing was changed: the router runs on as before.</p></div>" if error else "")
        newest = versions[0]["number"] if versions else None
        rows = []
        for v in versions:
            if v["number"] == newest:
                action = "running now"
            else:
                action = ('<form method="post" action="/backup/rollback" class="inline">'
                          f'<input type="hidden" name="csrf" value="{e(csrf)}">'
                          f'<input type="hidden" name="number" value="{e(v["number"])}">'
                          f'<button type="submit" id="rollback-{e(v["number"])}">Roll back to #{e(v["number"])}'
                          "</button></form>")
            rows.append([f'<span class="num">#{e(v["number"])}</span>', e(v.get("created")), e(v.get("who")),
                         f'<span class="wrap">{e(v.get("summary"))}</span>', action])
        body = (
            top + '<section><h2>Download a backup</h2><p>The config file as it is now, with a checksum so a '
            'damaged or edited copy is recognised on restore.</p>'
            '<p><a class="button" href="/backup/download" id="download">Download backup</a></p></section>'
            '<section><h2>Restore a backup</h2>'
            '<form method="post" action="/backup/restore" enctype="multipart/form-data" class="upload">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            '<label for="backup-file">Backup or config file (.toml)</label>'
            '<input id="backup-file" name="backup" type="file" accept=".toml,text/plain" required>'
            '<button type="submit" id="restore">Restore</button></form>'
            f'<p class="small">At most {self.web.options.max_backup // 1024} KiB. The file is checked whole '
            "before anything changes: a damaged, edited or invalid file, or one that changes what only a "
            "restart can change (interfaces, LAN address, datapath, state dir), is refused with the reason and "
            "line, and the running router is left as it is.</p></section>"
            '<section><h2>Config history</h2><p class="small">Every change (switch, reload, restore, rollback) '
            "keeps the version it replaced; a rollback is itself kept, so it can be undone the same way.</p>"
            + scroll_table("Config history", ["Version", "When", "Who", "What changed", ""], rows,
                           "No versions kept yet.") + "</section>")
        return layout("Backup & restore", body, who, "/backup")

    # ----- diagnose --------------------------------------------------------------------------------
    def diagnose(self, who: Principal, report: Mapping[str, Any] | None = None, error: str = "",
                 live: Mapping[str, Any] | None = None) -> str:
        csrf = who.session.csrf if who.session else ""
        vantages = "".join(f'<option value="{e(k)}">{e(v)}</option>' for k, v in VANTAGE_TEXT.items())
        cfg = self.web.control.config
        upload = (
            "<section><h2>Upload a capture</h2>"
            '<form method="post" action="/diagnose" enctype="multipart/form-data" class="upload">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            '<label for="capture-file">Capture file (pcap or pcapng)</label>'
            '<input id="capture-file" name="capture" type="file" accept=".pcap,.pcapng,.cap" required>'
            '<label for="vantage">Taken</label><select id="vantage" name="vantage">'
            f'<option value="">work it out from the capture</option>{vantages}</select>'
            '<button type="submit" id="diagnose">Diagnose</button></form>'
            f'<p class="small">At most {self.web.options.max_capture // (1024 * 1024)} MiB. Capture the VPN '
            "attempt with Wireshark or <code>tcpdump -w vpn.pcap</code> on the client, then upload it here: "
            "the report says which VPN protocols it saw, how far each got and why it stopped.</p></section>")
        low, high = LIVE_SECONDS
        capture = (
            "<section><h2>Capture on the router</h2>"
            '<form method="post" action="/diagnose/live" class="upload">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            f'<label for="seconds">Seconds ({low}-{high})</label>'
            f'<input id="seconds" name="seconds" type="number" min="{low}" max="{high}" value="{LIVE_DEFAULT}" required>'
            '<button type="submit" id="capture-live">Capture and diagnose</button></form>'
            f'<p class="small">Captures on the LAN side (<code>{e(cfg.lan_interface)}</code>) and the WAN side '
            f"(<code>{e(cfg.wan_interface)}</code>) at once while you retry the VPN, then explains both sides "
            "with the drop counters of that window: an attempt that reaches the LAN side but not the WAN side "
            "stopped at this router, and the counters say why. The page answers when the window ends.</p></section>")
        top = (f'<div class="error" role="alert"><p><strong>Refused:</strong> {e(error)}</p></div>'
               if error else "")
        body = top + upload + capture + (report_html(report) if report is not None else "")
        if live is not None:
            body += live_report_html(live)
        return layout("Diagnose", body, who, "/diagnose")
