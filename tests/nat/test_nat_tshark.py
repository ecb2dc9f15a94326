"""Everything the engine emits decodes in tshark with correct checksums."""

from __future__ import annotations

import sys
from pathlib import Path

import dpkt
import pytest
from natutil import ICMP, IP, LAN1, REMOTE, WAN1, echo, eng, raw, tcp, udp

from natpass.nat import verdict as V

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tshark_check import bad_checksums, frame_count, tshark_available  # noqa: E402


def emitted_packets():
    e = eng(wan_mtu=576, filtering="endpoint-independent")
    outs = []

    def run(buf, from_lan, now=0.0):
        code = e.process(buf, from_lan, now)
        if code & V.REPLY:
            outs.append(bytes(e.reply))
        elif code & V.MULTI:
            outs.extend(bytes(b) for b in e.emitted)
        elif code != V.DROP:
            outs.append(bytes(buf))
        return code

    s = tcp(LAN1, REMOTE, 40000, 80, "S")
    run(s, True)
    wport = int.from_bytes(s[20:22], "big")
    run(tcp(REMOTE, WAN1, 80, wport, "SA"), False)
    run(tcp(LAN1, REMOTE, 40000, 80, "A", b"GET / HTTP/1.0\r\n\r\n"), True)
    run(tcp(REMOTE, WAN1, 80, wport, "PA", b"HTTP/1.0 200 OK\r\n\r\n"), False)
    u = udp(LAN1, REMOTE, 5000, 9, b"q" * 30)
    run(u, True)
    run(udp(REMOTE, WAN1, 9, int.from_bytes(u[20:22], "big"), b"a" * 30), False)
    ping = echo(LAN1, REMOTE, 7)
    run(ping, True)
    run(echo(REMOTE, WAN1, int.from_bytes(ping[24:26], "big"), reply=True), False)
    run(raw(IP(src="198.51.100.254", dst=WAN1) / ICMP(type=3, code=3) / bytes(u)), False)
    run(udp(LAN1, REMOTE, 5001, 9, ttl=1), True)  # time exceeded reply
    run(udp(LAN1, REMOTE, 5002, 9, b"x" * 1000, flags="DF"), True)  # frag needed reply
    run(udp(LAN1, REMOTE, 5003, 9, b"y" * 1000), True)  # fragmented
    return outs


@pytest.mark.skipif(not tshark_available(), reason="tshark not installed")
def test_emitted_packets_pass_tshark_checksum_checks(tmp_path):
    pkts = emitted_packets()
    path = tmp_path / "engine.pcap"
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_RAW)
        for i, p in enumerate(pkts):
            w.writepkt(p, ts=1_700_000_000 + i * 0.001)
    assert frame_count(path) == len(pkts) >= 13
    assert bad_checksums(path) == []
