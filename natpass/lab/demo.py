"""``natpass lab demo``: every VPN protocol's real client through natpass (switch off and on) and
through the Linux kernel's NAT, one table at the end.

For each run: connected or failed, set-up time, the error a Windows client would show when it fails
(619 for PPTP whose GRE is dropped, 809 for IPsec/L2TP blocked), and natpass's own drop reason (the
drop counter that grew most during the run, from ``natpass status --json``). With ``--restart``
each protocol also runs through a restart of natpass (switches on; natpass.lab.restart_proof):
rows with ``"restart": true``, ``connected`` (the tunnel still carries traffic afterwards, without
the client setting it up again), ``lost_packets`` and ``gap_ms``. Everything is built under one
name prefix and torn down at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from natpass.lab import topology as T
from natpass.lab.netns import LabError, Netns
from natpass.lab.peers.base import Peer, PeerResult

PROTOCOLS = ("openvpn-udp", "openvpn-tcp", "wireguard", "ikev2-natt", "pptp", "l2tp", "esp")
RELEVANT_SWITCH = {"ikev2-natt": "ipsec", "pptp": "pptp", "l2tp": "l2tp", "esp": "ipsec"}
WINDOWS_ERROR = {"pptp": 619, "ikev2-natt": 809, "l2tp": 809, "esp": 809}
PROGRAMS = {
    "openvpn-udp": ("openvpn",), "openvpn-tcp": ("openvpn",), "wireguard": ("wireguard-go", "wg"),
    "ikev2-natt": ("swanctl",), "pptp": ("pptpd", "pptp", "socat"), "l2tp": ("xl2tpd",), "esp": (),
}
BASE_PROGRAMS = ("ip", "nft", "conntrack", "tcpdump", "ping", "socat")
NOTES = {
    "esp": "raw ESP is crafted with scapy (no real stack here sends raw ESP)",
    "pptp": "real pptpd + pptp-linux; PPP frames from natpass's stand-in pppd",
    "l2tp": "real xl2tpd pair, plain L2TP over UDP 1701 (no IPsec); PPP frames from natpass's stand-in pppd",
}


def make_peer(protocol: str, lab: Netns, topo: T.Topology, timeout: float) -> Peer:
    from natpass.lab.peers.esp import RawEsp
    from natpass.lab.peers.ipsec import StrongSwan
    from natpass.lab.peers.l2tp import L2tp
    from natpass.lab.peers.openvpn import OpenVpn
    from natpass.lab.peers.pptp import Pptp
    from natpass.lab.peers.wireguard import WireGuard

    factories: dict[str, Callable[[], Peer]] = {
        "openvpn-udp": lambda: OpenVpn(lab, topo, timeout=timeout),
        "openvpn-tcp": lambda: OpenVpn(lab, topo, tcp=True, timeout=timeout),
        "wireguard": lambda: WireGuard(lab, topo, timeout=timeout),
        "ikev2-natt": lambda: StrongSwan(lab, topo, timeout=timeout),
        "pptp": lambda: Pptp(lab, topo, timeout=timeout),
        "l2tp": lambda: L2tp(lab, topo, timeout=timeout),
        "esp": lambda: RawEsp(lab, topo, timeout=timeout),
    }
    return factories[protocol]()


def missing_programs(protocols: list[str]) -> list[str]:
    need = set(BASE_PROGRAMS)
    for p in protocols:
        need.update(PROGRAMS[p])
    return sorted(p for p in need if shutil.which(p) is None)


def install_deps_script() -> Path | None:
    p = Path(__file__).resolve().parents[2] / "scripts" / "install-deps.sh"
    return p if p.is_file() else None


def windows_error(protocol: str, connected: bool) -> int | None:
    return None if connected else WINDOWS_ERROR.get(protocol)


def drop_reason(before: dict[str, int], after: dict[str, int]) -> str | None:
    """The drop counter that grew most during the run (None when nothing was dropped)."""
    grown = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
    if not grown:
        return None
    return max(sorted(grown), key=lambda k: grown[k])


class Progress:
    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total, self.done, self.quiet, self.t0 = total, 0, quiet, time.monotonic()

    def step(self, text: str) -> None:
        self.done += 1
        if not self.quiet:
            print(f"[{self.done}/{self.total} {time.monotonic() - self.t0:5.1f}s] {text}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"  {text}", file=sys.stderr, flush=True)


def row(protocol: str, router: str, switch: str, res: PeerResult | None, reason: str | None,
        error: str | None = None, datapath: str | None = None) -> dict[str, Any]:
    connected = bool(res and res.connected)
    detail = error or (res.detail if res else "")
    out: dict[str, Any] = {
        "protocol": protocol, "router": router, "switch": switch,
        "connected": connected, "setup_s": res.setup_s if res and res.connected else None,
        "windows_error": windows_error(protocol, connected), "drop_reason": reason,
        "detail": detail,
    }
    if datapath is not None:
        out["datapath"] = datapath  # natpass rows: "packet" or "hybrid"
    if error:
        out["error"] = error
    if protocol in NOTES:
        out["note"] = NOTES[protocol]
    return out


def run_kernel(prefix: str, protocols: list[str], timeout: float, progress: Progress) -> list[dict[str, Any]]:
    lab = Netns(prefix)
    rows = []
    with lab.session():
        topo = T.build(lab, "basic", router="kernel", clients=1)
        T.wait_reachable(lab, "c1", topo.server_addrs[0])
        for proto in protocols:
            progress.step(f"kernel NAT: {proto} ...")
            res = make_peer(proto, lab, topo, timeout).run()
            progress.note(_short(res))
            # The kernel's passthrough is its conntrack helper, always attached here (PPTP), and its
            # generic tracking of ESP by addresses: reported as "on".
            rows.append(row(proto, "kernel", "on", res, None))
    return rows


def restart_row(protocol: str, proved: dict[str, Any], datapath: str) -> dict[str, Any]:
    """A ``--restart`` row: the demo's fields plus what the restart proof measured."""
    out = {"protocol": protocol, "router": "natpass", "switch": "on", "datapath": datapath,
           "windows_error": None, "drop_reason": None, **proved}
    if protocol in NOTES:
        out["note"] = NOTES[protocol]
    return out


