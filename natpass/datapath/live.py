"""The live Linux datapath: real Ethernet frames on two interfaces, through the engine, and back out.

Design (docs/DATAPATH.md): one AF_PACKET socket per interface bound to ETH_P_IP (it sees the frames
received for our MAC before netfilter, never the ones sent), one per interface for ARP. Each IPv4
packet is handed to ``engine.process``; the verdict says on which side it leaves. Next-hop MACs come
from natpass's own ARP cache (:mod:`natpass.datapath.arp`). The kernel does no forwarding and no NAT
(``ip_forward = 0`` and an nftables table that drops IPv4 input, see :mod:`live_setup`).

The loop is single-threaded; everything else (admin API, reload, switches) reaches the engine
through :meth:`LiveDatapath.call`, which runs a function between two batches of packets.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import select
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from natpass.datapath import packetsock
from natpass.datapath.arp import ETH_HEADER, ETH_P_ARP, ETH_P_IP, ArpCache
from natpass.nat import verdict as V
from natpass.packets.checksum import internet_checksum

log = logging.getLogger("natpass.datapath")

FRAME_MAX = 2048  # Ethernet MTU 1500 + header; GRO is switched off so nothing larger arrives
BATCH = 64  # frames read from one socket before looking at the other and at the clock
TICK_S = 0.25  # ARP retries and engine timers run at least this often
ICMP_ECHO_REQUEST = 8  # RFC 792
ICMP_ECHO_REPLY = 0
_ETH_IP = ETH_P_IP.to_bytes(2, "big")


def _onlink_prefixes(ifname: str) -> list[ipaddress.IPv4Network]:
    """IPv4 prefixes configured on ``ifname`` (on-link destinations need no gateway)."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", ifname], capture_output=True,
                         text=True, timeout=10, check=False).stdout
    nets = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(ipaddress.IPv4Interface(parts[parts.index("inet") + 1]).network)
    return nets


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


class Side:
    """One interface: its sockets, MAC, ARP cache and next-hop choice."""

    def __init__(self, name: str, ifname: str, skip_dst: bytes | None, gateway: bytes | None) -> None:
        self.name = name
        self.ifname = ifname
        self.mac = packetsock.mac_address(ifname)
        self.ip = packetsock.ipv4_address(ifname) or b"\x00\x00\x00\x00"
        self.onlink = _onlink_prefixes(ifname)
        self.gateway = gateway
        self.ip_sock = packetsock.open_packet_socket(ifname, ETH_P_IP, skip_dst=skip_dst)
        self.arp_sock = packetsock.open_packet_socket(ifname, ETH_P_ARP)
        self.arp = ArpCache(self.mac, self.ip, self._send_arp)
        self.tail = self.mac + _ETH_IP
        self.headers: dict[bytes, bytes] = {}  # next hop -> ready Ethernet header
        self.rx = 0
        self.tx = 0
        self.tx_errors = 0

    def _send_arp(self, frame: bytes) -> None:
        try:
            self.arp_sock.send(frame)
        except OSError:
            self.tx_errors += 1

    def next_hop(self, dst: bytes) -> bytes:
        if self.gateway is None:
            return dst
        addr = ipaddress.IPv4Address(dst)
        if any(addr in net for net in self.onlink):
            return dst
        return self.gateway

    def emit(self, packet: bytes | bytearray, now: float) -> None:
        nh = self.next_hop(bytes(packet[16:20]))
        hdr = self.headers.get(nh)
        if hdr is None:
            mac = self.arp.lookup(nh, now)
            if mac is None:
                self.arp.hold(nh, packet, now)
                return
            hdr = self.headers[nh] = mac + self.tail
        try:
            self.ip_sock.send(hdr + packet)
            self.tx += 1
        except OSError:
            self.tx_errors += 1

    def on_arp(self, now: float) -> None:
        for _ in range(BATCH):
            try:
                frame = self.arp_sock.recv(FRAME_MAX)
            except (BlockingIOError, InterruptedError):
                return
            got = self.arp.on_frame(frame, now)
            if got is None:
                continue
            ip, waiting = got
            entry = self.arp.entries.get(ip)
            if entry is not None:
                self.headers[ip] = entry[0] + self.tail
            for packet in waiting:
                self.emit(packet, now)

    def close(self) -> None:
        self.ip_sock.close()
        self.arp_sock.close()


