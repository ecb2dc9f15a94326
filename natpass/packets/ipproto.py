"""IP protocol numbers (IANA "Assigned Internet Protocol Numbers") and their names: the one table.

Names are the lower-case keywords tshark and iptables use; a number without a name reads
``ip<N>`` so that every protocol has a stable, printable key.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class IpProto(IntEnum):
    """The IP protocol numbers natpass and its diagnosis deal with."""

    ICMP = 1
    IGMP = 2
    IPIP = 4  # IPv4 in IPv4 (RFC 2003)
    TCP = 6
    UDP = 17
    IPV6 = 41  # IPv6 in IPv4 (RFC 4213)
    GRE = 47  # RFC 2784, enhanced GRE of PPTP (RFC 2637 section 4.1)
    ESP = 50  # RFC 4303
    AH = 51  # RFC 4302
    ICMPV6 = 58
    IPV6_NONXT = 59
    OSPF = 89
    SCTP = 132
    UDPLITE = 136


NAMES: Final[dict[int, str]] = {p.value: p.name.lower() for p in IpProto}
NUMBERS: Final[dict[str, int]] = {name: num for num, name in NAMES.items()}
# IPv6 extension headers that may sit between the fixed header and the transport (RFC 8200 4.1).
IPV6_HOP_BY_HOP: Final = 0
IPV6_ROUTING: Final = 43
IPV6_FRAGMENT: Final = 44
IPV6_DEST_OPTIONS: Final = 60
IPV6_EXTENSION_HEADERS: Final = frozenset({IPV6_HOP_BY_HOP, IPV6_ROUTING, IPV6_FRAGMENT,
                                           IPV6_DEST_OPTIONS})


def proto_name(number: int) -> str:
    """The name of IP protocol ``number`` ("gre"), or ``ip<N>`` for one without a name here."""
    return NAMES.get(number, f"ip{number}")


def proto_number(name: str) -> int | None:
    """The number of a protocol name ("esp" -> 50, "ip99" -> 99), or None when unknown."""
    num = NUMBERS.get(name.lower())
    if num is not None:
        return num
    if name.startswith("ip") and name[2:].isdigit() and int(name[2:]) < 256:
        return int(name[2:])
    return None
