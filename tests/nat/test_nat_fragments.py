"""IP fragments: first fragment translated from its L4 header, later ones by datagram id, any order."""

from __future__ import annotations

from natutil import IP, LAN1, REMOTE, UDP, WAN1, a, eng, inb, out, parse
from scapy.layers.inet import fragment as scapy_fragment
from scapy.packet import Raw

from natpass.nat import verdict as V
from natpass.nat.config import Limits
from natpass.packets.checksum import internet_checksum, l4_checksum

PAYLOAD = bytes(range(256)) * 8


def frags(src, dst, sport, dport, ident=777):
    pkt = IP(src=src, dst=dst, id=ident) / UDP(sport=sport, dport=dport) / Raw(PAYLOAD)
    return [bytearray(bytes(f)) for f in scapy_fragment(pkt, fragsize=600)]


def reassemble(pieces, src, dst):
    pieces = sorted(pieces, key=lambda f: parse(f).frag)
    for f in pieces:
        assert internet_checksum(bytes(f[:20])) == 0
        assert parse(f).src == src and parse(f).dst == dst
    data = b"".join(bytes(f[20:]) for f in pieces)
    seg = bytearray(data)
    stored = seg[6] << 8 | seg[7]
    seg[6:8] = b"\x00\x00"
    assert stored == l4_checksum(a(src), a(dst), 17, seg)
    return UDP(data)


def test_rfc4787_req14_fragments_in_order_translated():
    e = eng()
    fs = frags(LAN1, REMOTE, 5000, 53)
    assert len(fs) >= 3
    got = []
    for f in fs:
        assert out(e, f) == V.TO_WAN
        got.append(f)
    u = reassemble(got, WAN1, REMOTE)
    assert u.sport == 5000 and bytes(u.payload) == PAYLOAD


def test_rfc4787_req14_fragments_out_of_order_held_then_released():
    e = eng()
    fs = frags(LAN1, REMOTE, 5000, 53)
    later = fs[1:][::-1]
    for f in later:
        assert out(e, f, 1.0) == V.HELD
        assert V.packets_to_send(V.HELD, f, e.reply, e.emitted) == []
    assert e.counters["fragments_held"] == len(later)
    assert e.drops == {}
    code = out(e, fs[0], 2.0)
    assert code == V.TO_WAN | V.MULTI
    assert e.emitted[0] is fs[0]
    assert len(e.emitted) == len(fs)
    sent = V.packets_to_send(code, fs[0], e.reply, e.emitted)
    assert [side for side, _ in sent] == [V.TO_WAN] * len(fs)
    assert [p for _, p in sent] == e.emitted
    u = reassemble(e.emitted, WAN1, REMOTE)
    assert bytes(u.payload) == PAYLOAD


def test_inbound_fragments_translated_to_lan_host():
    e = eng()
    b = bytearray(bytes(IP(src=LAN1, dst=REMOTE) / UDP(sport=5000, dport=53) / Raw(b"q")))
    out(e, b)
    wport = parse(b).sport
    fs = frags(REMOTE, WAN1, 53, wport, ident=4242)
    assert inb(e, fs[2]) == V.HELD
    assert inb(e, fs[0]) == V.TO_LAN | V.MULTI
    rest = list(e.emitted)
    for f in fs[1:]:
        if f is not fs[2]:
            assert inb(e, f) == V.TO_LAN
            rest.append(f)
    assert len(rest) == len(fs)
    u = reassemble(rest, REMOTE, LAN1)
    assert u.dport == 5000


def test_held_fragments_time_out():
    e = eng()
    fs = frags(LAN1, REMOTE, 5000, 53)
    out(e, fs[1], 0.0)
    e.expire(31.0)
    assert e.drops[V.FRAGMENT_TIMEOUT] == 1
    # the first fragment alone goes out, nothing else is released
    assert out(e, fs[0], 32.0) == V.TO_WAN


def test_held_fragments_bounded():
    e = eng(limits=Limits(max_fragments=2))
    for ident in range(5):
        fs = frags(LAN1, REMOTE, 5000 + ident, 53, ident=ident + 1)
        out(e, fs[1], 0.0)
    assert e.status()["fragments_held"] == 2
    assert e.drops[V.FRAGMENT_EVICTED] == 3


def test_tiny_first_fragment_without_l4_header_is_malformed():
    e = eng()
    b = bytearray(bytes(IP(src=LAN1, dst=REMOTE, flags="MF", proto=6) / Raw(b"\x00" * 8)))
    assert out(e, b) == V.DROP and e.last_drop == V.MALFORMED
