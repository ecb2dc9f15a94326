"""Words for what the engine counts: counter and drop names, TCP states, protocols and switches."""

from __future__ import annotations

import re

from natpass.nat.table import FIN_LAN, FIN_WAN, RST_SEEN, SYN_LAN, SYN_WAN
from natpass.packets import ipproto
from natpass.router.switches import SWITCH_INFO

COUNTERS = {
    "packets_from_lan": "Packets from the LAN",
    "packets_from_wan": "Packets from the internet",
    "bytes_from_lan": "Data from the LAN",
    "bytes_from_wan": "Data from the internet",
    "flows_created": "Connections opened",
    "flows_expired": "Connections closed (idle or finished)",
    "flows_evicted": "Connections evicted (table full)",
    "flows_reconfigured": "Connections changed by a reload",
    "hairpinned": "Packets looped back to the LAN (hairpin)",
    "icmp_errors_translated": "ICMP errors passed on",
    "fragmented": "Packets split to fit the WAN MTU",
    "fragments_held": "Fragments held until their first part came",
    "tunnels_torn_down": "Tunnels closed by turning a switch off",
    "malformed_exception": "Malformed packets (caught)",
    "forward-conflict": "Port forwards that clashed with a connection",
}

DROPS = {
    "no-mapping": "Unsolicited from the internet (no connection to match)",
    "filtered": "Refused by the filtering rule",
    "malformed": "Malformed packet",
    "table-full": "Connection table full",
    "host-limit": "One LAN host's connection limit reached",
    "ports-exhausted": "No free WAN port",
    "ttl-exceeded": "TTL ran out",
    "fragment-timeout": "Incomplete fragments expired",
    "fragmentation-needed": "Too large and not to be fragmented",
    "not-lan-source": "From the LAN with a foreign source address",
    "unsupported-protocol": "Protocol that cannot be shared by two hosts",
}

SWITCH_TITLES = {name: info.title for name, info in SWITCH_INFO.items()}

ADVISE_PROTOCOL = {"pptp": "pptp", "ipsec": "ikev1", "l2tp": "l2tp"}

_HELPER_COUNTER = re.compile(r"^(pptp|ipsec|l2tp|gre):(.+)$")
_SWITCH_COUNTER = re.compile(r"^switch:(\w+):(on|off)$")


def counter_label(name: str) -> str:
    """``bytes_from_lan`` -> "Data from the LAN"; ``switch:pptp:on`` -> "PPTP switched on"."""
    if name in COUNTERS:
        return COUNTERS[name]
    m = _SWITCH_COUNTER.match(name)
    if m:
        return f"{SWITCH_TITLES.get(m.group(1), m.group(1))} switched {m.group(2)}"
    m = _HELPER_COUNTER.match(name)
    if m:
        return f"{m.group(1).upper()}: {m.group(2).replace('-', ' ').replace('_', ' ')}"
    return name.replace("_", " ").replace("-", " ").capitalize()


def drop_label(reason: str) -> str:
    """``passthrough-disabled:pptp`` -> "PPTP traffic while PPTP passthrough is off"."""
    if reason in DROPS:
        return DROPS[reason]
    head, _, switch = reason.rpartition(":")
    if head == "passthrough-disabled" and switch in SWITCH_TITLES:
        return f"{SWITCH_TITLES[switch]} traffic while {SWITCH_TITLES[switch]} passthrough is off"
    if head == "strict-blocked" and switch in SWITCH_TITLES:
        return f"{SWITCH_TITLES[switch]} control port closed (strict)"
    m = _HELPER_COUNTER.match(reason)
    if m:
        return f"{m.group(1).upper()}: {m.group(2).replace('-', ' ')}"
    return reason.replace("-", " ").replace("_", " ").capitalize()


def is_bytes(counter: str) -> bool:
    return counter.startswith("bytes")


def proto_name(proto: object) -> str:
    if isinstance(proto, int) and not isinstance(proto, bool):
        return ipproto.proto_name(proto).upper()
    return str(proto).upper() if proto is not None else "?"


def tcp_state(bits: int) -> str:
    """A TCP flow's state bits (natpass.nat.table) as the state a person knows (RFC 793 names
    where they fit; the NAT sees both directions, so it names what it saw)."""
    if bits & RST_SEEN:
        return "reset"
    fin = bits & (FIN_LAN | FIN_WAN)
    if fin == FIN_LAN | FIN_WAN:
        return "closing (both sides sent FIN)"
    if fin:
        return "closing (LAN sent FIN)" if fin == FIN_LAN else "closing (internet sent FIN)"
    syn = bits & (SYN_LAN | SYN_WAN)
    if syn == SYN_LAN | SYN_WAN:
        return "established"
    if syn == SYN_LAN:
        return "opening (SYN sent)"
    if syn == SYN_WAN:
        return "opening (SYN received)"
    return "no handshake seen"


def flow_state(proto: object, state: object) -> str:
    if proto == 6 and isinstance(state, int):
        return tcp_state(state)
    return "active"


STATE_FILTERS = ("established", "opening", "closing", "reset", "active", "no handshake seen")


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_count(n: float) -> str:
    return f"{int(n):,}".replace(",", "\u202f")


def human_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "?"
    s = max(0, int(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {s} s"
    return f"{s} s"
