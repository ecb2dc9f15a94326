"""Linux AF_PACKET sockets and interface facts for the live datapath (no third-party code).

One raw packet socket per interface carries IPv4 (bound to ETH_P_IP: it sees only frames received
for this host, never the ones sent), one more carries ARP. A classic BPF filter attached in the
kernel keeps only frames addressed to our MAC (``PACKET_HOST``) and, on the LAN side, leaves the
router's own LAN address to the kernel (management: ping, admin page).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
from typing import Final

from natpass.datapath.arp import ETH_P_ARP, ETH_P_IP

SIOCGIFHWADDR: Final = 0x8927
SIOCGIFADDR: Final = 0x8915
SIOCGIFMTU: Final = 0x8921
SIOCETHTOOL: Final = 0x8946
SO_ATTACH_FILTER: Final = 26
SO_RCVBUFFORCE: Final = 33
SO_SNDBUFFORCE: Final = 32
SOL_PACKET: Final = 263
PACKET_IGNORE_OUTGOING: Final = 23

# Legacy ethtool get/set commands (linux/ethtool.h); the kernel maps them onto netdev features.
ETHTOOL_OFFLOADS: Final = {
    "rx-checksum": (0x14, 0x15),
    "tx-checksum": (0x16, 0x17),
    "scatter-gather": (0x18, 0x19),
    "tso": (0x1E, 0x1F),
    "gso": (0x23, 0x24),
    "gro": (0x2B, 0x2C),
}

# Classic BPF (linux/filter.h) opcodes used below.
_BPF_LD_B_ABS = 0x30
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06
_SKF_AD_PKTTYPE = -0x1000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE
PACKET_HOST: Final = 0


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _ifreq(name: str) -> bytearray:
    buf = bytearray(40)
    raw = name.encode()
    if len(raw) >= 16:
        raise ValueError(f"interface name too long: {name!r}")
    buf[: len(raw)] = raw
    return buf


def mac_address(ifname: str) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        out = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, bytes(_ifreq(ifname)))
    return bytes(out[18:24])


def ipv4_address(ifname: str) -> bytes | None:
    """The interface's primary IPv4 address, or None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            out = fcntl.ioctl(s.fileno(), SIOCGIFADDR, bytes(_ifreq(ifname)))
        except OSError:
            return None
    return bytes(out[20:24])


def mtu(ifname: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        out = fcntl.ioctl(s.fileno(), SIOCGIFMTU, bytes(_ifreq(ifname)))
    return int(struct.unpack_from("i", out, 16)[0])


def _ethtool(ifname: str, cmd: int, data: int = 0) -> int:
    value = (ctypes.c_uint32 * 2)(cmd, data)
    req = _ifreq(ifname)
    struct.pack_into("P", req, 16, ctypes.addressof(value))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, bytes(req))
    return int(value[1])


# LRO has no get/set command of its own: it is one bit of the legacy ethtool flags.
ETHTOOL_GFLAGS: Final = 0x25
ETHTOOL_SFLAGS: Final = 0x26
ETH_FLAG_LRO: Final = 1 << 15


def get_offload(ifname: str, feature: str) -> bool:
    if feature == "lro":
        return bool(_ethtool(ifname, ETHTOOL_GFLAGS) & ETH_FLAG_LRO)
    return bool(_ethtool(ifname, ETHTOOL_OFFLOADS[feature][0]))


def set_offload(ifname: str, feature: str, on: bool) -> None:
    """Switch an offload like ``ethtool -K IF FEATURE on|off`` (OSError when the driver refuses)."""
    if feature == "lro":
        flags = _ethtool(ifname, ETHTOOL_GFLAGS)
        _ethtool(ifname, ETHTOOL_SFLAGS, flags | ETH_FLAG_LRO if on else flags & ~ETH_FLAG_LRO)
        return
    _ethtool(ifname, ETHTOOL_OFFLOADS[feature][1], 1 if on else 0)


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    insns = (_SockFilter * len(program))(*[_SockFilter(c, t, f, k & 0xFFFFFFFF) for c, t, f, k in program])
    prog = _SockFprog(len(program), insns)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(ctypes.string_at(ctypes.addressof(prog),
                                                                                 ctypes.sizeof(prog))))


def host_ipv4_filter(skip_dst: bytes | None) -> list[tuple[int, int, int, int]]:
    """BPF: accept frames for our MAC (PACKET_HOST), except IPv4 to ``skip_dst`` (left to the kernel)."""
    prog = [
        (_BPF_LD_B_ABS, 0, 0, _SKF_AD_PKTTYPE),
        (_BPF_JEQ_K, 1, 0, PACKET_HOST),
        (_BPF_RET_K, 0, 0, 0),
    ]
    if skip_dst is not None:
        # SOCK_RAW: offsets count from the Ethernet header; IPv4 destination at 14 + 16.
        prog += [
            (_BPF_LD_W_ABS, 0, 0, 30),
            (_BPF_JEQ_K, 0, 1, int.from_bytes(skip_dst, "big")),
            (_BPF_RET_K, 0, 0, 0),
        ]
    prog.append((_BPF_RET_K, 0, 0, 0x40000))
    return prog


ETH_P_ALL: Final = 0x0003


