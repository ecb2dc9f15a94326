"""natpass.toml: every problem names its line, and an invalid file is refused whole."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

from natpass.router.config import EXAMPLE, ConfigError, load_config, parse_config


def test_example_config_is_valid_and_safe_by_default() -> None:
    cfg = parse_config(EXAMPLE)
    p = cfg.nat.passthrough
    assert (p.pptp, p.ipsec, p.l2tp, p.strict) == (False, False, False, False)
    assert cfg.nat.wan_addresses == (ipaddress.IPv4Address("203.0.113.1").packed,)
    assert cfg.nat.lan_prefixes == (ipaddress.IPv4Network("192.168.1.0/24"),)
    assert cfg.nat.mapping == "endpoint-independent"
    assert cfg.nat.filtering == "address-and-port-dependent"


def test_documented_keys_are_read() -> None:
    cfg = parse_config('[wan]\naddresses = ["203.0.113.5", "203.0.113.6"]\n'
                       '[lan]\nprefixes = ["192.168.7.0/24"]\n'
                       "[passthrough]\npptp = true\nipsec = false\nl2tp = true\n")
    assert len(cfg.nat.wan_addresses) == 2
    assert cfg.nat.passthrough.pptp and cfg.nat.passthrough.l2tp and not cfg.nat.passthrough.ipsec


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[wan]\naddresses = []\n", 2, "non-empty"),
        ("[wan]\naddresses = [\"203.0.113.300\"]\n", 2, "not an IPv4 address"),
        ("[lan]\nprefixes = [\"192.168.1.1/24\"]\n", 2, "host bits"),
        ("\n[passthrough]\npptp = \"yes\"\n", 3, "true or false"),
        ("[passthrough]\nipsek = true\n", 2, "unknown key 'ipsek'"),
        ("[nat]\nmapping = \"full-cone\"\n", 2, "mapping must be one of"),
        ("[nat]\nport_range = [2000, 1000]\n", 2, "port_range"),
        ("[timeouts]\nudp = 30\n", 2, "RFC 4787 REQ-5"),
        ("[timeouts]\ntcp_established = 600\n", 2, "RFC 5382 REQ-5"),
        ("[timeouts]\nicmp = 10\n", 2, "RFC 5508"),
        ("[wan]\naddresses = [\"192.168.1.1\"]\n", 2, "inside a LAN prefix"),
        ("[bogus]\nx = 1\n", 1, "unknown section"),
        ("[[forward]]\nproto = \"sctp\"\nport = 1\nto = \"192.168.1.2\"\n", 2, "proto"),
        ("[[forward]]\nproto = \"tcp\"\nport = 80\nto = \"192.168.1.2\"\n\n"
         "[[forward]]\nproto = \"tcp\"\nport = 80\nto = \"192.168.1.3\"\n", 8, "already forwarded by the [[forward]] at line 1"),
        ("[wan\n", 1, "TOML syntax"),
        ("[router]\ndatapath = \"xdp\"\n", 2, "datapath"),
    ],
)
def test_invalid_config_names_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.toml")
    assert info.value.line == line, str(info.value)
    assert words in info.value.message
    assert str(info.value).startswith(f"t.toml:{line}:")


def test_rfc_minimums_can_be_lowered_only_on_purpose() -> None:
    cfg = parse_config("[timeouts]\nallow_below_rfc = true\nudp = 5\n")
    assert cfg.nat.timeouts.udp == 5.0


def test_forward_defaults_to_the_same_port() -> None:
    cfg = parse_config('[[forward]]\nproto = "udp"\nport = 1701\nto = "192.168.1.20"\n')
    (fwd,) = cfg.nat.forwards
    assert (fwd.proto, fwd.wan_port, fwd.lan_port) == (17, 1701, 1701)
    assert fwd.lan_addr == bytes([192, 168, 1, 20])


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_cli_config_check_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(EXAMPLE)
    bad = tmp_path / "bad.toml"
    bad.write_text("[passthrough]\npptp = 1\n")
    run = [sys.executable, "-m", "natpass.cli", "config", "check"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    res = subprocess.run([*run, "--json", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2
    out = json.loads(res.stdout)
    assert out["valid"] is False and out["line"] == 2
