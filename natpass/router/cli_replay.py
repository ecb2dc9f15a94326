"""``natpass replay``: the offline what-if run of a capture through the engine."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from natpass.datapath.replay import ReplayResult

DESCRIPTION = """\
Run a pcap/pcapng capture through natpass's engine as if natpass had been the router, and report
per packet and per flow what was forwarded, translated or dropped and why.

Packets from LAN-prefix sources go out through the NAT; the others arrive from the far side, which
is emulated: each arriving packet is first rewritten into what the far end would have sent after
seeing natpass's translated traffic (the mapped WAN address and port, translated PPTP call IDs...).
Link types: Ethernet (VLAN), raw IP, Linux cooked (SLL/SLL2), BSD loopback.

Examples:
  natpass replay vpn.pcapng --lan auto                 # infer the LAN, default config
  natpass replay pptp.pcap --config natpass.toml --pptp on --out wan.pcap
  natpass replay ipsec.pcap --lan 192.168.1.0/24 --ipsec off --json
"""


def register(sub: Any) -> None:
    p = sub.add_parser("replay", help="what-if replay of a capture through the NAT engine",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("capture", metavar="CAPTURE", help="pcap or pcapng file")
    p.add_argument("--config", metavar="FILE", help="natpass.toml (default: built-in defaults, "
                   "every passthrough switch off)")
    p.add_argument("--lan", metavar="CIDR", action="append",
                   help="LAN prefix (repeatable), or 'auto' to infer it from the capture; "
                   "overrides [lan] prefixes. Default: the config's, or auto when no config is given")
    for name in ("pptp", "ipsec", "l2tp"):
        p.add_argument(f"--{name}", choices=("on", "off"), help=f"override the {name} passthrough switch")
    p.add_argument("--strict", choices=("on", "off"), help="override [passthrough] strict")
    p.add_argument("--out", metavar="WAN.pcap", help="write the WAN side as the far end saw it")
    p.add_argument("--lan-out", metavar="LAN.pcap", help="write the LAN side as its hosts saw it")
    p.add_argument("--keep-checksums", action="store_true",
                   help="replay packets exactly as captured; by default checksums left unfilled by "
                   "the capturing host's offload are repaired first (a router would drop them)")
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")
    p.add_argument("--packets", action="store_true", help="list every packet's verdict "
                   "(with --json: add a 'records' list)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from natpass.datapath.pcap import CaptureError
    from natpass.datapath.replay import replay_capture
    from natpass.nat.config import NatConfig
    from natpass.router.config import ConfigError, load_config

    lan = args.lan
    if args.config:
        try:
            config = load_config(args.config).nat
        except ConfigError as exc:
            print(f"natpass: {exc}", file=sys.stderr)
            return 2
    else:
        config = NatConfig()
        lan = lan or ["auto"]
    chosen = {"pptp": args.pptp, "ipsec": args.ipsec, "l2tp": args.l2tp, "strict": args.strict}
    over = {k: v == "on" for k, v in chosen.items() if v is not None}
    if over:
        config = dataclasses.replace(config, passthrough=dataclasses.replace(config.passthrough, **over))
    try:
        if lan and lan != ["auto"]:
            import ipaddress

            for item in lan:
                ipaddress.IPv4Network(item)
    except ValueError as exc:
        print(f"natpass: --lan: {exc}", file=sys.stderr)
        return 2

    def show_progress(n: int) -> None:
        print(f"\r  {n:,} packets…", end="", file=sys.stderr, flush=True)

    progress = show_progress if sys.stderr.isatty() and not args.json else None
    try:
        result = replay_capture(args.capture, config, lan=lan, out=args.out, lan_out=args.lan_out,
                                progress=progress, repair=not args.keep_checksums)
    except (CaptureError, OSError) as exc:
        print(f"natpass: {args.capture}: {exc}", file=sys.stderr)
        return 2
    if progress is not None:
        print("\r", end="", file=sys.stderr)
    if args.json:
        obj = dict(result.summary)
        obj["flow_list"] = result.flows
        if args.packets:
            obj["records"] = [r.as_dict() for r in result.records]
        print(json.dumps(obj, indent=2))
        return 0
    _print_report(result, args.packets)
    return 0


def _print_report(result: ReplayResult, packets: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    s = result.summary
    # Piped output keeps whole rows (COLUMNS still wins when set).
    con = Console() if sys.stdout.isatty() or "COLUMNS" in os.environ else Console(width=140)
    sw = ", ".join(f"{k} {'on' if v else 'off'}" for k, v in s["switches"].items())
    con.print(f"[bold]{s['capture']}[/]: {s['packets']} packets, {s['forwarded']} forwarded, "
              f"{s['dropped']} dropped" + (f", {s['held']} held (fragments waiting for their first)"
                                           if s["held"] else "") + f"  (LAN {', '.join(s['lan_prefixes'])}; WAN "
              f"{', '.join(s['wan_addresses'])}; passthrough {sw})")
    if s["non_ipv4"] or s["lan_local"] or s["truncated"]:
        con.print(f"  skipped: {s['non_ipv4']} non-IPv4 frames, {s['lan_local']} LAN-to-LAN packets, "
                  f"{s['truncated']} cut short by the capture's snap length")
    if s["checksums_repaired"]:
        con.print(f"  {s['checksums_repaired']} packets had checksums left unfilled by the capturing "
                  "host's offload: repaired before replay (--keep-checksums to replay as captured)")
    if packets:
        t = Table("#", "dir", "flow", "verdict", "reason", box=None)
        for r in result.records:
            t.add_row(str(r.index), "out" if r.from_lan else "in", r.flow,
                      {"forwarded": "[green]forwarded[/]", "held": "[yellow]held[/]"}.get(r.verdict, "[red]dropped[/]"),
                      r.reason or "")
        con.print(t)
    t = Table("flow", "out", "in", "forwarded", "held", "dropped", "why dropped", title="Flows")
    for f in sorted(result.flows, key=lambda f: -(f["out"] + f["in"]))[:200]:
        why = ", ".join(f"{k} ×{v}" for k, v in f["drops"].items())
        t.add_row(f["flow"], str(f["out"]), str(f["in"]), str(f["forwarded"]), str(f["held"]),
                  f"[red]{f['dropped']}[/]" if f["dropped"] else "0", why)
    con.print(t)
    t = Table("protocol", "out forwarded", "out dropped", "out held", "in forwarded", "in dropped",
              "in held", title="By IP protocol")
    for name, row in s["by_ip_protocol"].items():
        if any(row.values()):
            t.add_row(name, *(str(row[k]) for k in ("out_forwarded", "out_dropped", "out_held",
                                                    "in_forwarded", "in_dropped", "in_held")))
    con.print(t)
    if s["drops"]:
        con.print("Drops by reason: " + ", ".join(f"[red]{k}[/] {v}" for k, v in
                                                   sorted(s["drops"].items(), key=lambda kv: -kv[1])))