def _tap(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> int:
    """Filter ``sock`` with ``program`` (which checks the EtherType itself) and return the protocol
    to bind it to: ETH_P_ALL, as a tap that never sees what this host sends.

    A socket bound to ETH_P_IP is one more IPv4 protocol handler: the kernel's ``ip_rcv`` then gets
    a shared skb and clones every packet it forwards. A tap whose filter rejects a frame hands it
    back before ``ip_rcv`` runs, so the frames the kernel forwards cost it no copy.
    """
    attach_filter(sock, program)
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    return ETH_P_ALL


def open_packet_socket(ifname: str, ethertype: int, skip_dst: bytes | None = None,
                       bufsize: int = 4 << 20,
                       program: list[tuple[int, int, int, int]] | None = None) -> socket.socket:
    """A non-blocking raw packet socket on ``ifname`` for ``ethertype`` frames (``program``: an
    IPv4 filter of its own, see :func:`_tap`)."""
    # Protocol 0 until bind: the socket receives nothing from other interfaces meanwhile.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        if program is not None:
            ethertype = _tap(sock, program)
        elif ethertype == ETH_P_IP:
            attach_filter(sock, host_ipv4_filter(skip_dst))
        for opt, fallback in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, bufsize)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, fallback, bufsize)
        sock.bind((ifname, ethertype))  # registers the ethertype on this interface only
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


__all__ = [
    "ETH_P_ARP", "ETH_P_IP", "mac_address", "ipv4_address", "mtu", "get_offload", "set_offload",
    "open_packet_socket", "attach_filter", "host_ipv4_filter",
]


# ----- PACKET_MMAP rings (Documentation/networking/packet_mmap.rst), TPACKET_V2 ------------------
# V2 rather than V3: V3 hands over whole blocks and holds a half-filled one until a timeout,
# which adds up to that timeout to every packet's latency under light load.
PACKET_RX_RING: Final = 5
PACKET_VERSION: Final = 10
PACKET_TX_RING: Final = 13
PACKET_LOSS: Final = 14  # TX ring: skip a malformed frame instead of stopping the ring at it
PACKET_QDISC_BYPASS: Final = 20
TPACKET_V2: Final = 1
TP_STATUS_KERNEL: Final = 0
TP_STATUS_USER: Final = 1  # RX: the frame is ours to read
TP_STATUS_CSUMNOTREADY: Final = 8  # RX: checksum-partial (locally generated on this host)
TP_STATUS_AVAILABLE: Final = 0  # TX: free for us to fill
TP_STATUS_SEND_REQUEST: Final = 1  # TX: filled, for the kernel to send
TPACKET2_HDR: Final = struct.Struct("<IIIHH")  # tp_status, tp_len, tp_snaplen, tp_mac, tp_net
TPACKET2_TX_DATA: Final = 32  # TPACKET_ALIGN(sizeof(struct tpacket2_hdr)): where TX data starts
RING_FRAME: Final = 2048
RING_BLOCK: Final = 1 << 16
# A slot for a frame merged by GRO/LRO (up to 64 KiB of IPv4 plus the Ethernet and ring headers),
# and how many such slots an RX ring gets (natpass's share of the traffic in hybrid mode is small).
MERGED_FRAME: Final = (1 << 16) + 4096
MERGED_FRAMES: Final = 256


class Ring:
    """One mmap'ed TPACKET_V2 ring of ``frames`` frames of ``frame_size`` bytes (RX or TX)."""

    def __init__(self, sock: socket.socket, option: int, frames: int, frame_size: int = RING_FRAME) -> None:
        import mmap

        block = max(RING_BLOCK, frame_size)
        per_block = block // frame_size
        blocks = max(1, (frames + per_block - 1) // per_block)
        self.frames = blocks * per_block
        self.frame_size = frame_size
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        sock.setsockopt(SOL_PACKET, option, struct.pack("IIII", block, blocks, frame_size, self.frames))
        self.map = mmap.mmap(sock.fileno(), block * blocks, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        self.mv = memoryview(self.map)
        self.index = 0

    def close(self) -> None:
        self.mv.release()
        self.map.close()


def merges_frames(ifname: str) -> bool:
    """Whether ``ifname`` merges received segments (GRO or LRO on)."""
    for feature in ("gro", "lro"):
        try:
            if get_offload(ifname, feature):
                return True
        except OSError:
            continue
    return False


def open_rx_ring(ifname: str, skip_dst: bytes | None = None, frames: int = 4096,
                 program: list[tuple[int, int, int, int]] | None = None) -> tuple[socket.socket, Ring]:
    """A packet socket for IPv4 on ``ifname`` (filtered as :func:`open_packet_socket`) with an RX ring."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        proto = ETH_P_IP
        frame_size = RING_FRAME
        if program is not None:
            proto = _tap(sock, program)
            if merges_frames(ifname):
                # GRO/LRO stays on where the kernel forwards: natpass's share may arrive merged,
                # so each slot holds a whole merged frame (natpass segments it again).
                frame_size, frames = MERGED_FRAME, min(frames, MERGED_FRAMES)
        else:
            attach_filter(sock, host_ipv4_filter(skip_dst))
        ring = Ring(sock, PACKET_RX_RING, frames, frame_size)
        sock.bind((ifname, proto))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, ring


def open_tx_ring(ifname: str, frames: int = 1024) -> tuple[socket.socket, Ring]:
    """A send-only packet socket on ``ifname`` with a TX ring (one send() flushes many frames)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        # Bypassing the qdisc saves a little per packet but also skips the taps, so tcpdump on the
        # router would not see what natpass sends: only on request (NATPASS_QDISC_BYPASS=1).
        if os.environ.get("NATPASS_QDISC_BYPASS") == "1":
            with contextlib.suppress(OSError):
                sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        sock.setsockopt(SOL_PACKET, PACKET_LOSS, 1)
        ring = Ring(sock, PACKET_TX_RING, frames)
        sock.bind((ifname, 0))  # protocol 0: this socket never receives
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, ring