def run_restarts(lab: Netns, topo: T.Topology, protocols: list[str], timeout: float,
                 progress: Progress, datapath: str) -> list[dict[str, Any]]:
    """Each protocol's session through a restart of the running natpass router (switches on)."""
    from natpass.lab.restart_proof import not_measured, prove

    rows = []
    r = topo.home
    for proto in protocols:
        progress.step(f"natpass restart under {proto} ...")
        if r.pid is None or not lab.alive(r.pid):
            try:
                T.restart_router(lab, topo, r)  # a failed restart before: start it for the next one
            except LabError as exc:
                rows.append(restart_row(proto, {**not_measured(str(exc)), "error": str(exc)}, datapath))
                continue
        proved = prove(lab, topo, r, make_peer(proto, lab, topo, timeout))
        progress.note(proved["detail"][:200])
        rows.append(restart_row(proto, proved, datapath))
    return rows


def run_natpass(prefix: str, protocols: list[str], timeout: float, progress: Progress,
                datapath: str = "packet", restart: bool = False) -> list[dict[str, Any]]:
    lab = Netns(prefix)
    rows: list[dict[str, Any]] = []
    with lab.session():
        topo = T.build(lab, "basic", router="natpass", clients=1, datapath=datapath, start_routers=False)
        r = topo.home
        for switch in ("off", "on"):
            on = switch == "on"
            r.pptp = r.ipsec = r.l2tp = on
            try:
                T.restart_router(lab, topo, r)
            except LabError as exc:
                err = str(exc)
                for proto in protocols:
                    progress.step(f"natpass switch {switch}: {proto}: router not running")
                    rows.append(row(proto, "natpass", switch, None, None, error=err, datapath=datapath))
                continue
            T.wait_reachable(lab, "c1", topo.server_addrs[0], timeout=8)
            for proto in protocols:
                which = f"{RELEVANT_SWITCH[proto]} switch" if proto in RELEVANT_SWITCH else "all switches"
                progress.step(f"natpass, {which} {switch}: {proto} ...")
                before = T.drops_of(T.natpass_status(lab, r))
                res = make_peer(proto, lab, topo, timeout).run()
                after = T.drops_of(T.natpass_status(lab, r))
                reason = drop_reason(before, after)
                progress.note(_short(res) + (f" (natpass dropped: {reason})" if reason else ""))
                rows.append(row(proto, "natpass", switch, res, reason, datapath=datapath))
        if restart:  # the switches are on from the last pass
            rows += run_restarts(lab, topo, protocols, timeout, progress, datapath)
    return rows


