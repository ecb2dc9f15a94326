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


WAN = '[wan]\naddresses = ["203.0.113.1"]\n'
LAN = '[lan]\nprefixes = ["192.168.1.0/24"]\n'


def full(text: str) -> str:
    """``text`` with the two sections every file needs appended when it lacks them (after it, so
    that the line numbers of ``text`` stay as written)."""
    if "[wan]" not in text and "wan." not in text:
        text += "\n" + WAN
    if "[lan]" not in text and "lan." not in text:
        text += "\n" + LAN
    return text


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
        ("[lan]\nprefixes = [\"192.168.1.0/24\"]\n[wan]\naddresses = [\"192.168.1.1\"]\n", 4, "inside a LAN prefix"),
        ("[bogus]\nx = 1\n", 1, "unknown section"),
        ("[[forward]]\nproto = \"sctp\"\nport = 1\nto = \"192.168.1.2\"\n", 2, "proto"),
        ("[[forward]]\nproto = \"tcp\"\nport = 80\nto = \"192.168.1.2\"\n\n"
         "[[forward]]\nproto = \"tcp\"\nport = 80\nto = \"192.168.1.3\"\n", 8, "already forwarded by the [[forward]] at line 1"),
        ("[wan\n", 1, "TOML syntax"),
        ("[router]\ndatapath = \"xdp\"\n", 2, "datapath"),
        # dotted keys: the line of the dotted key, at the top level or inside a section
        ("# natpass\nnat.mapping = \"sideways\"\n", 2, "mapping must be one of"),
        ("[passthrough]\nipsec = false\n'pptp'.on = true\n", 3, "'pptp' in [passthrough] is a table"),
        ("[timeouts]\nudp . seconds = 300\n", 2, "'udp' in [timeouts] is a table"),
        # a sub-table where a value belongs: header, inline table
        (WAN + "mtu = 1500\n\n[wan.gateway]\naddress = \"203.0.113.254\"\n", 5, "'gateway' in [wan] is a table"),
        ("[passthrough]\npptp = { on = true }\n", 2, "'pptp' in [passthrough] is a table"),
        ("[limits.max_flows]\nvalue = 10\n", 1, "'max_flows' in [limits] is a table"),
        ("pptp = true\n", 1, "outside any section"),
        # WAN addresses no router can use
        ("[wan]\naddresses = [\"0.0.0.0\"]\n", 2, "RFC 1122"),
        ("[wan]\naddresses = [\"203.0.113.1\",\n  \"255.255.255.255\"]\n", 2, "limited broadcast"),
        ("[wan]\naddresses = [\"224.0.0.5\"]\n", 2, "multicast"),
        ("[wan]\naddresses = [\"127.0.0.1\"]\n", 2, "loopback"),
        ("[wan]\naddresses = [\"169.254.10.1\"]\n", 2, "link-local"),
        ("[wan]\naddresses = [\"240.0.0.1\"]\n", 2, "reserved"),
        # a next hop on the wrong side, or the router itself
        (WAN + "gateway = \"192.168.1.254\"\n" + LAN, 3, "inside the LAN prefix 192.168.1.0/24"),
        (WAN + "gateway = \"203.0.113.1\"\n", 3, "one of the router's own WAN addresses"),
        (WAN + "gateway = \"255.255.255.255\"\n", 3, "cannot be the WAN gateway"),
        ("[lan]\nprefixes = [\"192.168.1.0/24\"]\naddress = \"192.168.1.255\"\n", 3, "broadcast address"),
        # timeouts the engine cannot keep, even in a lab
        ("[timeouts]\nallow_below_rfc = true\nudp = 0.001\n", 3, "from 1 to"),
        ("[timeouts]\ngre = 0.5\n", 2, "tick once a second"),
        ("[timeouts]\nfragment = 0\n", 2, "from 1 to"),
    ],
)
def test_invalid_config_names_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(full(text), "t.toml")
    assert info.value.line == line, str(info.value)
    assert words in info.value.message, str(info.value)
    assert str(info.value).startswith(f"t.toml:{line}:")


@pytest.mark.parametrize("text", ["", "# only a comment\n\n", "[wan]\n[lan]\n"])
def test_an_empty_file_is_refused_and_says_what_a_file_needs(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.toml")
    assert "[wan] addresses" in info.value.message and "[lan] prefixes" in info.value.message


@pytest.mark.parametrize(("text", "missing", "present"), [(WAN, "[lan] prefixes", "[wan]"),
                                                           (LAN, "[wan] addresses", "[lan]")])
def test_a_file_without_addresses_or_prefixes_gets_no_default(text: str, missing: str, present: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text + "[passthrough]\npptp = true\n", "t.toml")
    assert missing in info.value.message and f"{present} " not in info.value.message


def test_the_smallest_working_file_is_addresses_and_prefixes() -> None:
    cfg = parse_config(WAN + LAN)
    assert cfg.nat.wan_addresses == (ipaddress.IPv4Address("203.0.113.1").packed,)
    assert cfg.nat.lan_prefixes == (ipaddress.IPv4Network("192.168.1.0/24"),)


def test_dotted_keys_that_are_valid_toml_are_read() -> None:
    cfg = parse_config('wan.addresses = ["203.0.113.7"]\nlan.prefixes = ["192.168.4.0/24"]\n'
                       "passthrough.pptp = true\n")
    assert cfg.nat.wan_addresses == (ipaddress.IPv4Address("203.0.113.7").packed,)
    assert cfg.nat.passthrough.pptp


def test_a_file_that_is_not_utf8_names_the_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes((WAN + LAN + "# caf\u00e9 router\n").encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 5
    assert "not UTF-8" in info.value.message and "0xE9" in info.value.message
    res = subprocess.run([sys.executable, "-m", "natpass.cli", "config", "check", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and f"{path}:5: not UTF-8" in res.stderr and "Traceback" not in res.stderr


def test_rfc_minimums_can_be_lowered_only_on_purpose() -> None:
    cfg = parse_config(full("[timeouts]\nallow_below_rfc = true\nudp = 5\n"))
    assert cfg.nat.timeouts.udp == 5.0


def test_forward_defaults_to_the_same_port() -> None:
    cfg = parse_config(full('[[forward]]\nproto = "udp"\nport = 1701\nto = "192.168.1.20"\n'))
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


@pytest.mark.parametrize("bad", [
    b"",
    (WAN + LAN + "# caf\u00e9\n").encode("latin-1"),
    b'[wan]\naddresses = ["224.0.0.9"]\n' + LAN.encode(),
    WAN.encode() + b'gateway = "192.168.1.254"\n' + LAN.encode(),
    (WAN + LAN + "[passthrough]\npptp = true\n[timeouts]\nallow_below_rfc = true\nudp = 0.01\n").encode(),
    (WAN + LAN + "[passthrough.ipsec]\non = true\n").encode(),
])
def test_a_refused_reload_leaves_the_running_config_untouched(tmp_path: Path, bad: bytes) -> None:
    from natpass.passthrough import build_engine
    from natpass.router.daemon import RouterDaemon

    path = tmp_path / "natpass.toml"
    path.write_text(WAN + LAN + f'[router]\nstate_dir = "{tmp_path}"\n')
    d = RouterDaemon(str(path))
    d.engine = build_engine(d.config.nat)
    running, engine_config = d.config, d.engine.config
    path.write_bytes(bad)
    with pytest.raises(ConfigError):
        d.reload()
    assert d.config is running and d.engine.config is engine_config
    assert d.engine.status()["switches"] == {"pptp": False, "ipsec": False, "l2tp": False}
