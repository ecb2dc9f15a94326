"""The admin web app against a fake router: every refusal has its documented status and changes
nothing; logged-in pages and API show the router's state in words."""

from __future__ import annotations

import http.client
import logging
import re
from typing import Any

import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from natpass.router.auth import Auth
from natpass.router.config import ConfigError, RouterConfig, parse_config
from natpass.router.settings import ConfigChange, SwitchResult, exposure_of, read_checked, with_header
from natpass.web import start_web
from natpass.web.app import MAX_BODY, SESSION_COOKIE, WebOptions, create_app

PASSWORD = "correct horse battery"
ROUTER = "http://192.168.1.1:8080"
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t


class FakeRouter:
    """What RouterDaemon offers the web app, recording every change asked of it."""

    def __init__(self, state_dir: str, clock: Clock, admin_http: str = "127.0.0.1:8080") -> None:
        self.config_text = ('[wan]\naddresses = ["203.0.113.1"]\n[lan]\nprefixes = ["192.168.1.0/24"]\n'
                            f'[router]\nstate_dir = "{state_dir}"\nadmin_http = "{admin_http}"\n')
        self._config = parse_config(self.config_text)
        self.versions = [{"number": 2, "created": "2026-11-30T09:00:00Z", "who": "web session admin",
                          "summary": "passthrough pptp on"},
                         {"number": 1, "created": "2026-11-29T08:00:00Z", "who": "start", "summary": "first start"}]
        self.restores: list[str] = []
        self.rollbacks: list[int | None] = []
        self._clock = clock
        self.switches = {"pptp": False, "ipsec": True, "l2tp": False}
        self.changes: list[tuple[str, bool]] = []
        self.reloads = 0
        self.reload_error: Exception | None = None
        self.save_error: str | None = None
        self.status_calls = 0

    @property
    def config(self) -> RouterConfig:
        return self._config

    @property
    def clock(self) -> Any:
        return self._clock

    def status(self) -> dict[str, Any]:
        self.status_calls += 1
        now = self._clock()
        return {
            "uptime": 3725.0, "started": 1_764_000_000.0, "config_path": "/etc/natpass/natpass.toml",
            "interfaces": {"lan": {"name": "lan0", "address": "192.168.1.1"},
                           "wan": {"name": "wan0", "addresses": ["203.0.113.1"], "gateway": "203.0.113.254"}},
            "flows": {"total": 3, "by_proto": {"tcp": 2, "udp": 1}},
            "counters": {"bytes_from_lan": 1_234_567, "packets_from_lan": 900, "switch:pptp:on": 2,
                         "pptp:tunnels-up": 1},
            "drops": {"passthrough-disabled:pptp": 7, "no-mapping": 3},
            "switches": dict(self.switches),
            "helpers": {
                "pptp": {"stats": {"tunnels": 1}, "tunnels": [
                    {"proto": "pptp", "lan": "192.168.1.10", "remote": "198.51.100.7", "state": "up",
                     "since": now - 125}]},
                "ipsec": {"stats": {"tunnels": 0}, "tunnels": []},
                "l2tp": {"stats": {}, "tunnels": []},
            },
        }

    def flows(self, limit: int = 200) -> list[dict[str, Any]]:
        now = self._clock()
        rows = [{"proto": 6, "lan_addr": f"192.168.1.{10 + i % 3}", "lan_port": 40000 + i,
                 "wan_addr": "203.0.113.1", "wan_port": 40000 + i, "remote_addr": "198.51.100.7",
                 "remote_port": 443, "outbound": True, "state": (3, 1, 15, 16)[i % 4], "last_seen": now - i}
                for i in range(120)]
        rows.append({"proto": 17, "lan_addr": "192.168.1.20", "lan_port": 5353, "wan_addr": "203.0.113.1",
                     "wan_port": 5353, "remote_addr": "198.51.100.9", "remote_port": 53, "outbound": True,
                     "state": 0, "last_seen": now})
        return rows[:limit]

    def set_switch(self, name: str, on: bool) -> int:
        if name not in self.switches:
            raise ValueError(f"unknown passthrough switch {name!r}")
        self.changes.append((name, on))
        self.switches[name] = on
        return 1 if not on else 0

    def change_switch(self, name: str, on: bool, *, runtime_only: bool = False,
                      who: str = "api") -> SwitchResult:
        torn = self.set_switch(name, on)
        return SwitchResult(name, on, torn, not runtime_only and self.save_error is None, self.save_error,
                            exposure_of(name, on))

    def reload(self, path: str | None = None, who: str = "reload") -> ConfigChange:
        if self.reload_error is not None:
            raise self.reload_error
        self.reloads += 1
        return ConfigChange("no change", {}, None)

    def backup(self, who: str = "api") -> str:
        return with_header(self.config_text, who=who, summary="backup", source="/etc/natpass/natpass.toml")

    def config_history(self) -> list[dict[str, Any]]:
        return [dict(v) for v in self.versions]

    def _keep(self, who: str, summary: str) -> int:
        number = int(self.versions[0]["number"]) + 1
        self.versions.insert(0, {"number": number, "created": "2026-11-30T10:00:00Z", "who": who, "summary": summary})
        return number

    def restore(self, data: bytes, source: str, who: str = "restore") -> ConfigChange:
        checked = read_checked(data, source)  # the real whole-file check
        if checked.config.lan_address != self._config.lan_address:
            raise ConfigError(source, 0, "changing LAN address needs a restart (running config kept)")
        self._config, self.config_text = checked.config, checked.body
        self.restores.append(source)
        return ConfigChange("config restored", {}, self._keep(who, f"restore of {source}"))

    def rollback(self, number: int | None = None, who: str = "rollback") -> ConfigChange:
        known = [int(v["number"]) for v in self.versions]
        if number is None:
            if len(known) < 2:
                raise KeyError("no earlier version to roll back to")
            number = known[1]
        if number not in known:
            raise KeyError(number)
        self.rollbacks.append(number)
        return ConfigChange(f"back to #{number}", {"pptp": 1}, self._keep(who, f"rollback to #{number}"))


