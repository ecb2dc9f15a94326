"""Derive failure captures from the public captures, at test time, into a scratch directory.

The public captures in ``../shared/captures`` are never copied or edited: each recipe here reads
one, drops or rewrites frames the way a broken network would (inbound GRE dropped, IKE responses
lost, UDP 4500 replies filtered, the outside address moved into 100.64.0.0/10...) and writes the
result as a new classic pcap. Rewritten packets get correct IP/TCP/UDP checksums.

    python tests/diagnose/derive/diagnose_derive.py OUTDIR [SHARED_CAPTURES_DIR]
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from pathlib import Path

import dpkt

from natpass.packets.ipv4 import fix_ip_checksum, str_to_addr
from natpass.packets.tcp import fix_tcp_checksum
from natpass.packets.udp import fix_udp_checksum

Frames = list[tuple[float, bytes]]
DLT_NULL, DLT_EN10MB = 0, 1


def read(path: Path) -> tuple[int, Frames]:
    with open(path, "rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        reader = dpkt.pcapng.Reader(fh) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        return reader.datalink(), [(float(ts), bytes(buf)) for ts, buf in reader]


def write(path: Path, link: int, frames: Frames) -> Path:
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=link, nano=False)
        for ts, buf in frames:
            w.writepkt(buf, ts=ts)
    return path


def ip_offset(link: int, frame: bytes) -> int | None:
    """Where the IPv4 header starts in a frame (Ethernet without VLAN, or BSD loopback)."""
    if link == DLT_EN10MB and len(frame) >= 34 and frame[12:14] == b"\x08\x00":
        return 14
    if link == DLT_NULL and len(frame) >= 24 and frame[4] >> 4 == 4:
        return 4
    return None


def fields(link: int, frame: bytes) -> tuple[bytes, bytes, int, int, int] | None:
    """(src, dst, proto, sport, dport) of an IPv4 frame (ports 0 when absent or a fragment)."""
    off = ip_offset(link, frame)
    if off is None:
        return None
    ip = frame[off:]
    hl = (ip[0] & 15) * 4
    proto = ip[9]
    sport = dport = 0
    frag = ((ip[6] & 0x1F) << 8) | ip[7]
    if proto in (6, 17) and not frag and len(ip) >= hl + 4:
        sport, dport = struct.unpack_from("!HH", ip, hl)
    return ip[12:16], ip[16:20], proto, sport, dport


def drop(link: int, frames: Frames, pred: Callable[[bytes, bytes, int, int, int], bool]) -> Frames:
    """Frames without those for which ``pred(src, dst, proto, sport, dport)`` holds."""
    out = []
    for ts, fr in frames:
        f = fields(link, fr)
        if f is not None and pred(*f):
            continue
        out.append((ts, fr))
    return out


def rewrite_address(link: int, frames: Frames, old: str, new: str, hops: int = 0) -> Frames:
    """Every occurrence of ``old`` as IPv4 source or destination becomes ``new``; checksums fixed.

    ``hops``: routers the rewritten sender's packets crossed to get here (their TTL drops by as
    much), as when the capture point moves from the client to a NAT router's outside.
    """
    o, n = str_to_addr(old), str_to_addr(new)
    out = []
    for ts, fr in frames:
        off = ip_offset(link, fr)
        if off is None:
            out.append((ts, fr))
            continue
        buf = bytearray(fr)
        ip = memoryview(buf)[off:]
        total = min((ip[2] << 8) | ip[3], len(ip))
        hl = (ip[0] & 15) * 4
        changed = False
        for pos in (12, 16):
            if bytes(ip[pos:pos + 4]) == o:
                ip[pos:pos + 4] = n
                changed = True
                if pos == 12 and hops:
                    ip[8] = max(1, ip[8] - hops)
        if changed:
            fix_ip_checksum(ip[:hl])
            frag = ((ip[6] & 0x1F) << 8) | ip[7]
            more = bool(ip[6] & 0x20)
            seg = ip[hl:total]
            src, dst = bytes(ip[12:16]), bytes(ip[16:20])
            if not frag and not more:  # a fragment's checksum covers the whole datagram: leave it
                if ip[9] == 17 and len(seg) >= 8 and (seg[6] or seg[7]):
                    fix_udp_checksum(src, dst, seg)
                elif ip[9] == 6 and len(seg) >= 20:
                    fix_tcp_checksum(src, dst, seg)
        out.append((ts, bytes(buf)))
    return out


def repeat(frames: Frames, index: int, offsets: tuple[float, ...]) -> Frames:
    """Frame ``index`` (0-based) sent again at each time offset: retransmissions with no answer."""
    ts, fr = frames[index]
    return [(ts + dt, fr) for dt in (0.0,) + offsets]


# --- recipes: name -> (source capture, transform). Each produces one finding code.
A = str_to_addr


def _no_inbound_gre(link: int, fr: Frames) -> Frames:
    # flowcontainer PPTP: client 172.16.30.107, server 155.138.217.96
    return drop(link, fr, lambda s, d, p, sp, dp: p == 47 and s == A("155.138.217.96"))


def _pptp_syn_unanswered(link: int, fr: Frames) -> Frames:
    return repeat(fr, 0, (3.0, 9.0))  # Windows retransmits the SYN after 3 s, then 6 s more


def _ike_no_response(link: int, fr: Frames) -> Frames:
    # ISAKMP_sa_setup: initiator 10.0.0.1 -> responder 10.0.0.2; keep the first request, resent
    fr = drop(link, fr, lambda s, d, p, sp, dp: s == A("10.0.0.2"))
    return repeat(fr, 0, (1.0, 3.0, 7.0))


def _ikev2_no_response(link: int, fr: Frames) -> Frames:
    return drop(link, fr, lambda s, d, p, sp, dp: s == A("192.168.1.1"))


def _natt_replies_dropped(link: int, fr: Frames) -> Frames:
    # isakmp4500: initiator 192.1.2.254, responder 192.1.2.23; UDP 4500 back to the client lost
    return drop(link, fr, lambda s, d, p, sp, dp: p == 17 and sp == 4500 and s == A("192.1.2.23"))


def _natt_replies_dropped_ndpi(link: int, fr: Frames) -> Frames:
    return drop(link, fr, lambda s, d, p, sp, dp: p == 17 and sp == 4500 and d == A("192.168.2.100"))


def _esp_one_way(link: int, fr: Frames) -> Frames:
    # corelight ipsec.cap: IKEv1 192.168.140.205 -> .200, then ESP both ways; drop ESP from .200
    return drop(link, fr, lambda s, d, p, sp, dp: p == 50 and s == A("192.168.140.200"))


def _ah_public_server(link: int, fr: Frames) -> Frames:
    # arkime ah-esp: 10.0.0.1 <-> 10.0.0.2; the server moved to a public (documentation) address
    return rewrite_address(link, fr, "10.0.0.2", "203.0.113.2")


def _wg_outside_cgnat(link: int, fr: Frames) -> Frames:
    # WireGuard 188.166.170.114 -> .115:51194 seen on a WAN whose address is carrier NAT space
    return rewrite_address(link, fr, "188.166.170.114", "100.64.12.114", hops=1)


def _ike_rewritten_client(link: int, fr: Frames) -> Frames:
    # ndpi esp.pcapng: IKEv2 10.2.3.2 -> 10.3.4.4 with matching NAT-D; the capture point now
    # sees the client as 10.20.0.2 one router hop on, which neither the client's nor the
    # server's hashes name: translated before this point and again after it.
    return rewrite_address(link, fr, "10.2.3.2", "10.20.0.2", hops=1)


def _ike_client_cgnat(link: int, fr: Frames) -> Frames:
    return rewrite_address(link, fr, "10.2.3.2", "100.72.3.2", hops=1)


def _wg_no_response(link: int, fr: Frames) -> Frames:
    # wireguard_port51194: frame 3 is the handshake initiation; WireGuard retries every 5 s
    first = next(i for i, (_ts, f) in enumerate(fr) if len(f) >= 14 + 28 + 148
                 and f[14 + 28:14 + 32] == b"\x01\x00\x00\x00")
    return repeat(fr, first, (5.0, 10.0, 15.0))


def _openvpn_no_response(link: int, fr: Frames) -> Frames:
    return repeat(fr, 0, (2.0, 4.0, 8.0))  # udp1198: frame 1 is P_CONTROL_HARD_RESET_CLIENT_V2


RECIPES: dict[str, tuple[str, Callable[[int, Frames], Frames]]] = {
    "gre-blocked": ("pptp/flowcontainer__pptp_gre_data.pcap", _no_inbound_gre),
    "pptp-control-blocked": ("pptp/ndpi__pptp.pcap", _pptp_syn_unanswered),
    "ike-no-response": ("ike/tcpdump__ISAKMP_sa_setup.pcap", _ike_no_response),
    "ikev2-no-response": ("ike/tcpdump__ikev2four_NULLlinktype.pcap", _ikev2_no_response),
    "natt-blocked": ("natt/tcpdump__isakmp4500.pcap", _natt_replies_dropped),
    "natt-blocked-ndpi": ("natt/ndpi__ipsec_isakmp_esp.pcap", _natt_replies_dropped_ndpi),
    "esp-blocked": ("esp_ah/corelight__ipsec.cap", _esp_one_way),
    "ah-through-nat": ("esp_ah/arkime__ah-esp.pcap", _ah_public_server),
    "cgnat": ("wireguard/corelight__wireguard_port51194.pcap", _wg_outside_cgnat),
    "cgnat-ike": ("esp_ah/ndpi__esp.pcapng", _ike_client_cgnat),
    "double-nat": ("esp_ah/ndpi__esp.pcapng", _ike_rewritten_client),
    "wireguard-no-response": ("wireguard/corelight__wireguard_port51194.pcap", _wg_no_response),
    "openvpn-no-response": ("openvpn/corelight__openvpn_udp1198.pcap", _openvpn_no_response),
}


def derive(name: str, captures: Path, outdir: Path) -> Path:
    """Write the derived capture ``name`` into ``outdir`` and return its path."""
    source, transform = RECIPES[name]
    link, frames = read(captures / source)
    return write(outdir / f"{name}.pcap", link, transform(link, frames))


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    outdir = Path(argv[0])
    captures = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[3].parent / "shared" / "captures"
    outdir.mkdir(parents=True, exist_ok=True)
    for name in RECIPES:
        print(derive(name, captures, outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
