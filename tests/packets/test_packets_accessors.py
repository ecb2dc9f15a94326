"""The by-offset accessors meant for the engine's hot path agree with the full parsers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from natpass.packets import esp, gre, ike, ipv4, parse_ipv4
from natpass.packets.udp import build_udp


@settings(max_examples=50, deadline=None)
@given(src=st.binary(min_size=4, max_size=4), dst=st.binary(min_size=4, max_size=4), ttl=st.integers(0, 255),
       opts=st.sampled_from([b"", b"\x01\x01\x01\x01", b"\x94\x04\x00\x00\x01\x01\x01\x00"]))
def test_ipv4_accessors_match_parse(src: bytes, dst: bytes, ttl: int, opts: bytes) -> None:
    pkt = ipv4.build_ipv4(src, dst, 17, b"abc", ttl=ttl, options=opts)
    h = parse_ipv4(pkt)
    view = memoryview(pkt)
    assert ipv4.ihl_bytes(view) == h.header_len and ipv4.get_proto(view) == h.proto
    assert ipv4.get_src(view) == h.src and ipv4.get_dst(view) == h.dst
    assert ipv4.get_total_length(view) == h.total_length and ipv4.get_ttl(view) == h.ttl


def test_gre_esp_ike_accessors() -> None:
    g = gre.build_gre_v1(0x1234, b"x")
    assert gre.gre_version(g) == 1 and gre.gre_version(gre.build_gre(0x800)) == 0
    e = esp.build_esp(0xDEADBEEF, 1)
    assert esp.get_spi(e) == 0xDEADBEEF == esp.parse_esp(e).spi
    v1 = ike.build_ike(b"\x01" * 8, bytes(8), ike.V1_IDENTITY_PROTECTION, major=1)
    v2 = ike.build_ike(b"\x01" * 8, bytes(8), ike.IKE_SA_INIT)
    assert (ike.ike_version(v1), ike.ike_version(v2)) == (1, 2)
    pkt = build_udp("192.0.2.1", "192.0.2.2", 500, 500, v2)
    assert ike.ike_version(pkt, 28) == 2
