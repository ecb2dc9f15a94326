"""Capture files in and out: IPv4 packets from pcap/pcapng, and classic pcap writing.

The file and section headers, the pcapng interface blocks and their options, and the writer are
dpkt's. The per-record loop is a tight ``struct`` loop over an mmap because dpkt's iterators drop
the original frame length and silently return a short last record of a cut file; both matter here
(``length`` is reported, a cut file is a :class:`CaptureError`).
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple

import dpkt  # type: ignore[import-untyped]
import dpkt.pcap  # type: ignore[import-untyped]
import dpkt.pcapng  # type: ignore[import-untyped]

# Link-layer header types (tcpdump.org/linktypes.html). DLT 12 and 14 are raw IP on some BSDs.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_DLT12 = 12
LINKTYPE_RAW_DLT14 = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_LINUX_SLL2 = 276

LINK_NAMES = {
    LINKTYPE_NULL: "null",
    LINKTYPE_ETHERNET: "ethernet",
    LINKTYPE_RAW_DLT12: "raw",
    LINKTYPE_RAW_DLT14: "raw",
    LINKTYPE_RAW: "raw",
    LINKTYPE_LOOP: "loop",
    LINKTYPE_LINUX_SLL: "linux-sll",
    LINKTYPE_IPV4: "ipv4",
    LINKTYPE_LINUX_SLL2: "linux-sll2",
}

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100  # IEEE 802.1Q
ETHERTYPE_QINQ = 0x88A8  # IEEE 802.1ad service tag
ETHERTYPE_QINQ_OLD = 0x9100  # pre-standard QinQ
ETHERTYPE_PPPOE_SESSION = 0x8864  # RFC 2516
PPP_IPV4 = 0x0021
AF_INET = 2  # the BSD loopback family of IPv4 is 2 on every OS
IPPROTO_IPIP = 4
IPV6_EXT_HEADERS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options (RFC 8200 4)
MAX_RECORD = 1 << 18  # 262144: tcpdump's largest snapshot length; bigger means a corrupt record

PCAPNG_SHB = dpkt.pcapng.PCAPNG_BT_SHB
PCAPNG_IDB = dpkt.pcapng.PCAPNG_BT_IDB
PCAPNG_EPB = dpkt.pcapng.PCAPNG_BT_EPB
PCAPNG_SPB = dpkt.pcapng.PCAPNG_BT_SPB
PCAPNG_PB = dpkt.pcapng.PCAPNG_BT_PB

_PCAP_MAGICS = {
    # magic as read little-endian -> (byte order, nanosecond, record header length)
    dpkt.pcap.TCPDUMP_MAGIC: ("<", False, 16),
    dpkt.pcap.TCPDUMP_MAGIC_NANO: ("<", True, 16),
    dpkt.pcap.PMUDPCT_MAGIC: (">", False, 16),
    dpkt.pcap.PMUDPCT_MAGIC_NANO: (">", True, 16),
    # Kuznetsov's patched format: 8 more bytes per record (ifindex, protocol, packet type, pad).
    dpkt.pcap.MODPCAP_MAGIC: ("<", False, 24),
    dpkt.pcap.PACPDOM_MAGIC: (">", False, 24),
}


class CaptureError(ValueError):
    """A capture file is corrupt, truncated or of an unsupported kind."""


@dataclass(slots=True)
class CapturedPacket:
    """One frame of a capture (a plain slotted class: ``index`` would clash with tuple.index)."""

    index: int  # 1-based frame number, as tshark counts
    ts: float  # seconds since the epoch
    ip: bytes | None  # the IPv4 packet (trimmed to its total length), None when not IPv4
    link: str  # link-type name
    length: int  # original frame length on the wire
    captured: int  # bytes captured of the frame (< length when the snapshot cut it)
    outer: str | None = None  # "ipv6" when the IPv4 packet was decapsulated from IPv4-in-IPv6
    ip6: bytes | None = None  # the IPv6 packet of a frame that carries no IPv4 (for diagnosis)


def link_name(linktype: int) -> str:
    return LINK_NAMES.get(linktype, f"linktype-{linktype}")


def _ip_slice(frame: bytes, off: int, outer: str | None) -> tuple[bytes | None, str | None]:
    """The IPv4 packet at ``off`` (trimmed to its total length), or an IPv4 packet inside IPv6."""
    n = len(frame)
    if off >= n:
        return None, None
    version = frame[off] >> 4
    if version == 4:
        if n - off >= 4:
            total = (frame[off + 2] << 8) | frame[off + 3]
            if 20 <= total <= n - off:
                return frame[off:off + total], outer
        return frame[off:], outer
    if version == 6 and outer is None:
        return _ipv4_in_ipv6(frame, off)
    return None, None


def _ipv4_in_ipv6(frame: bytes, off: int) -> tuple[bytes | None, str | None]:
    n = len(frame)
    if n - off < 40:
        return None, None
    nxt = frame[off + 6]
    pos = off + 40
    while nxt in IPV6_EXT_HEADERS:
        if n - pos < 8:
            return None, None
        nxt = frame[pos]
        pos += (frame[pos + 1] + 1) * 8
    if nxt != IPPROTO_IPIP:
        return None, None
    return _ip_slice(frame, pos, "ipv6")


def _ethertype_payload(frame: bytes, etype: int, off: int) -> tuple[bytes | None, str | None]:
    n = len(frame)
    while etype in (ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_QINQ_OLD):
        if n - off < 4:
            return None, None
        etype = (frame[off + 2] << 8) | frame[off + 3]
        off += 4
    if etype == ETHERTYPE_IPV4:
        return _ip_slice(frame, off, None)
    if etype == ETHERTYPE_IPV6:
        return _ipv4_in_ipv6(frame, off)
    if etype == ETHERTYPE_PPPOE_SESSION:
        # RFC 2516 section 4: 6-byte PPPoE header, then the PPP protocol field.
        if n - off >= 8 and ((frame[off + 6] << 8) | frame[off + 7]) == PPP_IPV4:
            return _ip_slice(frame, off + 8, None)
    return None, None


def ipv4_of_frame(linktype: int, frame: bytes) -> tuple[bytes | None, str | None]:
    """(IPv4 packet, outer encapsulation) of one frame of ``linktype``; (None, None) if not IPv4."""
    n = len(frame)
    if linktype == LINKTYPE_ETHERNET:
        if n < 14:
            return None, None
        etype = (frame[12] << 8) | frame[13]
        if etype <= 1500:  # IEEE 802.3 length: LLC/SNAP may carry an Ethertype
            if n >= 22 and frame[14:20] == b"\xaa\xaa\x03\x00\x00\x00":
                return _ethertype_payload(frame, (frame[20] << 8) | frame[21], 22)
            return None, None
        return _ethertype_payload(frame, etype, 14)
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_DLT12, LINKTYPE_RAW_DLT14, LINKTYPE_IPV4):
        return _ip_slice(frame, 0, None)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        # The family is in the writer's byte order (NULL) or network order (LOOP); accept both.
        if n < 4:
            return None, None
        fam_le = int.from_bytes(frame[0:4], "little")
        fam_be = int.from_bytes(frame[0:4], "big")
        if fam_le == AF_INET or fam_be == AF_INET:
            return _ip_slice(frame, 4, None)
        if n > 4 and frame[4] >> 4 == 6:  # AF_INET6 differs per OS (10, 24, 28, 30)
            return _ipv4_in_ipv6(frame, 4)
        return None, None
    if linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            return None, None
        return _ethertype_payload(frame, (frame[14] << 8) | frame[15], 16)
    if linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            return None, None
        return _ethertype_payload(frame, (frame[0] << 8) | frame[1], 20)
    return None, None


PPP_IPV6 = 0x0057


def ipv6_of_frame(linktype: int, frame: bytes) -> bytes | None:
    """The IPv6 packet of one frame of ``linktype`` (Ethernet with VLAN/PPPoE, raw, loopback,
    Linux cooked), or None when the frame carries none."""
    n = len(frame)
    off = -1
    if linktype == LINKTYPE_ETHERNET and n >= 14:
        etype, off = (frame[12] << 8) | frame[13], 14
        while etype in (ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_QINQ_OLD) and n - off >= 4:
            etype, off = (frame[off + 2] << 8) | frame[off + 3], off + 4
        if etype == ETHERTYPE_PPPOE_SESSION and n - off >= 8:
            etype, off = (ETHERTYPE_IPV6 if ((frame[off + 6] << 8) | frame[off + 7]) == PPP_IPV6 else 0), off + 8
        if etype != ETHERTYPE_IPV6:
            return None
    elif linktype in (LINKTYPE_RAW, LINKTYPE_RAW_DLT12, LINKTYPE_RAW_DLT14):
        off = 0
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        off = 4
    elif linktype == LINKTYPE_LINUX_SLL and n >= 16 and ((frame[14] << 8) | frame[15]) == ETHERTYPE_IPV6:
        off = 16
    elif linktype == LINKTYPE_LINUX_SLL2 and n >= 20 and ((frame[0] << 8) | frame[1]) == ETHERTYPE_IPV6:
        off = 20
    if off < 0 or n - off < 40 or frame[off] >> 4 != 6:
        return None
    return frame[off:]


def _check_linktype(linktype: int, path: str) -> None:
    if linktype not in LINK_NAMES:
        raise CaptureError(f"{path}: unsupported link type {linktype}")


def iter_capture(path: str | os.PathLike[str]) -> Iterator[CapturedPacket]:
    """Every frame of a pcap or pcapng file (told apart by magic number), in order.

    Raises :class:`CaptureError` for an unreadable, unknown, corrupt or cut file (frames before
    the damage are yielded first) and for an unsupported link type.
    """
    name = str(path)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise CaptureError(f"{name}: cannot open: {exc.strerror or exc}") from None
    with f:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode) and st.st_size > 0:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                yield from _iter_buffer(mm, name, st.st_size)
        else:
            # A pipe or other stream (e.g. ``tcpdump -w - | natpass ...``) cannot be mapped.
            try:
                data = f.read()
            except OSError as exc:
                raise CaptureError(f"{name}: cannot read: {exc.strerror or exc}") from None
            yield from _iter_buffer(data, name, len(data))


def _iter_buffer(mm: Any, name: str, size: int) -> Iterator[CapturedPacket]:
    if size < 4:
        raise CaptureError(f"{name}: too short to be a capture file ({size} bytes)")
    magic_le = struct.unpack_from("<I", mm, 0)[0]
    if magic_le in _PCAP_MAGICS:
        yield from _iter_pcap(mm, name, size)
    elif magic_le == PCAPNG_SHB:
        yield from _iter_pcapng(mm, name, size)
    else:
        raise CaptureError(f"{name}: not a pcap or pcapng file (magic {magic_le:#010x})")


def _pcap_header(mm: Any, name: str, size: int) -> tuple[str, bool, int, int]:
    if size < 24:
        raise CaptureError(f"{name}: pcap file header truncated ({size} bytes)")
    head = bytes(mm[:24])
    order, nano, reclen = _PCAP_MAGICS[struct.unpack_from("<I", head, 0)[0]]
    try:
        fh = dpkt.pcap.LEFileHdr(head) if order == "<" else dpkt.pcap.FileHdr(head)
    except Exception as exc:  # dpkt may raise anything on a damaged header; it is the file's fault
        raise CaptureError(f"{name}: bad pcap file header: {exc!r}") from None
    # The FCS-length bits (upper bits of the link type field, pcap-savefile(5)) are not the type.
    linktype = int(fh.linktype) & 0x0FFFFFFF
    _check_linktype(linktype, name)
    return order, nano, linktype, reclen


def _iter_pcap(mm: Any, name: str, size: int) -> Iterator[CapturedPacket]:
    order, nano, linktype, reclen = _pcap_header(mm, name, size)
    link = LINK_NAMES[linktype]
    rec = struct.Struct(order + "IIII")
    unpack = rec.unpack_from
    divisor = 1e9 if nano else 1e6
    off = 24
    index = 0
    decode = ipv4_of_frame
    while off < size:
        if size - off < reclen:
            raise CaptureError(f"{name}: record header of frame {index + 1} cut at byte {off}")
        sec, frac, caplen, wirelen = unpack(mm, off)
        off += reclen
        if caplen > MAX_RECORD:
            raise CaptureError(f"{name}: frame {index + 1} claims {caplen} captured bytes (corrupt)")
        if off + caplen > size:
            raise CaptureError(f"{name}: frame {index + 1} cut: {size - off} of {caplen} bytes present")
        frame = mm[off:off + caplen]
        off += caplen
        index += 1
        ip, outer = decode(linktype, frame)
        yield CapturedPacket(index, sec + frac / divisor, ip, link, max(wirelen, caplen), caplen, outer,
                             None if ip is not None else ipv6_of_frame(linktype, frame))


class _Iface(NamedTuple):
    linktype: int
    divisor: float
    tsoffset: int
    link: str


def _pcapng_iface(block: bytes, le: bool, name: str) -> _Iface:
    try:
        idb = (dpkt.pcapng.InterfaceDescriptionBlockLE(block) if le
               else dpkt.pcapng.InterfaceDescriptionBlock(block))
    except Exception as exc:  # dpkt may raise anything on a damaged block; it is the file's fault
        raise CaptureError(f"{name}: bad pcapng interface block: {exc!r}") from None
    linktype = int(idb.linktype)
    _check_linktype(linktype, name)
    divisor = 1e6
    tsoffset = 0
    for opt in idb.opts:
        if opt.code == dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL and len(opt.data) >= 1:
            v = opt.data[0]
            divisor = float(2 ** (v & 0x7F)) if v & 0x80 else float(10 ** (v & 0x7F))
        elif opt.code == dpkt.pcapng.PCAPNG_OPT_IF_TSOFFSET and len(opt.data) >= 8:
            tsoffset = struct.unpack("<q" if le else ">q", bytes(opt.data[:8]))[0]
    return _Iface(linktype, divisor, tsoffset, LINK_NAMES[linktype])


_NG_HDR = {True: struct.Struct("<II"), False: struct.Struct(">II")}
_NG_U32 = {True: struct.Struct("<I"), False: struct.Struct(">I")}
_NG_EPB = {True: struct.Struct("<IIIII"), False: struct.Struct(">IIIII")}
_NG_PB = {True: struct.Struct("<HHIIII"), False: struct.Struct(">HHIIII")}


def _iter_pcapng(mm: Any, name: str, size: int) -> Iterator[CapturedPacket]:
    off = 0
    index = 0
    le = True
    hdr, u32, epb, pb = _NG_HDR[le].unpack_from, _NG_U32[le].unpack_from, _NG_EPB[le].unpack_from, _NG_PB[le].unpack_from
    ifaces: list[_Iface] = []
    decode = ipv4_of_frame
    while off < size:
        if size - off < 12:
            raise CaptureError(f"{name}: pcapng block header cut at byte {off}")
        if _NG_U32[True].unpack_from(mm, off)[0] == PCAPNG_SHB:
            # A new section: byte order from its byte-order magic; interfaces start again.
            bom = _NG_U32[True].unpack_from(mm, off + 8)[0]
            if bom == dpkt.pcapng.BYTE_ORDER_MAGIC:
                le = True
            elif bom == dpkt.pcapng.BYTE_ORDER_MAGIC_LE:
                le = False
            else:
                raise CaptureError(f"{name}: bad pcapng byte-order magic {bom:#010x} at byte {off}")
            hdr, u32, epb, pb = _NG_HDR[le].unpack_from, _NG_U32[le].unpack_from, _NG_EPB[le].unpack_from, _NG_PB[le].unpack_from
            ifaces = []
        btype, blen = hdr(mm, off)
        if blen < 12 or blen % 4 or off + blen > size:
            raise CaptureError(f"{name}: pcapng block at byte {off} has bad length {blen}")
        if u32(mm, off + blen - 4)[0] != blen:
            raise CaptureError(f"{name}: pcapng block at byte {off}: trailing length mismatch")
        if btype == PCAPNG_EPB or btype == PCAPNG_PB:
            if blen < 32:
                raise CaptureError(f"{name}: pcapng packet block at byte {off} too short")
            if btype == PCAPNG_EPB:
                iface_id, ts_hi, ts_lo, caplen, wirelen = epb(mm, off + 8)
            else:
                iface_id, _drops, ts_hi, ts_lo, caplen, wirelen = pb(mm, off + 8)
            if iface_id >= len(ifaces):
                raise CaptureError(f"{name}: packet at byte {off} names unknown interface {iface_id}")
            if 28 + caplen > blen - 4:
                raise CaptureError(f"{name}: packet at byte {off} overruns its block")
            iface = ifaces[iface_id]
            frame = mm[off + 28:off + 28 + caplen]
            index += 1
            ip, outer = decode(iface.linktype, frame)
            ts = iface.tsoffset + ((ts_hi << 32) | ts_lo) / iface.divisor
            yield CapturedPacket(index, ts, ip, iface.link, max(wirelen, caplen), caplen, outer,
                                 None if ip is not None else ipv6_of_frame(iface.linktype, frame))
        elif btype == PCAPNG_SHB:
            major = (u32(mm, off + 12)[0] & 0xFFFF if le else u32(mm, off + 12)[0] >> 16) if blen >= 16 else -1
            if major != dpkt.pcapng.PCAPNG_VERSION_MAJOR:
                raise CaptureError(f"{name}: unsupported pcapng version {major}")
        elif btype == PCAPNG_IDB:
            ifaces.append(_pcapng_iface(bytes(mm[off:off + blen]), le, name))
        elif btype == PCAPNG_SPB:
            if not ifaces:
                raise CaptureError(f"{name}: simple packet block at byte {off} before any interface")
            wirelen = u32(mm, off + 8)[0]
            caplen = min(wirelen, blen - 16)
            iface = ifaces[0]
            frame = mm[off + 12:off + 12 + caplen]
            index += 1
            ip, outer = decode(iface.linktype, frame)
            yield CapturedPacket(index, 0.0, ip, iface.link, wirelen, caplen, outer,
                                 None if ip is not None else ipv6_of_frame(iface.linktype, frame))
        # Other blocks (name resolution, statistics, custom) carry no frames.
        off += blen


def capture_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Format, link types, frame and IPv4 counts, and time span of a capture file."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if len(magic) == 4 and struct.unpack("<I", magic)[0] == PCAPNG_SHB:
        fmt = "pcapng"
    else:
        fmt = "pcap"
    links: dict[str, int] = {}
    count = ipv4 = outer = truncated = 0
    first = last = None
    for pkt in iter_capture(path):
        count += 1
        links[pkt.link] = links.get(pkt.link, 0) + 1
        if pkt.ip is not None:
            ipv4 += 1
            if pkt.outer:
                outer += 1
        if pkt.captured < pkt.length:
            truncated += 1
        if first is None:
            first = pkt.ts
        last = pkt.ts
    return {
        "path": str(path),
        "format": fmt,
        "link_type": next(iter(links), None),
        "link_types": links,
        "packets": count,
        "ipv4_packets": ipv4,
        "ipv4_decapsulated": outer,
        "truncated_frames": truncated,
        "first_ts": first,
        "last_ts": last,
    }


class PcapWriter:
    """Classic pcap writer: raw IPv4 (LINKTYPE_RAW 101) by default, or Ethernet II frames.

    ``with PcapWriter(path) as w: w.write(ip_bytes, ts)``. Timestamps default to the wall clock.
    """

    def __init__(self, path: str | os.PathLike[str], linktype: str = "raw",
                 src_mac: bytes = b"\x02\x00\x00\x00\x00\x01", dst_mac: bytes = b"\x02\x00\x00\x00\x00\x02",
                 snaplen: int = MAX_RECORD, nano: bool = False) -> None:
        if linktype not in ("raw", "ethernet"):
            raise ValueError(f"PcapWriter link type must be 'raw' or 'ethernet', not {linktype!r}")
        if len(src_mac) != 6 or len(dst_mac) != 6:
            raise ValueError("MAC addresses must be 6 bytes")
        self.path = Path(path)
        self.linktype = linktype
        self._eth = (dst_mac + src_mac + struct.pack("!H", ETHERTYPE_IPV4)) if linktype == "ethernet" else b""
        self._file: IO[bytes] = open(path, "wb")
        dlt = LINKTYPE_ETHERNET if linktype == "ethernet" else LINKTYPE_RAW
        self._writer = dpkt.pcap.Writer(self._file, snaplen=snaplen, linktype=dlt, nano=nano)
        self.count = 0

    def write(self, ip: bytes | bytearray | memoryview, ts: float | None = None) -> None:
        """Append one IPv4 packet (framed in Ethernet if the writer is an Ethernet one)."""
        data = self._eth + bytes(ip) if self._eth else bytes(ip)
        self._writer.writepkt_time(data, time.time() if ts is None else ts)
        self.count += 1

    def write_frame(self, frame: bytes | bytearray | memoryview, ts: float | None = None) -> None:
        """Append one frame exactly as given (already of this writer's link type)."""
        self._writer.writepkt_time(bytes(frame), time.time() if ts is None else ts)
        self.count += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
