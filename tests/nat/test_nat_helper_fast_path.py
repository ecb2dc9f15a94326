"""Helpers release flows from per-packet calls (ctx.fast_path): NAT-T runs on the fast path.

The engine's slow path is wrapped with a counter: an established ESP-in-UDP flow must not reach
it, while a flip of the switch and a second host's NAT-T with the same gateway bring the helper
back (IKE demultiplexing by SPI must keep working)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from natpass.nat import verdict as V
from natpass.nat.config import NatConfig, Passthrough
from natpass.packets import ike as K
from natpass.packets.checksum import internet_checksum
from natpass.packets.ipv4 import str_to_addr
from natpass.packets.udp import build_udp, verify_udp
from natpass.passthrough import build_engine

WAN = "203.0.113.1"
GATEWAY = "198.51.100.20"
HOST_A = "192.168.1.10"
HOST_B = "192.168.1.11"
NATT = 4500


def natt_engine(ipsec: bool) -> Any:
    cfg = NatConfig(wan_addresses=(str_to_addr(WAN),),
                    lan_prefixes=(ipaddress.IPv4Network("192.168.1.0/24"),),
                    passthrough=Passthrough(ipsec=ipsec), seed=3)
    eng = build_engine(cfg)
    eng.slow_calls = 0
    slow = eng._slow

    def counted(*args: Any) -> int:
        eng.slow_calls += 1
        return int(slow(*args))

    eng._slow = counted  # the instance attribute shadows the method process() calls
    return eng


def ike_msg(spi: bytes, response: bool = False) -> bytes:
    flags = K.FLAG_RESPONSE if response else K.FLAG_INITIATOR
    return K.NON_ESP_MARKER + bytes(K.build_ike(spi, b"R" * 8 if response else bytes(8),
                                                K.IKE_AUTH, flags))


def esp_in_udp(seq: int) -> bytes:
    return (0x0C0FFEE0).to_bytes(4, "big") + seq.to_bytes(4, "big") + bytes(40)  # SPI, seq, data


def sport(pkt: bytearray) -> int:
    return int.from_bytes(pkt[20:22], "big")


def well_formed(pkt: bytearray) -> bool:
    return internet_checksum(pkt[:20]) == 0 and verify_udp(pkt[12:16], pkt[16:20], pkt[20:])


def open_natt(eng: Any, host: str, spi: bytes) -> int:
    """IKE moved to 4500 (IKE_AUTH from the host, the gateway's answer); returns the WAN port."""
    out = build_udp(host, GATEWAY, NATT, NATT, ike_msg(spi))
    assert eng.process(out, True, 1.0) == V.TO_WAN
    wport = sport(out)
    back = build_udp(GATEWAY, WAN, NATT, wport, ike_msg(spi, response=True))
    assert eng.process(back, False, 1.0) == V.TO_LAN
    return wport


@pytest.mark.parametrize("switch_on", [False, True])
def test_established_natt_packets_skip_the_slow_path(switch_on: bool) -> None:
    eng = natt_engine(switch_on)
    wport = open_natt(eng, HOST_A, b"A" * 8)
    eng.slow_calls = 0
    for seq in range(1, 21):
        out = build_udp(HOST_A, GATEWAY, NATT, NATT, esp_in_udp(seq))
        assert eng.process(out, True, 2.0) == V.TO_WAN
        assert bytes(out[12:16]) == str_to_addr(WAN) and sport(out) == wport
        assert well_formed(out)
        back = build_udp(GATEWAY, WAN, NATT, wport, esp_in_udp(seq))
        assert eng.process(back, False, 2.0) == V.TO_LAN
        assert bytes(back[16:20]) == str_to_addr(HOST_A) and back[22:24] == NATT.to_bytes(2, "big")
        assert well_formed(back)
    assert eng.slow_calls == 0
    if switch_on:
        modes = {t["mode"] for t in eng.status()["helpers"]["ipsec"]["tunnels"]}
        assert "nat-t" in modes


def test_released_flow_gets_the_helper_back_when_the_switch_is_flipped() -> None:
    eng = natt_engine(False)
    ike = build_udp(HOST_A, GATEWAY, 500, 500, bytes(K.build_ike(b"S" * 8, bytes(8), K.IKE_SA_INIT,
                                                                  K.FLAG_INITIATOR)))
    sent = bytearray(ike)
    assert eng.process(sent, True, 1.0) == V.TO_WAN
    # switch off: ordinary UDP, so port 500 (outside the port range) is not preserved
    wport = int.from_bytes(sent[20:22], "big")
    assert 1024 <= wport
    back = build_udp(GATEWAY, WAN, 500, wport, bytes(K.build_ike(b"S" * 8, b"R" * 8, K.IKE_SA_INIT,
                                                                 K.FLAG_RESPONSE)))
    assert eng.process(back, False, 1.0) == V.TO_LAN
    assert eng.status()["helpers"]["ipsec"]["stats"]["ike_sas"] == 0  # switch off: nothing kept
    eng.set_switch("ipsec", True, 2.0)
    eng.slow_calls = 0
    assert eng.process(bytearray(ike), True, 2.0) == V.TO_WAN
    assert eng.slow_calls == 1  # the helper sees the flow's packets again...
    assert eng.status()["helpers"]["ipsec"]["stats"]["ike_sas"] == 1  # ...and indexes the SA


def test_second_natt_host_to_one_gateway_keeps_ike_demultiplexing_by_spi() -> None:
    eng = natt_engine(True)
    port_a = open_natt(eng, HOST_A, b"A" * 8)
    port_b = open_natt(eng, HOST_B, b"B" * 8)
    assert port_a == NATT and port_b != NATT
    # a gateway that sends B's IKE to WAN:4500 (A's flow): the SPI says it is B's
    stray = build_udp(GATEWAY, WAN, NATT, NATT, ike_msg(b"B" * 8, response=True))
    assert eng.process(stray, False, 3.0) == V.TO_LAN
    assert bytes(stray[16:20]) == str_to_addr(HOST_B)
    assert eng.counters["ipsec:ike-demux-by-spi"] == 1


def test_bare_l2tp_with_the_switch_off_runs_on_the_fast_path_until_switched_on() -> None:
    cfg = NatConfig(wan_addresses=(str_to_addr(WAN),),
                    lan_prefixes=(ipaddress.IPv4Network("192.168.1.0/24"),), seed=3)
    eng = build_engine(cfg)
    calls = 0
    slow = eng._slow

    def count(*args: Any) -> int:
        nonlocal calls
        calls += 1
        return int(slow(*args))

    eng._slow = count
    data = b"\x00\x02\x00\x05\x00\x07" + bytes(30)  # L2TP data message header, tunnel 5 session 7
    out = build_udp(HOST_A, GATEWAY, 1701, 1701, data)
    assert eng.process(out, True, 1.0) == V.TO_WAN
    wport = sport(out)
    back = build_udp(GATEWAY, WAN, 1701, wport, data)
    assert eng.process(back, False, 1.0) == V.TO_LAN
    calls = 0
    for _ in range(10):
        assert eng.process(build_udp(HOST_A, GATEWAY, 1701, 1701, data), True, 2.0) == V.TO_WAN
        assert eng.process(build_udp(GATEWAY, WAN, 1701, wport, data), False, 2.0) == V.TO_LAN
    assert calls == 0
    eng.set_switch("l2tp", True, 3.0)
    assert eng.process(build_udp(HOST_A, GATEWAY, 1701, 1701, data), True, 3.0) == V.TO_WAN
    assert calls == 1
    assert eng.status()["helpers"]["l2tp"]["stats"]["l2tp_packets"] >= 1
