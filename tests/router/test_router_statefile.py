"""The saved connection state: atomic, root-only, checked; never trusted when it is not ours."""

from __future__ import annotations

import ipaddress
import logging
import os
import stat

import pytest
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from natpass.nat import verdict as V
from natpass.nat.config import NatConfig, Passthrough, PortForward, Timeouts
from natpass.passthrough import build_engine
from natpass.router import statefile
from natpass.router.restart import StateKeeper
from natpass.router.settings import config_facts, describe_changes

WAN = ipaddress.IPv4Address("203.0.113.1").packed


def nat(**kw) -> NatConfig:
    kw.setdefault("wan_addresses", (WAN,))
    kw.setdefault("lan_prefixes", (ipaddress.IPv4Network("192.168.1.0/24"),))
    kw.setdefault("seed", 3)
    return NatConfig(**kw)


def udp_out(sport: int) -> bytearray:
    return bytearray(bytes(IP(src="192.168.1.10", dst="198.51.100.7") / UDP(sport=sport, dport=53)
                           / Raw(b"q")))


def busy_engine(cfg: NatConfig, n: int = 5):
    e = build_engine(cfg)
    for i in range(n):
        assert e.process(udp_out(40000 + i), True, 10.0) == V.TO_WAN
    return e


def test_round_trip_restores_flows_and_the_file_is_root_only(tmp_path):
    cfg = nat()
    keeper = StateKeeper(str(tmp_path), 30)
    keeper.save_now(busy_engine(cfg), cfg, 10.0)
    for name in (statefile.STATE_FILE, statefile.KEY_FILE):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    fresh = build_engine(cfg)
    rep = StateKeeper(str(tmp_path), 30).restore(fresh, cfg, 500.0)
    assert rep is not None and rep.flows == 5 and not rep.skipped
    assert len(fresh.table) == 5
    assert not (tmp_path / statefile.STATE_FILE).exists()  # used once


def _saved(tmp_path) -> bytes:
    cfg = nat()
    StateKeeper(str(tmp_path), 30).save_now(busy_engine(cfg), cfg, 10.0)
    return (tmp_path / statefile.STATE_FILE).read_bytes()


def _refused(tmp_path, caplog, data: bytes | None = None, mode: int = 0o600) -> str:
    path = tmp_path / statefile.STATE_FILE
    if data is not None:
        path.write_bytes(data)
    os.chmod(path, mode)
    fresh = build_engine(nat())
    with caplog.at_level(logging.INFO, logger="natpass.router"):
        caplog.clear()
        assert StateKeeper(str(tmp_path), 30).restore(fresh, nat(), 20.0) is None
    assert len(fresh.table) == 0
    lines = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(lines) == 1
    return lines[0]


def test_torn_file_is_ignored(tmp_path, caplog):
    data = _saved(tmp_path)
    assert "torn" in _refused(tmp_path, caplog, data[: len(data) - 7])
    assert "torn" in _refused(tmp_path, caplog, data[:10])


def test_corrupt_and_tampered_files_are_ignored(tmp_path, caplog):
    data = bytearray(_saved(tmp_path))
    data[-3] ^= 0x40
    assert "checksum" in _refused(tmp_path, caplog, bytes(data))
    # a file re-signed with another key (or a plain SHA-256) is refused as well
    forged = statefile.encode({"saved_wall": 0.0, "engine": {"format": 1}}, b"k" * 32)
    assert "checksum" in _refused(tmp_path, caplog, forged)
    assert "not a natpass state file" in _refused(tmp_path, caplog, b"garbage\n" + bytes(100))


def test_foreign_version_is_ignored(tmp_path, caplog):
    data = _saved(tmp_path)
    head, body = data.split(b"\n", 1)
    parts = head.split(b" ")
    parts[1] = b"99"
    assert "another natpass version" in _refused(tmp_path, caplog, b" ".join(parts) + b"\n" + body)


def test_file_readable_by_others_is_ignored(tmp_path, caplog):
    _saved(tmp_path)
    assert "0600" in _refused(tmp_path, caplog, None, mode=0o644)


def test_loose_key_is_refused(tmp_path, caplog):
    _saved(tmp_path)
    os.chmod(tmp_path / statefile.KEY_FILE, 0o644)
    assert "readable or writable by others" in _refused(tmp_path, caplog)


def test_switch_now_off_drops_its_protocol_state_and_changes_are_logged(tmp_path, caplog):
    on = nat(passthrough=Passthrough(pptp=True))
    off = nat(passthrough=Passthrough(pptp=False), timeouts=Timeouts(udp=600.0))
    e = busy_engine(on)
    e.status()  # helpers exist
    keeper = StateKeeper(str(tmp_path), 30)
    content = keeper.content(e, on, 10.0)
    content["engine"]["helpers"]["pptp"] = {"controls": [], "ended": [[], []],
                                            "bindings": [["c6336407", "cb007101", "c0a8010a", -1.0]]}
    statefile.write(tmp_path, content, keeper.key())
    with caplog.at_level(logging.INFO, logger="natpass.router"):
        rep = StateKeeper(str(tmp_path), 30).restore(build_engine(off), off, 20.0)
    assert rep is not None and rep.skipped == {"pptp:switched-off": 1}
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "pptp off" in text and "timeouts.udp 300.0 -> 600.0" in text


def test_config_changes_names_forwards():
    a = config_facts(nat())
    b = config_facts(nat(forwards=(PortForward(6, 443, ipaddress.IPv4Address("192.168.1.5").packed,
                                               443),)))
    assert describe_changes(a, b) == ["forward +tcp/443->192.168.1.5:443"]
    assert describe_changes(b, a) == ["forward -tcp/443->192.168.1.5:443"]


def test_background_save_forks_and_the_parent_keeps_its_state(tmp_path):
    cfg = nat()
    e = busy_engine(cfg)
    keeper = StateKeeper(str(tmp_path), 5)
    keeper.tick(e, cfg, 10.0)
    keeper.close()
    assert keeper.saves == 1 and keeper.last_fork_pause > 0
    assert len(e.table) == 5
    loaded = statefile.load(tmp_path)
    assert len(loaded.engine["flows"]) == 5
    keeper.tick(e, cfg, 12.0)  # not due yet
    keeper.close()
    assert keeper.saves == 1


@pytest.mark.parametrize("interval", [0])
def test_interval_zero_disables_periodic_saves(tmp_path, interval):
    cfg = nat()
    keeper = StateKeeper(str(tmp_path), interval)
    keeper.tick(busy_engine(cfg), cfg, 100.0)
    keeper.close()
    assert not (tmp_path / statefile.STATE_FILE).exists()
