"""Switch changes saved in the config file, history, backup, restore and rollback: a real daemon
(engine and admin server, no packet sockets) driven through its API and through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from natpass.cli import main
from natpass.passthrough import build_engine
from natpass.router.admin import AdminServer
from natpass.router.cli_admin import AdminClient
from natpass.router.config import ConfigError
from natpass.router.daemon import RouterDaemon
from natpass.router.settings import BackupError, with_header

CONFIG = """\
# office router: keep this comment
[wan]
addresses = ["203.0.113.1"]   # from the ISP

[lan]
prefixes = ["192.168.1.0/24"]
interface = "lan0"

[passthrough]
pptp = false   # legacy VPN only
ipsec = false

[router]
state_dir = "{state}"
"""


@pytest.fixture
def daemon(tmp_path: Path) -> RouterDaemon:
    cfg = tmp_path / "natpass.toml"
    cfg.write_text(CONFIG.format(state=tmp_path / "state"))
    d = RouterDaemon(str(cfg))
    d.engine = build_engine(d.config.nat)
    d._record_version("start")
    return d


def switches(d: RouterDaemon) -> dict[str, bool]:
    assert d.engine is not None
    return dict(d.engine.status()["switches"])


def test_switch_is_saved_with_comments_and_survives_a_reload(daemon: RouterDaemon) -> None:
    result = daemon.change_switch("pptp", True, who="cli")
    assert result.saved and result.save_error is None
    assert result.exposure is not None and "MS-CHAPv2" in result.exposure
    text = Path(daemon.config_path).read_text()
    assert "pptp = true   # legacy VPN only" in text and "# office router: keep this comment" in text
    daemon.reload()
    assert switches(daemon)["pptp"] is True
    versions = daemon.config_history()
    assert versions[0]["who"] == "cli" and versions[0]["summary"] == "pptp on"
    assert versions[1]["who"] == "start"
    assert daemon.change_switch("l2tp", True).exposure is None  # opens nothing new
    # A new process reading the file starts with the switch on.
    assert RouterDaemon(daemon.config_path).config.nat.passthrough.pptp is True


def test_runtime_only_switch_is_not_saved_and_a_reload_says_what_it_changed(
        daemon: RouterDaemon, caplog: pytest.LogCaptureFixture) -> None:
    before = Path(daemon.config_path).read_bytes()
    result = daemon.change_switch("ipsec", True, runtime_only=True, who="cli")
    assert not result.saved and Path(daemon.config_path).read_bytes() == before
    caplog.set_level("INFO", logger="natpass.router")
    change = daemon.reload()
    assert switches(daemon)["ipsec"] is False
    assert change.summary == "ipsec off"
    assert "ipsec off" in caplog.text


def test_reload_of_a_hand_edit_names_each_switch_it_changed(daemon: RouterDaemon) -> None:
    daemon.change_switch("pptp", True)
    path = Path(daemon.config_path)
    path.write_text(path.read_text().replace("pptp = true", "pptp = false").replace("ipsec = false", "ipsec = true"))
    change = daemon.reload()
    assert change.torn_down == {"pptp": 0, "ipsec": 0}
    assert change.summary == "pptp off; ipsec on"
    assert switches(daemon) == {"pptp": False, "ipsec": True, "l2tp": False}
    assert daemon.config_history()[0] == {**daemon.config_history()[0], "who": "reload",
                                          "summary": "pptp off; ipsec on"}


def test_switch_not_saved_when_the_file_no_longer_validates(daemon: RouterDaemon) -> None:
    path = Path(daemon.config_path)
    path.write_text(path.read_text().replace("[lan]", "[lann]"))
    broken = path.read_bytes()
    result = daemon.change_switch("pptp", True)
    assert switches(daemon)["pptp"] is True  # applied now ...
    assert not result.saved and result.save_error is not None and ":5:" in result.save_error
    assert path.read_bytes() == broken  # ... and the user's file left as it was


def test_restore_applies_a_backup_and_keeps_the_replaced_version(daemon: RouterDaemon, tmp_path: Path) -> None:
    backup = daemon.backup()
    daemon.change_switch("pptp", True)
    daemon.change_switch("ipsec", True)
    change = daemon.restore(backup.encode(), "saved.toml")
    assert switches(daemon) == {"pptp": False, "ipsec": False, "l2tp": False}
    assert change.summary == "pptp off; ipsec off"
    assert Path(daemon.config_path).read_text() == CONFIG.format(state=tmp_path / "state")
    whos = [v["who"] for v in daemon.config_history()]
    assert whos[:3] == ["restore", "api", "api"]


@pytest.mark.parametrize("damage", ["tamper", "invalid", "restart-only", "not-utf8"])
def test_refused_restore_changes_nothing(daemon: RouterDaemon, damage: str) -> None:
    daemon.change_switch("ipsec", True)
    path = Path(daemon.config_path)
    before, history = path.read_bytes(), daemon.config_history()
    text = daemon.backup()
    data: bytes
    if damage == "tamper":
        data = text.replace("ipsec = true", "ipsec = false").encode()
        error: type[Exception] = BackupError
    elif damage == "invalid":
        body = path.read_text().replace('prefixes = ["192.168.1.0/24"]', 'prefixes = ["192.168.1.0/40"]')
        data = with_header(body, who="x", summary="x", source="x").encode()
        error = ConfigError
    elif damage == "restart-only":
        body = path.read_text().replace('interface = "lan0"', 'interface = "lan9"')
        data = with_header(body, who="x", summary="x", source="x").encode()
        error = ConfigError
    else:
        data = b"[wan]\naddresses = [\"\xff\"]\n"
        error = BackupError
    with pytest.raises(error) as err:
        daemon.restore(data, "upload.toml")
    if damage == "invalid":
        assert isinstance(err.value, ConfigError) and err.value.path == "upload.toml"
        assert data.decode().split("\n")[err.value.line - 1].startswith("prefixes")
    assert path.read_bytes() == before
    assert daemon.config_history() == history
    assert switches(daemon)["ipsec"] is True


def test_rollback_returns_to_the_previous_or_a_named_version(daemon: RouterDaemon) -> None:
    daemon.change_switch("pptp", True)
    daemon.change_switch("ipsec", True)
    first = daemon.config_history()[-1]["number"]
    change = daemon.rollback()  # the one before the newest: pptp on, ipsec off
    assert switches(daemon) == {"pptp": True, "ipsec": False, "l2tp": False}
    assert change.summary == "ipsec off"
    daemon.rollback(first)
    assert switches(daemon) == {"pptp": False, "ipsec": False, "l2tp": False}
    assert daemon.config_history()[0]["who"] == f"rollback to #{first}"
    with pytest.raises(KeyError):
        daemon.rollback(999)


def test_history_is_bounded(daemon: RouterDaemon) -> None:
    daemon.history.keep = 5
    for i in range(12):
        daemon.change_switch("l2tp", i % 2 == 0)
    assert len(daemon.config_history()) == 5


# ----- the same through the admin API and the CLI ---------------------------------------------------
@pytest.fixture
def served(daemon: RouterDaemon, tmp_path: Path) -> Any:
    with AdminServer(daemon, tmp_path / "natpass.sock") as srv:
        yield srv


def test_api_backup_restore_history_rollback_and_refusals(daemon: RouterDaemon, served: AdminServer) -> None:
    assert served.socket_path is not None
    api = AdminClient(served.socket_path)
    code, backup = api.request("GET", "/api/config/backup")
    assert code == 200 and backup.startswith("# natpass-backup: 1")
    assert api.request("POST", "/api/switch/pptp", {"on": True})[1]["saved"] is True
    code, answer = api.request("POST", "/api/config/restore", {"backup": backup, "name": "b.toml"})
    assert code == 200 and answer["restored"] is True and answer["summary"] == "pptp off"
    code, answer = api.request("POST", "/api/config/restore",
                               {"backup": backup.replace("pptp = false", "pptp = true"), "name": "b.toml"})
    assert code == 422 and "SHA-256" in answer["message"] and answer["path"] == "b.toml"
    code, answer = api.request("POST", "/api/config/restore", {"backup": 5})
    assert code == 400
    code, hist = api.request("GET", "/api/config/history")
    assert code == 200 and [v["who"] for v in hist["versions"]][:2] == ["admin-unix", "admin-unix"]
    code, answer = api.request("POST", "/api/config/rollback", {})
    assert code == 200 and answer["summary"] == "pptp on"
    assert api.request("POST", "/api/config/rollback", {"number": 999})[0] == 404
    assert api.request("POST", "/api/config/rollback", {"number": "1"})[0] == 400
    assert switches(daemon)["pptp"] is True


def test_cli_switch_backup_restore_history_rollback(daemon: RouterDaemon, served: AdminServer, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    sock = str(served.socket_path)
    assert main(["switch", "pptp", "on", "--socket", sock]) == 0
    out = capsys.readouterr().out
    assert "exposes: Turning PPTP passthrough on" in out and "saved in the config file" in out
    backup = tmp_path / "b.toml"
    assert main(["config", "backup", str(backup), "--socket", sock]) == 0
    assert main(["switch", "pptp", "off", "--runtime-only", "--socket", sock]) == 0
    assert "not saved (--runtime-only)" in capsys.readouterr().out
    assert main(["config", "restore", str(backup), "--socket", sock]) == 0
    assert switches(daemon)["pptp"] is True
    bad = tmp_path / "bad.toml"
    bad.write_text(backup.read_text().replace('addresses = ["203.0.113.1"]', 'addresses = ["0.0.0.0"]'))
    capsys.readouterr()
    assert main(["config", "restore", str(bad), "--socket", sock]) == 2
    assert "SHA-256" in capsys.readouterr().err
    assert main(["config", "history", "--json", "--socket", sock]) == 0
    versions = json.loads(capsys.readouterr().out)["versions"]
    assert versions[0]["summary"] == "pptp on"
    assert main(["config", "rollback", "--socket", sock]) == 0
    assert "rolled back and applied" in capsys.readouterr().out


def test_cli_works_on_the_files_when_no_router_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "natpass.toml"
    state = tmp_path / "state"
    cfg.write_text(CONFIG.format(state=state).replace("[router]", f'[router]\nadmin_socket = "{tmp_path / "none.sock"}"'))
    backup = tmp_path / "b.toml"
    assert main(["config", "backup", str(backup), "--config", str(cfg)]) == 0
    cfg.write_text(cfg.read_text().replace("pptp = false", "pptp = true"))
    assert main(["config", "restore", str(backup), "--config", str(cfg)]) == 0
    assert "no router is running" in capsys.readouterr().out
    assert "pptp = false   # legacy VPN only" in cfg.read_text()
    assert main(["config", "history", "--config", str(cfg)]) == 0
    assert "pptp off" in capsys.readouterr().out
    assert main(["config", "rollback", "--config", str(cfg)]) == 1  # only one version kept
    assert "no such config version" in capsys.readouterr().err
