"""``natpass audit``: a security review of a router config and its passthrough usage record.

Reads the config through ``natpass.router.config`` and the usage record through
``natpass.router.usage`` (read-only). Without a usage database the review still runs from the
config alone and says usage is unknown. Exit status: 1 when a finding is an error, 2 for a bad config.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from natpass.nat.config import SWITCHES, NatConfig

if TYPE_CHECKING:
    from natpass.router.usage import UsageDB

DAY = 86400.0
VPN_FORWARD_PORTS = {
    (6, 1723): ("PPTP control (TCP 1723)", "error",
                "exposes a PPTP server to the internet: PPTP authentication (MS-CHAPv2) is crackable"),
    (17, 1701): ("L2TP (UDP 1701)", "error",
                 "exposes plain L2TP, which has no encryption; L2TP/IPsec servers need only UDP 500/4500"),
    (17, 500): ("IKE (UDP 500)", "warning",
                "exposes an IPsec server's IKE to the internet; fine for a deliberate VPN server kept "
                "patched, and it takes UDP 500 away from LAN clients' own IPsec"),
    (17, 4500): ("IPsec NAT-T (UDP 4500)", "warning",
                 "exposes an IPsec server's NAT-T port; fine for a deliberate, patched VPN server"),
}


class UsageReader(Protocol):
    """What the audit needs from a usage record (``natpass.router.usage.UsageDB`` provides it)."""

    def last_used(self, switch: str) -> float | None: ...

    def enabled_since(self, switch: str) -> float | None: ...


@dataclass(slots=True)
class AuditFinding:
    code: str
    severity: str
    explanation: str
    advice: str
    switch: str | None = None


def audit(cfg: NatConfig, usage: UsageReader | None, days: int = 30, now: float | None = None,
          usage_problem: str | None = None) -> list[AuditFinding]:
    """Findings for ``cfg`` and (optionally) its usage record, errors first."""
    now = time.time() if now is None else now
    out: list[AuditFinding] = []
    pt = cfg.passthrough
    on = [s for s in SWITCHES if pt.get(s)]
    horizon = now - days * DAY

    if len(on) == len(SWITCHES):
        out.append(AuditFinding("all-switches-on", "warning",
                                "Every passthrough switch (pptp, ipsec, l2tp) is on. Few networks use all "
                                "three VPN kinds; each switch is an extra helper and inbound mapping.",
                                "Turn off the ones you do not use (see 'natpass advise')."))
    for sw in on:
        if usage is None:
            why = f" ({usage_problem})" if usage_problem else ""
            out.append(AuditFinding("usage-unknown", "info",
                                    f"The {sw} switch is on; whether it is used is unknown: no usage "
                                    f"record{why}.",
                                    "Run the router with its state_dir so it keeps a usage record, or pass "
                                    "--db.", sw))
            continue
        last = usage.last_used(sw)
        since = usage.enabled_since(sw)
        if last is not None and last >= horizon:
            continue
        if since is not None and since > horizon and last is None:
            out.append(AuditFinding("switch-recently-enabled", "info",
                                    f"The {sw} switch was turned on {(now - since) / DAY:.0f} day(s) ago and "
                                    "has not carried traffic yet.",
                                    f"Check again after {days} days; turn it off if still unused.", sw))
            continue
        when = ("never" if last is None else
                f"last {time.strftime('%Y-%m-%d', time.gmtime(last))}, {(now - last) / DAY:.0f} days ago")
        out.append(AuditFinding("switch-unused", "warning",
                                f"The {sw} switch is on but has carried no traffic for {days} days "
                                f"({when}).",
                                f"Turn it off ([passthrough] {sw} = false); it can be turned on again the day "
                                "a VPN needs it.", sw))
    if pt.pptp:
        last = usage.last_used("pptp") if usage is not None else None
        if last is not None and last >= horizon:
            out.append(AuditFinding("pptp-in-use", "error",
                                    "PPTP is in use through this router. PPTP's MS-CHAPv2 authentication "
                                    "can be cracked from one captured login and MPPE encryption is weak.",
                                    "Move the users to WireGuard, OpenVPN or IKEv2, then turn the pptp switch "
                                    "off.", "pptp"))
        else:
            out.append(AuditFinding("pptp-enabled", "warning",
                                    "The pptp switch is on: it exists only for PPTP, an insecure VPN "
                                    "(MS-CHAPv2 crackable, MPPE weak).",
                                    "Turn it off unless a PPTP VPN you cannot replace yet needs it.", "pptp"))
    for fw in cfg.forwards:
        hit = VPN_FORWARD_PORTS.get((fw.proto, fw.wan_port))
        if hit is None:
            continue
        what, severity, why = hit
        lan = ".".join(str(b) for b in fw.lan_addr)
        out.append(AuditFinding("vpn-port-forwarded", severity,
                                f"A port forward sends {what} from the WAN to {lan}:{fw.lan_port}: it {why}.",
                                "Remove the forward unless you deliberately host this VPN server; for a "
                                "self-hosted VPN prefer WireGuard (one UDP port)."))
    if cfg.filtering == "endpoint-independent":
        out.append(AuditFinding("filtering-endpoint-independent", "warning",
                                "Filtering is endpoint-independent: once a LAN host sends from a port, any "
                                "internet host may send to its mapping (RFC 4787 REQ-8 allows it, but it "
                                "widens what reaches the LAN).",
                                "Use address-dependent or address-and-port-dependent filtering unless a "
                                "peer-to-peer application needs this."))
    lim = cfg.limits
    if lim.max_flows == 0 or lim.max_flows_per_host == 0:
        which = [n for n, v in (("max_flows", lim.max_flows), ("max_flows_per_host", lim.max_flows_per_host))
                 if v == 0]
        out.append(AuditFinding("limits-absent", "warning",
                                f"{' and '.join(which)} = 0 (unbounded): one LAN host, or a flood, can fill "
                                "the translation table and memory.",
                                "Set [limits] max_flows (e.g. 65536) and max_flows_per_host (e.g. 4096)."))
    order = {"error": 0, "warning": 1, "info": 2}
    out.sort(key=lambda f: order[f.severity])
    return out


def _load(path: str) -> tuple[NatConfig, str]:
    """(NatConfig, state_dir) from the router's config loader (a ConfigError propagates)."""
    from natpass.router.config import load_config

    loaded = load_config(path)
    return loaded.nat, str(loaded.state_dir)


