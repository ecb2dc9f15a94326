"""Backup, restore, rollback and diagnose through the admin web app (fake router, real checks):
the success path and every refusal, each of which changes nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import natpass.web.app as web_app
import natpass.web.routes.diagnose as web_diagnose
from natpass.web.app import MAX_CAPTURE, WebOptions
from tests.router.test_router_web import PASSWORD, ROUTER, FakeRouter, client, env, login, nothing_changed

__all__ = ["env"]  # the fixture, used by name

DATA = Path(__file__).resolve().parents[1] / "data" / "diagnose"
PPTP_OFF = DATA / "pptp-basic-natpass-switch-off-client.pcap"


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:300]
    return m.group(1)


def page_login(c) -> str:
    r = c.post("/login", data={"password": PASSWORD, "next": "/backup"})
    assert r.status_code == 303
    return csrf_of(c.get("/backup").text)


# ----- backup ------------------------------------------------------------------------------------

def test_a_backup_is_an_attachment_that_needs_a_login(env):
    router, _, _ = env
    c = client(env)
    assert c.get("/api/config/backup").status_code == 401
    assert c.get("/backup/download").status_code == 303
    login(c)
    for path in ("/api/config/backup", "/backup/download"):
        r = c.get(path)
        assert r.status_code == 200
        assert r.headers["content-disposition"].startswith('attachment; filename="natpass-backup-')
        assert r.text.startswith("# natpass-backup:") and router.config_text in r.text
        assert "who: web session admin" in r.text


def test_a_downloaded_backup_restores_through_the_api_and_the_page(env):
    router, _, _ = env
    c = client(env)
    csrf = login(c)
    text = c.get("/api/config/backup").text
    r = c.post("/api/config/restore", json={"backup": text, "name": "saved.toml"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert r.json()["restored"] is True and r.json()["version"] == 3
    assert router.restores == ["saved.toml"]
    csrf = page_login(c)
    r = c.post("/backup/restore", data={"csrf": csrf}, files={"backup": ("mine.toml", text.encode(), "text/plain")})
    assert r.status_code == 303 and r.headers["location"].startswith("/backup?done=Restored")
    assert router.restores == ["saved.toml", "mine.toml"]
    page = c.get(r.headers["location"]).text
    assert "Restored mine.toml" in page and "restore of mine.toml" in page  # flash and history row


def _tampered(router: FakeRouter) -> str:
    return router.backup().replace('prefixes = ["192.168.1.0/24"]', 'prefixes = ["192.168.7.0/24"]')


@pytest.mark.parametrize("kind", ["tampered", "invalid", "restart", "not-utf8"])
def test_a_bad_backup_is_refused_422_with_reason_and_line_and_changes_nothing(env, kind):
    router, _, _ = env
    c = client(env)
    csrf = login(c)
    before = router.config
    data = {
        "tampered": _tampered(router),
        "invalid": router.config_text + "[router]\nnonsense = 1\n",
        "restart": router.config_text.replace("[lan]\n", '[lan]\naddress = "192.168.1.254"\n'),
        "not-utf8": "",
    }[kind]
    raw = b"[wan]\n\xff\xfe\n" if kind == "not-utf8" else data.encode()
    if kind != "not-utf8":
        r = c.post("/api/config/restore", json={"backup": data, "name": "bad.toml"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["path"] == "bad.toml" and body["message"] in body["error"]
        if kind != "restart":
            assert body["line"] > 0
    r = c.post("/backup/restore", data={"csrf": csrf}, files={"backup": ("bad.toml", raw, "text/plain")})
    assert r.status_code == 422
    assert "Refused:" in r.text and "bad.toml" in r.text and "Nothing was changed" in r.text
    assert nothing_changed(router) and router.config is before
    assert any("restore of bad.toml refused" in x["text"] for x in c.get("/api/log").json()["log"])


def test_restore_refusals_without_session_csrf_or_file_change_nothing(env):
    router, _, _ = env
    c = client(env)
    text = router.backup().encode()
    assert c.post("/api/config/restore", json={"backup": text.decode()}).status_code == 401
    csrf = login(c)
    assert c.post("/api/config/restore", json={"backup": text.decode()}).status_code == 403
    assert c.post("/api/config/restore", json={"backup": text.decode()},
                  headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert c.post("/api/config/restore", json={"text": "x"}, headers={"X-CSRF-Token": csrf}).status_code == 400
    assert c.post("/backup/restore", data={"csrf": "wrong"},
                  files={"backup": ("b.toml", text, "text/plain")}).status_code == 403
    assert c.post("/backup/restore", data={"csrf": csrf}).status_code == 415  # not a file upload
    assert c.post("/backup/restore", data={"csrf": csrf}, files={"other": ("b.toml", text, "text/plain")}).status_code == 400
    assert nothing_changed(router)


def test_an_oversized_backup_is_refused_413_and_changes_nothing(env):
    router, _, _ = env
    c = client(env, WebOptions(max_backup=4096))
    csrf = login(c)
    big = router.backup() + "#" * 5000 + "\n"
    r = c.post("/api/config/restore", json={"backup": big}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 413
    r = c.post("/backup/restore", data={"csrf": csrf}, files={"backup": ("big.toml", big.encode(), "text/plain")})
    assert r.status_code == 413
    assert nothing_changed(router)


# ----- history and rollback ----------------------------------------------------------------------

def test_the_history_lists_versions_and_a_rollback_is_one_click(env):
    router, _, _ = env
    c = client(env)
    assert c.get("/api/config/history").status_code == 401
    login(c)
    assert c.get("/api/config/history").json()["versions"] == router.config_history()
    page = page_login(c)  # a new session: its CSRF token serves page and API alike
    html = c.get("/backup").text
    assert "first start" in html and "passthrough pptp on" in html and "running now" in html
    assert 'id="rollback-1"' in html and 'id="rollback-2"' not in html  # the running one has no button
    assert 'class="scroll-hint"' in html and 'role="region" aria-label="Config history"' in html
    r = c.post("/backup/rollback", data={"csrf": page, "number": "1"})
    assert r.status_code == 303 and router.rollbacks == [1]
    assert "Back to version #1" in c.get(r.headers["location"]).text
    r = c.post("/api/config/rollback", json={}, headers={"X-CSRF-Token": page})
    assert r.status_code == 200 and r.json()["rolled_back"] is True and r.json()["torn_down"] == {"pptp": 1}
    assert router.rollbacks == [1, 2]


def test_rollback_refusals_change_nothing(env):
    router, _, _ = env
    c = client(env)
    assert c.post("/api/config/rollback", json={"number": 1}).status_code == 401
    csrf = login(c)
    assert c.post("/api/config/rollback", json={"number": 1}).status_code == 403
    assert c.post("/api/config/rollback", json={"number": "1"}, headers={"X-CSRF-Token": csrf}).status_code == 400
    assert c.post("/api/config/rollback", json={"number": True}, headers={"X-CSRF-Token": csrf}).status_code == 400
    r = c.post("/api/config/rollback", json={"number": 99}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 404 and "99" in r.json()["error"]
    assert c.post("/backup/rollback", data={"csrf": "nope", "number": "1"}).status_code == 403
    assert c.post("/backup/rollback", data={"csrf": csrf, "number": "x"}).status_code == 400
    assert c.post("/backup/rollback", data={"csrf": csrf, "number": "99"}).status_code == 404
    assert nothing_changed(router)


# ----- diagnose ----------------------------------------------------------------------------------

def test_an_uploaded_capture_is_diagnosed_on_the_page_and_through_the_api(env):
    router, _, _ = env
    c = client(env)
    data = PPTP_OFF.read_bytes()
    assert c.post("/api/diagnose", content=data).status_code == 401
    csrf = login(c)
    r = c.post("/api/diagnose?name=call.pcap", content=data,
               headers={"X-CSRF-Token": csrf, "Content-Type": "application/vnd.tcpdump.pcap"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["capture"]["file"] == "call.pcap"
    codes = [f["code"] for f in report["findings"]]
    assert "gre-blocked" in codes
    page = page_login(c)
    r = c.post("/diagnose", data={"csrf": page, "vantage": ""},
               files={"capture": (PPTP_OFF.name, data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    html = r.text
    gre = next(f for f in report["findings"] if f["code"] == "gre-blocked")
    assert 'id="finding-gre-blocked"' in html and f"Windows error {gre['windows_error']}" in html
    assert gre["advice"].split(";")[0][:60] in html.replace("&#x27;", "'")
    pptp = next(p for p in report["protocols"] if p["name"] == "pptp")
    assert pptp["status"] in html and " → ".join(ph["name"] for ph in pptp["phases"]) in html
    assert f"frame {gre['evidence'][0]['frame']}" in html and "worked out from the capture" in html
    assert 'role="region" aria-label="VPN protocols seen"' in html and 'class="scroll-hint"' in html
    first = pptp["phases"][0]
    assert f"{first['time']:.3f} s</span> {first['name']}" in html and f"never reached: {pptp['stopped_at']}" in html
    assert nothing_changed(router)
    assert any(x["kind"] == "diagnose" for x in c.get("/api/log").json()["log"])


def test_a_given_vantage_is_used_and_an_unknown_one_refused(env):
    c = client(env)
    csrf = login(c)
    data = PPTP_OFF.read_bytes()
    r = c.post("/api/diagnose?vantage=router-wan", content=data, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["vantage"] == "router-wan"
    r = c.post("/api/diagnose?vantage=moon", content=data, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422 and "vantage" in r.json()["error"]


def test_garbage_and_malformed_captures_are_refused_with_the_reason(env):
    router, _, _ = env
    c = client(env)
    csrf = login(c)
    garbage = b"this is not a capture at all\n" * 10
    r = c.post("/api/diagnose", content=garbage, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 415 and "pcap" in r.json()["error"]
    truncated = PPTP_OFF.read_bytes()[:10]  # a pcap magic number, then a torn header
    r = c.post("/api/diagnose", content=truncated, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422 and r.json()["error"].startswith("capture not diagnosed")
    page = page_login(c)
    for blob, status in ((garbage, 415), (truncated, 422)):
        r = c.post("/diagnose", data={"csrf": page}, files={"capture": ("x.pcap", blob, "application/octet-stream")})
        assert r.status_code == status and "Refused:" in r.text
    assert nothing_changed(router)


def test_diagnose_refusals_csrf_size_and_no_file(env):
    router, _, _ = env
    c = client(env, WebOptions(max_capture=1000))
    csrf = login(c)
    data = PPTP_OFF.read_bytes()
    assert len(data) > 1000
    assert c.post("/api/diagnose", content=data[:500]).status_code == 403
    assert c.post("/api/diagnose", content=data, headers={"X-CSRF-Token": csrf}).status_code == 413
    r = c.post("/diagnose", data={"csrf": csrf}, files={"capture": ("x.pcap", data, "application/octet-stream")})
    assert r.status_code == 413
    assert c.post("/diagnose", data={"csrf": "wrong"},
                  files={"capture": ("x.pcap", data[:500], "application/octet-stream")}).status_code == 403
    assert c.post("/diagnose", data={"csrf": csrf}).status_code == 415
    assert MAX_CAPTURE == 20 * 1024 * 1024 == WebOptions().body_limit("/api/diagnose")
    assert nothing_changed(router)


def test_the_new_pages_are_linked_and_described_in_openapi(env):
    c = client(env)
    login(c)
    html = c.get("/").text
    assert 'href="/diagnose"' in html and 'href="/backup"' in html
    paths = c.get("/api/openapi.json").json()["paths"]
    for path in ("/api/config/backup", "/api/config/history", "/api/config/restore", "/api/config/rollback",
                 "/api/diagnose", "/api/diagnose/live"):
        assert path in paths
    assert ROUTER.startswith("http://")


def test_the_diagnosis_runs_in_a_worker_thread_one_at_a_time(env, monkeypatch):
    seen: list[bool] = []

    def fake_upload(data: bytes, name: str = "upload.pcap", vantage: str | None = None) -> dict[str, object]:
        try:
            asyncio.get_running_loop()
            seen.append(True)  # on the event loop: wrong
        except RuntimeError:
            seen.append(False)
        return {"capture": {"file": name}, "protocols": [], "findings": []}

    monkeypatch.setattr(web_diagnose, "diagnose_upload", fake_upload)
    router, _, _ = env
    app = web_app.create_app(router, env[1])
    c = TestClient(app, base_url=ROUTER, follow_redirects=False)
    csrf = login(c)
    data = PPTP_OFF.read_bytes()
    assert c.post("/api/diagnose", content=data, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert seen == [False]
    assert app.state.web.diagnosing.acquire(blocking=False)  # as if another diagnosis were running
    r = c.post("/api/diagnose", content=data, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 503 and r.headers["retry-after"] and seen == [False]
    app.state.web.diagnosing.release()
    assert c.post("/api/diagnose", content=data, headers={"X-CSRF-Token": csrf}).status_code == 200


def test_a_live_capture_diagnoses_both_sides_with_the_window_drops(env, monkeypatch):
    from natpass.diagnose.live import LiveDiagnosis, compare
    from natpass.diagnose.run import diagnose

    calls: list[tuple[str, str, float]] = []
    statuses: list[object] = []

    def fake_live(lan_if: str, wan_if: str, seconds: float, status) -> dict[str, object]:
        calls.append((lan_if, wan_if, seconds))
        statuses.append(status())  # the router's counters, read from the worker thread
        lan = diagnose(PPTP_OFF, vantage="router-lan")
        wan = diagnose(PPTP_OFF, vantage="router-wan")
        drops = {"passthrough-disabled:pptp": 12}
        live = LiveDiagnosis(seconds, lan_if, wan_if, lan, wan, drops, True)
        live.findings = compare(lan, wan, drops, True)
        return live.to_dict()

    monkeypatch.setattr(web_diagnose, "diagnose_live_json", fake_live)
    router, _, _ = env
    c = client(env)
    assert c.post("/api/diagnose/live", json={"seconds": 5}).status_code == 401
    csrf = login(c)
    assert c.post("/api/diagnose/live", json={"seconds": 5}).status_code == 403  # no CSRF token
    for bad in (0, 2, 121, "ten", True, -5):
        r = c.post("/api/diagnose/live", json={"seconds": bad}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 422 and "seconds" in r.json()["error"]
    assert calls == []
    r = c.post("/api/diagnose/live", json={"seconds": 5}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    cfg = router.config
    assert calls == [(cfg.lan_interface, cfg.wan_interface, 5.0)]
    assert isinstance(statuses[0], dict) and "drops" in statuses[0]
    report = r.json()
    assert report["live"]["drops"] == {"passthrough-disabled:pptp": 12}
    page = page_login(c)
    r = c.post("/diagnose/live", data={"csrf": page, "seconds": "7"})
    assert r.status_code == 200 and calls[-1][2] == 7.0
    html = r.text
    assert 'id="live-report"' in html and "LAN side" in html and "WAN side" in html
    assert f"{cfg.lan_interface} (captured live)" in html and "as given" in html  # each side's capture point
    assert "passthrough-disabled:pptp" in html
    for f in report["findings"]:
        assert f'id="finding-{f["code"]}"' in html
    r = c.post("/diagnose/live", data={"csrf": page, "seconds": "600"})
    assert r.status_code == 422 and "Refused:" in r.text and len(calls) == 2
    assert nothing_changed(router)


def test_a_live_capture_that_cannot_run_says_why(env):
    router, _, _ = env
    router._config = dataclasses.replace(router.config, lan_interface="np-missing0", wan_interface="np-missing1")
    c = client(env)
    csrf = login(c)
    r = c.post("/api/diagnose/live", json={"seconds": 3}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422 and r.json()["error"].startswith("live capture not made:"), r.text
    assert any("live capture failed" in x["text"] for x in c.get("/api/log").json()["log"])
    assert nothing_changed(router)


# ----- against a real daemon (engine, config file and history; no packet sockets) -------------------

REAL_CONFIG = """\
# office router: keep this comment
[wan]
addresses = ["203.0.113.1"]

