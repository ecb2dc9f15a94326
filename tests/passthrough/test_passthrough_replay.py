"""The real public captures replayed with each passthrough switch on, off, and off with strict.

What must pass and what must be dropped (by reason), as a consumer router with these switches
would do it. Captures are read in place from ../shared/captures.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from passthrough_multiclient import GRE_CLIENT, GRE_DATA, Client, derive, load, write
from passthrough_util import config

from natpass.datapath.pcap import iter_capture
from natpass.datapath.replay import replay_capture

ALL_OFF = {"pptp": False, "ipsec": False, "l2tp": False}
ALL_ON = {"pptp": True, "ipsec": True, "l2tp": True}


def replay(captures: Path, name: str, lan: str, **kw: bool) -> dict:
    return replay_capture(captures / name, config(**kw), lan=[lan]).summary


def count(path: Path, proto: int, port: int | None = None) -> int:
    n = 0
    for pkt in iter_capture(path):
        ip = pkt.ip
        if ip is None or len(ip) < 24 or ip[0] >> 4 != 4 or ip[9] != proto:
            continue
        ihl = (ip[0] & 15) * 4
        if port is None or port in (int.from_bytes(ip[ihl:ihl + 2], "big"),
                                    int.from_bytes(ip[ihl + 2:ihl + 4], "big")):
            n += 1
    return n


# ---------------------------------------------------------------------------------- PPTP

def test_replay_pptp_ndpi_control_connection_with_switch_on_brings_a_call_up_and_down(captures):
    s = replay(captures, "pptp/ndpi__pptp.pcap", "192.168.43.0/24", pptp=True)
    assert s["dropped"] == 0
    stats = s["helpers"]["pptp"]["stats"]
    assert stats["pptp:tunnels-up"] == 1 and stats["pptp:tunnels-down"] == 1
    assert stats["calls"] == 0 and "pptp:bad-cookie" not in stats


def test_replay_pptp_switch_off_passes_tcp_1723_and_strict_blocks_it(captures):
    name, lan = "pptp/ndpi__pptp.pcap", "192.168.43.0/24"
    off = replay(captures, name, lan)
    assert off["dropped"] == 0 and off["by_ip_protocol"]["tcp"]["out_forwarded"] > 0
    strict = replay(captures, name, lan, strict=True)
    tcp = strict["by_ip_protocol"]["tcp"]
    assert tcp["out_forwarded"] == tcp["in_forwarded"] == 0
    assert strict["drops"] == {"strict-blocked:pptp": count(captures / name, 6, 1723)}


def test_replay_pptp_tcpdump_gre_passes_only_with_the_switch_on(captures):
    name, lan = "pptp/tcpdump__pptp.pcap", "10.1.1.11/32"
    gre = count(captures / name, 47)
    assert gre > 0
    on = replay(captures, name, lan, pptp=True)
    assert on["dropped"] == 0 and on["by_ip_protocol"]["gre"]["out_forwarded"] == gre
    assert on["helpers"]["pptp"]["stats"]["gre_packets"] == gre  # the usage record's "used"
    off = replay(captures, name, lan, **ALL_OFF)
    assert off["drops"] == {"passthrough-disabled:pptp": gre}
    assert off["by_ip_protocol"]["tcp"]["out_dropped"] == 0
    # the other switches do not help PPTP
    assert replay(captures, name, lan, ipsec=True, l2tp=True)["drops"] == off["drops"]


def test_replay_pptp_gre_data_without_its_control_connection(captures, tmp_path):
    # The capture starts mid-tunnel: with the switch on GRE passes by address (one LAN host per
    # server). It was taken on the client with checksum offload (outbound IP checksums wrong), so
    # the checksums are recomputed first, nothing else changed.
    fixed = write(tmp_path / "gre.pcap", derive(load(captures / GRE_DATA), GRE_CLIENT, {},
                                                 Client(GRE_CLIENT)))
    on = replay_capture(fixed, config(pptp=True), lan=["172.16.30.0/24"]).summary
    assert on["dropped"] == 0 and on["forwarded"] == count(captures / GRE_DATA, 47)
    assert on["helpers"]["pptp"]["stats"]["pptp:gre-without-call"] == 1
    off = replay_capture(fixed, config(pptp=False), lan=["172.16.30.0/24"]).summary
    assert off["drops"] == {"passthrough-disabled:pptp": on["forwarded"]}
    raw_off = replay(captures, GRE_DATA, "172.16.30.0/24")  # as captured: nothing of it passes
    assert raw_off["forwarded"] == 0
    assert raw_off["drops"]["passthrough-disabled:pptp"] >= raw_off["by_ip_protocol"]["gre"]["in_dropped"] > 0


# ---------------------------------------------------------------------------------- IPsec

ESP_AH = [
    ("esp_ah/ndpi__esp.pcapng", "10.2.3.2/32"),
    ("esp_ah/ndpi__ah.pcapng", "10.2.3.2/32"),
    ("esp_ah/corelight__ipsec.cap", "192.168.140.205/32"),
    ("esp_ah/arkime__ah-esp.pcap", "10.0.0.1/32"),
    ("esp_ah/tcpdump__02-sunrise-sunset-esp.pcap", "192.1.2.23/32"),
]


@pytest.mark.parametrize("name,lan", ESP_AH)
def test_replay_raw_esp_and_ah_pass_only_with_the_ipsec_switch(captures, name, lan):
    esp, ah = count(captures / name, 50), count(captures / name, 51)
    on = replay(captures, name, lan, ipsec=True)
    assert on["dropped"] == 0
    stats = on["helpers"]["ipsec"]["stats"]
    assert (stats["ah_translated"], stats["ah_packets"], stats["esp_packets"]) == (ah, ah, esp)
    off = replay(captures, name, lan, pptp=True, l2tp=True)
    assert off["drops"] == {"passthrough-disabled:ipsec": esp + ah}
    assert off["by_ip_protocol"]["udp"]["out_dropped"] == off["by_ip_protocol"]["udp"]["in_dropped"] == 0
    strict = replay(captures, name, lan, strict=True)
    ike = count(captures / name, 17, 500)
    expect = {"passthrough-disabled:ipsec": esp + ah}
    if ike:
        expect["strict-blocked:ipsec"] = ike
    assert strict["drops"] == expect


IKE = [
    ("ike/tcpdump__ISAKMP_sa_setup.pcap", "10.0.0.1/32"),
    ("ike/corelight__ikev1-aggressive-mode.pcap", "192.168.12.1/32"),
    ("ike/corelight__ikev1-certs.pcap", "192.168.12.0/24"),
    ("ike/tcpdump__ikev2four_NULLlinktype.pcap", "192.168.1.2/32"),
]


@pytest.mark.parametrize("name,lan", IKE)
def test_replay_ike_on_port_500_is_ordinary_udp_unless_strict(captures, name, lan):
    for switches in (ALL_ON, ALL_OFF):
        s = replay(captures, name, lan, **switches)
        assert s["dropped"] == 0
    on = replay_capture(captures / name, config(ipsec=True), lan=[lan]).summary
    assert on["helpers"]["ipsec"]["stats"]["ike_sas"] >= 1
    strict = replay(captures, name, lan, strict=True)
    assert strict["forwarded"] == 0 and strict["drops"] == {"strict-blocked:ipsec": strict["packets"]}
    assert replay(captures, name, lan, ipsec=True, strict=True)["dropped"] == 0


NATT = [
    ("natt/scapy__ikev2_nat_t.pcapng", "192.168.245.0/24"),
    ("natt/flowcontainer__l2tp_over_ipsec_natt.pcap", "192.168.168.0/24"),
    ("natt/tcpdump__espudp1.pcap", "192.1.2.23/32"),
    ("wireguard/corelight__wireguard_port51194.pcap", "188.166.170.114/32"),
]


@pytest.mark.parametrize("name,lan", NATT)
def test_replay_natt_and_wireguard_keep_working_with_every_switch_off_and_strict(captures, name, lan):
    s = replay(captures, name, lan, strict=True)
    assert s["dropped"] == 0 and s["forwarded"] == s["packets"] - s["non_ipv4"]


def test_replay_ike_then_natt_strict_blocks_only_the_port_500_part(captures):
    name, lan = "natt/tcpdump__isakmp4500.pcap", "192.1.2.254/32"
    s = replay(captures, name, lan, strict=True)
    assert s["drops"] == {"strict-blocked:ipsec": count(captures / name, 17, 500)}
    assert s["forwarded"] == count(captures / name, 17, 4500)
    on = replay(captures, name, lan, ipsec=True)
    assert on["dropped"] == 0
    assert on["helpers"]["ipsec"]["stats"]["ipsec:natt-switch"] == 1


@pytest.mark.parametrize("name", ["openvpn/corelight__openvpn_udp_hmac_256.pcap",
                                  "openvpn/ndpi__openvpn_tcp_udp.pcap", "wireguard/ndpi__wireguard.pcap"])
def test_replay_openvpn_and_wireguard_are_not_touched_by_any_switch(captures, name):
    base = replay(captures, name, "auto")
    for kw in (ALL_ON, {**ALL_OFF, "strict": True}):
        s = replay(captures, name, "auto", **kw)
        assert (s["forwarded"], s["drops"]) == (base["forwarded"], base["drops"])
        assert not any(r.startswith(("passthrough-disabled", "strict-blocked")) for r in s["drops"])


# ---------------------------------------------------------------------------------- L2TP

def test_replay_l2tp_data_keeps_source_port_1701(captures, tmp_path):
    name = "l2tp/packetnet__l2tp_data_over_pppoe.pcap"
    for kw in ({"l2tp": True}, {"l2tp": False}):
        out = tmp_path / f"wan-{kw['l2tp']}.pcap"
        s = replay_capture(captures / name, config(**kw), lan=["auto"], out=out).summary
        assert s["dropped"] == 0
        (pkt,) = list(iter_capture(out))
        ihl = (pkt.ip[0] & 15) * 4
        assert int.from_bytes(pkt.ip[ihl:ihl + 2], "big") == 1701
    strict = replay_capture(captures / name, config(strict=True), lan=["auto"]).summary
    assert strict["drops"] == {"strict-blocked:l2tp": 1}


def test_replay_fuzzed_l2tp_control_stream_never_crashes(captures):
    name, lan = "l2tp/tcpdump__l2tp-avp-overflow.pcap", "127.0.0.229/32"
    for kw in (ALL_ON, ALL_OFF):
        s = replay(captures, name, lan, **kw)
        skipped = s["non_ipv4"] + s["lan_local"] + s.get("truncated", 0)
        assert s["forwarded"] + s["dropped"] + skipped == s["packets"]
        assert set(s["drops"]) <= {"malformed", "no-mapping"}
