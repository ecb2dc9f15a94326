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
    p.add_argument("capture", help="pcap or pcapng file")
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


def _advise(args: argparse.Namespace) -> int:
    from natpass.diagnose.advise import run_advise

    return run_advise(args)


def _audit(args: argparse.Namespace) -> int:
    from natpass.diagnose.audit import run_audit

    return run_audit(args)
