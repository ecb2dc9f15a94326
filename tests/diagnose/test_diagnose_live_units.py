"""The live comparison of a router's two sides, on recorded captures (no root needed)."""

from __future__ import annotations

from pathlib import Path

from natpass.cli import main
from natpass.diagnose.live import compare, drop_delta
from natpass.diagnose.run import diagnose

DATA = Path(__file__).resolve().parents[1] / "data" / "diagnose"


def _sides(stem: str) -> tuple[object, object]:
    return (diagnose(DATA / f"{stem}-client.pcap", vantage="router-lan"),
            diagnose(DATA / f"{stem}-router-wan.pcap", vantage="router-wan"))


def test_drop_delta_counts_only_what_grew_in_the_window() -> None:
    before = {"drops": {"passthrough-disabled:pptp": 3, "filtered": 5}}
    after = {"drops": {"passthrough-disabled:pptp": 17, "filtered": 5, "no-mapping": 2}}
    assert drop_delta(before, after) == {"no-mapping": 2, "passthrough-disabled:pptp": 14}
    assert drop_delta(None, after) == {"no-mapping": 2, "passthrough-disabled:pptp": 17, "filtered": 5}


def test_gre_dropped_by_the_router_is_named_with_its_counter() -> None:
    lan, wan = _sides("pptp-basic-natpass-switch-off")
    found = compare(lan, wan, {"passthrough-disabled:pptp": 14}, True)  # type: ignore[arg-type]
    (f,) = [f for f in found if f.code == "dropped-by-router"]
    assert f.protocol == "pptp" and "passthrough-disabled:pptp (14)" in f.explanation
    assert "pptp = true" in f.advice


def test_a_drop_of_another_protocol_is_not_blamed() -> None:
    lan, wan = _sides("pptp-basic-natpass-switch-off")
    found = compare(lan, wan, {"passthrough-disabled:ipsec": 9}, True)  # type: ignore[arg-type]
    assert "dropped-by-router" not in {f.code for f in found}


def test_unreadable_counters_are_said() -> None:
    lan, wan = _sides("ikev2-natt-blocked-basic")
    found = compare(lan, wan, {}, False)  # type: ignore[arg-type]
    assert "router-counters-unknown" in {f.code for f in found}


def test_live_and_a_capture_file_exclude_each_other(capsys) -> None:
    assert main(["diagnose", "--live", str(DATA / "wireguard-basic-client.pcap")]) == 2
    assert main(["diagnose"]) == 2
    assert main(["diagnose", "--live"]) == 2  # no interfaces: neither --config nor --lan-if/--wan-if
    capsys.readouterr()


def test_api_diagnoses_an_uploaded_capture_and_refuses_garbage() -> None:
    import pytest

    from natpass.diagnose.api import DiagnoseRequestError, diagnose_upload

    out = diagnose_upload((DATA / "plain-cgnat-router-wan.pcap").read_bytes(), "wan.pcap")
    assert out["capture"]["file"] == "wan.pcap" and out["vantage"] == "router-wan"
    assert "cgnat" in {f["code"] for f in out["findings"]}
    assert diagnose_upload((DATA / "plain-cgnat-router-wan.pcap").read_bytes(), vantage="server")["vantage"] == "server"
    with pytest.raises(DiagnoseRequestError):
        diagnose_upload(b"not a capture at all")
    with pytest.raises(DiagnoseRequestError):
        diagnose_upload((DATA / "plain-cgnat-router-wan.pcap").read_bytes(), vantage="moon")
