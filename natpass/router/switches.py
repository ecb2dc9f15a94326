"""What each passthrough switch does and what turning it on exposes, in words for people (the CLI
and the admin page say the same)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SwitchInfo:
    title: str
    what: str  # what the switch does
    note: str  # its security meaning


SWITCH_INFO: dict[str, SwitchInfo] = {
    "pptp": SwitchInfo(
        "PPTP",
        "Lets LAN computers use PPTP VPNs: follows the PPTP control connection (TCP 1723) and "
        "translates the call IDs of its GRE packets (IP protocol 47), so several LAN clients can "
        "reach PPTP servers at once.",
        "PPTP is broken: its MS-CHAPv2 login can be cracked from one captured login and its MPPE "
        "encryption is weak. Turn it on only for a server that cannot be replaced yet."),
    "ipsec": SwitchInfo(
        "IPsec",
        "Lets LAN computers use IPsec VPNs that send raw ESP (IP protocol 50) and IKE on UDP 500 "
        "without NAT traversal: L2TP/IPsec and older IKEv1 clients.",
        "IKEv2 and anything using NAT-T (UDP 4500) work with this off. Each switch on is one more "
        "inbound path: leave it off if nothing needs it."),
    "l2tp": SwitchInfo(
        "L2TP",
        "Lets LAN computers reach L2TP servers (UDP 1701), following tunnels and sessions.",
        "L2TP has no encryption of its own: use it only inside IPsec (L2TP/IPsec, which also needs "
        "the IPsec switch)."),
    "strict": SwitchInfo(
        "Strict",
        "Also closes the control ports (TCP 1723, UDP 500/1701) of the protocols whose switch "
        "is off, instead of treating them as ordinary connections.",
        "Off means a LAN host can still open a PPTP/IKE/L2TP control connection that then "
        "fails half-way; on makes the refusal clear."),
}
