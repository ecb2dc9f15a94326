"""The live Linux datapath: real Ethernet frames on two interfaces, through the engine, and back out.

Design (docs/DATAPATH.md): per interface, an AF_PACKET socket bound to ETH_P_IP with a TPACKET_V2
RX ring (it sees the frames received for our MAC before netfilter, never the ones sent), a send-only
packet socket with a TX ring (one ``send()`` per batch), and a socket for ARP. Each IPv4 packet is
handed to ``engine.process``; the verdict says on which side it leaves. Next-hop MACs come from
natpass's own ARP cache (:mod:`natpass.datapath.arp`). The kernel does no forwarding and no NAT
(``ip_forward = 0`` and an nftables table that drops IPv4 input, see :mod:`live_setup`). Without
rings (``NATPASS_PACKET_RINGS=0`` or a kernel refusing them) each packet costs a recv and a send.

The loop is single-threaded; everything else (admin API, reload, switches) reaches the engine
through :meth:`LiveDatapath.call`, which runs a function between two batches of packets.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import select
import socket
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from natpass.datapath import packetsock
from natpass.datapath.arp import (
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    ETH_HEADER,
    ETH_P_ARP,
    ETH_P_IP,
    ArpCache,
    build_arp,
    parse_arp,
)
from natpass.datapath.packetsock import (
    RING_FRAME,
    TP_STATUS_AVAILABLE,
    TP_STATUS_CSUMNOTREADY,
    TP_STATUS_SEND_REQUEST,
    TPACKET2_HDR,
    TPACKET2_TX_DATA,
)
from natpass.nat import verdict as V
from natpass.packets.checksum import internet_checksum
from natpass.packets.tcp import fix_tcp_checksum
from natpass.packets.udp import fix_udp_checksum

log = logging.getLogger("natpass.datapath")

FRAME_MAX = 2048  # Ethernet MTU 1500 + header; GRO is switched off so nothing larger arrives
BATCH = 64  # frames read from one socket before looking at the other and at the clock
RING_HOLE_S = 0.005  # an RX frame unfilled this long while a later one is ready is skipped
TICK_S = 0.25  # ARP retries and engine timers run at least this often
ICMP_ECHO_REQUEST = 8  # RFC 792
ICMP_ECHO_REPLY = 0
_ETH_IP = ETH_P_IP.to_bytes(2, "big")
_LEN = struct.Struct("<I")
_DST = struct.Struct(">I")  # an IPv4 address as an int (the destination at offset 16)
BY_DST_MAX = 65536  # cached next-hop headers per side
_TX_MAX = RING_FRAME - TPACKET2_TX_DATA  # the largest frame a TX ring slot holds
_ZERO4 = bytes(4)


def _interface_addresses(ifname: str) -> list[ipaddress.IPv4Interface]:
    """IPv4 addresses (with their prefixes) configured on ``ifname``."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", ifname], capture_output=True,
                         text=True, timeout=10, check=False).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            found.append(ipaddress.IPv4Interface(parts[parts.index("inet") + 1]))
    return found


def _onlink_prefixes(ifname: str) -> list[ipaddress.IPv4Network]:
    """IPv4 prefixes configured on ``ifname`` (on-link destinations need no gateway)."""
    return [iface.network for iface in _interface_addresses(ifname)]


def answer_echo(buf: bytearray) -> bool:
    """Turn an ICMP echo request (RFC 792) into its reply in place; False when it is not one."""
    ihl = (buf[0] & 0x0F) * 4
    if len(buf) < ihl + 8 or buf[9] != 1 or buf[ihl] != ICMP_ECHO_REQUEST or buf[6] & 0x3F or buf[7]:
        return False
    src = bytes(buf[12:16])
    buf[12:16] = buf[16:20]
    buf[16:20] = src
    buf[8] = 64
    buf[10:12] = b"\x00\x00"
    buf[10:12] = internet_checksum(buf[:ihl]).to_bytes(2, "big")
    buf[ihl] = ICMP_ECHO_REPLY
    buf[ihl + 2:ihl + 4] = b"\x00\x00"
    buf[ihl + 2:ihl + 4] = internet_checksum(buf[ihl:]).to_bytes(2, "big")
    return True