def open_usage(db: str | None, state_dir: str) -> tuple[UsageDB | None, str | None]:
    """The usage reader, or (None, why not)."""
    from natpass.router.usage import DEFAULT_FILENAME, UsageDB, UsageDBError

    path = Path(db) if db else Path(state_dir) / DEFAULT_FILENAME
    if not path.is_file():
        return None, f"no usage database at {path}"
    try:
        return UsageDB(path), None
    except UsageDBError as exc:
        return None, str(exc)


def run_audit(args: argparse.Namespace) -> int:
    from natpass.router.config import ConfigError

    try:
        cfg, state_dir = _load(args.config)
    except ConfigError as exc:
        print(f"natpass audit: {exc}", file=sys.stderr)
        return 2
    if args.days < 1:
        print("natpass audit: --days must be at least 1", file=sys.stderr)
        return 2
    usage, problem = open_usage(args.db, state_dir)
    if args.db and usage is None:
        print(f"natpass audit: {problem}", file=sys.stderr)
        return 2
    try:
        findings = audit(cfg, usage, args.days, usage_problem=problem)
    finally:
        if usage is not None:
            usage.close()
    if args.json:
        print(json.dumps({"config": args.config, "findings": [asdict(f) for f in findings]}, indent=2))
    else:
        _print(findings, args.config)
    return 1 if any(f.severity == "error" for f in findings) else 0


def _print(findings: list[AuditFinding], path: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    if not findings:
        con.print(f"{path}: no findings.")
        return
    t = Table(title=f"Audit of {path}", title_justify="left", show_lines=True)
    for col in ("severity", "code", "explanation", "advice"):
        t.add_column(col, overflow="fold")
    style = {"error": "bold red", "warning": "yellow", "info": "cyan"}
    for f in findings:
        t.add_row(f"[{style[f.severity]}]{f.severity}[/]", f.code, escape(f.explanation), escape(f.advice))
    con.print(t)
