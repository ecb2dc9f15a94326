"""Pieces of the live datapath that need no namespace: ARP cache, echo answers, checksum completion,
the nft table natpass installs."""

from __future__ import annotations

from scapy.all import ICMP, IP, TCP, UDP, raw  # type: ignore[import-untyped]

from natpass.datapath.arp import (
    ARP_GIVE_UP_S,
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    PENDING_PER_ADDRESS,
    ArpCache,
    build_arp,
    parse_arp,
)
from natpass.datapath.live import answer_echo, complete_checksum
from natpass.datapath.live_setup import nft_ruleset
from natpass.packets.checksum import verify

ROUTER_MAC = bytes.fromhex("020000000001")
HOST_MAC = bytes.fromhex("020000000002")
ROUTER_IP = bytes([192, 168, 1, 1])
HOST_IP = bytes([192, 168, 1, 10])


def _cache() -> tuple[ArpCache, list[bytes]]:
    sent: list[bytes] = []
    return ArpCache(ROUTER_MAC, ROUTER_IP, sent.append), sent


def test_arp_unknown_next_hop_is_asked_once_per_second_and_packets_wait() -> None:
    cache, sent = _cache()
    assert cache.lookup(HOST_IP, 0.0) is None
    cache.hold(HOST_IP, b"p1", 0.0)
    cache.hold(HOST_IP, b"p2", 0.5)
    assert len(sent) == 1  # one request, not one per packet
    op, sha, spa, _tha, tpa = parse_arp(sent[0])  # type: ignore[misc]
    assert (op, sha, spa, tpa) == (ARP_OP_REQUEST, ROUTER_MAC, ROUTER_IP, HOST_IP)
    assert sent[0][:6] == b"\xff" * 6 and len(sent[0]) == 60
    cache.tick(1.1)
    assert len(sent) == 2  # retried after a second
    reply = build_arp(ARP_OP_REPLY, HOST_MAC, HOST_MAC, HOST_IP, ROUTER_MAC, ROUTER_IP, dst_mac=ROUTER_MAC)
    ip, waiting = cache.on_frame(reply, 1.2)  # type: ignore[misc]
    assert ip == HOST_IP and waiting == [b"p1", b"p2"]
    assert cache.lookup(HOST_IP, 1.3) == HOST_MAC


def test_arp_gives_up_and_counts_the_packets_it_held() -> None:
    cache, _sent = _cache()
    for i in range(PENDING_PER_ADDRESS + 3):
        cache.hold(HOST_IP, bytes([i]), 0.0)
    assert cache.unresolved_drops == 3  # the queue is bounded
    cache.tick(ARP_GIVE_UP_S + 0.1)
    assert cache.unresolved_drops == PENDING_PER_ADDRESS + 3
    assert HOST_IP not in cache.pending


def test_arp_learns_a_host_that_asks_for_the_router_but_not_strangers() -> None:
    cache, _ = _cache()
    ask_us = build_arp(ARP_OP_REQUEST, HOST_MAC, HOST_MAC, HOST_IP, b"\x00" * 6, ROUTER_IP)
    cache.on_frame(ask_us, 0.0)
    assert cache.lookup(HOST_IP, 0.1) == HOST_MAC
    other = bytes([192, 168, 1, 20])
    ask_other = build_arp(ARP_OP_REQUEST, HOST_MAC, HOST_MAC, other, b"\x00" * 6, bytes([192, 168, 1, 30]))
    cache.on_frame(ask_other, 0.0)
    assert cache.lookup(other, 0.1) is None  # RFC 826: only merge, or add when we are the target


def test_arp_ignores_broadcast_sender_and_garbage() -> None:
    cache, _ = _cache()
    bogus = build_arp(ARP_OP_REPLY, HOST_MAC, b"\xff" * 6, HOST_IP, ROUTER_MAC, ROUTER_IP)
    cache.on_frame(bogus, 0.0)
    assert cache.lookup(HOST_IP, 0.0) is None
    assert cache.on_frame(b"\x00" * 20, 0.0) is None
    assert parse_arp(b"\x00" * 60) is None  # hardware type 0


