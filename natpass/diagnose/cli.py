"""``natpass diagnose``, ``natpass advise`` and ``natpass audit``: parsers here, work in func."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "diagnose", help="say which VPN protocols a capture shows, how far each got, what failed and why",
        description="Read a pcap/pcapng taken on the VPN client or on a router interface and report, per VPN "
                    "protocol, how far the handshake got, what failed, why (Windows errors 619/809, GRE "
                    "or ESP blocked, CGNAT, double NAT) and what to do.")
    p.add_argument("capture", nargs="?", help="pcap or pcapng file (not with --live)")
    p.add_argument("--live", action="store_true",
                   help="on the router: capture its LAN and WAN interfaces at once while you retry the VPN, "
                   "then diagnose both sides together with the router's drop counters for the window")
    p.add_argument("--seconds", type=float, default=30.0, metavar="N",
                   help="--live: capture for N seconds (default 30, at most 600; Ctrl-C ends it early)")
    p.add_argument("--config", "-c", metavar="FILE",
                   help="--live: the router's natpass.toml (interfaces and admin socket)")
    p.add_argument("--socket", metavar="PATH", help="--live: the router's admin socket (drop counters)")
    p.add_argument("--lan-if", metavar="IFACE", help="--live: LAN interface (default: from --config)")
    p.add_argument("--wan-if", metavar="IFACE", help="--live: WAN interface (default: from --config)")
    p.add_argument("--keep", metavar="DIR", help="--live: keep the two captures (lan.pcap, wan.pcap) in DIR")
    p.add_argument("--vantage", choices=("client", "router-lan", "router-wan", "server"),
                   help="where the capture was taken (changes what a missing packet means); inferred "
                   "from addresses, TTLs and flow directions when not given")
    p.add_argument("--json", action="store_true", help="print one JSON object (capture, packets, protocols, "
                   "findings)")
    p.add_argument("--html", metavar="REPORT.html", help="also write a self-contained HTML report with a "
                   "ladder diagram per protocol")
    p.add_argument("--fail-on", choices=("error", "warning"), metavar="error|warning",
                   help="exit with status 1 when a finding of this severity (or worse) is found, for "
                   "scripts and monitoring; by default the exit status only reports unreadable input")
    p.set_defaults(func=_diagnose)

    from natpass.diagnose.advise import PROTOCOL_CHOICES, SITUATIONS

    a = subparsers.add_parser(
        "advise", help="which passthrough switches to turn on for your VPN, and what it costs",
        description="The decision guide: for the VPN you use and your situation, whether to enable each "
                    "passthrough switch (pptp, ipsec, l2tp), why, and the security cost. Interactive on a "
                    "terminal when run without arguments.")
    a.add_argument("--protocol", choices=PROTOCOL_CHOICES, help="the VPN in use")
    a.add_argument("--capture", metavar="FILE", help="infer the protocol from a capture (runs diagnose)")
    for name, (_q, helptext) in SITUATIONS.items():
        a.add_argument(f"--{name}", dest="situations", action="append_const", const=name, help=helptext)
    a.add_argument("--troubleshooting", type=int, choices=(619, 809), metavar="619|809",
                   help="you are chasing Windows error 619 (PPTP/GRE) or 809 (IPsec/L2TP)")
    a.add_argument("--json", action="store_true", help="print the advice as JSON")
    a.set_defaults(func=_advise)

    u = subparsers.add_parser(
        "audit", help="security review of a router config and its usage record",
        description="Review natpass.toml and the usage record: switches on but unused, PPTP, VPN ports "
                    "exposed by forwards, endpoint-independent filtering, missing limits. Exit status 1 "
                    "when a finding is an error, 2 for a bad config.")
    u.add_argument("--config", required=True, metavar="FILE", help="natpass.toml")
    u.add_argument("--db", metavar="PATH", help="usage database (default: <state_dir>/usage db of the config)")
    u.add_argument("--days", type=int, default=30, help="unused for this many days counts as unused "
                   "(default 30)")
    u.add_argument("--json", action="store_true", help="print the findings as JSON")
    u.set_defaults(func=_audit)


def _progress_reader(path: str) -> Any:
    """A rich progress display on stderr (only on a terminal), or None."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("reading {task.description}: {task.completed:,} packets"),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)


def _diagnose(args: argparse.Namespace) -> int:
    if args.live:
        return _diagnose_live(args)
    if not args.capture:
        print("natpass diagnose: give a capture file, or --live on the router", file=sys.stderr)
        return 2
    from natpass.diagnose.render import print_text, to_html, to_json
    from natpass.diagnose.run import CaptureError, diagnose

    bar = _progress_reader(args.capture)
    try:
        if bar is None:
            diag = diagnose(args.capture, vantage=args.vantage)
        else:
            with bar:
                task = bar.add_task(args.capture, total=None)
                diag = diagnose(args.capture, progress=lambda n: bar.update(task, completed=n),
                                vantage=args.vantage)
    except (CaptureError, OSError) as exc:
        print(f"natpass diagnose: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(to_json(diag))
    else:
        print_text(diag)
    if args.html:
        try:
            with open(args.html, "w", encoding="utf-8") as fh:
                fh.write(to_html(diag))
        except OSError as exc:
            print(f"natpass diagnose: cannot write {args.html}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        if not args.json:
            print(f"HTML report written to {args.html}")
    if args.fail_on:
        worst = {"error"} if args.fail_on == "error" else {"error", "warning"}
        if any(f.severity in worst for f in diag.findings):
            return 1
    return 0


def _diagnose_live(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from natpass.diagnose.live import LiveError, diagnose_live
    from natpass.diagnose.render import print_live

    if args.capture:
        print("natpass diagnose: --live captures by itself; give no capture file", file=sys.stderr)
        return 2
    lan_if, wan_if, sock = args.lan_if, args.wan_if, args.socket
    if args.config:
        from natpass.router.config import ConfigError, load_config

        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            print(f"natpass diagnose: {exc}", file=sys.stderr)
            return 2
        lan_if, wan_if = lan_if or cfg.lan_interface, wan_if or cfg.wan_interface
        sock = sock or cfg.admin_socket
    if not lan_if or not wan_if:
        print("natpass diagnose: --live needs the router's interfaces: --config FILE or --lan-if and --wan-if",
              file=sys.stderr)
        return 2

    def status() -> dict[str, Any] | None:
        if not sock:
            return None
        from natpass.router.cli_admin import AdminClient, RouterUnavailable

        try:
            code, answer = AdminClient(sock, timeout=5.0).request("GET", "/api/status")
        except RouterUnavailable:
            return None
        return answer if code == 200 and isinstance(answer, dict) else None

    def ready() -> None:
        print(f"capturing on {lan_if} (LAN) and {wan_if} (WAN) for {args.seconds:g} s: retry the VPN now "
              "(Ctrl-C ends early)", file=sys.stderr, flush=True)

    try:
        live = diagnose_live(lan_if, wan_if, args.seconds, status, Path(args.keep) if args.keep else None,
                             ready=ready)
    except (LiveError, OSError) as exc:
        print(f"natpass diagnose: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(live.to_dict(), indent=2))
    else:
        print_live(live)
    worst = {"error"} if args.fail_on == "error" else {"error", "warning"} if args.fail_on else set()
    every = live.findings + live.lan.findings + live.wan.findings
    return 1 if any(f.severity in worst for f in every) else 0


def _advise(args: argparse.Namespace) -> int:
    from natpass.diagnose.advise import run_advise

    return run_advise(args)


def _audit(args: argparse.Namespace) -> int:
    from natpass.diagnose.audit import run_audit

    return run_audit(args)
