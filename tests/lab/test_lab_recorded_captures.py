"""The L2TP captures recorded in the lab from real xl2tpd (tests/data/lab) hold what they claim."""

from __future__ import annotations

from pathlib import Path

import pytest

from natpass.lab.capture import tshark_fields

DATA = Path(__file__).resolve().parent.parent / "data" / "lab"
CONTROL = ["1", "2", "3", "10", "11", "12"]  # RFC 2661 section 6: SCCRQ SCCRP SCCCN ICRQ ICRP ICCN


@pytest.mark.parametrize("side", ["lan", "wan"])
def test_recorded_xl2tpd_capture_holds_the_whole_control_exchange(side: str) -> None:
    pcap = DATA / f"l2tp-xl2tpd-{side}.pcap"
    rows = tshark_fields(pcap, "l2tp.avp.message_type", ["l2tp.avp.message_type", "ip.src", "udp.srcport"])
    types = [r[0] for r in rows]
    assert types == CONTROL
    lac = "192.168.1.11" if side == "lan" else "203.0.113.1"
    assert {r[1] for r in rows if r[0] in ("1", "3", "10", "12")} == {lac}
    assert all(r[2] == "1701" for r in rows)  # xl2tpd and the kernel NAT both keep source port 1701
    lcp = tshark_fields(pcap, "lcp", ["frame.number"])
    assert lcp, "PPP LCP frames of the stand-in pppd ride the data channel"
