"""Every passthrough helper's state survives a restart: the real captures replayed with the
engine saved (natpass.nat.snapshot, through JSON) and restored at several points give the same
verdicts and the same bytes as an uninterrupted replay, PPTP calls, ESP SPIs, IKE routes, NAT-T
and L2TP included."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path

import pytest
from passthrough_util import config

from natpass.datapath.pcap import iter_capture
from natpass.datapath.replay import infer_lan, repair_offload
from natpass.nat import snapshot as S
from natpass.nat import verdict as V
from natpass.passthrough import build_engine

CASES = [
    ("pptp/ndpi__pptp.pcap", "192.168.43.0/24"),
    ("pptp/tcpdump__pptp.pcap", "10.1.1.11/32"),
    ("pptp/flowcontainer__pptp_gre_data.pcap", "172.16.30.0/24"),
    ("esp_ah/corelight__ipsec.cap", "192.168.140.205/32"),
    ("esp_ah/tcpdump__02-sunrise-sunset-esp.pcap", "192.1.2.23/32"),
    ("ike/corelight__ikev1-certs.pcap", "192.168.12.0/24"),
    ("natt/scapy__ikev2_nat_t.pcapng", "192.168.245.0/24"),
    ("natt/flowcontainer__l2tp_over_ipsec_natt.pcap", "192.168.168.0/24"),
    ("l2tp/packetnet__l2tp_data_over_pppoe.pcap", "auto"),
]


def _packets(path: Path, lan: str) -> list[tuple[float, bytearray, bool]]:
    nets = [ipaddress.IPv4Network(lan)] if lan != "auto" else None
    if nets is None:
        nets = infer_lan(path)
    out = []
    for pkt in iter_capture(path):
        buf = bytearray(pkt.ip or b"")
        if len(buf) < 20 or buf[0] >> 4 != 4 or (buf[2] << 8 | buf[3]) > len(buf):
            continue
        repair_offload(buf)
        s = ipaddress.IPv4Address(bytes(buf[12:16]))
        d = ipaddress.IPv4Address(bytes(buf[16:20]))
        s_lan, d_lan = any(s in n for n in nets), any(d in n for n in nets)
        if s_lan and d_lan:
            continue
        out.append((pkt.ts, buf, s_lan))
    return out


@pytest.mark.parametrize("name,lan", CASES)
def test_capture_replayed_across_restarts_is_translated_the_same(captures, name, lan):
    pkts = _packets(captures / name, lan)
    assert pkts
    nets = [ipaddress.IPv4Network(lan)] if lan != "auto" else infer_lan(captures / name)
    cfg = dataclasses.replace(config(pptp=True, ipsec=True, l2tp=True), lan_prefixes=tuple(nets))
    plain, restarted = build_engine(cfg), build_engine(cfg)
    cuts = {len(pkts) * k // 6 for k in range(1, 6)}
    restored_helpers = 0
    last = 0.0
    forwarded = 0
    for i, (ts, buf, from_lan) in enumerate(pkts):
        now = max(ts, last)
        if i in cuts:
            data = json.loads(json.dumps(S.snapshot(restarted, last)))
            restarted = build_engine(cfg)
            rep = S.restore(restarted, data, last)
            assert not [k for k in rep.skipped if k.endswith("malformed")], rep.skipped
            restored_helpers += sum(rep.helpers.values())
            for h in ("pptp", "ipsec", "l2tp"):
                before = plain.status()["helpers"][h]
                after = restarted.status()["helpers"][h]
                assert len(after["tunnels"]) == len(before["tunnels"]), h
                assert after["stats"].get("tunnels") == before["stats"].get("tunnels"), h
        last = now
        b1, b2 = bytearray(buf), bytearray(buf)
        if not from_lan:
            plain.far_end_view(b1, now)
            restarted.far_end_view(b2, now)
        c1 = plain.process(b1, from_lan, now)
        c2 = restarted.process(b2, from_lan, now)
        assert (c1, plain.last_drop if c1 == V.DROP else None) == \
            (c2, restarted.last_drop if c2 == V.DROP else None), (i, from_lan)
        assert b1 == b2, i
        forwarded += c1 != V.DROP
    assert forwarded
    if name.startswith(("pptp/", "esp_ah/", "natt/scapy")):
        assert restored_helpers > 0
