"""``natpass advise``: the decision guide for the passthrough switches, as a command.

Each switch (pptp, ipsec, l2tp) gets a decision (``enable``, ``off``, or ``test-then-off``), the
reason, and the security cost of turning it on. The guide is deliberately conservative: a switch is
only recommended when the VPN in use cannot cross NAT without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Literal

Decision = Literal["enable", "off", "test-then-off"]
SWITCHES = ("pptp", "ipsec", "l2tp")

MODERN = ("openvpn", "wireguard", "sstp", "anyconnect", "tailscale", "zerotier", "ikev2")
PROTOCOL_CHOICES = ("pptp", "l2tp", "ipsec", "ikev1", "ikev2", "openvpn", "wireguard", "sstp",
                    "anyconnect", "tailscale", "zerotier", "unknown")
PROTOCOL_NAMES = {
    "pptp": "PPTP", "l2tp": "L2TP/IPsec", "ipsec": "IPsec (IKEv1, ESP)", "ikev1": "IKEv1 IPsec",
    "ikev2": "IKEv2 IPsec (NAT-T)", "openvpn": "OpenVPN", "wireguard": "WireGuard", "sstp": "SSTP (HTTPS)",
    "anyconnect": "Cisco AnyConnect / OpenConnect (TLS/DTLS)", "tailscale": "Tailscale (WireGuard mesh)",
    "zerotier": "ZeroTier", "unknown": "not known",
}
SITUATIONS = {
    "cgnat": ("Does your ISP use carrier-grade NAT (router WAN address in 100.64.0.0/10, or no public IPv4)?",
              "your ISP puts you behind carrier-grade NAT"),
    "gaming": ("Is this about online gaming or consoles?", "the concern is online gaming / consoles"),
    "remote-work": ("Do you connect a work laptop to the office VPN from this network?",
                    "a work laptop connects to the office VPN through this router"),
    "self-hosted": ("Do you host the VPN server yourself, behind this router?",
                    "you run the VPN server on your LAN, behind this router"),
}
COST = {
    "pptp": "The router maps GRE (IP 47) for PPTP calls and lets TCP 1723 control through its helper. "
            "PPTP itself is broken (MS-CHAPv2 crackable, MPPE/RC4 weak): anything it carries is exposed.",
    "ipsec": "The router binds ESP (IP 50) by SPI and passes IKE (UDP 500/4500) to LAN hosts: one more "
             "inbound path to track; small cost, but no use for VPNs that already use NAT-T.",
    "l2tp": "The router passes L2TP (UDP 1701): plain L2TP has no encryption of its own; only useful "
            "for L2TP/IPsec clients without NAT-T.",
}


@dataclass(slots=True)
class SwitchAdvice:
    decision: Decision
    why: str
    cost: str


@dataclass(slots=True)
class Advice:
    protocol: str
    situations: list[str]
    switches: dict[str, SwitchAdvice]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _off(why: str, name: str) -> SwitchAdvice:
    return SwitchAdvice("off", why, f"none while off ({name} traffic is not mapped)")


def advise(protocol: str | None, situations: set[str] | frozenset[str] = frozenset(),
           troubleshooting: int | None = None) -> Advice:
    """The advice for one VPN protocol and situation set (both optional)."""
    proto = protocol or "unknown"
    sw: dict[str, SwitchAdvice] = {}
    notes: list[str] = []
    unrelated = "Not used by {p}."
    pname = PROTOCOL_NAMES.get(proto, proto)
    for name in SWITCHES:
        sw[name] = _off(unrelated.format(p=pname) if proto != "unknown" else
                        "Off by default; enable only for a VPN that needs it.", name)

    if proto in MODERN:
        why = (f"{pname} crosses NAT as ordinary UDP/TCP"
               + (" (IKEv2 moves to UDP 4500 with NAT-T by itself)" if proto == "ikev2" else "")
               + ": no passthrough needed.")
        for name in SWITCHES:
            sw[name] = _off(why, name)
        if proto == "ikev2":
            notes.append("Only a client without NAT-T (rare) needs the ipsec switch; try with it off first.")
    elif proto == "pptp":
        sw["pptp"] = SwitchAdvice("enable", "PPTP needs the router's GRE helper: GRE has no ports, a plain "
                                  "NAT cannot map it (Windows error 619 without it).", COST["pptp"])
        notes.append("Plan to replace PPTP: it is insecure. WireGuard, OpenVPN or IKEv2 need no switch.")
    elif proto == "l2tp":
        sw["ipsec"] = SwitchAdvice("enable", "L2TP/IPsec starts with IKE and carries L2TP in ESP; clients "
                                   "without working NAT-T need ESP passthrough (Windows error 809).",
                                   COST["ipsec"])
        sw["l2tp"] = SwitchAdvice("enable", "L2TP/IPsec clients that fall back to plain UDP 1701 need it; "
                                  "harmless with NAT-T, required without.", COST["l2tp"])
    elif proto in ("ipsec", "ikev1"):
        sw["ipsec"] = SwitchAdvice("enable", f"{pname} without NAT-T sends raw ESP (IP 50), which a plain "
                                   "NAT cannot map (Windows error 809).", COST["ipsec"])
        notes.append("If the client and server support NAT-T (UDP 4500), enable that instead and keep the "
                     "switch off.")

    if "remote-work" in situations and proto in ("l2tp", "unknown"):
        if proto == "unknown":
            notes.append("Work laptops mostly use a modern client (AnyConnect, GlobalProtect, IKEv2): no "
                         "switch. If it is L2TP/IPsec, enable ipsec and l2tp.")
    if "self-hosted" in situations:
        if proto in ("wireguard", "openvpn", "tailscale", "zerotier", "unknown"):
            for name in SWITCHES:
                sw[name] = _off("Passthrough is for clients behind the router; a server behind it needs a "
                                "port forward instead.", name)
            port = {"wireguard": "UDP 51820", "openvpn": "UDP 1194"}.get(proto, "the VPN's UDP port")
            notes.append(f"Forward {port} from the WAN to the server ([[forward]] in natpass.toml); keep "
                         "every passthrough switch off.")
        elif proto in ("pptp", "l2tp", "ipsec", "ikev1", "ikev2"):
            notes.append("Hosting IPsec/L2TP/PPTP behind NAT needs forwards (UDP 500/4500, or TCP 1723 + "
                         "GRE) and exposes them; a WireGuard server with one UDP forward is the safer "
                         "choice.")
    if "gaming" in situations:
        if proto in MODERN or proto == "unknown":
            for name in SWITCHES:
                sw[name] = _off("Games and consoles do not use PPTP/IPsec/L2TP; the switches do nothing "
                                "for them.", name)
        notes.append("For games, NAT type depends on mapping/filtering and UPnP/port forwards, not on the "
                     "passthrough switches.")
    if troubleshooting == 619:
        sw["pptp"] = SwitchAdvice("test-then-off", "Error 619 is PPTP's GRE not getting through: turn the "
                                  "switch on for one connection test, then off again (or keep it on only if "
                                  "you must stay on PPTP).", COST["pptp"])
        notes.append("Run 'natpass diagnose' on a capture of the attempt to see where it stops.")
    elif troubleshooting == 809:
        for name in ("ipsec", "l2tp"):
            sw[name] = SwitchAdvice("test-then-off", "Error 809 is IKE/ESP (or L2TP) not getting through: turn "
                                    "the switch on for one connection test, then off again if it made no "
                                    "difference.", COST[name])
        notes.append("Also check UDP 500 and 4500 reach the server; a capture through 'natpass diagnose' "
                     "shows which step fails.")
    if "cgnat" in situations:
        notes.insert(0, "Behind carrier-grade NAT, passthrough cannot help: the carrier's NAT, not yours, "
                        "drops GRE/ESP and inbound connections. Use WireGuard/OpenVPN to a server you reach "
                        "outbound, IKEv2 with NAT-T, or a relay/mesh VPN; ask the ISP for a public IPv4 or "
                        "use IPv6 to host.")
        for name in SWITCHES:
            if sw[name].decision == "enable":
                sw[name] = SwitchAdvice("off", "Cannot help behind carrier-grade NAT: the carrier's NAT has "
                                        "no such helper.", COST[name])
    return Advice(proto, sorted(situations), sw, notes)


GENERAL_GUIDE = """\
Passthrough switches: leave them off unless your VPN needs one.

  VPN in use                         pptp   ipsec  l2tp   note
  WireGuard, OpenVPN, SSTP,          off    off    off    cross NAT as ordinary UDP/TCP
  AnyConnect, Tailscale, IKEv2
  L2TP/IPsec (remote-work laptop)    off    ON     ON     NAT-T clients work without; enable if 809
  IKEv1 IPsec without NAT-T          off    ON     off    prefer enabling NAT-T instead
  PPTP                               ON     off    off    insecure: plan to replace it
  self-hosted WireGuard/OpenVPN      off    off    off    forward the UDP port instead
  troubleshooting 619 / 809          test   test   test   on for the test, then off again
  gaming / consoles                  off    off    off    switches do nothing for games
  behind carrier-grade NAT           -      -      -      passthrough cannot help: use WireGuard/
                                                          OpenVPN, IKEv2 NAT-T or a relay/mesh VPN

