"""Everything the passthrough helpers emit decodes in tshark with correct checksums, and PPTP
messages keep their type while carrying the translated Call IDs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from passthrough_multiclient import Client, ipsec_clients, pptp_clients, write
from passthrough_util import config
from tshark_check import bad_checksums, frame_count, tshark_available

from natpass.datapath.replay import replay_capture

pytestmark = pytest.mark.skipif(not tshark_available(), reason="tshark is not installed")

A, B, C = "192.168.1.10", "192.168.1.11", "192.168.1.12"


def fields(pcap: Path, display_filter: str, *names: str) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(pcap), "-Y", display_filter, "-T", "fields", "-E", "occurrence=f"]
    for n in names:
        cmd += ["-e", n]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.fixture(scope="module")
def pptp_replayed(captures: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pptp")
    clients = [Client(A), Client(B, offset=0.3, server_call_delta=1), Client(C, offset=0.6, server_call_delta=2)]
    src = write(d / "in.pcap", pptp_clients(captures, clients))
    res = replay_capture(src, config(pptp=True), lan=["192.168.1.0/24"], out=d / "wan.pcap",
                         lan_out=d / "lan.pcap")
    assert res.summary["dropped"] == 0
    return {"in": src, "wan": d / "wan.pcap", "lan": d / "lan.pcap"}


def test_pptp_translated_traffic_decodes_with_good_checksums(pptp_replayed):
    for side in ("wan", "lan"):
        assert frame_count(pptp_replayed[side]) > 0
        assert bad_checksums(pptp_replayed[side]) == []


def test_pptp_messages_keep_their_type_and_carry_the_translated_call_ids(pptp_replayed):
    names = ("ip.src", "pptp.type", "pptp.control_message_type", "pptp.call_id", "pptp.peer_call_id")
    sent = fields(pptp_replayed["in"], "pptp && ip.src==192.168.1.0/24", *names)
    wan = fields(pptp_replayed["wan"], "pptp && ip.src==203.0.113.1", *names)
    assert [r[1:3] for r in wan] == [r[1:3] for r in sent]  # same messages, same order, same types
    ocrq_ids = [int(r[3]) for r in wan if r[2] == "7"]
    assert len(ocrq_ids) == 3 and len(set(ocrq_ids)) == 3  # three clients, Call ID 0 each
    (client_call,) = {int(r[3]) for r in sent if r[2] == "7"}  # every client picked the same
    # the server answers each WAN id; the LAN hosts get their own id back
    ocrp_wan = fields(pptp_replayed["wan"], "pptp.control_message_type == 8", *names)
    assert sorted(int(r[4]) for r in ocrp_wan) == sorted(ocrq_ids)
    ocrp_lan = fields(pptp_replayed["lan"], "pptp.control_message_type == 8", *names)
    assert [int(r[4]) for r in ocrp_lan] == [client_call] * 3
    sli_lan = fields(pptp_replayed["lan"], "pptp.control_message_type == 15", *names)
    assert sli_lan and {int(r[4]) for r in sli_lan} == {client_call}


def test_pptp_gre_keys_in_tshark(pptp_replayed):
    wan_in = fields(pptp_replayed["wan"], "gre && ip.dst==203.0.113.1", "gre.key.call_id")
    lan_in = fields(pptp_replayed["lan"], "gre && ip.src==198.51.100.7", "ip.dst", "gre.key.call_id")
    assert len({r[0] for r in wan_in}) == 3  # one WAN id per client
    sent = fields(pptp_replayed["in"], "gre && ip.src==198.51.100.7", "gre.key.call_id")
    assert {r[1] for r in lan_in} == {r[0] for r in sent} and len({r[0] for r in sent}) == 1
    assert {r[0] for r in lan_in} == {A, B, C}


def test_ipsec_translated_traffic_decodes_with_good_checksums(captures, tmp_path):
    src = write(tmp_path / "in.pcap", ipsec_clients(captures, [Client(A), Client(B, offset=60.0, spi_tag=0x11)]))
    replay_capture(src, config(ipsec=True), lan=["192.168.1.0/24"], out=tmp_path / "wan.pcap",
                   lan_out=tmp_path / "lan.pcap")
    for side in ("wan.pcap", "lan.pcap"):
        assert bad_checksums(tmp_path / side) == []
    esp_lan = fields(tmp_path / "lan.pcap", "esp && ip.dst==192.168.1.0/24", "ip.dst", "esp.spi")
    by_host: dict[str, set[str]] = {}
    for dst, spi in esp_lan:
        by_host.setdefault(dst, set()).add(spi)
    assert set(by_host) == {A, B} and not by_host[A] & by_host[B]


@pytest.mark.parametrize("name,lan", [
    ("pptp/ndpi__pptp.pcap", "192.168.43.0/24"),
    ("pptp/tcpdump__pptp.pcap", "10.1.1.11/32"),
    ("esp_ah/ndpi__ah.pcapng", "10.2.3.2/32"),
    ("esp_ah/corelight__ipsec.cap", "192.168.140.205/32"),
    ("natt/tcpdump__isakmp4500.pcap", "192.1.2.254/32"),
    ("l2tp/packetnet__l2tp_data_over_pppoe.pcap", "109.6.1.72/32"),
])
def test_real_captures_replayed_with_every_switch_on_decode_cleanly(captures, tmp_path, name, lan):
    wan, lan_side = tmp_path / "wan.pcap", tmp_path / "lan.pcap"
    s = replay_capture(captures / name, config(pptp=True, ipsec=True, l2tp=True), lan=[lan], out=wan,
                       lan_out=lan_side).summary
    assert s["dropped"] == 0
    for side in (wan, lan_side):
        assert frame_count(side) > 0
        assert bad_checksums(side) == []
