"""ARP for the live datapath (RFC 826): next-hop MAC resolution with a small pending queue.

The kernel keeps the router's addresses on its interfaces and answers ARP requests for them itself;
natpass only needs the MAC of the next hop of each packet it emits. It learns from every ARP frame
it sees on the interface (requests and replies, RFC 826 "merge" rule) and asks when it does not
know, holding a few packets per address until the answer comes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

ETH_P_IP: Final = 0x0800
ETH_P_ARP: Final = 0x0806
ETH_HEADER: Final = 14
BROADCAST_MAC: Final = b"\xff" * 6

# RFC 826 packet layout for Ethernet/IPv4: hrd=1, pro=0x0800, hln=6, pln=4.
ARP_HRD_ETHERNET: Final = 1
ARP_OP_REQUEST: Final = 1
ARP_OP_REPLY: Final = 2
ARP_LEN: Final = 28
_ARP = struct.Struct("!HHBBH6s4s6s4s")

ARP_RETRY_S: Final = 1.0  # one request per second per address while unresolved
ARP_GIVE_UP_S: Final = 3.0  # RFC 1122 2.3.2.1 asks for rate-limited requests; drop the queue after this
ARP_ENTRY_TTL_S: Final = 60.0  # re-ask after this (the kernel's reachable time is 15-45 s; ours is looser)
PENDING_PER_ADDRESS: Final = 8  # RFC 1122 2.3.2.2: SHOULD keep at least one packet per unresolved address


def parse_arp(frame: bytes | bytearray | memoryview) -> tuple[int, bytes, bytes, bytes, bytes] | None:
    """(op, sender MAC, sender IP, target MAC, target IP) of an Ethernet/IPv4 ARP frame, else None."""
    if len(frame) < ETH_HEADER + ARP_LEN:
        return None
    hrd, pro, hln, pln, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, ETH_HEADER)
    if hrd != ARP_HRD_ETHERNET or pro != ETH_P_IP or hln != 6 or pln != 4:
        return None
    return op, sha, spa, tha, tpa


def build_arp(op: int, src_mac: bytes, sender_mac: bytes, sender_ip: bytes, target_mac: bytes,
              target_ip: bytes, dst_mac: bytes = BROADCAST_MAC) -> bytes:
    """One Ethernet frame carrying an ARP packet (padded to the 60-byte Ethernet minimum)."""
    frame = (dst_mac + src_mac + struct.pack("!H", ETH_P_ARP)
             + _ARP.pack(ARP_HRD_ETHERNET, ETH_P_IP, 6, 4, op, sender_mac, sender_ip, target_mac,
                         target_ip))
    return frame.ljust(60, b"\x00")


class ArpCache:
    """IPv4 -> MAC for one interface, with requests sent through ``send`` (a whole frame)."""

    def __init__(self, my_mac: bytes, my_ip: bytes, send: Callable[[bytes], object]) -> None:
        self.my_mac = my_mac
        self.my_ip = my_ip
        self.send = send
        self.entries: dict[bytes, tuple[bytes, float]] = {}
        self.pending: dict[bytes, list[bytes | bytearray]] = {}
        self.asked: dict[bytes, tuple[float, float]] = {}  # ip -> (first ask, last ask)
        self.requests_sent = 0
        self.unresolved_drops = 0

    def lookup(self, ip: bytes, now: float) -> bytes | None:
        entry = self.entries.get(ip)
        if entry is None:
            return None
        mac, learned = entry
        if now - learned > ARP_ENTRY_TTL_S:
            # Keep using it (no traffic stall) but refresh it in the background.
            self._ask(ip, now)
        return mac

    def learn(self, ip: bytes, mac: bytes, now: float) -> list[bytes | bytearray]:
        """Record ``ip`` at ``mac``; returns the packets (IP payloads) that were waiting for it."""
        if mac == BROADCAST_MAC or mac[0] & 1 or ip == b"\x00\x00\x00\x00":
            return []
        self.entries[ip] = (mac, now)
        self.asked.pop(ip, None)
        return self.pending.pop(ip, [])

    def on_frame(self, frame: bytes | bytearray | memoryview, now: float) -> tuple[bytes, list[bytes | bytearray]] | None:
        """Learn from one received ARP frame; returns (ip, waiting packets) when it resolved something."""
        arp = parse_arp(frame)
        if arp is None:
            return None
        _op, sha, spa, _tha, tpa = arp
        # RFC 826 merge: update a known sender; add it when the request/reply is for us.
        if spa in self.entries or spa in self.asked or tpa == self.my_ip:
            return spa, self.learn(spa, sha, now)
        return None

    def hold(self, ip: bytes, packet: bytes | bytearray, now: float) -> None:
        """Queue ``packet`` until ``ip`` resolves (bounded), asking for it."""
        queue = self.pending.setdefault(ip, [])
        if len(queue) >= PENDING_PER_ADDRESS:
            queue.pop(0)
            self.unresolved_drops += 1
        queue.append(bytes(packet))
        self._ask(ip, now)

    def _ask(self, ip: bytes, now: float) -> None:
        first, last = self.asked.get(ip, (now, -1e9))
        if now - last < ARP_RETRY_S:
            return
        self.asked[ip] = (first, now)
        self.requests_sent += 1
        self.send(build_arp(ARP_OP_REQUEST, self.my_mac, self.my_mac, self.my_ip, b"\x00" * 6, ip))

    def tick(self, now: float) -> list[bytes]:
        """Retry outstanding requests and give up (drop the queue) after ARP_GIVE_UP_S; re-ask
        entries older than ARP_ENTRY_TTL_S and forget those that stay silent. Returns the
        addresses forgotten (their cached headers must go)."""
        for ip, (first, _last) in list(self.asked.items()):
            if now - first > ARP_GIVE_UP_S:
                del self.asked[ip]
                dropped = self.pending.pop(ip, [])
                self.unresolved_drops += len(dropped)
            else:
                self._ask(ip, now)
        forgotten = []
        for ip, (_mac, learned) in list(self.entries.items()):
            age = now - learned
            if age > ARP_ENTRY_TTL_S + ARP_GIVE_UP_S:
                del self.entries[ip]  # RFC 1122 2.3.2.1: a silent neighbour's entry times out
                forgotten.append(ip)
            elif age > ARP_ENTRY_TTL_S and ip not in self.asked:
                self._ask(ip, now)
        return forgotten