def test_ping_to_the_wan_address_becomes_a_valid_echo_reply() -> None:
    request = IP(src="198.51.100.7", dst="203.0.113.1", ttl=50, id=7) / ICMP(type=8, id=0x1234, seq=3) / b"abcdefgh"
    buf = bytearray(raw(request))
    assert answer_echo(buf)
    reply = IP(bytes(buf))
    assert (reply.src, reply.dst) == ("203.0.113.1", "198.51.100.7")
    assert reply[ICMP].type == 0 and reply[ICMP].id == 0x1234 and reply[ICMP].seq == 3
    assert bytes(reply[ICMP].payload) == b"abcdefgh"
    assert verify(buf[:20]) and verify(buf[20:])  # IP header and ICMP checksums as a receiver checks them


def test_only_echo_requests_are_answered() -> None:
    for pkt in (IP(dst="203.0.113.1") / ICMP(type=0), IP(dst="203.0.113.1") / UDP(dport=7),
                IP(dst="203.0.113.1", flags="MF") / ICMP(type=8)):
        buf = bytearray(raw(pkt))
        before = bytes(buf)
        assert not answer_echo(buf)
        assert bytes(buf) == before


def test_checksum_partial_frames_are_completed_before_translation() -> None:
    for l4 in (UDP(sport=4000, dport=53) / b"query", TCP(sport=4000, dport=80, flags="S")):
        good = IP(raw(IP(src="192.168.1.10", dst="203.0.113.2") / l4))
        buf = bytearray(raw(good))
        proto_off = 20 + (6 if good.proto == 17 else 16)
        buf[proto_off:proto_off + 2] = b"\x12\x34"  # what offload leaves: not the real checksum
        complete_checksum(buf)
        assert bytes(buf) == raw(good)


def test_nft_table_drops_wan_input_and_lan_input_except_the_router_address() -> None:
    rules = nft_ruleset("wan0", "lan0", bytes([192, 168, 1, 1]))
    assert "table inet natpass" in rules
    assert "priority raw" in rules  # before conntrack: the kernel never tracks natpass's traffic
    assert 'iifname "wan0" meta nfproto ipv4 drop' in rules
    assert 'iifname "lan0" meta nfproto ipv4 ip daddr != 192.168.1.1 drop' in rules
    assert "delete table inet natpass" in rules  # idempotent: replaces a leftover table whole


def test_arp_entries_are_refreshed_and_a_silent_neighbour_is_forgotten() -> None:
    from natpass.datapath.arp import ARP_ENTRY_TTL_S

    cache, sent = _cache()
    cache.learn(HOST_IP, HOST_MAC, 0.0)
    assert cache.tick(ARP_ENTRY_TTL_S - 1) == [] and sent == []
    assert cache.tick(ARP_ENTRY_TTL_S + 0.5) == []
    assert len(sent) == 1 and parse_arp(sent[0])[4] == HOST_IP  # type: ignore[index]
    assert cache.lookup(HOST_IP, ARP_ENTRY_TTL_S + 0.6) == HOST_MAC  # still used while re-asking
    assert cache.tick(ARP_ENTRY_TTL_S + ARP_GIVE_UP_S + 1) == [HOST_IP]
    assert cache.lookup(HOST_IP, ARP_ENTRY_TTL_S + ARP_GIVE_UP_S + 1) is None


def test_arp_refresh_answered_keeps_the_entry() -> None:
    from natpass.datapath.arp import ARP_ENTRY_TTL_S

    cache, _sent = _cache()
    cache.learn(HOST_IP, HOST_MAC, 0.0)
    cache.tick(ARP_ENTRY_TTL_S + 0.5)
    reply = build_arp(ARP_OP_REPLY, HOST_MAC, HOST_MAC, HOST_IP, ROUTER_MAC, ROUTER_IP, dst_mac=ROUTER_MAC)
    cache.on_frame(reply, ARP_ENTRY_TTL_S + 0.7)
    assert cache.tick(ARP_ENTRY_TTL_S + ARP_GIVE_UP_S + 1) == []
    assert cache.lookup(HOST_IP, ARP_ENTRY_TTL_S + ARP_GIVE_UP_S + 1) == HOST_MAC