def _short(res: PeerResult) -> str:
    return (f"connected in {res.setup_s:.2f}s" if res.connected else f"failed: {res.detail}")[:160]


def render_table(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="natpass lab demo: real VPN clients through natpass and through the Linux kernel NAT")
    restarts = [r for r in results if r.get("restart")]
    for col in ("protocol", "router", "switch", "result", "set-up", "Windows error", "natpass drop reason"):
        table.add_column(col)
    for r in results:
        if r.get("restart"):
            continue
        if r.get("error"):
            result = "[yellow]unavailable[/]"
        else:
            result = "[green]connected[/]" if r["connected"] else "[red]failed[/]"
        table.add_row(
            r["protocol"], r["router"], r["switch"], result,
            f"{r['setup_s']:.2f} s" if r["setup_s"] is not None else "-",
            str(r["windows_error"]) if r["windows_error"] else "none",
            r["drop_reason"] or "-",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 130))  # piped (CI logs): do not squeeze the table
    console.print(table)
    if restarts:
        console.print(restart_table(restarts))
    for proto in sorted({r["protocol"] for r in results if r["protocol"] in NOTES}):
        console.print(f"  {proto}: {NOTES[proto]}")
    for r in results:
        if r.get("error"):
            console.print(f"  natpass rows unavailable: {r['error']}")
            break


def restart_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="natpass restarted (SIGTERM, start again) under each live tunnel, switches on")
    for col in ("protocol", "datapath", "result", "lost packets", "longest gap", "restart",
                "ICMP/RST from router"):
        table.add_column(col)
    for r in rows:
        result = "[green]connected[/]" if r["connected"] else "[red]lost[/]"
        table.add_row(
            r["protocol"], r.get("datapath") or "packet", result,
            "-" if r["lost_packets"] is None else f"{r['lost_packets']} of {r['probes']}",
            "-" if r["gap_ms"] is None else f"{r['gap_ms']} ms",
            "-" if r["restart_s"] is None else f"{r['restart_s']:.2f} s",
            "-" if r["kernel_answers"] is None else str(r["kernel_answers"]),
        )
    return table


def main(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("natpass lab demo: needs root (network namespaces); try: sudo natpass lab demo", file=sys.stderr)
        return 1
    protocols = list(PROTOCOLS) if not args.protocols else [p.strip() for p in args.protocols.split(",")]
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        print(f"natpass lab demo: unknown protocol(s) {', '.join(unknown)}; one of {', '.join(PROTOCOLS)}",
              file=sys.stderr)
        return 2
    missing = missing_programs(protocols)
    if missing:
        script = install_deps_script()
        if script is not None:
            print(f"natpass lab demo: installing missing programs ({', '.join(missing)})", file=sys.stderr)
            subprocess.run(["bash", str(script)], check=False)
            missing = missing_programs(protocols)
        if missing:
            cmd = f"sudo bash {script}" if script else "sudo apt-get install -y " + " ".join(missing)
            print(f"natpass lab demo: missing {', '.join(missing)}; install with: {cmd}", file=sys.stderr)
            return 1

    routers = ["kernel", "natpass"] if args.router == "both" else [args.router]
    restart = bool(args.restart)
    per_natpass = 3 if restart else 2
    total = (len(protocols) if "kernel" in routers else 0) + (
        per_natpass * len(protocols) if "natpass" in routers else 0)
    progress = Progress(total, quiet=False)
    t0 = time.monotonic()
    results: list[dict[str, Any]] = []
    try:
        if "kernel" in routers:
            results += run_kernel(args.prefix, protocols, args.timeout, progress)
        if "natpass" in routers:
            results += run_natpass(args.prefix, protocols, args.timeout, progress, args.datapath,
                                   restart=restart)
    except LabError as exc:
        print(f"natpass lab demo: {exc}", file=sys.stderr)
        Netns(args.prefix).cleanup()
        return 1
    finally:
        Netns(args.prefix).cleanup()
    summary = {
        "results": results,
        "duration_s": round(time.monotonic() - t0, 1),
        "windows_errors": {"619": "PPTP: GRE dropped", "809": "IPsec/L2TP blocked (no answer to IKE/ESP/L2TP)"},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        render_table(results)
        print(f"done in {summary['duration_s']} s; lab removed (prefix {args.prefix})")
    return 0
