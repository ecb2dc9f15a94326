"""Real VPN sessions through a restart of natpass (SIGTERM, start again): every protocol of the demo
keeps its tunnel, loses at most what the restart's own gap holds, and the router's kernel never
answers for natpass meanwhile.

The bound on loss is derived from the restart time measured in the same run: a probe every
``INTERVAL`` s, none answered while no natpass runs, so at most (restart time + start-up slack) /
INTERVAL probes go unanswered; a tunnel whose state was not restored, or that the client had to set
up again, fails ``connected`` instead. In hybrid mode the kernel forwards ordinary traffic on
its own: OpenVPN and WireGuard must not notice the restart at all.
"""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
from rich.console import Console

from natpass.lab import topology as T
from natpass.lab.demo import PROTOCOLS, Progress, restart_table, run_restarts
from natpass.lab.netns import Netns
from natpass.lab.restart_proof import INTERVAL, Measured
from natpass.lab.simple import exclusive

PREFIX = "nprst"
SLACK_S = 0.5  # after the admin socket opens: the packet loop starts, ARP answers
# pptp-linux and pptpd hold GRE packets that follow a gap in sequence numbers until their reorder
# timeout ends (pptp --timeout, up to 1 s) before passing them on: PPTP's silence lasts that longer.
REORDER_S = {"pptp": 1.0}


def _bounds(row: dict[str, Any]) -> tuple[int, int]:
    """(most lost probes, longest gap in ms) that a restart of ``restart_s`` can explain. TCP
    (OpenVPN over TCP) retransmits with a doubling timeout: its gap may reach twice the outage."""
    outage = row["restart_s"] + SLACK_S
    factor = 2 if row["protocol"] == "openvpn-tcp" else 1
    return math.ceil(outage / INTERVAL), round(1000 * (factor * outage + REORDER_S.get(row["protocol"], 0)))


def _restart_rows(protocols: list[str], datapath: str) -> list[dict[str, Any]]:
    with exclusive(PREFIX):
        lab = Netns(PREFIX)
        with lab.session():
            topo = T.build(lab, "basic", router="natpass", clients=1, pptp=True, ipsec=True, l2tp=True,
                           datapath=datapath)
            assert topo.home.pid and lab.alive(topo.home.pid), topo.home.error
            assert T.wait_reachable(lab, "c1", topo.server_addrs[0], timeout=8)
            rows = run_restarts(lab, topo, protocols, 15.0, Progress(len(protocols), quiet=True), datapath)
        assert Netns(PREFIX).namespaces() == []
    return rows


@pytest.fixture(scope="module")
def restart_rows(root: None) -> list[dict[str, Any]]:
    return _restart_rows(list(PROTOCOLS), "packet")


def _check_survived(row: dict[str, Any]) -> None:
    assert row["restart"] is True
    assert row["connected"], row["detail"]
    assert row["reconnected"] is False, row["detail"]
    assert row["kernel_answers"] == 0, row["detail"]  # the guard stayed: no RST, no ICMP unreachable
    assert row["probes"] > row["lost_packets"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_tunnel_survives_a_restart_of_natpass(restart_rows: list[dict[str, Any]], protocol: str) -> None:
    row = next(r for r in restart_rows if r["protocol"] == protocol)
    _check_survived(row)
    most_lost, longest_gap = _bounds(row)
    assert row["lost_packets"] <= most_lost, row["detail"]
    assert row["gap_ms"] <= longest_gap, row["detail"]


def test_hybrid_the_kernels_half_does_not_notice_a_restart(root: None) -> None:
    """OpenVPN (over TCP) and WireGuard are the kernel's in hybrid mode: not one probe lost and no
    silence as long as the restart; raw ESP is natpass's and resumes as in packet mode."""
    rows = {r["protocol"]: r for r in _restart_rows(["openvpn-tcp", "wireguard", "esp"], "hybrid")}
    for row in rows.values():
        _check_survived(row)
        assert row["datapath"] == "hybrid"
    for proto in ("openvpn-tcp", "wireguard"):
        assert rows[proto]["lost_packets"] == 0, rows[proto]["detail"]
        assert rows[proto]["gap_ms"] < 1000 * rows[proto]["restart_s"], rows[proto]["detail"]
    most_lost, longest_gap = _bounds(rows["esp"])
    assert rows["esp"]["lost_packets"] <= most_lost and rows["esp"]["gap_ms"] <= longest_gap


def test_measured_counts_unanswered_probes_and_the_longest_silence() -> None:
    answers = {1: 10.00, 2: 10.02, 3: 10.04, 7: 11.50, 8: 11.52}
    m = Measured.of(answers, up_wall=11.0, kernel_answers=0)
    assert (m.sent, m.lost, m.gap_ms, m.answered_after) == (8, 3, 1460, 2)
    assert Measured.of({}, up_wall=0.0, kernel_answers=1).answered_after == 0


def test_the_human_table_shows_the_restart_figures() -> None:
    row = {"protocol": "pptp", "datapath": "packet", "connected": True, "lost_packets": 17, "probes": 240,
           "gap_ms": 1234, "restart_s": 1.5, "kernel_answers": 0}
    console = Console(file=io.StringIO(), width=160)
    console.print(restart_table([row, {**row, "protocol": "esp", "connected": False}]))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "17 of 240" in text and "1234 ms" in text and "1.50 s" in text
    assert "connected" in text and "lost" in text
