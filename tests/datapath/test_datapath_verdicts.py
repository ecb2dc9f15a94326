"""Replay turns verdicts into packets with the nat layer's packets_to_send and counts a held
fragment as held, neither forwarded nor dropped."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.inet import fragment as scapy_fragment
from scapy.packet import Raw

from natpass.datapath.pcap import PcapWriter, iter_capture
from natpass.datapath.replay import replay_capture
from natpass.nat.config import NatConfig


def test_replay_counts_out_of_order_fragments_as_held_then_forwards_them(tmp_path: Path) -> None:
    pkt = IP(src="192.168.1.10", dst="198.51.100.7", id=99) / UDP(sport=5000, dport=53) / Raw(bytes(1400))
    frags = [bytes(f) for f in scapy_fragment(pkt, fragsize=500)]
    assert len(frags) == 3
    cap = tmp_path / "frags.pcap"
    with PcapWriter(cap) as w:
        for i, f in enumerate(frags[1:] + frags[:1]):  # later fragments first
            w.write(f, 1.0 + i / 10)
    out = tmp_path / "wan.pcap"
    res = replay_capture(cap, NatConfig(seed=1), out=out)
    s = res.summary
    assert s["held"] == 2 and s["dropped"] == 0 and s["drops"] == {}
    assert s["forwarded"] == 1
    assert s["by_ip_protocol"]["udp"]["out_held"] == 2
    assert [r.verdict for r in res.records] == ["held", "held", "forwarded"]
    # all three leave on the WAN side, the first fragment first
    sent = [bytes(p.ip or b"") for p in iter_capture(out)]
    assert len(sent) == 3 and sent[0][6:8] == frags[0][6:8]
