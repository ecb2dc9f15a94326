"""Every stall explained: the registry, the docs table, and the vantage-specific causes."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from natpass.diagnose.rules import PHASE_ORDER
from natpass.diagnose.run import diagnose, diagnose_packets
from natpass.diagnose.stalls import INDEX, STALLED, STALLS, phase_table, stall_for
from natpass.packets.udp import build_udp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_diagnose_synthetic import LAN, SERVER, WAN, ikev2_sa_init  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def test_docs_phase_table_is_the_registry() -> None:
    """docs/DIAGNOSE.md carries exactly the table the registry renders (edit the registry, then
    paste ``python -c 'from natpass.diagnose.stalls import phase_table; print(phase_table())'``)."""
    doc = (ROOT / "docs" / "DIAGNOSE.md").read_text(encoding="utf-8")
    start = doc.index("| protocol | stopped at | finding |")
    end = doc.index("\n\n", start)
    assert doc[start:end + 1] == phase_table()


def test_every_phase_a_protocol_can_stop_at_is_in_the_registry() -> None:
    for proto, order in PHASE_ORDER.items():
        for phase in order:
            assert (proto, phase) in INDEX, (proto, phase)
    assert len(INDEX) == len(STALLS)  # no duplicate rows
    for s in STALLS:
        for v in ("client", "router-lan", "router-wan", "server", "unknown"):
            assert s.cause(v)
        assert s.check


def _captures() -> list[Path]:
    out = sorted((DATA / "diagnose").glob("*.pcap")) + sorted((DATA / "lab").glob("*.pcap"))
    shared = ROOT.parent / "shared" / "captures"
    if shared.is_dir():
        out += sorted(p for p in shared.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))
    return out


@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name)
def test_every_run_that_stopped_short_has_a_finding_naming_its_cause(path: Path) -> None:
    diag = diagnose(path)
    for rep in diag.protocols:
        if rep.status == "established":
            continue
        stall = stall_for(rep.name, rep.stopped_at)
        assert stall is not None, (rep.name, rep.stopped_at)
        want = stall.code if rep.status == "failed" else STALLED
        hits = [f for f in diag.findings if f.code == want and stall.cause(diag.vantage.point) in f.explanation]
        assert hits, (rep.name, rep.stopped_at, sorted(diag.codes()))
        if stall.windows_error and rep.status == "failed":
            assert hits[0].windows_error == stall.windows_error


def _natt_none_after_nat(seen_client: str) -> list[tuple[float, bytes]]:
    """NAT detected in IKE_SA_INIT, then only IKE_SA_INIT retries... and nothing on 4500 for 5 s."""
    pk = ikev2_sa_init(seen_client, LAN, WAN)
    pk.append((5.0, bytes(build_udp(SERVER, seen_client, 53, 53, b"x" * 20))))  # the capture runs on
    return pk


def test_nat_detected_and_no_udp4500_on_router_wan_is_natt_blocked_at_this_router() -> None:
    diag = diagnose_packets(_natt_none_after_nat(WAN), vantage="router-wan")
    (ike,) = [p for p in diag.protocols if p.name == "ikev2"]
    assert (ike.status, ike.stopped_at) == ("failed", "nat-t switch")
    (f,) = [f for f in diag.findings if f.code == "natt-blocked"]
    assert "blocked at this router" in f.explanation and f.windows_error == 809


def test_the_same_absence_seen_on_the_client_blames_the_client_setting() -> None:
    diag = diagnose_packets(_natt_none_after_nat(LAN), vantage="client")
    (f,) = [f for f in diag.findings if f.code == "natt-blocked"]
    assert "never moved to UDP 4500" in f.explanation and "at this router" not in f.explanation


def test_udp4500_sent_and_unanswered_on_the_client_is_named_so() -> None:
    pk = ikev2_sa_init(LAN, LAN, WAN)
    auth = bytes(build_udp(LAN, SERVER, 4500, 4500, b"\0\0\0\0" + pk[0][1][28:]))
    pk += [(1.0 + i, auth) for i in range(4)]
    diag = diagnose_packets(pk)
    assert diag.vantage.point == "client"
    (f,) = [f for f in diag.findings if f.code == "natt-blocked"]
    assert re.search("4500 packets went unanswered", f.explanation)
