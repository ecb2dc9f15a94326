"""ICMP: query translation (RFC 5508), error translation field by field, TTL and MTU replies."""

from __future__ import annotations

from natutil import (
    ICMP,
    IP,
    LAN1,
    REMOTE,
    TCP,
    UDP,
    WAN1,
    Raw,
    a,
    checksums_ok,
    echo,
    eng,
    inb,
    out,
    parse,
    raw,
    tcp,
    udp,
)
from scapy.layers.inet import IPerror

from natpass.nat import verdict as V
from natpass.packets.checksum import internet_checksum, l4_checksum
from natpass.packets.icmp import may_send_error_about

ROUTER_MID = "198.51.100.254"


def test_rfc5508_req_echo_identifier_translated_both_ways():
    e = eng()
    b = echo(LAN1, REMOTE, 1234)
    assert out(e, b) == V.TO_WAN
    p = parse(b)
    assert p.src == WAN1 and checksums_ok(b)
    wid = p[ICMP].id
    r = echo(REMOTE, WAN1, wid, reply=True)
    assert inb(e, r) == V.TO_LAN
    q = parse(r)
    assert (q.dst, q[ICMP].id) == (LAN1, 1234)
    assert checksums_ok(r)


def test_rfc5508_two_hosts_same_identifier_get_distinct_ids():
    e = eng()
    b1 = echo(LAN1, REMOTE, 1)
    b2 = echo("192.168.1.20", REMOTE, 1)
    out(e, b1)
    out(e, b2)
    i1, i2 = parse(b1)[ICMP].id, parse(b2)[ICMP].id
    assert i1 != i2
    r = echo(REMOTE, WAN1, i2, reply=True)
    assert inb(e, r) == V.TO_LAN and parse(r).dst == "192.168.1.20"


def test_unsolicited_echo_reply_dropped():
    e = eng()
    assert inb(e, echo(REMOTE, WAN1, 5, reply=True)) == V.DROP
    assert e.last_drop == V.NO_MAPPING


def _udp_out(e, now=0.0):
    b = udp(LAN1, REMOTE, 5000, 53, b"query-bytes")
    assert out(e, b, now) == V.TO_WAN
    return b


def test_rfc5508_inbound_icmp_error_about_udp_translated_field_by_field():
    e = eng()
    sent = _udp_out(e)
    wport = parse(sent).sport
    err = raw(IP(src=ROUTER_MID, dst=WAN1) / ICMP(type=3, code=3) / bytes(sent))
    assert inb(e, err) == V.TO_LAN
    p = parse(err)
    assert p.dst == LAN1 and p.ttl == 63
    inner = p[IPerror]
    assert inner.src == LAN1 and inner.dst == REMOTE
    assert inner.sport == 5000 and inner.dport == 53
    # inner IP checksum correct
    ih = bytes(err[28:48])
    assert internet_checksum(ih) == 0
    # inner UDP checksum: what LAN1 originally put there (the datagram is quoted in full)
    inner_udp = bytearray(err[48:])
    stored = inner_udp[6] << 8 | inner_udp[7]
    inner_udp[6:8] = b"\x00\x00"
    assert stored == l4_checksum(a(LAN1), a(REMOTE), 17, inner_udp)
    # outer ICMP checksum over the whole message
    assert internet_checksum(bytes(err[20:])) == 0
    assert checksums_ok(err)
    assert wport != 0


def test_rfc5508_icmp_error_with_truncated_inner_tcp():
    e = eng()
    b = tcp(LAN1, REMOTE, 40000, 80, "S")
    out(e, b)
    err = raw(IP(src=ROUTER_MID, dst=WAN1) / ICMP(type=11, code=0) / bytes(b)[:28])  # 8 bytes
    assert inb(e, err) == V.TO_LAN
    p = parse(err)
    assert p[IPerror].src == LAN1
    assert bytes(err[48:50]) == (40000).to_bytes(2, "big")
    assert internet_checksum(bytes(err[28:48])) == 0
    assert internet_checksum(bytes(err[20:])) == 0


