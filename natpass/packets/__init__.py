"""Packet layer: parse and build IPv4 and the VPN-related headers over memoryview/bytearray.

Every parser raises :class:`PacketError` (and nothing else) for malformed or truncated input.
Submodules hold one header family each; the common names are re-exported here.
"""

from natpass.packets.checksum import (
    apply_delta,
    combine,
    delta,
    internet_checksum,
    l4_checksum,
    ones_sum,
    pseudo_header_sum,
    verify,
    word_delta,
)
from natpass.packets.errors import PacketError
from natpass.packets.esp import AhHeader, EspHeader, build_ah, build_esp, parse_ah, parse_esp
from natpass.packets.gre import GreHeader, build_gre, build_gre_v1, build_pptp_gre, parse_gre
from natpass.packets.icmp import (
    IcmpError,
    IcmpQuery,
    InnerPacket,
    build_echo,
    build_error,
    is_error,
    is_query,
    parse_error,
    parse_query,
)
from natpass.packets.ike import (
    IkeHeader,
    IkePayload,
    NatD,
    NatDCheck,
    build_ike,
    classify_natt,
    iter_payloads,
    nat_d_payloads,
    natd_check,
    parse_ike,
)
from natpass.packets.ipv4 import (
    PROTO_AH,
    PROTO_ESP,
    PROTO_GRE,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    IPv4Header,
    addr_to_str,
    build_ipv4,
    fix_ip_checksum,
    parse_ipv4,
    str_to_addr,
)
from natpass.packets.l2tp import (
    Avp,
    L2tpControl,
    L2tpHeader,
    build_control_message,
    build_data,
    parse_control,
    parse_l2tp,
)
from natpass.packets.pptp import PptpMessage, PptpStream, build_pptp, parse_pptp
from natpass.packets.tcp import TcpHeader, build_tcp, parse_tcp, verify_tcp
from natpass.packets.udp import UdpHeader, build_udp, parse_udp, verify_udp

__all__ = [
    "AhHeader", "Avp", "EspHeader", "IkeHeader", "IkePayload", "L2tpControl", "L2tpHeader", "NatD", "NatDCheck", "natd_check",
    "build_ah", "build_control_message", "build_data", "build_esp", "build_ike", "classify_natt",
    "iter_payloads", "nat_d_payloads", "parse_ah", "parse_control", "parse_esp", "parse_ike", "parse_l2tp",
    "PROTO_AH", "PROTO_ESP", "PROTO_GRE", "PROTO_ICMP", "PROTO_TCP", "PROTO_UDP",
    "GreHeader", "IPv4Header", "IcmpError", "IcmpQuery", "InnerPacket", "PacketError", "PptpMessage",
    "PptpStream", "TcpHeader", "UdpHeader",
    "addr_to_str", "apply_delta", "build_echo", "build_error", "build_gre", "build_gre_v1", "build_ipv4",
    "build_pptp", "build_pptp_gre", "build_tcp", "build_udp", "combine", "delta", "fix_ip_checksum",
    "internet_checksum", "is_error", "is_query", "l4_checksum", "ones_sum", "parse_error", "parse_gre",
    "parse_ipv4", "parse_pptp", "parse_query", "parse_tcp", "parse_udp", "pseudo_header_sum",
    "str_to_addr", "verify", "verify_tcp", "verify_udp", "word_delta",
]
