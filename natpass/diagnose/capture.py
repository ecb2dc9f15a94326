"""Reading a capture for diagnosis: frame number, time and the IPv4 packet of every frame.

``natpass.datapath.pcap.iter_capture`` is the project's reader; until it is present (and as a fast
path for the common link types) this module decodes pcap and pcapng itself. Frame numbers are
1-based like Wireshark's so that evidence can be looked up with ``tshark -Y frame.number==N``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

# Link-layer header types (tcpdump.org "LINK-LAYER HEADER TYPES").
DLT_NULL = 0
DLT_EN10MB = 1
DLT_RAW = 101
DLT_LOOP = 108
DLT_LINUX_SLL = 113
DLT_IPV4 = 228
DLT_LINUX_SLL2 = 276

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = (0x8100, 0x88A8, 0x9100)
ETH_PPPOE_SESSION = 0x8864
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = 0x0A0D0D0A


class CaptureError(ValueError):
    """The file is not a readable pcap/pcapng capture."""


class Frame(NamedTuple):
    """One captured frame: ``ip`` is the IPv4 packet, or None (IPv6, ARP, other link content)."""

    number: int  # 1-based
    ts: float
    ip: bytes | None
    ipv6: bool  # the frame carried IPv6 (not analysed, but counted)
    length: int  # captured bytes


def ip_of_link(link: int, data: bytes) -> tuple[bytes | None, bool]:
    """The IPv4 packet inside one link-layer frame, and whether the frame carried IPv6."""
    if link == DLT_EN10MB:
        if len(data) < 14:
            return None, False
        etype = (data[12] << 8) | data[13]
        off = 14
        while etype in ETH_VLAN and len(data) >= off + 4:
            etype = (data[off + 2] << 8) | data[off + 3]
            off += 4
        if etype == ETH_PPPOE_SESSION and len(data) >= off + 8:
            ppp = (data[off + 6] << 8) | data[off + 7]
            off += 8
            etype = ETH_IPV4 if ppp == PPP_IPV4 else ETH_IPV6 if ppp == PPP_IPV6 else 0
        if etype == ETH_IPV4:
            return data[off:], False
        return None, etype == ETH_IPV6
    if link in (DLT_NULL, DLT_LOOP):
        if len(data) < 4:
            return None, False
        family = struct.unpack_from("<I", data)[0]
        if family > 0xFFFF:
            family = struct.unpack_from(">I", data)[0]
        if family == 2:
            return data[4:], False
        return None, family in (10, 24, 28, 30)
    if link in (DLT_RAW, DLT_IPV4):
        if data and data[0] >> 4 == 4:
            return data, False
        return None, bool(data) and data[0] >> 4 == 6
    if link == DLT_LINUX_SLL:
        if len(data) < 16:
            return None, False
        etype = (data[14] << 8) | data[15]
        return (data[16:], False) if etype == ETH_IPV4 else (None, etype == ETH_IPV6)
    if link == DLT_LINUX_SLL2:
        if len(data) < 20:
            return None, False
        etype = (data[0] << 8) | data[1]
        return (data[20:], False) if etype == ETH_IPV4 else (None, etype == ETH_IPV6)
    return None, False


def _read_pcap(fh: BinaryIO, magic: bytes) -> Iterator[Frame]:
    order, scale = PCAP_MAGICS[magic]
    rest = fh.read(20)
    if len(rest) < 20:
        raise CaptureError("pcap header truncated")
    link = struct.unpack(order + "IIIII", rest)[4] & 0x0FFFFFFF
    rec = struct.Struct(order + "IIII")
    read = fh.read
    number = 0
    while True:
        hdr = read(16)
        if len(hdr) < 16:
            return
        sec, frac, caplen, _origlen = rec.unpack(hdr)
        if caplen > 0x4000000:
            raise CaptureError(f"frame {number + 1}: record length {caplen} is not plausible")
        data = read(caplen)
        if len(data) < caplen:
            return  # a truncated last record: keep what was read
        number += 1
        ip, v6 = ip_of_link(link, data)
        yield Frame(number, sec + frac * scale, ip, v6, caplen)


def _read_pcapng(fh: BinaryIO, first: bytes) -> Iterator[Frame]:
    order = "<"
    links: list[tuple[int, float]] = []
    number = 0
    buf = first
    while True:
        if len(buf) < 8:
            buf += fh.read(8 - len(buf))
            if len(buf) < 8:
                return
        btype = struct.unpack_from(order + "I", buf)[0]
        if btype == PCAPNG_SHB:
            bom = buf[8:12] if len(buf) >= 12 else buf[8:] + fh.read(12 - len(buf))
            buf = buf[:8] + bom
            order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            links = []
        blen = struct.unpack_from(order + "I", buf, 4)[0]
        if blen < 12 or blen % 4 or blen > 0x4000000:
            raise CaptureError(f"pcapng block of length {blen} is not plausible")
        body = buf[8:] + fh.read(blen - len(buf))
        buf = b""
        if len(body) < blen - 8:
            return
        if btype == 1 and len(body) >= 8:  # Interface Description Block
            link = struct.unpack_from(order + "H", body)[0]
            links.append((link, _if_tsresol(body, order)))
        elif btype == 6 and len(body) >= 20:  # Enhanced Packet Block
            ifid, ts_hi, ts_lo, caplen = struct.unpack_from(order + "IIII", body)
            if ifid >= len(links):
                continue
            link, res = links[ifid]
            data = body[20:20 + caplen]
            number += 1
            ip, v6 = ip_of_link(link, data)
            yield Frame(number, ((ts_hi << 32) | ts_lo) * res, ip, v6, caplen)
        elif btype == 3 and len(body) >= 4 and links:  # Simple Packet Block: no time stamp
            data = body[4:len(body) - 4]
            number += 1
            ip, v6 = ip_of_link(links[0][0], data)
            yield Frame(number, 0.0, ip, v6, len(data))


def _if_tsresol(body: bytes, order: str) -> float:
    """Seconds per time-stamp unit of an interface (option if_tsresol, default microseconds)."""
    off = 8
    while off + 4 <= len(body) - 4:
        code, olen = struct.unpack_from(order + "HH", body, off)
        if code == 0:
            break
        if code == 9 and olen >= 1:
            v = body[off + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        off += 4 + ((olen + 3) & ~3)
    return 1e-6


def read_frames(path: str | Path) -> Iterator[Frame]:
    """Frames of a pcap or pcapng file; raises CaptureError for anything else."""
    fh = open(path, "rb")  # noqa: SIM115 - closed by the generator
    try:
        magic = fh.read(4)
        if magic in PCAP_MAGICS:
            yield from _read_pcap(fh, magic)
        elif magic == b"\x0a\x0d\x0d\x0a":
            yield from _read_pcapng(fh, magic)
        else:
            raise CaptureError(f"{path}: not a pcap or pcapng file")
    finally:
        fh.close()
