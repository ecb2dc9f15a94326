"""The three commands end to end: diagnose output formats, advise decisions, audit exit codes."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from natpass.cli import main
from natpass.diagnose.advise import GENERAL_GUIDE, advise
from natpass.diagnose.audit import audit
from natpass.nat.config import Limits, NatConfig, Passthrough, PortForward


# --- diagnose
def test_diagnose_json_has_protocols_findings_capture_and_packets(captures: Path, capsys) -> None:
    assert main(["diagnose", "--json", str(captures / "pptp/ndpi__pptp.pcap")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"protocols", "findings", "capture", "packets"} <= set(out)
    assert out["protocols"][0]["name"] == "pptp"
    assert {"code", "severity", "windows_error", "evidence", "explanation", "advice"} <= set(out["findings"][0])


def test_diagnose_fail_on_sets_the_exit_status(captures: Path, capsys) -> None:
    failing = str(captures / "natt/corelight__ipsec_client_ikefrag.pcap")  # natt-blocked (error)
    healthy = str(captures / "wireguard/ndpi__wireguard.pcap")  # only info findings
    assert main(["diagnose", failing]) == 0
    assert main(["diagnose", failing, "--fail-on", "error"]) == 1
    assert main(["diagnose", healthy, "--fail-on", "error"]) == 0
    assert main(["diagnose", healthy, "--fail-on", "warning"]) == 0
    capsys.readouterr()


def test_diagnose_html_is_self_contained_with_a_ladder(captures: Path, tmp_path: Path, capsys) -> None:
    report = tmp_path / "r.html"
    assert main(["diagnose", str(captures / "natt/corelight__ipsec_client_ikefrag.pcap"),
                 "--html", str(report)]) == 0
    text = report.read_text()
    assert "<svg" in text and "stopped: nat-t response" in text
    import re
    import xml.etree.ElementTree as ET

    for svg in re.findall(r"<svg.*?</svg>", text, re.S):
        ET.fromstring(svg)  # every ladder is well-formed SVG
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "natt-blocked" in capsys.readouterr().out


def test_diagnose_bad_file_exits_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\0" * 40)
    assert main(["diagnose", str(bad)]) == 2
    assert "natpass diagnose" in capsys.readouterr().err


# --- advise
def decisions(protocol: str | None, situations: frozenset[str] = frozenset(), code: int | None = None) -> dict[str, str]:
    return {k: v.decision for k, v in advise(protocol, situations, code).switches.items()}


@pytest.mark.parametrize("vpn", ["openvpn", "wireguard", "sstp", "anyconnect", "ikev2", "tailscale"])
def test_modern_vpn_app_leaves_every_switch_off(vpn: str) -> None:
    assert set(decisions(vpn).values()) == {"off"}


def test_remote_work_l2tp_ipsec_laptop_turns_ipsec_and_l2tp_on() -> None:
    assert decisions("l2tp", {"remote-work"}) == {"pptp": "off", "ipsec": "enable", "l2tp": "enable"}


def test_self_hosted_wireguard_needs_a_forward_not_passthrough() -> None:
    adv = advise("wireguard", {"self-hosted"})
    assert {a.decision for a in adv.switches.values()} == {"off"}
    assert any("UDP 51820" in n for n in adv.notes)


@pytest.mark.parametrize("code,switches", [(619, {"pptp"}), (809, {"ipsec", "l2tp"})])
def test_troubleshooting_turns_the_switch_on_for_the_test_only(code: int, switches: set[str]) -> None:
    got = decisions(None, set(), code)
    assert {k for k, v in got.items() if v == "test-then-off"} == switches


def test_gaming_leaves_switches_off() -> None:
    assert set(decisions(None, {"gaming"}).values()) == {"off"}


def test_cgnat_says_passthrough_cannot_help_even_for_pptp() -> None:
    adv = advise("pptp", {"cgnat"})
    assert adv.switches["pptp"].decision == "off"
    assert "cannot help" in adv.notes[0]


def test_pptp_alone_enables_pptp_with_its_cost() -> None:
    adv = advise("pptp")
    assert adv.switches["pptp"].decision == "enable" and "MS-CHAPv2" in adv.switches["pptp"].cost


def test_advise_without_arguments_and_without_tty_prints_the_guide(capsys) -> None:
    assert main(["advise"]) == 0
    assert capsys.readouterr().out == GENERAL_GUIDE


def test_advise_json_from_a_capture(captures: Path, capsys) -> None:
    assert main(["advise", "--capture", str(captures / "wireguard/ndpi__wireguard.pcap"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"] == "wireguard"
    assert {v["decision"] for v in out["switches"].values()} == {"off"}


# --- audit
DAY = 86400.0
NOW = 1_800_000_000.0


class FakeUsage:
    def __init__(self, last: dict[str, float | None], since: dict[str, float | None]) -> None:
        self.last, self.since = last, since

    def last_used(self, switch: str) -> float | None:
        return self.last.get(switch)

    def enabled_since(self, switch: str) -> float | None:
        return self.since.get(switch)


def codes(findings) -> set[str]:
    return {f.code for f in findings}


def test_default_config_has_no_findings() -> None:
    assert audit(NatConfig(), None, now=NOW) == []


def test_switch_on_but_unused_for_the_period_is_flagged() -> None:
    cfg = NatConfig(passthrough=Passthrough(ipsec=True))
    old = FakeUsage({"ipsec": NOW - 45 * DAY}, {"ipsec": NOW - 200 * DAY})
    recent = FakeUsage({"ipsec": NOW - 2 * DAY}, {"ipsec": NOW - 200 * DAY})
    assert "switch-unused" in codes(audit(cfg, old, days=30, now=NOW))
    assert "switch-unused" not in codes(audit(cfg, recent, days=30, now=NOW))
    assert "switch-unused" not in codes(audit(cfg, old, days=60, now=NOW))


def test_without_usage_record_usage_is_unknown_info() -> None:
    got = audit(NatConfig(passthrough=Passthrough(l2tp=True)), None, now=NOW)
    assert [(f.code, f.severity) for f in got] == [("usage-unknown", "info")]


def test_all_switches_and_pptp_in_use() -> None:
    cfg = NatConfig(passthrough=Passthrough(pptp=True, ipsec=True, l2tp=True))
    usage = FakeUsage({"pptp": NOW - DAY, "ipsec": NOW - DAY, "l2tp": NOW - DAY}, {})
    got = audit(cfg, usage, now=NOW)
    assert {"all-switches-on", "pptp-in-use"} <= codes(got)
    assert got[0].severity == "error"


def test_strict_off_while_switches_are_off_is_fine() -> None:
    assert audit(NatConfig(passthrough=Passthrough(strict=False)), None, now=NOW) == []


@pytest.mark.parametrize("proto,port,severity", [(6, 1723, "error"), (17, 1701, "error"),
                                                 (17, 500, "warning"), (17, 4500, "warning")])
def test_vpn_ports_exposed_by_a_forward(proto: int, port: int, severity: str) -> None:
    fw = PortForward(proto=proto, wan_port=port, lan_addr=bytes([192, 168, 1, 5]), lan_port=port)
    (f,) = audit(NatConfig(forwards=(fw,)), None, now=NOW)
    assert (f.code, f.severity) == ("vpn-port-forwarded", severity)


def test_endpoint_independent_filtering_and_missing_limits_warn() -> None:
    cfg = NatConfig(filtering="endpoint-independent", limits=Limits(max_flows=0, max_flows_per_host=0))
    assert codes(audit(cfg, None, now=NOW)) == {"filtering-endpoint-independent", "limits-absent"}


def write_config(path: Path, passthrough: str, state_dir: Path, extra: str = "") -> Path:
    path.write_text('[wan]\naddresses = ["203.0.113.1"]\n[lan]\nprefixes = ["192.168.1.0/24"]\n'
                    f"[passthrough]\n{passthrough}\n[router]\nstate_dir = \"{state_dir}\"\n{extra}")
    return path


def make_usage_db(path: Path, rows: list[tuple[str, float]]) -> None:
    from natpass.router.usage import SCHEMA, utc_day

    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    for switch, ts in rows:
        conn.execute("INSERT INTO usage VALUES (?, ?, ?, ?, 10, 1, 0, 0)", (switch, utc_day(ts), ts, ts))
    conn.commit()
    conn.close()


def test_audit_exit_codes(tmp_path: Path, capsys) -> None:
    clean = write_config(tmp_path / "a.toml", "ipsec = false", tmp_path)
    assert main(["audit", "--config", str(clean)]) == 0
    forward = write_config(tmp_path / "b.toml", "pptp = false", tmp_path,
                           '[[forward]]\nproto = "tcp"\nport = 1723\nto = "192.168.1.10:1723"\n')
    assert main(["audit", "--config", str(forward)]) == 1
    broken = tmp_path / "c.toml"
    broken.write_text("[passthrough]\npptpp = true\n")
    assert main(["audit", "--config", str(broken)]) == 2
    assert "c.toml:2" in capsys.readouterr().err


def test_audit_reads_the_usage_db(tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path / "a.toml", "pptp = true\nipsec = true", tmp_path)
    db = tmp_path / "usage.sqlite3"
    make_usage_db(db, [("pptp", time.time() - 3600), ("ipsec", time.time() - 90 * DAY)])
    assert main(["audit", "--config", str(cfg), "--db", str(db), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    got = {(f["code"], f["switch"]) for f in out["findings"]}
    assert ("pptp-in-use", "pptp") in got and ("switch-unused", "ipsec") in got
    assert ("switch-unused", "pptp") not in got


def test_advise_interactive_asks_then_advises(monkeypatch) -> None:
    from natpass.diagnose import advise as adv_mod

    answers = iter(["l2tp", "n", "n", "y", "n", ""])
    monkeypatch.setattr("builtins.input", lambda _prompt="": next(answers))
    got = adv_mod.interactive()
    assert got.protocol == "l2tp" and got.situations == ["remote-work"]
    assert got.switches["ipsec"].decision == "enable"


def test_diagnose_vantage_flag_is_reported_in_the_json(capsys) -> None:
    data = Path(__file__).resolve().parents[1] / "data" / "diagnose" / "wireguard-basic-client.pcap"
    assert main(["diagnose", "--json", str(data)]) == 0
    inferred = json.loads(capsys.readouterr().out)
    assert inferred["vantage"] == "client" and inferred["vantage_detail"]["source"] == "inferred"
    assert main(["diagnose", "--json", "--vantage", "router-wan", str(data)]) == 0
    stated = json.loads(capsys.readouterr().out)
    assert stated["vantage"] == "router-wan" and stated["vantage_detail"]["source"] == "stated"
