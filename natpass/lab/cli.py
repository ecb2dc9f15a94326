"""``natpass lab up|down|exec|status|demo``: namespace topologies with real VPN peers."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

DEFAULT_PREFIX = "np"


def register(sub: Any) -> None:
    lab = sub.add_parser(
        "lab",
        help="build a namespace lab (LAN clients, NAT routers, a server) and run real VPN peers",
        description=(
            "Network-namespace lab: every namespace is named PREFIX-NODE and every process it starts "
            "is recorded, so 'natpass lab down' removes everything, also after a crash. Needs root."
        ),
    )
    lsub = lab.add_subparsers(dest="lab_command", metavar="SUBCOMMAND")

    def prefix_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--prefix", default=DEFAULT_PREFIX, help="namespace name prefix (default %(default)s)")

    up = lsub.add_parser("up", help="build a topology")
    prefix_arg(up)
    up.add_argument("topology", nargs="?", default="basic", choices=("basic", "double-nat", "cgnat"))
    up.add_argument("--router", choices=("natpass", "kernel"), default="natpass", help="the home router (r1)")
    up.add_argument("--outer", choices=("natpass", "kernel"), default="kernel",
                    help="the second NAT / carrier NAT (double-nat, cgnat)")
    up.add_argument("--clients", type=int, default=1, help="LAN clients c1..cN (default 1)")
    for sw in ("pptp", "ipsec", "l2tp"):
        up.add_argument(f"--{sw}", action="store_true", help=f"turn natpass's {sw} passthrough switch on")
    up.add_argument("--strict", action="store_true",
                    help="natpass: also block the control ports of switched-off protocols")
    up.add_argument("--mapping", default="endpoint-independent",
                    choices=("endpoint-independent", "address-dependent", "address-and-port-dependent"))
    up.add_argument("--filtering", default="address-and-port-dependent",
                    choices=("endpoint-independent", "address-dependent", "address-and-port-dependent"))
    up.add_argument("--datapath", choices=("packet", "hybrid"), default="packet",
                    help="natpass's datapath on r1: every packet through natpass, or the kernel forwarding "
                    "ordinary traffic and natpass the VPN protocols (default %(default)s)")
    up.add_argument("--forward", action="append", default=[], metavar="PROTO:PORT:HOST:PORT",
                    help="port forward on r1, e.g. tcp:1723:192.168.1.11:1723")
    up.set_defaults(func=_up)

    down = lsub.add_parser("down", help="stop every lab process and delete every namespace of the prefix")
    prefix_arg(down)
    down.set_defaults(func=_down)

    ex = lsub.add_parser("exec", help="run a command in a node's namespace: lab exec NODE -- CMD")
    prefix_arg(ex)
    ex.add_argument("node", help="c1, r1, inet, srv, ... (see lab status)")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (after --)")
    ex.set_defaults(func=_exec)

    st = lsub.add_parser("status", help="what the lab has: topology, namespaces, processes, router drops")
    prefix_arg(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_status)

    demo = lsub.add_parser(
        "demo",
        help="run every VPN protocol through natpass (switch off/on) and the kernel NAT; print a table",
    )
    prefix_arg(demo)
    demo.add_argument("--json", action="store_true", help="print the results as one JSON object")
    demo.add_argument("--router", choices=("natpass", "kernel", "both"), default="both")
    demo.add_argument("--protocols", default=None,
                      help="comma-separated subset of openvpn-udp,openvpn-tcp,wireguard,ikev2-natt,pptp,l2tp,esp")
    demo.add_argument("--datapath", choices=("packet", "hybrid"), default="packet",
                      help="natpass's datapath for the natpass rows (default %(default)s)")
    demo.add_argument("--timeout", type=float, default=12.0, help="seconds each client gets to connect")
    demo.add_argument("--restart", action="store_true",
                      help="also restart natpass (SIGTERM, start again) under each live tunnel and report "
                      "connected, lost_packets and gap_ms (rows with \"restart\": true)")
    demo.set_defaults(func=_demo)
    lab.set_defaults(func=lambda args: (lab.print_help(), 2)[1])


def _need_root() -> bool:
    if os.geteuid() != 0:
        print("natpass lab: needs root (network namespaces); try: sudo natpass lab ...", file=sys.stderr)
        return False
    return True


def _parse_forward(text: str) -> Any:
    from natpass.lab.netns import LabError
    from natpass.lab.topology import Forward

    parts = text.split(":")
    if len(parts) != 4 or parts[0] not in ("tcp", "udp"):
        raise LabError(f"bad --forward {text!r}: want PROTO:PORT:HOST:PORT, e.g. tcp:1723:192.168.1.11:1723")
    return Forward(parts[0], int(parts[1]), f"{parts[2]}:{parts[3]}")


def _up(args: argparse.Namespace) -> int:
    if not _need_root():
        return 1
    from natpass.lab import topology as T
    from natpass.lab.netns import LabError, Netns

    lab = Netns(args.prefix)
    if lab.namespaces():
        print(f"natpass lab: prefix {args.prefix} already has namespaces; run 'natpass lab down' first",
              file=sys.stderr)
        return 1
    try:
        topo = T.build(
            lab, args.topology, router=args.router, clients=args.clients, outer=args.outer,
            pptp=args.pptp, ipsec=args.ipsec, l2tp=args.l2tp, strict=args.strict, mapping=args.mapping,
            filtering=args.filtering, forwards=[_parse_forward(f) for f in args.forward],
            datapath=args.datapath,
        )
    except (LabError, ValueError) as exc:
        print(f"natpass lab up: {exc}", file=sys.stderr)
        lab.cleanup()
        return 1
    print(f"lab {args.prefix}: {topo.name} with {', '.join(topo.nodes)}")
    for r in topo.routers:
        kind = f"{r.kind} ({r.datapath})" if r.kind == "natpass" else r.kind
        line = f"  {r.node}: {kind} NAT, LAN {r.lan_addr} ({r.lan_prefix}), WAN {r.wan_addr}"
        if r.error:
            line += f"  [not running: {r.error}]"
        print(line)
    print(f"  clients: {', '.join(f'{c}={a}' for c, a in topo.client_addrs.items())}")
    print(f"  server srv: {', '.join(topo.server_addrs)}")
    print(f"try: natpass lab exec --prefix {args.prefix} c1 -- ping -c1 {topo.server_addrs[0]}")
    return 0


def _down(args: argparse.Namespace) -> int:
    if not _need_root():
        return 1
    from natpass.lab.netns import Netns

    removed = Netns(args.prefix).cleanup()
    print(f"lab {args.prefix}: removed {len(removed)} object(s)" + (": " + ", ".join(removed) if removed else ""))
    return 0


def _exec(args: argparse.Namespace) -> int:
    if not _need_root():
        return 1
    from natpass.lab.netns import LabError, Netns

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("natpass lab exec: give a command after --", file=sys.stderr)
        return 2
    lab = Netns(args.prefix)
    try:
        if not lab.exists(args.node):
            print(f"natpass lab exec: no node {args.node} (namespace {lab.ns(args.node)})", file=sys.stderr)
            return 1
        argv = lab.argv(args.node, cmd)
    except LabError as exc:
        print(f"natpass lab exec: {exc}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 127  # not reached


def _status(args: argparse.Namespace) -> int:
    from natpass.lab import topology as T
    from natpass.lab.netns import Netns

    if os.geteuid() != 0 and not args.json:
        print("natpass lab status: showing what is visible without root", file=sys.stderr)
    st = T.status(Netns(args.prefix))
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    topo = st["topology"]
    print(f"lab {st['prefix']}: " + (f"{topo['name']}" if topo else "no topology recorded"))
    print(f"  namespaces: {', '.join(st['namespaces']) or 'none'}")
    for p in st["processes"]:
        print(f"  pid {p['pid']:>7} {'alive' if p['alive'] else 'gone ':5} {p['ns']:<14} {p['label']}")
    for node, info in st.get("routers", {}).items():
        extra = ""
        if info["kind"] == "natpass":
            extra = f" running={info.get('running')} drops={info.get('drops')}"
            if info.get("error"):
                extra += f" error={info['error']}"
        else:
            extra = f" conntrack entries={info.get('conntrack_entries', '?')}"
        print(f"  router {node}: {info['kind']} WAN {info['wan']} LAN {info['lan']}{extra}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from natpass.lab.demo import main as demo_main

    return demo_main(args)