@pytest.fixture
def env(tmp_path):
    clock = Clock()
    router = FakeRouter(str(tmp_path), clock)
    auth = Auth(tmp_path, clock=clock, hasher=FAST)
    auth.password.set(PASSWORD)
    return router, auth, clock


def client(env, options: WebOptions | None = None, **kw: Any) -> TestClient:
    router, auth, _ = env
    return TestClient(create_app(router, auth, options), base_url=ROUTER, follow_redirects=False, **kw)


def login(c: TestClient) -> str:
    r = c.post("/api/login", json={"password": PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["csrf"])


def nothing_changed(router: FakeRouter) -> bool:
    return (router.changes == [] and router.reloads == 0 and router.restores == [] and router.rollbacks == []
            and len(router.versions) == 2
            and router.switches == {"pptp": False, "ipsec": True, "l2tp": False})


# ----- refusals --------------------------------------------------------------------------------

def test_without_a_session_the_api_says_401_and_pages_go_to_the_login(env):
    router, auth, _ = env
    c = client(env)
    for path in ("/api/status", "/api/flows", "/api/log", "/api/tokens", "/api/openapi.json", "/metrics"):
        r = c.get(path)
        assert r.status_code == 401, path
        assert r.json()["status"] == 401 and "192.168.1" not in r.text
    for path in ("/", "/passthrough", "/connections", "/log", "/tokens"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    assert c.post("/api/switch/pptp", json={"on": True, "confirm": True}).status_code == 401
    assert c.post("/api/reload", json={}).status_code == 401
    assert c.post("/passthrough/pptp", data={"on": "1", "confirm": "1"}).status_code == 303
    assert nothing_changed(router) and router.status_calls == 0


def test_the_health_probe_needs_no_login_and_tells_nothing_else(env):
    r = client(env).get("/api/health")
    assert r.status_code == 200 and r.json() == {"ok": True}


def test_a_wrong_password_is_refused_logged_with_its_source_and_gives_no_session(env, caplog):
    router, auth, _ = env
    c = client(env, client=("192.168.1.66", 40000))
    with caplog.at_level(logging.WARNING, logger="natpass.admin"):
        r = c.post("/api/login", json={"password": "wrong horse"})
        page = c.post("/login", data={"password": "also wrong", "next": "/"})
    assert r.status_code == 401 and SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert page.status_code == 401 and "wrong password" in page.text and SESSION_COOKIE not in c.cookies
    assert len(auth.sessions) == 0
    failures = [m for m in caplog.messages if "failed login from 192.168.1.66" in m]
    assert len(failures) == 2
    assert c.get("/api/status").status_code == 401


def test_repeated_failures_are_slowed_down_per_address_even_for_the_right_password(env):
    router, auth, clock = env
    c = client(env, client=("192.168.1.66", 40000))
    for _ in range(4):
        assert c.post("/api/login", json={"password": "guess"}).status_code == 401
    r = c.post("/api/login", json={"password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and len(auth.sessions) == 0
    other = client(env, client=("192.168.1.77", 40000))
    assert other.post("/api/login", json={"password": PASSWORD}).status_code == 200
    clock.t += 3
    assert c.post("/api/login", json={"password": PASSWORD}).status_code == 200


def test_an_expired_session_is_refused(env):
    router, auth, clock = env
    c = client(env)
    csrf = login(c)
    assert c.get("/api/status").status_code == 200
    clock.t += auth.sessions.idle + 1
    r = c.get("/api/status")
    assert r.status_code == 401 and "expired" in r.json()["error"]
    page = c.get("/passthrough")
    assert page.status_code == 303 and "expired=1" in page.headers["location"]
    r = c.post("/api/switch/pptp", json={"on": True, "confirm": True}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 401 and nothing_changed(router)


@pytest.mark.parametrize("csrf", [None, "", "wrong-token"])
def test_a_change_without_the_sessions_csrf_token_is_refused(env, csrf):
    router, _, _ = env
    c = client(env)
    login(c)
    headers = {} if csrf is None else {"X-CSRF-Token": csrf}
    assert c.post("/api/switch/pptp", json={"on": True, "confirm": True}, headers=headers).status_code == 403
    assert c.post("/api/reload", json={}, headers=headers).status_code == 403
    form = {"on": "1", "confirm": "1"} | ({} if csrf is None else {"csrf": csrf})
    assert c.post("/passthrough/pptp", data=form).status_code == 403
    assert c.post("/api/tokens", json={"name": "x"}, headers=headers).status_code == 403
    assert nothing_changed(router) and env[1].tokens.list() == []


@pytest.mark.parametrize("origin", ["null", "http://evil.example", "http://192.168.1.1:9999",
                                    "https://192.168.1.1:8080"])
def test_a_foreign_or_null_origin_is_refused_even_with_a_valid_token_or_csrf(env, origin):
    router, auth, _ = env
    c = client(env)
    csrf = login(c)
    token = auth.tokens.create("script")
    r = c.post("/api/switch/pptp", json={"on": True, "confirm": True},
               headers={"X-CSRF-Token": csrf, "Origin": origin})
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]
    bare = client(env)
    r = bare.post("/api/switch/l2tp", json={"on": True},
                  headers={"Authorization": f"Bearer {token}", "Origin": origin})
    assert r.status_code == 403
    assert bare.post("/login", data={"password": PASSWORD}, headers={"Origin": origin}).status_code == 403
    assert nothing_changed(router)


def test_the_same_origin_is_accepted(env):
    router, _, _ = env
    c = client(env)
    csrf = login(c)
    r = c.post("/api/switch/l2tp", json={"on": True}, headers={"X-CSRF-Token": csrf, "Origin": ROUTER})
    assert r.status_code == 200 and router.changes == [("l2tp", True)]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "router.attacker.test:80", ""])
def test_a_host_name_other_than_an_address_localhost_or_the_machine_is_refused(env, host):
    router, auth, _ = env
    token = auth.tokens.create("script")
    c = client(env)
    r = c.get("/api/status", headers={"Host": host, "Authorization": f"Bearer {token}"})
    assert r.status_code == 421
    r = c.post("/api/switch/l2tp", json={"on": True}, headers={"Host": host, "Authorization": f"Bearer {token}"})
    assert r.status_code == 421 and nothing_changed(router) and router.status_calls == 0


def test_ip_literals_and_localhost_are_accepted_hosts(env):
    _, auth, _ = env
    token = auth.tokens.create("script")
    c = client(env)
    for host in ("192.168.1.1:8080", "127.0.0.1", "[::1]:8080", "localhost:8080"):
        assert c.get("/api/status", headers={"Host": host, "Authorization": f"Bearer {token}"}).status_code == 200


def test_an_oversized_body_is_refused_before_it_is_read(env):
    router, auth, _ = env
    c = client(env)
    csrf = login(c)
    big = b'{"on": true, "confirm": true, "pad": "' + b"x" * (MAX_BODY + 10) + b'"}'
    r = c.post("/api/switch/l2tp", content=big, headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert r.status_code == 413
    r = c.post("/login", content=b"password=" + b"x" * (MAX_BODY + 1),
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and nothing_changed(router) and len(auth.sessions) == 1


def test_an_unknown_switch_is_404_and_changes_nothing(env):
    router, _, _ = env
    c = client(env)
    csrf = login(c)
    for name in ("gre", "strict", "PPTP", "pptp2"):
        r = c.post(f"/api/switch/{name}", json={"on": True, "confirm": True}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 404, name
        assert c.post(f"/passthrough/{name}", data={"on": "1", "confirm": "1", "csrf": csrf}).status_code == 404
    assert nothing_changed(router)


def test_turning_pptp_on_needs_a_confirmation_that_names_the_exposure(env):
    router, _, _ = env
    c = client(env)
    csrf = login(c)
    r = c.post("/api/switch/pptp", json={"on": True}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409 and r.json()["confirm_required"] and "GRE" in r.json()["exposure"]
    page = c.post("/passthrough/pptp", data={"on": "1", "csrf": csrf})
    assert page.status_code == 200 and "MS-CHAPv2" in page.text and 'name="confirm" value="1"' in page.text
    assert nothing_changed(router)
    r = c.post("/api/switch/pptp", json={"on": True, "confirm": True}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json() == {"switch": "pptp", "on": True, "torn_down": 0, "saved": True,
                                                 "save_error": None, "exposure": exposure_of("pptp", True),
                                                 "undo": {"on": False}}
    assert router.changes == [("pptp", True)]


def test_a_malformed_switch_body_is_400_and_changes_nothing(env):
    router, _, _ = env
    c = client(env)
    csrf = login(c)
    h = {"X-CSRF-Token": csrf}
    assert c.post("/api/switch/l2tp", json={"on": "yes"}, headers=h).status_code == 400
    assert c.post("/api/switch/l2tp", content=b"{not json", headers=h | {"Content-Type": "application/json"}).status_code == 400
    assert c.post("/api/switch/l2tp", content=b"on=1", headers=h | {"Content-Type": "text/plain"}).status_code == 415
    assert nothing_changed(router)


def test_a_refused_reload_keeps_the_running_config_and_names_the_line(env):
    router, _, _ = env
    router.reload_error = ConfigError("/etc/natpass/natpass.toml", 7, "pptp must be true or false")
    c = client(env)
    csrf = login(c)
    r = c.post("/api/reload", json={}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422 and r.json()["line"] == 7 and r.json()["path"] == "/etc/natpass/natpass.toml"


# ----- what works ------------------------------------------------------------------------------

def test_the_session_cookie_is_httponly_samesite_strict_and_secure_under_tls(env):
    c = client(env)
    r = c.post("/api/login", json={"password": PASSWORD})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    tls = TestClient(create_app(env[0], env[1], WebOptions(tls=True)), base_url="https://192.168.1.1:8443")
    cookie = tls.post("/api/login", json={"password": PASSWORD}).headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie


def test_form_login_switch_undo_and_logout(env):
    router, auth, _ = env
    c = client(env)
    r = c.post("/login", data={"password": PASSWORD, "next": "/passthrough"})
    assert r.status_code == 303 and r.headers["location"] == "/passthrough"
    page = c.get("/passthrough").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert "198.51.100.7" in page and "2 min 5 s" in page  # the live PPTP tunnel and its age
    r = c.post("/passthrough/ipsec", data={"on": "0", "csrf": csrf})
    assert r.status_code == 303 and router.changes == [("ipsec", False)]
    done = c.get(r.headers["location"]).text
    assert "IPsec passthrough is now" in done and "Saved in the config file" in done and 'id="undo"' in done
    router.save_error = "natpass.toml:5: unknown section [lann]"
    r = c.post("/passthrough/ipsec", data={"on": "0", "csrf": csrf})
    flash = c.get(r.headers["location"]).text
    assert "Not saved in the config file" in flash and "unknown section [lann]" in flash
    r = c.post("/api/switch/ipsec", json={"on": False}, headers={"X-CSRF-Token": csrf})
    assert r.json()["saved"] is False and r.json()["save_error"] == router.save_error
    router.changes.pop()
    router.save_error = None
    router.changes.pop()
    c.post("/passthrough/ipsec", data={"on": "1", "confirm": "1", "csrf": csrf})
    assert router.changes == [("ipsec", False), ("ipsec", True)]
    assert c.post("/logout", data={"csrf": csrf}).status_code == 303
    assert c.get("/api/status").status_code == 401 and len(auth.sessions) == 0


def test_a_login_redirect_stays_on_the_router(env):
    c = client(env)
    for target in ("//evil.example/x", "http://evil.example/", "\\\\evil"):
        r = c.post("/login", data={"password": PASSWORD, "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/"


def test_api_tokens_read_and_change_without_csrf_and_stop_working_when_revoked(env):
    router, auth, _ = env
    c = client(env)
    csrf = login(c)
    r = c.post("/api/tokens", json={"name": "grafana"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201
    token = r.json()["token"]
    assert [t["name"] for t in c.get("/api/tokens").json()["tokens"]] == ["grafana"]
    script = client(env)
    bearer = {"Authorization": f"Bearer {token}"}
    assert script.get("/api/status", headers=bearer).status_code == 200
    assert script.post("/api/switch/l2tp", json={"on": True}, headers=bearer).status_code == 200
    assert c.delete("/api/tokens/grafana", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert script.get("/api/status", headers=bearer).status_code == 401
    assert c.delete("/api/tokens/grafana", headers={"X-CSRF-Token": csrf}).status_code == 404
    assert router.changes == [("l2tp", True)]


def test_metrics_need_a_token_or_come_from_loopback_only_as_configured(env):
    router, auth, _ = env
    token = auth.tokens.create("prometheus")
    c = client(env)
    assert c.get("/metrics").status_code == 401
    r = c.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and 'natpass_drops_total{reason="passthrough-disabled:pptp"} 7.0' in r.text
    lan = client(env, WebOptions(metrics_access="loopback"), client=("192.168.1.10", 5000))
    assert lan.get("/metrics").status_code == 403
    local = client(env, WebOptions(metrics_access="loopback"), client=("127.0.0.1", 5000))
    assert local.get("/metrics").status_code == 200


def test_pages_speak_in_words_and_tables_scroll_with_a_hint(env):
    c = client(env)
    login(c)
    status = c.get("/").text
    assert "Data from the LAN" in status and "1.2 MB" in status and "bytes_from_lan" not in status
    assert "PPTP switched on" in status and "switch:pptp:on" not in status
    assert "PPTP traffic while PPTP passthrough is off" in status and "1 h 2 min" in status
    assert 'class="scroll"' in status and "Swipe the table sideways" in status and "<script" not in status
    conns = c.get("/connections?sort=state&limit=200").text
    for name in ("established", "opening (SYN sent)", "closing (both sides sent FIN)", "reset", "active"):
        assert name in conns
    assert "121 connection(s)" in c.get("/connections").text and "Page 1 of 3" in c.get("/connections").text


def test_connections_are_filtered_sorted_and_paged(env):
    c = client(env)
    login(c)
    r = c.get("/api/flows?proto=tcp&lan=192.168.1.10&state=established&sort=idle&order=desc&limit=5")
    body = r.json()
    assert r.status_code == 200 and len(body["flows"]) == 5
    assert all(f["lan"].startswith("192.168.1.10:") and f["state"] == "established" for f in body["flows"])
    idles = [f["idle_s"] for f in body["flows"]]
    assert idles == sorted(idles, reverse=True)
    page2 = c.get("/api/flows?sort=lan&limit=50&page=3").json()
    assert page2["total"] == 121 and len(page2["flows"]) == 21
    assert c.get("/api/flows?limit=0").status_code == 400
    assert c.get("/api/flows?sort=bogus").status_code == 400


def test_the_log_shows_logins_refusals_and_switch_changes_newest_first(env):
    c = client(env, client=("192.168.1.66", 1))
    c.post("/api/login", json={"password": "nope"})
    csrf = login(c)
    c.post("/api/switch/l2tp", json={"on": True}, headers={"X-CSRF-Token": csrf})
    c.post("/api/switch/l2tp", json={"on": True})  # no CSRF: refused
    kinds = [x["kind"] for x in c.get("/api/log").json()["log"]]
    assert kinds[:4] == ["refused", "switch", "login", "login-failed"]


def test_openapi_describes_the_api(env):
    c = client(env)
    login(c)
    doc = c.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/api/switch/{name}" in doc["paths"]
    assert "409" in doc["paths"]["/api/switch/{name}"]["post"]["responses"]


def test_an_address_the_machine_does_not_have_is_logged_and_nothing_raises(tmp_path, caplog):
    router = FakeRouter(str(tmp_path), Clock(), admin_http="192.0.2.55:8080")
    with caplog.at_level(logging.ERROR, logger="natpass.admin"):
        assert start_web(router) is None
    assert any("192.0.2.55 is not an address of this machine" in m for m in caplog.messages)


def test_the_server_starts_on_loopback_prints_a_first_password_and_stops(tmp_path, caplog):
    router = FakeRouter(str(tmp_path), Clock(), admin_http="127.0.0.1:0")
    with caplog.at_level(logging.INFO, logger="natpass.admin"):
        server = start_web(router)
    assert server is not None and server.address is not None
    try:
        assert any("admin password generated" in m for m in caplog.messages)
        conn = http.client.HTTPConnection(*server.address, timeout=5)
        conn.request("GET", "/api/health")
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("X-Frame-Options") == "DENY"
        r.read()
        conn.request("GET", "/api/status")
        assert conn.getresponse().status == 401
    finally:
        server.stop()
    caplog.clear()
    second = start_web(router)  # the password exists now: nothing printed again
    assert second is not None
    second.stop()
    assert not any("generated" in m for m in caplog.messages)


def test_a_source_over_its_request_budget_waits_then_is_refused():
    from natpass.web.app import Pacer

    clock = Clock()
    pacer = Pacer(rate=10.0, burst=5, max_wait=0.95, clock=clock)
    assert [pacer.delay("a") for _ in range(6)] == pytest.approx([0.0] * 6, abs=1e-9)  # the burst and one slot pass at once
    waits = [pacer.delay("a") for _ in range(9)]
    assert waits == pytest.approx([0.1 * i for i in range(1, 10)])  # then one slot every 0.1 s
    assert pacer.delay("a") is None  # more than max_wait ahead: refused, not queued
    assert pacer.delay("b") == 0.0  # per source
    clock.t += 10
    assert pacer.delay("a") == 0.0


def test_a_flooding_client_is_answered_429_without_reaching_the_router(env):
    router, auth, _ = env
    token = auth.tokens.create("flood")
    app = create_app(router, auth)
    app.state.web.pacer.max_wait = 0.0
    app.state.web.pacer.tau = 2 * app.state.web.pacer.interval
    c = TestClient(app, base_url=ROUTER)
    codes = [c.get("/api/status", headers={"Authorization": f"Bearer {token}"}).status_code for _ in range(6)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]


def test_natpass_passwd_ends_the_web_sessions_of_the_old_password(env, monkeypatch, capsys):
    import io

    from natpass.cli import main

    router, auth, _ = env
    c, other = client(env), client(env)
    csrf = login(c)
    login(other)
    token = auth.tokens.create("script")
    assert c.get("/api/status").status_code == 200 and len(auth.sessions) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("a new long password\n"))
    assert main(["passwd", "--stdin", "--state-dir", router.config.state_dir]) == 0
    assert "ends every web session" in capsys.readouterr().out
    r = c.get("/api/status")
    assert r.status_code == 401 and "session expired" in r.json()["error"]
    assert c.post("/api/switch/pptp", json={"on": False}, headers={"X-CSRF-Token": csrf}).status_code == 401
    assert other.get("/").status_code == 303 and len(auth.sessions) == 0
    assert nothing_changed(router)
    # API tokens are not sessions; the new password logs in, the old one no longer does
    assert c.get("/api/status", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert c.post("/api/login", json={"password": PASSWORD}).status_code == 401
    assert c.post("/api/login", json={"password": "a new long password"}).status_code == 200
    assert c.get("/api/status").status_code == 200
    log = c.get("/api/log").json()["log"]
    assert any("2 session(s) ended: the admin password was changed" in x["text"] for x in log)


def test_the_status_page_shows_the_datapath_and_the_kernel_half_in_hybrid_mode(env):
    c = client(env)
    login(c)
    page = c.get("/").text
    assert "packet: every packet goes through natpass" in page and "Kernel fast path" not in page
    router = env[0]
    plain = router.status
    router.status = lambda: {**plain(), "datapath": "hybrid", "hybrid": {
        "natpass": ["IP protocols 47 (GRE), 50 (ESP), 51 (AH)"], "kernel": ["all other IPv4 traffic"],
        "kernel_conntrack": {"count": 1234, "max": -1},
        "kernel_drops": {"natpass_share": 56, "forward_refused": 7, "input_refused": 0, "kernel_icmp_errors": 0}}}
    env[2].t += 60  # past the status cache
    page = c.get("/").text
    assert "hybrid: the kernel forwards ordinary traffic" in page and "Kernel fast path" in page
    assert "1\u202f234" in page and "(of at most ?)" in page
    assert "New connections not from the LAN, refused" in page and ">7<" in page
    assert "IP protocols 47 (GRE)" in page and "all other IPv4 traffic" in page
    router.status = lambda: {**plain(), "datapath": "hybrid", "hybrid": {"kernel_conntrack": {}, "kernel_drops": None}}
    env[2].t += 60
    assert "drop counters could not be read" in c.get("/").text
