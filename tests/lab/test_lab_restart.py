"""Real VPN sessions through a restart of natpass (SIGTERM, start again): every protocol of the demo
keeps its tunnel, loses at most what the restart's own gap holds, and the router's kernel never
answers for natpass meanwhile.

The bound on loss is derived from the restart time measured in the same run: a probe every
``INTERVAL`` s, none answered while no natpass runs, so at most (restart time + start-up slack) /
INTERVAL probes go unanswered; a tunnel whose state was not restored, or that the client had to set
up again, fails ``connected`` instead.
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


def _bounds(row: dict[str, Any]) -> tuple[int, int]:
    """(most lost probes, longest gap in ms) that a restart of ``restart_s`` can explain. TCP
    (OpenVPN over TCP) retransmits with a doubling timeout: its gap may reach twice the outage."""
    outage = row["restart_s"] + SLACK_S
    factor = 2 if row["protocol"] == "openvpn-tcp" else 1
    return math.ceil(outage / INTERVAL), round(1000 * factor * outage)


@pytest.fixture(scope="module")
def restart_rows(root: None) -> list[dict[str, Any]]:
    with exclusive(PREFIX):
        lab = Netns(PREFIX)
        with lab.session():
            topo = T.build(lab, "basic", router="natpass", clients=1, pptp=True, ipsec=True, l2tp=True)
            assert topo.home.pid and lab.alive(topo.home.pid), topo.home.error
            assert T.wait_reachable(lab, "c1", topo.server_addrs[0], timeout=8)
            rows = run_restarts(lab, topo, list(PROTOCOLS), 15.0, Progress(len(PROTOCOLS), quiet=True),
                                "packet")
        assert Netns(PREFIX).namespaces() == []
    return rows


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_tunnel_survives_a_restart_of_natpass(restart_rows: list[dict[str, Any]], protocol: str) -> None:
    row = next(r for r in restart_rows if r["protocol"] == protocol)
    assert row["restart"] is True
    assert row["connected"], row["detail"]
    assert row["reconnected"] is False, row["detail"]
    assert row["kernel_answers"] == 0, row["detail"]  # the guard stayed: no RST, no ICMP unreachable
    most_lost, longest_gap = _bounds(row)
    assert row["lost_packets"] <= most_lost, row["detail"]
    assert row["gap_ms"] <= longest_gap, row["detail"]
    assert row["probes"] > row["lost_packets"]


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