def complete_checksum(buf: bytearray) -> None:
    """Fill in the TCP/UDP checksum of a packet the kernel marked checksum-partial.

    Frames sent by a process on this same host (over veth) may leave the checksum to the
    "hardware": the field then holds only the pseudo-header sum. Translating that incrementally
    would send a wrong checksum, so it is computed whole first.
    """
    ihl = (buf[0] & 0x0F) * 4
    proto = buf[9]
    if (buf[6] & 0x3F) or buf[7] or len(buf) < ihl + 8:
        return  # a fragment: only the whole datagram has a checksum
    fix: Callable[[bytes, bytes, memoryview], int]
    if proto == 6 and len(buf) >= ihl + 20:
        fix = fix_tcp_checksum
    elif proto == 17:
        fix = fix_udp_checksum  # a computed zero goes out as all ones (RFC 768)
    else:
        return
    with memoryview(buf) as whole, whole[ihl:] as segment:
        fix(buf[12:16], buf[16:20], segment)


SCHED_SLICE_NS = 100_000  # EEVDF minimum custom slice (Linux 6.12+): earlier deadline on wake-up
_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}


def request_short_slice() -> bool:
    """Ask the scheduler for a short time slice (``sched_setattr`` ``sched_runtime``, Linux 6.12+).

    A router sleeps in poll() between packets; with the default slice a wake-up can wait for the
    task running on that CPU to finish its slice (a scheduler tick, ~4 ms), which shows as p99
    latency. A short slice gives natpass an earlier virtual deadline, so it runs on wake-up. It is
    not a real-time policy: natpass cannot starve anything. False when the kernel refuses.
    """
    import ctypes
    import platform

    nr = _SYS_SCHED_SETATTR.get(platform.machine())
    if nr is None:
        return False
    # struct sched_attr (include/uapi/linux/sched/types.h), SCHED_OTHER, nice unchanged.
    attr = struct.pack("IIQiIQQQII", 56, 0, 0, os.getpriority(os.PRIO_PROCESS, 0), 0, SCHED_SLICE_NS,
                       0, 0, 0, 0)
    buf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.syscall(nr, 0, buf, 0) == 0)