[lan]
prefixes = ["192.168.1.0/24"]
interface = "lan0"

[passthrough]
pptp = false   # legacy VPN only

[router]
state_dir = "{state}"
"""


@pytest.fixture
def real(tmp_path: Path):
    from natpass.passthrough import build_engine
    from natpass.router.auth import Auth
    from natpass.router.daemon import RouterDaemon
    from tests.router.test_router_web import FAST

    cfg = tmp_path / "natpass.toml"
    cfg.write_text(REAL_CONFIG.format(state=tmp_path / "state"))
    daemon = RouterDaemon(str(cfg))
    daemon.engine = build_engine(daemon.config.nat)
    daemon._record_version("start")
    auth = Auth(tmp_path / "state", hasher=FAST)
    auth.password.set(PASSWORD)
    c = TestClient(web_app.create_app(daemon, auth), base_url=ROUTER, follow_redirects=False)
    return daemon, c, cfg


def _pptp(daemon) -> bool:
    return bool(daemon.engine.status()["switches"]["pptp"])


def test_a_real_router_backs_up_restores_and_rolls_back_through_the_pages(real):
    daemon, c, cfg = real
    csrf = page_login(c)
    backup = c.get("/backup/download").content
    assert c.post("/api/switch/pptp", json={"on": True, "confirm": True},
                  headers={"X-CSRF-Token": csrf}).json()["saved"] is True
    assert _pptp(daemon) and "pptp = true" in cfg.read_text()
    r = c.post("/backup/restore", data={"csrf": csrf}, files={"backup": ("before.toml", backup, "text/plain")})
    assert r.status_code == 303, r.text
    assert not _pptp(daemon) and cfg.read_text() == REAL_CONFIG.format(state=cfg.parent / "state")
    history = c.get("/api/config/history").json()["versions"]
    assert [(v["who"], v["summary"]) for v in history[:2]] == [("web session admin", "pptp off"),
                                                                ("web session admin", "pptp on")]
    page = c.get("/backup").text
    assert f'id="rollback-{history[1]["number"]}"' in page and "pptp on" in page
    r = c.post("/backup/rollback", data={"csrf": csrf, "number": str(history[1]["number"])})
    assert r.status_code == 303 and _pptp(daemon) and "pptp = true   # legacy VPN only" in cfg.read_text()


@pytest.mark.parametrize("damage", ["edited", "invalid", "restart"])
def test_a_real_router_refuses_a_bad_backup_and_runs_on_untouched(real, damage):
    daemon, c, cfg = real
    csrf = page_login(c)
    backup = c.get("/backup/download").text
    bad = {"edited": backup.replace("pptp = false", "pptp = true"),
           "invalid": REAL_CONFIG.format(state=cfg.parent / "state").replace("[lan]", "[lann]"),
           "restart": REAL_CONFIG.format(state=cfg.parent / "state").replace('"lan0"', '"lan9"')}[damage]
    before, versions = cfg.read_bytes(), c.get("/api/config/history").json()
    r = c.post("/backup/restore", data={"csrf": csrf}, files={"backup": ("bad.toml", bad.encode(), "text/plain")})
    assert r.status_code == 422 and "Refused:" in r.text
    reason = {"edited": "SHA-256", "invalid": "lann", "restart": "needs a restart"}[damage]
    assert reason in r.text and ("bad.toml:" in r.text) == (damage != "restart")
    assert cfg.read_bytes() == before and not _pptp(daemon) and daemon.config.lan_interface == "lan0"
    assert c.get("/api/config/history").json() == versions


@pytest.mark.parametrize("origin", ["http://evil.example", "null"])
def test_restore_rollback_and_diagnose_from_a_foreign_origin_are_refused(env, origin):
    router, _, _ = env
    c = client(env)
    csrf = login(c)
    head = {"X-CSRF-Token": csrf, "Origin": origin}
    assert c.post("/api/config/restore", json={"backup": router.backup()}, headers=head).status_code == 403
    assert c.post("/api/config/rollback", json={"number": 1}, headers=head).status_code == 403
    assert c.post("/api/diagnose", content=PPTP_OFF.read_bytes(), headers=head).status_code == 403
    assert c.post("/backup/restore", data={"csrf": csrf}, headers={"Origin": origin},
                  files={"backup": ("b.toml", router.backup().encode(), "text/plain")}).status_code == 403
    assert nothing_changed(router)
    assert not any(x["kind"] == "diagnose" for x in c.get("/api/log").json()["log"])