def test_rfc5508_icmp_error_about_echo():
    e = eng()
    b = echo(LAN1, REMOTE, 4321)
    out(e, b)
    err = raw(IP(src=ROUTER_MID, dst=WAN1) / ICMP(type=11) / bytes(b))
    assert inb(e, err) == V.TO_LAN
    inner = bytes(err[48:])
    assert inner[4:6] == (4321).to_bytes(2, "big")
    assert internet_checksum(inner) == 0
    assert internet_checksum(bytes(err[20:])) == 0
    assert checksums_ok(err)


def test_rfc5508_icmp_error_never_refreshes_mapping():
    e = eng()
    sent = _udp_out(e, 0.0)
    err = raw(IP(src=ROUTER_MID, dst=WAN1) / ICMP(type=3, code=3) / bytes(sent))
    assert inb(e, err, 200.0) == V.TO_LAN
    e.expire(302.0)
    assert len(list(e.flows())) == 0


def test_rfc4787_req12_rfc5508_icmp_error_does_not_kill_mapping():
    e = eng()
    sent = _udp_out(e, 0.0)
    err = raw(IP(src=ROUTER_MID, dst=WAN1) / ICMP(type=3, code=1) / bytes(sent))
    assert inb(e, err, 1.0) == V.TO_LAN
    assert inb(e, udp(REMOTE, WAN1, 53, parse(sent).sport), 2.0) == V.TO_LAN


def test_icmp_error_without_mapping_dropped():
    e = eng()
    fake = udp(WAN1, REMOTE, 1111, 53)
    err = raw(IP(src=ROUTER_MID, dst=WAN1) / ICMP(type=3, code=3) / bytes(fake))
    assert inb(e, err) == V.DROP and e.last_drop == V.NO_MAPPING


def test_rfc5508_outbound_icmp_error_from_lan_host_translated():
    e = eng(filtering="endpoint-independent")
    sent = _udp_out(e)
    wport = parse(sent).sport
    came = udp(REMOTE, WAN1, 53, wport, b"reply")
    assert inb(e, came) == V.TO_LAN
    # LAN1 answers the (now translated) packet with port unreachable
    err = raw(IP(src=LAN1, dst=REMOTE) / ICMP(type=3, code=3) / bytes(came))
    assert out(e, err) == V.TO_WAN
    p = parse(err)
    assert p.src == WAN1
    inner = p[IPerror]
    assert inner.dst == WAN1 and inner.dport == wport and inner.src == REMOTE
    inner_udp = bytearray(err[48:])
    stored = inner_udp[6] << 8 | inner_udp[7]
    inner_udp[6:8] = b"\x00\x00"
    assert stored == l4_checksum(a(REMOTE), a(WAN1), 17, inner_udp)
    assert checksums_ok(err)


def test_ttl_decremented_and_checksum_fixed():
    e = eng()
    b = udp(LAN1, REMOTE, 5000, 53, ttl=9)
    out(e, b)
    assert parse(b).ttl == 8 and checksums_ok(b)


def test_ttl_expiry_from_lan_answers_time_exceeded():
    e = eng()
    b = udp(LAN1, REMOTE, 5000, 53, ttl=1)
    orig = bytes(b)
    code = out(e, b)
    assert code == V.REPLY | V.TO_LAN
    assert e.last_drop == V.TTL_EXCEEDED and e.drops[V.TTL_EXCEEDED] == 1
    r = parse(e.reply)
    assert r.dst == LAN1 and r.src == WAN1
    assert r[ICMP].type == 11 and r[ICMP].code == 0
    assert bytes(r[IPerror])[:len(orig)] == orig  # quoted from the original, untranslated
    assert checksums_ok(e.reply)
    assert len(list(e.flows())) == 0


def test_ttl_expiry_reply_source_is_router_lan_address_when_configured():
    e = eng(router_lan_address=a("192.168.1.1"))
    out(e, udp(LAN1, REMOTE, 5000, 53, ttl=1))
    assert parse(e.reply).src == "192.168.1.1"


