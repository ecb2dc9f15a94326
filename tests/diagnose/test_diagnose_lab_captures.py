"""Real programs recorded in the lab: the same verdict from the client and from the router's WAN."""

from __future__ import annotations

from pathlib import Path

import pytest

from natpass.diagnose.run import diagnose

DATA = Path(__file__).resolve().parents[1] / "data" / "diagnose"
LAB_L2TP = Path(__file__).resolve().parents[1] / "data" / "lab"
PAIRS = [("ikev2-basic", {"ikev2", "nat-t"}), ("ikev2-cgnat", {"ikev2", "nat-t"}),
         ("wireguard-basic", {"wireguard"})]


@pytest.mark.parametrize("stem,names", PAIRS)
def test_same_session_same_diagnosis_from_client_and_router_wan(stem: str, names: set[str]) -> None:
    client = diagnose(DATA / f"{stem}-client.pcap")
    wan = diagnose(DATA / f"{stem}-router-wan.pcap")
    for diag in (client, wan):
        assert {p.name for p in diag.protocols} == names
        assert {p.status for p in diag.protocols} == {"established"}
        assert not diag.errors()
        assert "passthrough-not-needed" in diag.codes()
    # the initiator is the client at both points: its own address, then the router's outside one
    assert all(p.client.startswith("192.168.1.11:") for p in client.protocols)
    assert all(not p.client.startswith("192.168.1.") for p in wan.protocols)
    assert [[ph.name for ph in p.phases] for p in client.protocols] == \
        [[ph.name for ph in p.phases] for p in wan.protocols]


def test_single_home_nat_is_not_reported_as_cgnat_or_double_nat() -> None:
    for side in ("client", "router-wan"):
        codes = diagnose(DATA / f"ikev2-basic-{side}.pcap").codes()
        assert not codes & {"cgnat", "double-nat"}, side


def test_carrier_nat_is_seen_on_the_router_wan() -> None:
    codes = diagnose(DATA / "ikev2-cgnat-router-wan.pcap").codes()
    assert "cgnat" in codes


def test_forced_encapsulation_seen_on_the_client_is_no_nat_evidence() -> None:
    """libipsec forces UDP encapsulation with a made-up NAT-D source hash; TTL 64 shows the
    capture was taken on the client, so the mismatch is not a NAT before the capture point."""
    assert "double-nat" not in diagnose(DATA / "ikev2-cgnat-client.pcap").codes()


@pytest.mark.parametrize("side", ["lan", "wan"])
def test_real_xl2tpd_exchange_is_l2tp_established_and_unencrypted(side: str) -> None:
    diag = diagnose(LAB_L2TP / f"l2tp-xl2tpd-{side}.pcap")
    (p,) = diag.protocols
    assert (p.name, p.status) == ("l2tp", "established")
    assert [ph.name for ph in p.phases][:6] == ["sccrq", "sccrp", "scccn", "icrq", "icrp", "iccn"]
    assert "l2tp-unencrypted" in diag.codes() and not diag.errors()


def test_lab_l2tp_with_replies_dropped_is_no_response(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "derive"))
    from diagnose_derive import drop, read, repeat, write

    link, frames = read(LAB_L2TP / "l2tp-xl2tpd-lan.pcap")
    client_only = drop(link, frames, lambda s, d, p, sp, dp: s == bytes([198, 51, 100, 10]))
    path = write(tmp_path / "l2tp-silent.pcap", link, repeat(client_only, 0, (1.0, 2.0, 4.0)))
    diag = diagnose(path)
    (f,) = [f for f in diag.findings if f.code == "l2tp-no-response"]
    assert f.windows_error == 809


def test_pptp_through_natpass_with_switch_on_is_established() -> None:
    diag = diagnose(DATA / "pptp-basic-natpass-switch-on-client.pcap")
    (p,) = diag.protocols
    assert (p.name, p.status) == ("pptp", "established") and not diag.errors()


def test_pptp_through_natpass_with_switch_off_is_gre_blocked_on_the_client() -> None:
    diag = diagnose(DATA / "pptp-basic-natpass-switch-off-client.pcap")
    (f,) = [f for f in diag.findings if f.code == "gre-blocked"]
    assert f.windows_error == 619
    (p,) = diag.protocols
    assert p.status == "failed" and p.stopped_at == "gre-in"


@pytest.mark.parametrize("switch", ["on", "off"])
def test_one_sided_router_capture_is_said_so_not_judged(switch: str) -> None:
    """tcpdump on the natpass router's WAN sees only what arrives: no verdict on what is missing."""
    diag = diagnose(DATA / f"pptp-basic-natpass-switch-{switch}-router-wan.pcap")
    assert "capture-one-sided" in diag.codes() and not diag.errors()


def test_raw_esp_through_natpass_switch_on_is_established_and_off_is_esp_blocked() -> None:
    on = diagnose(DATA / "esp-basic-natpass-switch-on-client.pcap")
    assert [(p.name, p.status) for p in on.protocols] == [("esp", "established")] and not on.errors()
    off = diagnose(DATA / "esp-basic-natpass-switch-off-client.pcap")
    (f,) = [f for f in off.findings if f.code == "esp-blocked"]
    assert f.windows_error == 809 and off.protocols[0].client.startswith("192.168.1.11")


sys_path_derive = str(Path(__file__).resolve().parent / "derive")


@pytest.mark.parametrize("stem", ["plain-cgnat", "plain-double-nat", "openvpn-static-basic",
                                  "openvpn-tls-crypt-basic", "ikev2-natt-blocked-basic", "ikev2-ipv6-basic",
                                  "ikev2-ipv6-blocked-basic"])
def test_recorded_real_programs_diagnosed_from_both_sides(stem: str) -> None:
    import sys

    if sys_path_derive not in sys.path:
        sys.path.insert(0, sys_path_derive)
    from diagnose_expect import EXPECT

    EXPECT[stem](diagnose(DATA / f"{stem}-client.pcap"), diagnose(DATA / f"{stem}-router-wan.pcap"))
