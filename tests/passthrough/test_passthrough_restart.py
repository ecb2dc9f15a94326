"""Every passthrough helper's state survives a restart: the real captures replayed with the
engine saved (natpass.nat.snapshot, through JSON) and restored at several points give the same
verdicts and the same bytes as an uninterrupted replay, PPTP calls, ESP SPIs, IKE routes, NAT-T
and L2TP included."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from passthrough_util import HOSTS, SERVER, WAN, config, engine

from natpass.datapath.pcap import iter_capture
from natpass.datapath.replay import infer_lan, repair_offload
from natpass.nat import snapshot as S
from natpass.nat import verdict as V
from natpass.nat.table import RELEASED, SLOW_IN, SLOW_OUT
from natpass.packets.ipv4 import str_to_addr
from natpass.packets.udp import build_udp
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


def _l2tp_flow(e: Any) -> Any:
    flows = [f for f in e.table if f.proto == 17]
    assert len(flows) == 1
    return flows[0]


@pytest.mark.parametrize("l2tp_after", [False, True])
def test_a_released_flow_stays_released_after_a_restore_while_its_switch_is_unchanged(l2tp_after: bool) -> None:
    """With the switch off, bare L2TP is ordinary UDP: the helper releases the flow to the fast
    path. A restore keeps it there; with the switch turned on meanwhile, the helper gets its
    per-packet calls again."""
    e = engine()
    out = bytearray(build_udp(str_to_addr(HOSTS[0]), str_to_addr(SERVER), 1701, 1701, b"\x00" * 12))
    assert e.process(out, True, 1.0) == V.TO_WAN
    wport = out[20] << 8 | out[21]
    back = bytearray(build_udp(str_to_addr(SERVER), str_to_addr(WAN), 1701, wport, b"\x00" * 12))
    assert e.process(back, False, 1.1) == V.TO_LAN
    assert _l2tp_flow(e).flags & RELEASED and not _l2tp_flow(e).flags & (SLOW_IN | SLOW_OUT)
    data = json.loads(json.dumps(S.snapshot(e, 2.0)))
    e2 = engine(l2tp=l2tp_after)
    assert S.restore(e2, data, 2.0).flows == 1
    f = _l2tp_flow(e2)
    if l2tp_after:
        assert not f.flags & RELEASED and f.flags & SLOW_IN and f.flags & SLOW_OUT
    else:
        assert f.flags & RELEASED and not f.flags & (SLOW_IN | SLOW_OUT)