class Side:
    """One interface: its sockets (and PACKET_MMAP rings), MAC, ARP cache and next-hop choice."""

    def __init__(self, name: str, ifname: str, skip_dst: bytes | None, gateway: bytes | None,
                 rings: bool = True, program: list[tuple[int, int, int, int]] | None = None) -> None:
        self.name = name
        self.ifname = ifname
        self.mac = packetsock.mac_address(ifname)
        self.ip = packetsock.ipv4_address(ifname) or b"\x00\x00\x00\x00"
        self.onlink = [(int(net.network_address), int(net.netmask)) for net in _onlink_prefixes(ifname)]
        self.gateway = gateway
        self.rx_ring: packetsock.Ring | None = None
        self.tx_ring: packetsock.Ring | None = None
        self.tx_sock = None
        if rings:
            try:
                self.ip_sock, self.rx_ring = packetsock.open_rx_ring(ifname, skip_dst, program=program)
                self.tx_sock, self.tx_ring = packetsock.open_tx_ring(ifname)
            except OSError as exc:
                log.warning("%s: packet rings unavailable (%s); using one syscall per packet", ifname, exc)
                self._close_rings()
        if self.rx_ring is None:
            self.ip_sock = packetsock.open_packet_socket(ifname, ETH_P_IP, skip_dst=skip_dst, program=program)
        self.arp_sock = packetsock.open_packet_socket(ifname, ETH_P_ARP)
        self.arp = ArpCache(self.mac, self.ip, self._send_arp)
        self.tail = self.mac + _ETH_IP
        # Destination address (as an int: cheaper to get from the packet than bytes) -> the ready
        # Ethernet header of its next hop. Cleared whenever a next hop's MAC changes.
        self.by_dst: dict[int, bytes] = {}
        self.nh_mac: dict[bytes, bytes] = {}  # next hop -> the MAC the cached headers use
        self.tx_pending = 0
        self.answer_for: frozenset[bytes] = frozenset()  # addresses whose ARP natpass answers
        self.arp_replies = 0
        self.rx = 0
        self.tx = 0
        self.tx_errors = 0
        self.stall_index = -1  # RX ring frame the loop found unfilled on a wake-up, and since when
        self.stall_since = 0.0
        self.emit = self._emit_ring if self.tx_ring is not None else self._emit_send  # type: ignore[method-assign]

    def _close_rings(self) -> None:
        for ring in (self.rx_ring, self.tx_ring):
            if ring is not None:
                ring.close()
        for sock in (getattr(self, "ip_sock", None), self.tx_sock):
            if sock is not None:
                sock.close()
        self.rx_ring = self.tx_ring = None
        self.tx_sock = None

    def _send_arp(self, frame: bytes) -> None:
        try:
            self.arp_sock.send(frame)
        except OSError:
            self.tx_errors += 1

    def next_hop(self, dst: bytes) -> bytes:
        if self.gateway is None:
            return dst
        value = int.from_bytes(dst, "big")
        for net, mask in self.onlink:
            if value & mask == net:
                return dst
        return self.gateway

    def _header(self, packet: bytes | bytearray, now: float) -> bytes | None:
        """The Ethernet header for ``packet``'s next hop (cached per destination); None when ARP
        holds the packet until the next hop answers."""
        dst = bytes(packet[16:20])
        nh = self.next_hop(dst)
        mac = self.arp.lookup(nh, now)
        if mac is None:
            self.arp.hold(nh, packet, now)
            return None
        hdr = mac + self.tail
        self.nh_mac[nh] = mac
        if len(self.by_dst) >= BY_DST_MAX:
            self.by_dst.clear()
        self.by_dst[int.from_bytes(dst, "big")] = hdr
        return hdr

    def learned(self, ip: bytes) -> None:
        """ARP resolved ``ip``: drop the cached headers if its MAC changed (they may go through it)."""
        entry = self.arp.entries.get(ip)
        if entry is None:
            return
        old = self.nh_mac.get(ip)
        if old is not None and old != entry[0]:
            self.by_dst.clear()
        self.nh_mac[ip] = entry[0]

    def emit(self, packet: bytes | bytearray, now: float) -> None:
        """Send one IPv4 packet out of this interface (bound to the ring or the plain variant)."""
        raise NotImplementedError

    def _emit_send(self, packet: bytes | bytearray, now: float) -> None:
        hdr = self.by_dst.get(_DST.unpack_from(packet, 16)[0])
        if hdr is None:
            hdr = self._header(packet, now)
            if hdr is None:
                return
        try:
            self.ip_sock.send(hdr + packet)
            self.tx += 1
        except OSError:
            self.tx_errors += 1

    def _emit_ring(self, packet: bytes | bytearray, now: float) -> None:
        hdr = self.by_dst.get(_DST.unpack_from(packet, 16)[0])
        if hdr is None:
            hdr = self._header(packet, now)
            if hdr is None:
                return
        ring = self.tx_ring
        assert ring is not None
        mv = ring.mv
        off = ring.index * RING_FRAME
        if mv[off] != TP_STATUS_AVAILABLE:
            self.flush()  # the ring is full of frames the kernel has not sent yet
            if mv[off] != TP_STATUS_AVAILABLE:
                self.tx_errors += 1
                return
        length = ETH_HEADER + len(packet)
        if length > RING_FRAME - TPACKET2_TX_DATA:
            self.tx_errors += 1
            return
        data = off + TPACKET2_TX_DATA
        mv[data:data + ETH_HEADER] = hdr
        mv[data + ETH_HEADER:data + length] = packet
        _LEN.pack_into(mv, off + 4, length)
        mv[off] = TP_STATUS_SEND_REQUEST  # after the data: the kernel reads the frame once it sees this
        ring.index = (ring.index + 1) % ring.frames
        self.tx_pending += 1

    def flush(self) -> None:
        """Hand every frame written to the TX ring to the kernel with one syscall."""
        if not self.tx_pending:
            return
        pending, self.tx_pending = self.tx_pending, 0
        try:
            self.tx_sock.send(b"")  # type: ignore[union-attr]
            self.tx += pending
        except (BlockingIOError, InterruptedError):
            self.tx += pending  # queued frames stay in the ring; the next flush sends them
        except OSError:
            self.tx_errors += pending

    def on_arp(self, now: float) -> None:
        for _ in range(BATCH):
            try:
                frame = self.arp_sock.recv(FRAME_MAX)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # reported by the loop's POLLERR handling
                break
            if self.answer_for:
                asked = parse_arp(frame)
                if asked is not None and asked[0] == ARP_OP_REQUEST and asked[4] in self.answer_for:
                    # A NAT address the kernel does not hold: natpass answers for it (RFC 826 reply).
                    _op, sha, spa, _tha, tpa = asked
                    self._send_arp(build_arp(ARP_OP_REPLY, self.mac, self.mac, tpa, sha, spa, dst_mac=sha))
                    self.arp_replies += 1
                    for packet in self.arp.learn(spa, sha, now):
                        self.emit(packet, now)
                    self.learned(spa)
                    continue
            got = self.arp.on_frame(frame, now)
            if got is None:
                continue
            ip, waiting = got
            self.learned(ip)
            for packet in waiting:
                self.emit(packet, now)
        self.flush()

    def close(self) -> None:
        self._close_rings()
        self.ip_sock.close()
        self.arp_sock.close()