def test_ttl_expiry_from_wan_answers_from_wan_address():
    e = eng()
    sent = _udp_out(e)
    b = udp(REMOTE, WAN1, 53, parse(sent).sport, ttl=1)
    assert inb(e, b) == V.REPLY | V.TO_WAN
    r = parse(e.reply)
    assert r.src == WAN1 and r.dst == REMOTE and checksums_ok(e.reply)


def test_no_time_exceeded_about_an_icmp_error():
    e = eng()
    inner = udp(REMOTE, LAN1, 1, 2)
    err = raw(IP(src=LAN1, dst=REMOTE, ttl=1) / ICMP(type=3, code=3) / bytes(inner))
    assert out(e, err) == V.DROP and e.last_drop == V.TTL_EXCEEDED


def test_rfc1812_no_time_exceeded_to_a_source_that_names_no_host():
    """RFC 1812 4.3.2.7, one rule for the engine and natpass.packets.icmp: no error to a
    multicast, loopback or unspecified source, nor about a packet to a multicast address."""
    e = eng()
    for src in ("224.0.0.9", "127.0.0.1", "0.0.0.0", "240.0.0.1"):
        b = udp(src, WAN1, 53, 40000, ttl=1)
        assert inb(e, b) == V.DROP and e.last_drop == V.TTL_EXCEEDED, src
        assert may_send_error_about(b) is False
    to_group = udp(LAN1, "239.1.2.3", 5000, 5000, ttl=1)
    assert out(e, to_group) == V.DROP and e.last_drop == V.TTL_EXCEEDED
    ok = udp(LAN1, REMOTE, 5000, 53, ttl=1)
    assert out(e, ok) == V.REPLY | V.TO_LAN and may_send_error_about(ok)


def test_no_fragmentation_needed_about_a_multicast_datagram():
    e = eng(wan_mtu=1400)
    b = udp(LAN1, "239.1.2.3", 5000, 5000, b"x" * 1500, flags="DF")
    assert out(e, b) == V.DROP and e.last_drop == V.FRAG_NEEDED


def test_rfc1191_df_packet_over_wan_mtu_answers_fragmentation_needed():
    e = eng(wan_mtu=1400)
    b = udp(LAN1, REMOTE, 5000, 53, b"x" * 1500, flags="DF")
    code = out(e, b)
    assert code == V.REPLY | V.TO_LAN
    assert e.last_drop == V.FRAG_NEEDED
    r = parse(e.reply)
    assert r[ICMP].type == 3 and r[ICMP].code == 4
    assert r[ICMP].nexthopmtu == 1400
    assert r.dst == LAN1
    assert len(e.reply) <= 576
    assert checksums_ok(e.reply)


def test_non_df_oversize_packet_fragmented_to_wan_mtu():
    e = eng(wan_mtu=600)
    payload = bytes(range(256)) * 6
    b = udp(LAN1, REMOTE, 5000, 53, payload)
    code = out(e, b)
    assert code == V.MULTI | V.TO_WAN
    frags = e.emitted
    assert len(frags) == 3
    assert all(len(f) <= 600 for f in frags)
    for f in frags:
        p = parse(f)
        assert p.src == WAN1 and internet_checksum(bytes(f[:20])) == 0
    # reassemble and check the UDP datagram
    data = b"".join(bytes(f[20:]) for f in sorted(frags, key=lambda f: parse(f).frag))
    u = UDP(data)
    assert bytes(u.payload) == payload
    stored = u.chksum
    seg = bytearray(data)
    seg[6:8] = b"\x00\x00"
    assert stored == l4_checksum(a(WAN1), a(REMOTE), 17, seg)


def test_tcp_checksum_after_translation_matches_scapy():
    e = eng()
    b = tcp(LAN1, REMOTE, 40000, 443, "S", b"\x01" * 33)
    out(e, b)
    assert checksums_ok(b)
    p = parse(b)
    assert p[TCP].sport == 40000 and p.src == WAN1
    assert bytes(p[Raw].load) == b"\x01" * 33


