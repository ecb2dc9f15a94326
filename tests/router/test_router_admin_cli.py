"""``natpass status``, ``natpass reload`` and ``natpass switch`` against a fake router on a Unix socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from natpass.cli import main
from natpass.router.admin import AdminServer
from natpass.router.config import ConfigError
from natpass.router.settings import ConfigChange, SwitchResult, exposure_of


class Router:
    """The part of RouterDaemon the admin server calls."""

    def __init__(self) -> None:
        self.switches = {"pptp": True, "ipsec": False, "l2tp": False, "strict": True}
        self.reload_error: Exception | None = None
        self.reloads = 0

    def status(self) -> dict[str, Any]:
        return {
            "uptime": 93784.0,
            "config_path": "/etc/natpass/natpass.toml",
            "flows": {"total": 2, "by_proto": {"tcp": 1, "udp": 1}},
            "drops": {"passthrough-disabled:ipsec": 11, "filtered": 3},
            "counters": {"packets_from_lan": 500, "flows_created": 2},
            "switches": dict(self.switches),
            "helpers": {"pptp": {"stats": {}, "tunnels": [{"lan": "192.168.1.10", "server": "198.51.100.7",
                                                           "call_id": 4660}]}},
        }

    def flows(self, limit: int = 200) -> list[dict[str, Any]]:
        return [
            {"proto": 6, "lan_addr": "192.168.1.10", "lan_port": 50000, "wan_addr": "203.0.113.1",
             "wan_port": 50000, "remote_addr": "198.51.100.7", "remote_port": 1723, "state": "established"},
            {"proto": 17, "lan_addr": "192.168.1.11", "lan_port": 5000, "wan_addr": "203.0.113.1",
             "wan_port": 41000, "remote_addr": "198.51.100.9", "remote_port": 53},
        ][:limit]

    def set_switch(self, name: str, on: bool) -> int:
        torn = 2 if self.switches[name] and not on else 0
        self.switches[name] = on
        return torn

    def change_switch(self, name: str, on: bool, *, runtime_only: bool = False,
                      who: str = "api") -> SwitchResult:
        return SwitchResult(name, on, self.set_switch(name, on), not runtime_only, None, exposure_of(name, on))

    def reload(self, path: str | None = None, who: str = "reload") -> ConfigChange:
        self.reloads += 1
        if self.reload_error is not None:
            raise self.reload_error
        return ConfigChange("no change", {}, None)


@pytest.fixture
def router(tmp_path: Path):
    daemon = Router()
    srv = AdminServer(daemon, tmp_path / "natpass.sock").start()
    yield daemon, str(srv.socket_path)
    srv.stop()


def test_status_table_shows_switches_drops_tunnels_and_connections(router, capsys) -> None:
    daemon, sock = router
    assert main(["status", "--socket", sock]) == 0
    out = capsys.readouterr().out
    assert "1d 02:03:04" in out  # uptime 93784 s
    assert "PPTP" in out and "MS-CHAPv2" in out
    assert "passthrough-disabled:ipsec" in out and "11" in out
    assert "198.51.100.7" in out and "4660" in out  # live tunnel
    assert "192.168.1.10:50000" in out and "198.51.100.9:53" in out  # connections as address:port
    assert "Connections: 2" in out
    strict_row = next(line for line in out.splitlines() if "Strict" in line)
    assert " on " in strict_row and "?" not in strict_row


def test_status_json_is_the_raw_status_object(router, capsys) -> None:
    daemon, sock = router
    assert main(["status", "--json", "--socket", sock]) == 0
    assert json.loads(capsys.readouterr().out) == daemon.status()


def test_status_finds_the_socket_through_the_config_file(router, tmp_path: Path, capsys) -> None:
    daemon, sock = router
    cfg = tmp_path / "natpass.toml"
    cfg.write_text(f'[wan]\naddresses = ["203.0.113.1"]\n[lan]\nprefixes = ["192.168.1.0/24"]\n'
                   f'[router]\nadmin_socket = "{sock}"\nstate_dir = "{tmp_path}"\n')
    assert main(["status", "--json", "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out)["switches"] == daemon.switches


def test_status_with_a_broken_config_names_it(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "natpass.toml"
    cfg.write_text("[passthrough]\npptp = maybe\n")
    assert main(["status", "--config", str(cfg)]) == 2
    assert str(cfg) in capsys.readouterr().err


def test_no_router_running_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["status", "--socket", str(tmp_path / "none.sock")]) == 1
    err = capsys.readouterr().err
    assert "no router is running" in err and "none.sock" in err
    assert main(["switch", "pptp", "on", "--socket", str(tmp_path / "none.sock")]) == 1
    assert "no router is running" in capsys.readouterr().err


def test_switch_off_reports_torn_down_tunnels(router, capsys) -> None:
    daemon, sock = router
    assert main(["switch", "pptp", "off", "--socket", sock]) == 0
    assert daemon.switches["pptp"] is False
    assert "2 tunnels torn down" in capsys.readouterr().out


def test_switch_on_prints_the_security_note(router, capsys) -> None:
    daemon, sock = router
    assert main(["switch", "l2tp", "on", "--socket", sock]) == 0
    assert daemon.switches["l2tp"] is True
    out = capsys.readouterr().out
    assert "no encryption" in out and "saved in the config file" in out


def test_switch_rejects_unknown_names(router, capsys) -> None:
    _, sock = router
    with pytest.raises(SystemExit):
        main(["switch", "openvpn", "on", "--socket", sock])


def test_reload_ok_and_refused(router, capsys) -> None:
    daemon, sock = router
    assert main(["reload", "--socket", sock]) == 0
    assert daemon.reloads == 1
    daemon.reload_error = ConfigError("/etc/natpass/natpass.toml", 7, "unknown key 'ppptp'")
    assert main(["reload", "--socket", sock]) == 2
    err = capsys.readouterr().err
    assert "/etc/natpass/natpass.toml:7" in err and "ppptp" in err and "kept" in err


def _pid_file_process(tmp_path: Path) -> subprocess.Popen[bytes]:
    """A stand-in router: its command line names natpass, SIGHUP makes it write a file."""
    code = (
        "import signal, sys, time, pathlib\n"
        "p = pathlib.Path(sys.argv[1])\n"
        "signal.signal(signal.SIGHUP, lambda *a: p.write_text('hup'))\n"
        "p.with_suffix('.ready').write_text('')\n"
        "time.sleep(20)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "natpass-fake.flag")])
    deadline = time.time() + 10
    while not (tmp_path / "natpass-fake.ready").exists() and time.time() < deadline:
        time.sleep(0.02)
    return proc


def test_reload_without_socket_falls_back_to_sighup_via_pid_file(tmp_path: Path, capsys) -> None:
    proc = _pid_file_process(tmp_path)
    try:
        (tmp_path / "natpass.pid").write_text(f"{proc.pid}\n")
        cfg = tmp_path / "natpass.toml"
        cfg.write_text(f'[wan]\naddresses = ["203.0.113.1"]\n[lan]\nprefixes = ["192.168.1.0/24"]\n'
                       f'[router]\nadmin_socket = "{tmp_path / "gone.sock"}"\nstate_dir = "{tmp_path}"\n')
        assert main(["reload", "--config", str(cfg)]) == 0
        assert f"pid {proc.pid}" in capsys.readouterr().out
        deadline = time.time() + 10
        while not (tmp_path / "natpass-fake.flag").exists() and time.time() < deadline:
            time.sleep(0.02)
        assert (tmp_path / "natpass-fake.flag").read_text() == "hup"
    finally:
        proc.kill()
        proc.wait()


def test_reload_never_signals_a_stale_pid(tmp_path: Path, capsys) -> None:
    # Our own pid: alive, but pytest's command line is not a natpass process... unless the path says so.
    me = os.getpid()
    cmdline = Path(f"/proc/{me}/cmdline").read_bytes()
    (tmp_path / "natpass.pid").write_text(str(me))
    cfg = tmp_path / "r.toml"
    cfg.write_text(f'[wan]\naddresses = ["203.0.113.1"]\n[lan]\nprefixes = ["192.168.1.0/24"]\n'
                   f'[router]\nadmin_socket = "{tmp_path / "gone.sock"}"\nstate_dir = "{tmp_path}"\n')
    if b"natpass" in cmdline:
        pytest.skip("this pytest runs with 'natpass' on its command line")
    hups: list[int] = []
    old = signal.signal(signal.SIGHUP, lambda *a: hups.append(1))
    try:
        assert main(["reload", "--config", str(cfg)]) == 1
    finally:
        signal.signal(signal.SIGHUP, old)
    assert hups == []
    assert "not a natpass process" in capsys.readouterr().err


def test_reload_without_socket_or_pid_file(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "r.toml"
    cfg.write_text(f'[wan]\naddresses = ["203.0.113.1"]\n[lan]\nprefixes = ["192.168.1.0/24"]\n'
                   f'[router]\nadmin_socket = "{tmp_path / "gone.sock"}"\nstate_dir = "{tmp_path}"\n')
    assert main(["reload", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "no router is running" in err and "natpass.pid" in err
