"""Config write-back, history and backups (natpass.router.settings)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from natpass.router.config import EXAMPLE, ConfigError, parse_config
from natpass.router.settings import (
    BackupError,
    ConfigHistory,
    read_checked,
    set_switches_text,
    summarize,
    with_header,
    write_atomic,
)

COMMENTED = """\
# my router: keep this comment
[wan]
addresses = ["203.0.113.1"]   # the ISP's address

[lan]
prefixes = ["192.168.1.0/24"]

[passthrough]
pptp = false   # only for the old office VPN
ipsec = false
"""


def test_switch_written_back_keeps_comments_and_layout() -> None:
    out = set_switches_text(COMMENTED, {"pptp": True})
    assert "# my router: keep this comment" in out
    assert "# the ISP's address" in out
    assert "# only for the old office VPN" in out
    assert parse_config(out).nat.passthrough.pptp is True
    assert parse_config(out).nat.passthrough.ipsec is False
    # Only the changed value differs, line by line.
    changed = [(a, b) for a, b in zip(COMMENTED.splitlines(), out.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and "pptp = true" in changed[0][1]


def test_switch_written_into_a_file_without_the_section() -> None:
    text = '[wan]\naddresses = ["203.0.113.1"]\n[lan]\nprefixes = ["192.168.1.0/24"]\n'
    out = set_switches_text(text, {"l2tp": True, "strict": True})
    cfg = parse_config(out)
    assert cfg.nat.passthrough.l2tp and cfg.nat.passthrough.strict
    assert out.startswith(text)


def test_switch_write_refuses_a_file_that_does_not_validate() -> None:
    bad = COMMENTED.replace("[lan]", "[lann]")
    with pytest.raises(ConfigError) as err:
        set_switches_text(bad, {"pptp": True}, "natpass.toml")
    assert err.value.line == 5


def test_summary_names_each_difference() -> None:
    old = parse_config(EXAMPLE)
    new = parse_config(set_switches_text(EXAMPLE.replace("udp = 300", "udp = 600"), {"pptp": True}))
    line = summarize(old, new)
    assert "pptp on" in line
    assert "timeouts.udp 300.0 -> 600.0" in line
    assert summarize(old, old) == "no change"
    assert summarize(None, old) == "first version"


def test_summary_names_forwards_added_and_removed() -> None:
    fwd = '\n[[forward]]\nproto = "tcp"\nport = 8080\nto = "192.168.1.10:80"\n'
    old = parse_config(EXAMPLE)
    new = parse_config(EXAMPLE + fwd)
    assert summarize(old, new) == "forward +tcp/8080->192.168.1.10:80"
    assert summarize(new, old) == "forward -tcp/8080->192.168.1.10:80"


def test_backup_round_trip_and_line_numbers_in_the_backup_itself(tmp_path: Path) -> None:
    text = with_header(COMMENTED, who="cli", summary="backup", source="/etc/natpass/natpass.toml")
    checked = read_checked(text.encode(), "b.toml")
    assert checked.body == COMMENTED
    assert checked.fields["who"] == "cli"
    # A backup is itself a valid config file.
    assert parse_config(text).nat.wan_addresses == checked.config.nat.wan_addresses


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda t: t.replace("pptp = false", "pptp = true"), "SHA-256"),        # tampered
        (lambda t: t[: len(t) // 2], "SHA-256"),                                 # torn
        (lambda t: t.replace("natpass-backup: 1", "natpass-backup: 9"), "version"),  # foreign version
        (lambda t: "\n".join(ln for ln in t.split("\n") if "sha256" not in ln), "incomplete"),
    ],
)
def test_damaged_backups_are_refused(damage, message) -> None:  # type: ignore[no-untyped-def]
    text = with_header(COMMENTED, who="cli", summary="s", source="x")
    with pytest.raises(BackupError) as err:
        read_checked(damage(text).encode(), "b.toml")
    assert message in str(err.value)


def test_backup_that_is_not_utf8_is_refused_with_its_line() -> None:
    with pytest.raises(BackupError) as err:
        read_checked(b"[wan]\n\xff\xfe = 1\n", "b.toml")
    assert err.value.line == 2


def test_invalid_config_in_a_valid_backup_names_the_backup_line() -> None:
    body = COMMENTED.replace('prefixes = ["192.168.1.0/24"]', 'prefixes = ["192.168.1.0/33"]')
    text = with_header(body, who="cli", summary="s", source="x")
    with pytest.raises(ConfigError) as err:
        read_checked(text.encode(), "b.toml")
    assert err.value.path == "b.toml"
    assert text.split("\n")[err.value.line - 1].startswith("prefixes")


def test_plain_config_is_accepted_as_a_backup() -> None:
    checked = read_checked(COMMENTED.encode(), "plain.toml")
    assert checked.fields == {} and checked.body == COMMENTED


def test_history_keeps_versions_newest_first_bounded_and_private(tmp_path: Path) -> None:
    hist = ConfigHistory(tmp_path, keep=3)
    bodies = [set_switches_text(COMMENTED, {"pptp": bool(i % 2), "ipsec": i >= 2}) for i in range(5)]
    for i, body in enumerate(bodies):
        assert hist.record(body, who=f"cli{i}", summary=f"change {i}", source="x") is not None
    assert hist.record(bodies[-1], who="reload", summary="same", source="x") is None  # no new version
    versions = hist.versions()
    assert [v.number for v in versions] == [5, 4, 3]
    assert [v.who for v in versions] == ["cli4", "cli3", "cli2"]
    assert hist.get(4).body == bodies[3]
    assert stat.S_IMODE(os.stat(hist.dir).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(v.path).st_mode) == 0o600 for v in versions)
    with pytest.raises(KeyError):
        hist.get(1)


def test_history_leaves_out_a_damaged_version(tmp_path: Path) -> None:
    hist = ConfigHistory(tmp_path)
    hist.record(COMMENTED, who="a", summary="1", source="x")
    v2 = hist.record(set_switches_text(COMMENTED, {"pptp": True}), who="b", summary="2", source="x")
    assert v2 is not None
    v2.path.write_text(v2.path.read_text().replace("pptp = true", "pptp = false"))
    assert [v.number for v in hist.versions()] == [1]
    with pytest.raises(BackupError):
        hist.get(2)


def test_atomic_write_replaces_whole_and_is_private(tmp_path: Path) -> None:
    p = tmp_path / "natpass.toml"
    p.write_text("old")
    os.chmod(p, 0o644)
    write_atomic(p, "new")
    assert p.read_text() == "new"
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644  # the user's mode is kept
    write_atomic(tmp_path / "fresh.toml", "x")
    assert stat.S_IMODE(os.stat(tmp_path / "fresh.toml").st_mode) == 0o600
    write_atomic(p, "newer", 0o600)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert sorted(x.name for x in tmp_path.iterdir()) == ["fresh.toml", "natpass.toml"]
