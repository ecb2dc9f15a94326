"""Malformed and mutated input never raises; what comes out keeps correct checksums."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from natutil import LAN1, LAN2, REMOTE, WAN1, checksums_ok, echo, eng, tcp, udp
from scapy.layers.inet import ICMP, IP

from natpass.nat import verdict as V
from natpass.nat.config import PortForward
from natpass.packets.checksum import internet_checksum

VALID_CODES = {V.DROP, V.HELD, V.TO_WAN, V.TO_LAN, V.REPLY | V.TO_WAN, V.REPLY | V.TO_LAN,
               V.MULTI | V.TO_WAN, V.MULTI | V.TO_LAN}


def seeds():
    """Valid packets of every kind, both directions, against an engine that has flows."""
    return [
        (True, udp(LAN1, REMOTE, 5000, 53, b"q" * 11)),
        (True, tcp(LAN1, REMOTE, 40000, 80, "S")),
        (True, tcp(LAN1, REMOTE, 40000, 80, "A", b"data")),
        (True, echo(LAN1, REMOTE, 9)),
        (False, udp(REMOTE, WAN1, 53, 5000, b"r" * 7)),
        (False, tcp(REMOTE, WAN1, 80, 40000, "SA")),
        (False, echo(REMOTE, WAN1, 9, reply=True)),
        (False, bytearray(bytes(IP(src="198.51.100.1", dst=WAN1) / ICMP(type=3, code=3)
                                / bytes(udp(WAN1, REMOTE, 5000, 53, b"q" * 11))))),
        (True, udp(LAN2, WAN1, 6000, 8080, b"hairpin")),
        (True, bytearray(bytes(IP(src=LAN1, dst=REMOTE, flags="MF", id=5)
                               / bytes(udp(LAN1, REMOTE, 1, 2, b"z" * 40))[20:]))),
    ]


def primed():
    e = eng(forwards=(PortForward(proto=17, wan_port=8080, lan_addr=bytes([192, 168, 1, 30]),
                                  lan_port=80),), filtering="endpoint-independent")
    for from_lan, b in seeds()[:4]:
        e.process(bytearray(b), from_lan, 0.0)
    return e


def check_output(e, code, buf, in_ok):
    assert code in VALID_CODES
    assert "malformed_exception" not in e.counters
    if code == V.DROP:
        assert e.last_drop is not None
        return
    outs = [p for _, p in V.packets_to_send(code, buf, e.reply, e.emitted)]
    assert outs or code == V.HELD
    for o in outs:
        ihl = (o[0] & 15) * 4
        assert internet_checksum(bytes(o[:ihl])) == 0
        if code & V.REPLY:
            assert checksums_ok(o)
        elif in_ok and not code & V.MULTI:
            assert checksums_ok(o)


def scapy_ok(b):
    try:
        return checksums_ok(b)
    except Exception:
        return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=120), st.booleans())
def test_random_bytes_never_raise(data, from_lan):
    e = primed()
    buf = bytearray(data)
    code = e.process(buf, from_lan, 1.0)
    assert code in VALID_CODES
    assert "malformed_exception" not in e.counters


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 9), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)),
                                   max_size=4),
       st.booleans(), st.integers(-8, 8))
def test_mutated_valid_packets_never_raise_and_keep_checksums(which, muts, fix_ip, cut):
    e = primed()
    from_lan, b = seeds()[which]
    buf = bytearray(b)
    for pos, val in muts:
        if pos < len(buf):
            buf[pos] = val
    if cut < 0:
        del buf[cut:]
    elif cut > 0:
        buf += bytes(cut)
    if fix_ip and len(buf) >= 20 and 20 <= (buf[0] & 15) * 4 <= len(buf):
        ihl = (buf[0] & 15) * 4
        buf[10:12] = b"\x00\x00"
        c = internet_checksum(bytes(buf[:ihl]))
        buf[10:12] = c.to_bytes(2, "big")
    in_ok = scapy_ok(buf) and (buf[2] << 8 | buf[3]) == len(buf) if len(buf) >= 4 else False
    code = e.process(buf, from_lan, 1.0)
    check_output(e, code, buf, in_ok)


def test_bad_ip_checksum_is_malformed():
    e = eng()
    b = udp(LAN1, REMOTE, 5000, 53)
    b[10] ^= 0x55
    assert e.process(b, True, 0.0) == V.DROP and e.last_drop == V.MALFORMED


def test_total_length_beyond_buffer_is_malformed():
    e = eng()
    b = udp(LAN1, REMOTE, 5000, 53)
    del b[-3:]
    assert e.process(b, True, 0.0) == V.DROP and e.last_drop == V.MALFORMED


def test_bad_ihl_is_malformed():
    e = eng()
    b = udp(LAN1, REMOTE, 5000, 53)
    b[0] = 0x44
    assert e.process(b, True, 0.0) == V.DROP and e.last_drop == V.MALFORMED


def test_truncated_tcp_header_is_malformed():
    e = eng()
    b = bytearray(bytes(IP(src=LAN1, dst=REMOTE, proto=6) / (b"\x00" * 12)))
    assert e.process(b, True, 0.0) == V.DROP and e.last_drop == V.MALFORMED


def test_link_padding_after_datagram_is_trimmed():
    e = eng()
    b = udp(LAN1, REMOTE, 5000, 53, b"a")
    n = len(b)
    b += b"\x00" * 6
    assert e.process(b, True, 0.0) == V.TO_WAN
    assert len(b) == n and checksums_ok(b)