class LiveDatapath:
    """Moves packets between the LAN and WAN interfaces through ``engine`` until :meth:`stop`."""

    def __init__(self, engine: Any, lan_if: str, wan_if: str, lan_address: bytes | None,
                 wan_gateway: bytes | None, wan_addresses: tuple[bytes, ...],
                 clock: Callable[[], float] = time.monotonic, answer_wan_ping: bool = True,
                 rings: bool | None = None,
                 rx_programs: dict[str, list[tuple[int, int, int, int]]] | None = None) -> None:
        # rx_programs: per side ("lan"/"wan") a socket filter of its own (hybrid mode: what natpass owns)
        programs = rx_programs or {}
        if rings is None:
            # NATPASS_PACKET_RINGS=0: one syscall per packet (for comparisons and odd kernels).
            rings = os.environ.get("NATPASS_PACKET_RINGS", "1") != "0"
        self.engine = engine
        self.clock = clock
        self.lan_address = lan_address or packetsock.ipv4_address(lan_if)
        self.lan = Side("lan", lan_if, self.lan_address, None, rings, programs.get("lan"))
        try:
            self.wan = Side("wan", wan_if, None, wan_gateway, rings, programs.get("wan"))
        except BaseException:
            self.lan.close()
            raise
        self.wan_addresses: frozenset[bytes] = frozenset()
        self.set_wan_addresses(wan_addresses)
        self.answer_wan_ping = answer_wan_ping
        self.drops = 0
        self.oversize_frames = 0
        self._last_oversize_log = -1e9
        self.socket_errors = 0
        self.ring_holes = 0
        self._last_hole_log = -1e9
        self._last_error_log = -1e9
        self.replies = 0
        self.held = 0  # fragments kept until their first fragment arrives (not drops)
        self.pings_answered = 0
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self.loop_thread: threading.Thread | None = None
        self.periodic: list[Callable[[float], None]] = []

    def set_wan_addresses(self, addresses: tuple[bytes, ...]) -> None:
        """The NAT's WAN addresses; natpass answers ARP for those the kernel does not hold on the
        WAN interface (extra addresses of a pool need no ``ip addr add``)."""
        self.wan_addresses = frozenset(addresses)
        held = {iface.ip.packed for iface in _interface_addresses(self.wan.ifname)}
        self.wan.answer_for = frozenset(a for a in addresses if a not in held)
        if self.wan.answer_for:
            log.info("answering ARP on %s for %s", self.wan.ifname,
                     ", ".join(str(ipaddress.IPv4Address(a)) for a in sorted(self.wan.answer_for)))

    # ----- control from other threads ------------------------------------------------------------
    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the packet loop between batches and return its result (or raise its error)."""
        if self.loop_thread is None or threading.current_thread() is self.loop_thread \
                or not self.loop_thread.is_alive():
            return fn()
        fut: Future[Any] = Future()
        self._calls.append((fn, fut))
        self.wake()
        return fut.result(timeout)

    def set_rx_programs(self, programs: dict[str, list[tuple[int, int, int, int]]]) -> None:
        """Replace the socket filters (hybrid mode, after a reload changed what natpass owns):
        the kernel swaps each socket's filter in one step."""
        for side in (self.lan, self.wan):
            program = programs.get(side.name)
            if program is not None:
                packetsock.attach_filter(side.ip_sock, program)

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    def counters(self) -> dict[str, int]:
        return {
            "rx_lan": self.lan.rx, "rx_wan": self.wan.rx, "tx_lan": self.lan.tx, "tx_wan": self.wan.tx,
            "drops": self.drops, "tx_errors": self.lan.tx_errors + self.wan.tx_errors,
            "oversize_frames": self.oversize_frames,
            "icmp_replies": self.replies, "pings_answered": self.pings_answered,
            "fragments_held": self.held,
            "arp_requests": self.lan.arp.requests_sent + self.wan.arp.requests_sent,
            "arp_unresolved_drops": self.lan.arp.unresolved_drops + self.wan.arp.unresolved_drops,
            "socket_errors": self.socket_errors,
            "ring_holes": self.ring_holes,
            "arp_replies": self.lan.arp_replies + self.wan.arp_replies,
            "rings": int(self.lan.rx_ring is not None and self.wan.rx_ring is not None),
        }

    # ----- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        """The packet loop; returns after :meth:`stop` (from a signal handler or another thread)."""
        self.loop_thread = threading.current_thread()
        # The per-packet tuples would trigger a young-generation collection every few hundred
        # packets; everything long-lived is already allocated, so freeze it and collect rarely.
        gc.collect()
        gc.freeze()
        old_threshold = gc.get_threshold()
        gc.set_threshold(50_000, 20, 100)
        if os.environ.get("NATPASS_SHORT_SLICE", "1") != "0":
            log.debug("short scheduler slice: %s", request_short_slice())
        poller = select.poll()
        lan_fd = self.lan.ip_sock.fileno()
        wan_fd = self.wan.ip_sock.fileno()
        lan_arp = self.lan.arp_sock.fileno()
        wan_arp = self.wan.arp_sock.fileno()
        for fd in (lan_fd, wan_fd, lan_arp, wan_arp, self._wake_r):
            poller.register(fd, select.POLLIN)
        next_tick = 0.0
        clock = self.clock
        lan, wan = self.lan, self.wan
        drain_lan = self._drain_ring if lan.rx_ring is not None else self._drain
        drain_wan = self._drain_ring if wan.rx_ring is not None else self._drain
        try:
            while not self._stopping:
                events = poller.poll(TICK_S * 1000)
                now = clock()
                for fd, ev in events:
                    if ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                        self._socket_error(fd, now)
                        continue
                    if fd == lan_fd:
                        drain_lan(lan, True, now)
                        wan.flush()
                        lan.flush()  # hairpinned traffic and ICMP errors go back to the LAN
                    elif fd == wan_fd:
                        drain_wan(wan, False, now)
                        lan.flush()
                        wan.flush()
                    elif fd == lan_arp:
                        self.lan.on_arp(now)
                    elif fd == wan_arp:
                        self.wan.on_arp(now)
                    else:
                        try:
                            os.read(self._wake_r, 4096)
                        except BlockingIOError:
                            pass
                if self._calls:
                    self._run_calls()
                if now >= next_tick:
                    next_tick = now + TICK_S
                    self._tick(now)
                    lan.flush()
                    wan.flush()
        finally:
            self._run_calls()  # nobody waits forever on a call made while stopping
            self.loop_thread = None
            gc.set_threshold(*old_threshold)
            gc.unfreeze()

    def _socket_error(self, fd: int, now: float) -> None:
        """A socket reported an error (interface down or gone): clear it, log now and then, and
        back off a little so that a persistent error cannot spin the loop."""
        for side in (self.lan, self.wan):
            for sock in (side.ip_sock, side.arp_sock):
                if sock.fileno() == fd:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    self.socket_errors += 1
                    if now - self._last_error_log > 5.0:
                        self._last_error_log = now
                        log.warning("%s: socket error %s (%s); still running", side.ifname, err,
                                    os.strerror(err) if err else "hang-up")
        time.sleep(0.05)

    def _run_calls(self) -> None:
        while self._calls:
            fn, fut = self._calls.popleft()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: B036 - handed to the caller's thread
                fut.set_exception(exc)

    def _tick(self, now: float) -> None:
        for side in (self.lan, self.wan):
            if side.arp.tick(now):
                side.by_dst.clear()  # a next hop went silent: resolve again before sending
        try:
            self.engine.expire(now)
        except Exception:  # a timer bug must not stop the router
            log.exception("engine.expire failed")
        for fn in self.periodic:
            try:
                fn(now)
            except Exception:
                log.exception("periodic task failed")

    def _oversize(self, side: Side, length: int, now: float) -> None:
        """A frame larger than any wire carries: a TSO/GSO super-packet from a veth peer or one
        merged by GRO/LRO. It cannot be forwarded whole; count it and say what to change."""
        self.drops += 1
        self.oversize_frames += 1
        if now - self._last_oversize_log >= 10.0:
            self._last_oversize_log = now
            log.warning("%s: dropped a %d-byte frame (larger than the link MTU): a segmentation "
                        "offload super-packet. Switch TSO/GSO off on the sending host's veth "
                        "(ethtool -K IF tso off gso off) or GRO/LRO off on this NIC; %d so far",
                        side.ifname, length, self.oversize_frames)

    def _drain(self, side: Side, from_lan: bool, now: float) -> None:
        recv_into = side.ip_sock.recv_into
        process = self.engine.process
        lan, wan = self.lan, self.wan
        for _ in range(BATCH):
            buf = bytearray(FRAME_MAX)
            try:
                n = recv_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # interface down/gone: the loop logs it via POLLERR
                log.debug("%s: recv failed: %s", side.ifname, exc)
                return
            side.rx += 1
            if n < ETH_HEADER + 20:
                self.drops += 1
                continue
            total = (buf[16] << 8) | buf[17]
            if n == FRAME_MAX and ETH_HEADER + total > n:
                self._oversize(side, ETH_HEADER + total, now)
                continue
            end = ETH_HEADER + total
            if end < n:  # Ethernet padding after the IPv4 packet
                n = end
            del buf[n:]
            del buf[:ETH_HEADER]  # O(1) in CPython: moves the start of the bytearray
            try:
                code = process(buf, from_lan, now)
            except Exception:  # an engine bug drops one packet, never the router
                log.exception("engine.process failed")
                self.drops += 1
                continue
            if code == V.TO_WAN:
                wan.emit(buf, now)
            elif code == V.TO_LAN:
                lan.emit(buf, now)
            elif code == V.DROP:
                if not from_lan and self.answer_wan_ping and bytes(buf[16:20]) in self.wan_addresses \
                        and answer_echo(buf):
                    # Ping to the router's WAN address: the kernel cannot answer (its input is
                    # dropped), so natpass does.
                    self.pings_answered += 1
                    wan.emit(buf, now)
                else:
                    self.drops += 1
            elif code == V.HELD:
                self.held += 1
            else:
                self._special(code, buf, now)

    def _drain_ring(self, side: Side, from_lan: bool, now: float) -> None:
        """As :meth:`_drain`, reading frames straight from the mmap'ed RX ring (no syscall each).

        The common case (translated to the other side, next hop known, TX ring has room) is
        written inline: at a few microseconds per packet, a method call and a dozen attribute
        lookups are a measurable share (see bench/live.py).
        """
        ring = side.rx_ring
        assert ring is not None
        mv = ring.mv
        rmap = ring.map
        frames = ring.frames
        fsize = ring.frame_size  # hybrid mode with GRO on: larger slots for merged frames
        index = ring.index
        unpack = TPACKET2_HDR.unpack_from
        process = self.engine.process
        lan, wan = self.lan, self.wan
        out = wan if from_lan else lan
        tx = out.tx_ring
        fast_code = (V.TO_WAN if from_lan else V.TO_LAN) if tx is not None else -1
        by_dst = out.by_dst
        txmv = tx.mv if tx is not None else mv
        txframes = tx.frames if tx is not None else 0
        txi = tx.index if tx is not None else 0
        dst_of = _DST.unpack_from
        put_len = _LEN.pack_into
        sent = 0
        count = 0
        try:
            for _ in range(BATCH):
                off = index * fsize
                if not mv[off] & 1:  # TP_STATUS_USER clear: the kernel has not filled this frame yet
                    if count == 0:
                        index = self._ring_hole(side, ring, index, now)
                        if mv[index * fsize] & 1:
                            continue
                    break
                status, _len, snaplen, mac, net = unpack(mv, off)
                start = off + net
                n = snaplen - (net - mac)
                if n >= 20:
                    total = (mv[start + 2] << 8) | mv[start + 3]
                    if total < n:
                        n = total  # Ethernet padding after the IPv4 packet
                buf = bytearray(rmap[start:start + n])
                mv[off:off + 4] = _ZERO4  # TP_STATUS_KERNEL: the frame goes back to the kernel
                index += 1
                if index == frames:
                    index = 0
                count += 1
                if n < 20:
                    self.drops += 1
                    continue
                if _len > snaplen:
                    self._oversize(side, _len, now)
                    continue
                if status & TP_STATUS_CSUMNOTREADY:
                    complete_checksum(buf)
                try:
                    code = process(buf, from_lan, now)
                except Exception:  # an engine bug drops one packet, never the router
                    log.exception("engine.process failed")
                    self.drops += 1
                    continue
                if code == fast_code:
                    hdr = by_dst.get(dst_of(buf, 16)[0])
                    toff = txi * RING_FRAME
                    length = ETH_HEADER + len(buf)
                    if hdr is not None and txmv[toff] == TP_STATUS_AVAILABLE and length <= _TX_MAX:
                        data = toff + TPACKET2_TX_DATA
                        txmv[data:data + ETH_HEADER] = hdr
                        txmv[data + ETH_HEADER:data + length] = buf
                        put_len(txmv, toff + 4, length)
                        txmv[toff] = TP_STATUS_SEND_REQUEST
                        txi += 1
                        if txi == txframes:
                            txi = 0
                        sent += 1
                        continue
                # Anything else goes through the general methods, with the TX ring state in sync.
                if tx is not None:
                    tx.index = txi
                    out.tx_pending += sent
                    sent = 0
                if code == V.TO_WAN:
                    wan.emit(buf, now)
                elif code == V.TO_LAN:
                    lan.emit(buf, now)
                elif code == V.DROP:
                    if not from_lan and self.answer_wan_ping and bytes(buf[16:20]) in self.wan_addresses \
                            and answer_echo(buf):
                        self.pings_answered += 1
                        wan.emit(buf, now)
                    else:
                        self.drops += 1
                elif code == V.HELD:
                    self.held += 1
                else:
                    self._special(code, buf, now)
                if tx is not None:
                    txi = tx.index
        finally:
            ring.index = index
            side.rx += count
            if tx is not None:
                tx.index = txi
                out.tx_pending += sent

    def _ring_hole(self, side: Side, ring: packetsock.Ring, index: int, now: float) -> int:
        """The frame at ``index`` is still the kernel's although poll() said there is one to read.

        Normally the kernel is still copying into it (another CPU filled a later frame first) and
        it is ready within microseconds. Under a flood the kernel has been seen to leave one slot
        unfilled for good while filling those after it; reading in order would then wait for ever
        and the socket would starve. A frame unfilled for RING_HOLE_S while a later one is ready
        is skipped: returns the index to read from."""
        if side.stall_index != index:
            side.stall_index, side.stall_since = index, now
            return index
        if now - side.stall_since < RING_HOLE_S:
            return index
        mv, fsize, frames = ring.mv, ring.frame_size, ring.frames
        for step in range(1, frames):
            j = (index + step) % frames
            if mv[j * fsize] & 1:
                self.ring_holes += 1
                side.stall_index = -1
                if now - self._last_hole_log > 10.0:
                    self._last_hole_log = now
                    log.warning("%s: RX ring frame %d left unfilled by the kernel for %.0f ms; skipped "
                                "%d frame(s) to the next ready one (%d so far)", side.ifname, index,
                                (now - side.stall_since) * 1000, step, self.ring_holes)
                return j
        return index

    def _special(self, code: int, buf: bytearray, now: float) -> None:
        """Verdicts other than one packet to one side (the common case, handled inline)."""
        engine = self.engine
        if code & V.REPLY and engine.reply is not None:
            self.replies += 1
        for side, packet in V.packets_to_send(code, buf, engine.reply, engine.emitted):
            (self.wan if side == V.TO_WAN else self.lan).emit(packet, now)

    def close(self) -> None:
        self.lan.close()
        self.wan.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


__all__ = ["LiveDatapath", "answer_echo"]