class LiveDatapath:
    """Moves packets between the LAN and WAN interfaces through ``engine`` until :meth:`stop`."""

    def __init__(self, engine: Any, lan_if: str, wan_if: str, lan_address: bytes | None,
                 wan_gateway: bytes | None, wan_addresses: tuple[bytes, ...],
                 clock: Callable[[], float] = time.monotonic, answer_wan_ping: bool = True) -> None:
        self.engine = engine
        self.clock = clock
        self.lan_address = lan_address or packetsock.ipv4_address(lan_if)
        self.lan = Side("lan", lan_if, self.lan_address, None)
        self.wan = Side("wan", wan_if, None, wan_gateway)
        self.wan_addresses = frozenset(wan_addresses)
        self.answer_wan_ping = answer_wan_ping
        self.drops = 0
        self.replies = 0
        self.pings_answered = 0
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self.loop_thread: threading.Thread | None = None
        self.periodic: list[Callable[[float], None]] = []

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

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    def counters(self) -> dict[str, int]:
        return {
            "rx_lan": self.lan.rx, "rx_wan": self.wan.rx, "tx_lan": self.lan.tx, "tx_wan": self.wan.tx,
            "drops": self.drops, "tx_errors": self.lan.tx_errors + self.wan.tx_errors,
            "icmp_replies": self.replies, "pings_answered": self.pings_answered,
            "arp_requests": self.lan.arp.requests_sent + self.wan.arp.requests_sent,
            "arp_unresolved_drops": self.lan.arp.unresolved_drops + self.wan.arp.unresolved_drops,
        }

    # ----- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        """The packet loop; returns after :meth:`stop` (from a signal handler or another thread)."""
        self.loop_thread = threading.current_thread()
        poller = select.poll()
        lan_fd = self.lan.ip_sock.fileno()
        wan_fd = self.wan.ip_sock.fileno()
        lan_arp = self.lan.arp_sock.fileno()
        wan_arp = self.wan.arp_sock.fileno()
        for fd in (lan_fd, wan_fd, lan_arp, wan_arp, self._wake_r):
            poller.register(fd, select.POLLIN)
        next_tick = 0.0
        clock = self.clock
        try:
            while not self._stopping:
                events = poller.poll(TICK_S * 1000)
                now = clock()
                for fd, _ev in events:
                    if fd == lan_fd:
                        self._drain(self.lan, True, now)
                    elif fd == wan_fd:
                        self._drain(self.wan, False, now)
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
        finally:
            self._run_calls()  # nobody waits forever on a call made while stopping
            self.loop_thread = None

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
        self.lan.arp.tick(now)
        self.wan.arp.tick(now)
        try:
            self.engine.expire(now)
        except Exception:  # a timer bug must not stop the router
            log.exception("engine.expire failed")
        for fn in self.periodic:
            try:
                fn(now)
            except Exception:
                log.exception("periodic task failed")

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
            side.rx += 1
            if n < ETH_HEADER + 20:
                self.drops += 1
                continue
            total = (buf[16] << 8) | buf[17]
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
            else:
                self._special(code, now)

    def _special(self, code: int, now: float) -> None:
        side = self.wan if code & 3 == V.TO_WAN else self.lan
        if code & V.REPLY:
            reply = self.engine.reply
            if reply is not None:
                self.replies += 1
                side.emit(reply, now)
        if code & V.MULTI:
            for packet in self.engine.emitted:
                side.emit(packet, now)

    def close(self) -> None:
        self.lan.close()
        self.wan.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


__all__ = ["LiveDatapath", "answer_echo"]