Ask for your case: natpass advise --protocol l2tp --remote-work   (or --capture FILE)
"""


def print_advice(adv: Advice) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    sit = ", ".join(adv.situations) or "none given"
    con.print(f"[bold]VPN:[/bold] {PROTOCOL_NAMES.get(adv.protocol, adv.protocol)}   "
              f"[bold]situation:[/bold] {sit}")
    t = Table()
    for col in ("switch", "decision", "why", "security cost when on"):
        t.add_column(col, overflow="fold")
    style = {"enable": "bold green", "off": "dim", "test-then-off": "yellow"}
    for name, a in adv.switches.items():
        t.add_row(name, f"[{style[a.decision]}]{a.decision}[/]", escape(a.why), escape(a.cost))
    con.print(t)
    for n in adv.notes:
        con.print(f"- {escape(n)}")


def _ask(question: str, choices: tuple[str, ...] | None = None) -> str:
    hint = f" [{'/'.join(choices)}]" if choices else " [y/N]"
    answer = input(question + hint + " ").strip().lower()
    return answer


def interactive() -> Advice:
    """Ask the questions on the terminal, then advise."""
    proto = ""
    while proto not in PROTOCOL_CHOICES:
        proto = _ask("Which VPN do you use?", PROTOCOL_CHOICES) or "unknown"
    situations = {name for name, (q, _h) in SITUATIONS.items() if _ask(q).startswith("y")}
    code = _ask("Are you troubleshooting a Windows error (619, 809, or empty)?", ("619", "809", ""))
    return advise(proto, situations, int(code) if code in ("619", "809") else None)


def infer_from_capture(path: str) -> tuple[str | None, set[str], int | None]:
    """Protocol, situations and error code suggested by a capture's diagnosis."""
    from natpass.diagnose.run import diagnose

    diag = diagnose(path)
    names = [p.name for p in diag.protocols]
    codes = diag.codes()
    natt = any("NAT-T used (UDP 4500)" in p.notes for p in diag.protocols) or "nat-t" in names
    proto = None
    for candidate, pick in (("pptp", "pptp"), ("l2tp", "l2tp"), ("ah", "ipsec"), ("esp", "ipsec"),
                            ("ikev1", "l2tp" if "l2tp" in names else "ipsec" if not natt else "ikev1"),
                            ("ikev2", "ikev2"), ("nat-t", "ikev2"), ("openvpn", "openvpn"),
                            ("wireguard", "wireguard")):
        if candidate in names:
            proto = pick
            break
    if proto is None:
        vendors = [n.split(": ", 1)[1] for p in diag.protocols if p.name == "tls-vpn"
                   for n in p.notes if n.startswith("looks like: ")]
        proto = next((v for v in vendors if v in PROTOCOL_CHOICES), "anyconnect" if vendors else None)
    situations = {"cgnat"} if codes & {"cgnat", "double-nat"} else set()
    code = 619 if codes & {"gre-blocked"} else (
        809 if codes & {"ike-no-response", "natt-blocked", "esp-blocked", "l2tp-no-response"} else None)
    return proto, situations, code


def run_advise(args: argparse.Namespace) -> int:
    situations = set(args.situations or ())
    proto = args.protocol
    code = args.troubleshooting
    if args.capture:
        from natpass.diagnose.run import CaptureError

        try:
            inferred, found, found_code = infer_from_capture(args.capture)
        except (CaptureError, OSError) as exc:
            print(f"natpass advise: {exc}", file=sys.stderr)
            return 2
        proto = proto or inferred
        situations |= found
        code = code or found_code
    no_input = proto is None and not situations and code is None
    if no_input:
        if sys.stdin.isatty() and sys.stdout.isatty() and not args.json:
            try:
                adv = interactive()
            except EOFError:
                return 1
        else:
            if args.json:
                guide = {"general": True, "guide": GENERAL_GUIDE,
                         "cases": {p: advise(p).to_dict() for p in PROTOCOL_CHOICES}}
                print(json.dumps(guide, indent=2))
            else:
                print(GENERAL_GUIDE, end="")
            return 0
    else:
        adv = advise(proto, situations, code)
    if args.json:
        print(json.dumps(adv.to_dict(), indent=2))
    else:
        print_advice(adv)
    return 0