def test_established_flows_keep_translating_correctly_packet_after_packet():
    """After the first exchange, packets take the engine's fast path: same results as scapy."""
    e = eng()
    s = tcp(LAN1, REMOTE, 40000, 443, "S")
    out(e, s)
    wport = parse(s).sport
    inb(e, tcp(REMOTE, WAN1, 443, wport, "SA"))
    u = udp(LAN1, REMOTE, 5000, 123, b"t")
    out(e, u)
    uport = parse(u).sport
    inb(e, udp(REMOTE, WAN1, 123, uport, b"r"))
    q = echo(LAN1, REMOTE, 55)
    out(e, q)
    qid = parse(q)[ICMP].id
    inb(e, echo(REMOTE, WAN1, qid, reply=True))
    for i in range(1, 6):
        data = bytes(range(i * 7 % 256)) * (i % 3 + 1)
        cases = [
            (True, tcp(LAN1, REMOTE, 40000, 443, "PA", data, ttl=10 + i), (WAN1, wport)),
            (False, tcp(REMOTE, WAN1, 443, wport, "A", data), (LAN1, 40000)),
            (True, udp(LAN1, REMOTE, 5000, 123, data, ttl=2 + i), (WAN1, uport)),
            (False, udp(REMOTE, WAN1, 123, uport, data), (LAN1, 5000)),
            (True, echo(LAN1, REMOTE, 55, seq=i), (WAN1, qid)),
            (False, echo(REMOTE, WAN1, qid, reply=True, seq=i), (LAN1, 55)),
        ]
        for from_lan, b, (addr, port) in cases:
            ttl = b[8]
            assert e.process(b, from_lan, float(i)) == (V.TO_WAN if from_lan else V.TO_LAN)
            p = parse(b)
            assert p.ttl == ttl - 1
            if from_lan:
                got = (p.src, p[ICMP].id if ICMP in p else p.sport)
            else:
                got = (p.dst, p[ICMP].id if ICMP in p else p.dport)
            assert got == (addr, port)
            assert checksums_ok(b)


def test_udp_zero_checksum_stays_zero():
    e = eng()
    b = udp(LAN1, REMOTE, 5000, 9, b"abc")
    b[26:28] = b"\x00\x00"
    out(e, b)
    b2 = udp(LAN1, REMOTE, 5000, 9, b"abcd")
    b2[26:28] = b"\x00\x00"
    out(e, b2)
    assert bytes(b[26:28]) == b"\x00\x00" and bytes(b2[26:28]) == b"\x00\x00"
    assert parse(b2).src == WAN1


def test_established_packets_skip_the_slow_path():
    """Performance guard: after the first exchange TCP data, UDP and ICMP echo packets are
    translated by process() itself, never by the general slow path."""
    e = eng()
    s = tcp(LAN1, REMOTE, 40000, 443, "S")
    out(e, s)
    inb(e, tcp(REMOTE, WAN1, 443, parse(s).sport, "SA"))
    u = udp(LAN1, REMOTE, 5000, 123, b"t")
    out(e, u)
    inb(e, udp(REMOTE, WAN1, 123, parse(u).sport, b"r"))
    q = echo(LAN1, REMOTE, 55)
    out(e, q)
    inb(e, echo(REMOTE, WAN1, parse(q)[ICMP].id, reply=True))
    wport, uport, qid = parse(s).sport, parse(u).sport, parse(q)[ICMP].id

    def no_slow(*args):
        raise AssertionError("slow path taken")
    e._slow = no_slow
    for b, from_lan in [(tcp(LAN1, REMOTE, 40000, 443, "PA", b"x"), True),
                        (tcp(REMOTE, WAN1, 443, wport, "A", b"y"), False),
                        (udp(LAN1, REMOTE, 5000, 123, b"t"), True),
                        (udp(REMOTE, WAN1, 123, uport, b"r"), False),
                        (echo(LAN1, REMOTE, 55, seq=2), True),
                        (echo(REMOTE, WAN1, qid, reply=True, seq=2), False)]:
        assert e.process(b, from_lan, 1.0) == (V.TO_WAN if from_lan else V.TO_LAN)
        assert checksums_ok(b)
    assert "malformed_exception" not in e.counters
