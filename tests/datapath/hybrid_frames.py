"""Frames of every kind the hybrid split has to sort, and a classic-BPF interpreter to run filters
on them without a kernel (the namespace test runs the same frames through the kernel itself)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from natpass.packets.checksum import internet_checksum

ROUTER_MAC = bytes.fromhex("020000000001")
PEER_MAC = bytes.fromhex("020000000002")
BROADCAST = b"\xff" * 6

LAN_HOST = "192.168.1.10"
LAN_SERVER = "192.168.1.11"  # behind the forward of TCP 1723
ROUTER_LAN = "192.168.1.1"
REMOTE = "198.51.100.10"
ROUTER_WAN = "203.0.113.1"


def _ip(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int = 1, frag: int = 0,
         options: bytes = b"") -> bytes:
    ihl = 5 + len(options) // 4
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(options) + len(payload), ident,
                                frag, 64, proto, 0, _ip(src), _ip(dst)) + options)
    hdr[10:12] = internet_checksum(bytes(hdr)).to_bytes(2, "big")
    return bytes(hdr) + payload


def udp(sport: int, dport: int, data: bytes = b"x" * 8) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def tcp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x02, 65535, 0, 0)


def icmp(kind: int, code: int, body: bytes) -> bytes:
    msg = bytearray(struct.pack("!BBHI", kind, code, 0, 0) + body)
    msg[2:4] = internet_checksum(bytes(msg)).to_bytes(2, "big")
    return bytes(msg)


def ether(packet: bytes, dst: bytes = ROUTER_MAC, ethertype: int = 0x0800) -> bytes:
    return dst + PEER_MAC + ethertype.to_bytes(2, "big") + packet


@dataclass
class Case:
    name: str
    side: str  # "lan" or "wan"
    frame: bytes
    owned: bool  # natpass's, by intent (docs/DATAPATH.md)
    broadcast: bool = False


def cases(natt: str = "kernel") -> list[Case]:
    """Frames of each kind, with who should get them: forwards TCP 1723 -> LAN_SERVER (natpass's)
    and TCP 8080 -> LAN_SERVER (the kernel's); natpass's ports are 61440-65535."""
    natt_owned = natt == "natpass"
    out: list[Case] = []
    ident = 100

    def add(name: str, side: str, packet: bytes, owned: bool, dst_mac: bytes = ROUTER_MAC) -> None:
        out.append(Case(name, side, ether(packet, dst_mac), owned, broadcast=dst_mac == BROADCAST))

    def lan(proto: int, payload: bytes, dst: str = REMOTE, src: str = LAN_HOST, **kw: int) -> bytes:
        nonlocal ident
        ident += 1
        return ipv4(src, dst, proto, payload, ident=ident, **kw)  # type: ignore[arg-type]

    def wan(proto: int, payload: bytes, src: str = REMOTE, **kw: int) -> bytes:
        nonlocal ident
        ident += 1
        return ipv4(src, ROUTER_WAN, proto, payload, ident=ident, **kw)  # type: ignore[arg-type]

    gre = b"\x30\x01\x88\x0b\x00\x00\x00\x07"  # enhanced GRE (PPTP) header start
    for proto, name in ((47, "gre"), (50, "esp"), (51, "ah")):
        add(f"lan-{name}", "lan", lan(proto, gre + b"\x00" * 8), True)
        add(f"wan-{name}", "wan", wan(proto, gre + b"\x00" * 8), True)
    add("lan-gre-to-router", "lan", lan(47, gre, dst=ROUTER_LAN), False)
    add("lan-tcp-1723", "lan", lan(6, tcp(40000, 1723)), True)
    add("lan-tcp-1723-to-router", "lan", lan(6, tcp(40000, 1723), dst=ROUTER_LAN), False)
    add("lan-tcp-80", "lan", lan(6, tcp(40000, 80)), False)
    add("lan-tcp-sport-1723", "lan", lan(6, tcp(1723, 80)), False)
    add("lan-forward-reply-1723", "lan", lan(6, tcp(1723, 40000), src=LAN_SERVER), True)
    add("lan-forward-reply-8080", "lan", lan(6, tcp(8080, 40000), src=LAN_SERVER), False)
    add("lan-udp-500", "lan", lan(17, udp(500, 500)), True)
    add("lan-udp-1701", "lan", lan(17, udp(1701, 1701)), True)
    add("lan-udp-4500", "lan", lan(17, udp(4500, 4500)), natt_owned)
    add("lan-udp-53", "lan", lan(17, udp(40000, 53)), False)
    add("lan-udp-dport-high", "lan", lan(17, udp(40000, 61440)), False)
    add("lan-udp-500-broadcast", "lan", lan(17, udp(500, 500), dst="192.168.1.255"), False, BROADCAST)
    add("lan-icmp-echo", "lan", lan(1, icmp(8, 0, b"ping")), False)
    # ICMP errors from a LAN host about what natpass (or the kernel) sent it.
    quoted = ipv4(REMOTE, LAN_HOST, 17, udp(500, 500))[:28]
    add("lan-icmp-unreach-ike", "lan", lan(1, icmp(3, 3, quoted)), True)
    quoted = ipv4(REMOTE, LAN_HOST, 17, udp(53, 40000))[:28]
    add("lan-icmp-unreach-dns", "lan", lan(1, icmp(3, 3, quoted)), False)
    quoted = ipv4(REMOTE, LAN_HOST, 47, gre)[:28]
    add("lan-icmp-unreach-gre", "lan", lan(1, icmp(3, 2, quoted)), True)
    quoted = ipv4(REMOTE, LAN_SERVER, 6, tcp(40000, 1723))[:28]
    add("lan-icmp-about-forwarded-1723", "lan", lan(1, icmp(3, 3, quoted), src=LAN_SERVER), True)
    quoted = ipv4(REMOTE, LAN_HOST, 17, udp(500, 500), options=b"\x01\x01\x01\x00")[:32]
    add("lan-icmp-quoting-options", "lan", lan(1, icmp(3, 3, quoted)), False)
    # WAN side: to the router's WAN address.
    add("wan-tcp-natpass-port", "wan", wan(6, tcp(1723, 61500)), True)
    add("wan-tcp-kernel-port", "wan", wan(6, tcp(80, 40000)), False)
    add("wan-tcp-forwarded-1723", "wan", wan(6, tcp(40000, 1723)), True)
    add("wan-tcp-forwarded-8080", "wan", wan(6, tcp(40000, 8080)), False)
    add("wan-udp-500", "wan", wan(17, udp(500, 500)), True)
    add("wan-udp-1701", "wan", wan(17, udp(1701, 1701)), True)
    add("wan-udp-4500", "wan", wan(17, udp(4500, 4500)), natt_owned)
    add("wan-udp-61439", "wan", wan(17, udp(53, 61439)), False)
    add("wan-udp-61440", "wan", wan(17, udp(53, 61440)), True)
    add("wan-udp-65535", "wan", wan(17, udp(53, 65535)), True)
    add("wan-icmp-echo", "wan", wan(1, icmp(8, 0, b"ping")), False)
    quoted = ipv4(ROUTER_WAN, REMOTE, 17, udp(61500, 53))[:28]
    add("wan-icmp-unreach-natpass-port", "wan", wan(1, icmp(3, 3, quoted)), True)
    quoted = ipv4(ROUTER_WAN, REMOTE, 17, udp(40000, 53))[:28]
    add("wan-icmp-unreach-kernel-port", "wan", wan(1, icmp(3, 3, quoted)), False)
    quoted = ipv4(ROUTER_WAN, REMOTE, 50, b"\x00" * 8)[:28]
    add("wan-icmp-time-exceeded-esp", "wan", wan(1, icmp(11, 0, quoted)), True)
    quoted = ipv4(ROUTER_WAN, REMOTE, 6, tcp(1723, 40000))[:28]
    add("wan-icmp-about-forwarded-1723", "wan", wan(1, icmp(3, 3, quoted)), True)
    add("wan-arp-like-ethertype", "wan", wan(17, udp(500, 500)), False)
    out[-1].frame = ether(out[-1].frame[14:], ethertype=0x0806)
    return out


def fragment_cases() -> list[Case]:
    """Non-first fragments: natpass takes UDP and its own IP protocols (no ports to tell whose)."""
    return [
        Case("lan-udp-later-fragment", "lan", ether(ipv4(LAN_HOST, REMOTE, 17, b"y" * 16, 901, frag=3)), True),
        Case("wan-udp-later-fragment", "wan", ether(ipv4(REMOTE, ROUTER_WAN, 17, b"y" * 16, 902, frag=3)), True),
        Case("wan-gre-later-fragment", "wan", ether(ipv4(REMOTE, ROUTER_WAN, 47, b"y" * 16, 903, frag=3)), True),
        Case("wan-tcp-later-fragment", "wan", ether(ipv4(REMOTE, ROUTER_WAN, 6, b"y" * 16, 904, frag=3)), False),
    ]


PACKET_HOST, PACKET_BROADCAST = 0, 1


def run_bpf(program: list[tuple[int, int, int, int]], frame: bytes, pkttype: int) -> int:
    """Evaluate a classic BPF socket filter (the opcodes natpass uses) on ``frame``; returns the
    snap length (0: rejected). An out-of-bounds load rejects, as in the kernel."""
    a = x = 0
    pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        size = {0x00: 4, 0x08: 2, 0x10: 1}.get(code & 0x18, 0)
        if code in (0x20, 0x28, 0x30, 0x40, 0x48, 0x50):  # LD W/H/B, ABS or IND
            off = k if code < 0x40 else x + k
            if off >= 0x80000000:
                if off - 0x100000000 == -0x1000 + 4:  # SKF_AD_PKTTYPE
                    a = pkttype
                    continue
                return 0
            if off + size > len(frame):
                return 0
            a = int.from_bytes(frame[off:off + size], "big")
        elif code == 0xB1:  # LDX B MSH
            if k >= len(frame):
                return 0
            x = 4 * (frame[k] & 0x0F)
        elif code == 0x06:  # RET K
            return k
        elif code in (0x15, 0x25, 0x35, 0x45):
            hit = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if hit else jf
        else:
            raise ValueError(f"opcode {code:#x} not in this interpreter")
