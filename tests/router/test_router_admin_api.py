"""The admin API and metrics served to a fake daemon (and to the real daemon) on a Unix socket."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from natpass.router.admin import AdminServer
from natpass.router.cli_admin import AdminClient, _UnixHTTPConnection
from natpass.router.config import ConfigError
from natpass.router.settings import ConfigChange, SwitchResult


class FakeDaemon:
    """What RouterDaemon offers the admin side, with state the tests can inspect."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = str(state_dir)
        self.switches = {"pptp": False, "ipsec": True, "l2tp": False}
        self.calls: list[tuple[str, Any]] = []
        self.reload_error: Exception | None = None
        self.status_error: Exception | None = None
        self.flow_count = 7
        self.drops = {"passthrough-disabled:pptp": 5, "no-mapping": 2, 'odd"reason\\x': 1}

    def status(self) -> dict[str, Any]:
        if self.status_error is not None:
            raise self.status_error
        return {
            "uptime": 61.5,
            "config_path": "/etc/natpass/natpass.toml",
            "flows": {"total": self.flow_count, "by_proto": {"tcp": 4, "udp": 2, "icmp": 1}},
            "mappings": 6,
            "drops": dict(self.drops),
            "counters": {"packets_from_lan": 100, "packets_from_wan": 90, "bytes_from_lan": 12000,
                         "flows_created": 9, "switch:ipsec:on": 1},
            "switches": dict(self.switches),
            "helpers": {
                "pptp": {"stats": {"tunnels": 0}, "tunnels": []},
                "ipsec": {"stats": {"tunnels": 1, "esp_packets": 40},
                          "tunnels": [{"lan": "192.168.1.20", "remote": "198.51.100.9", "spi": "0x1234"}]},
                "l2tp": {"stats": {}, "tunnels": []},
            },
            "interfaces": {"lan": {"name": "lan0", "address": "192.168.1.1"},
                           "wan": {"name": "wan0", "addresses": ["203.0.113.1"], "gateway": None}},
            "datapath_counters": {"rx": 200, "tx": 190},
        }

    def flows(self, limit: int = 200) -> list[dict[str, Any]]:
        self.calls.append(("flows", limit))
        rows = [{"proto": 6, "lan_addr": "192.168.1.10", "lan_port": 40000 + i, "wan_addr": "203.0.113.1",
                 "wan_port": 40000 + i, "remote_addr": "198.51.100.7", "remote_port": 443, "outbound": True}
                for i in range(self.flow_count)]
        return rows[:limit]

    def set_switch(self, name: str, on: bool) -> int:
        self.calls.append(("set_switch", (name, on)))
        torn = 1 if self.switches[name] and not on else 0
        self.switches[name] = on
        return torn

    def change_switch(self, name: str, on: bool, *, runtime_only: bool = False,
                      who: str = "api") -> SwitchResult:
        if name not in self.switches:
            raise ValueError(f"unknown passthrough switch {name!r}")
        return SwitchResult(name, on, self.set_switch(name, on), not runtime_only, None, None)

    def reload(self, path: str | None = None, who: str = "reload") -> ConfigChange:
        self.calls.append(("reload", path))
        if self.reload_error is not None:
            raise self.reload_error
        return ConfigChange("no change", {}, None)


@pytest.fixture
def daemon(tmp_path: Path) -> FakeDaemon:
    return FakeDaemon(tmp_path / "state")


@pytest.fixture
def server(daemon: FakeDaemon, tmp_path: Path):
    srv = AdminServer(daemon, tmp_path / "run" / "natpass.sock").start()
    yield srv
    srv.stop()


def unix(srv: AdminServer) -> AdminClient:
    assert srv.socket_path is not None
    return AdminClient(srv.socket_path)


def raw(srv: AdminServer, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request as given (any method, body and headers) over the admin socket."""
    conn = _UnixHTTPConnection(str(srv.socket_path), 10)
    try:
        try:
            conn.request(method, path, body=body, headers=headers or {})
        except BrokenPipeError:
            pass  # the server answered (413) and closed before reading the whole body
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def connect(srv: AdminServer) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(srv.socket_path))
    return sock


# --- Unix socket ------------------------------------------------------------------------------

def test_unix_socket_is_private_to_its_owner(server: AdminServer) -> None:
    mode = server.socket_path.stat().st_mode & 0o777
    assert mode == 0o600


def test_unix_status_is_the_daemon_status_as_json(server: AdminServer, daemon: FakeDaemon) -> None:
    code, answer = unix(server).request("GET", "/api/status")
    assert code == 200
    assert answer == json.loads(json.dumps(daemon.status()))


def test_unix_flows_honours_the_limit(server: AdminServer, daemon: FakeDaemon) -> None:
    code, answer = unix(server).request("GET", "/api/flows?limit=3")
    assert code == 200
    assert answer["limit"] == 3 and len(answer["flows"]) == 3
    assert ("flows", 3) in daemon.calls


def test_unix_switch_reaches_the_daemon(server: AdminServer, daemon: FakeDaemon) -> None:
    code, answer = unix(server).request("POST", "/api/switch/ipsec", {"on": False})
    assert code == 200
    assert answer == {"switch": "ipsec", "on": False, "torn_down": 1, "saved": True, "save_error": None,
                      "exposure": None}
    assert daemon.switches["ipsec"] is False


def test_unix_reload_ok_and_config_error_keeps_running_config(server: AdminServer, daemon: FakeDaemon) -> None:
    code, answer = unix(server).request("POST", "/api/reload", {})
    assert (code, answer) == (200, {"reloaded": True, "summary": "no change", "torn_down": {}, "version": None})
    daemon.reload_error = ConfigError("/etc/natpass/natpass.toml", 12, "pptp must be true or false")
    code, answer = unix(server).request("POST", "/api/reload", {})
    assert code == 422
    assert answer["path"] == "/etc/natpass/natpass.toml"
    assert answer["line"] == 12
    assert answer["message"] == "pptp must be true or false"
    assert "kept" in answer["error"]


def test_stale_socket_from_a_crashed_router_is_replaced(daemon: FakeDaemon, tmp_path: Path) -> None:
    path = tmp_path / "natpass.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens
    with AdminServer(daemon, path) as srv:
        assert unix(srv).request("GET", "/api/status")[0] == 200
    assert not path.exists()


def test_second_router_on_the_same_socket_is_refused(server: AdminServer, daemon: FakeDaemon) -> None:
    with pytest.raises(OSError, match="already listening"):
        AdminServer(daemon, server.socket_path).start()
    assert unix(server).request("GET", "/api/status")[0] == 200


def test_regular_file_at_the_socket_path_is_never_deleted(daemon: FakeDaemon, tmp_path: Path) -> None:
    path = tmp_path / "natpass.sock"
    path.write_text("important")
    with pytest.raises(OSError, match="not a socket"):
        AdminServer(daemon, path).start()
    assert path.read_text() == "important"


# --- bad requests -----------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "body", "expected"), [
    ("POST", "/api/switch/pptp", b"{not json", 400),
    ("POST", "/api/switch/pptp", b'{"on": "yes"}', 400),
    ("POST", "/api/switch/pptp", b"[1, 2]", 400),
    ("POST", "/api/switch/openvpn", b'{"on": true}', 404),
    ("POST", "/api/switch/", b'{"on": true}', 404),
    ("GET", "/api/switch/pptp", None, 405),
    ("DELETE", "/api/status", None, 405),
    ("POST", "/api/status", b"{}", 405),
    ("PUT", "/metrics", b"{}", 405),
    ("GET", "/api/flows?limit=0", None, 400),
    ("GET", "/api/flows?limit=abc", None, 400),
    ("GET", "/api/flows?limit=99999999", None, 400),
    ("GET", "/no/such/thing", None, 404),
    ("GET", "/", None, 404),
    ("BREW", "/api/status", None, 501),
])
def test_bad_requests_get_json_errors(server: AdminServer, daemon: FakeDaemon, method: str, path: str,
                                      body: bytes | None, expected: int) -> None:
    headers = {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    status, resp_headers, text = raw(server, method, path, body, headers)
    assert status == expected
    assert resp_headers["content-type"] == "application/json"
    answer = json.loads(text)
    assert answer["status"] == expected and answer["error"]
    assert daemon.switches == {"pptp": False, "ipsec": True, "l2tp": False}
    if expected == 405:
        assert "allow" in resp_headers
    assert raw(server, "GET", "/api/status")[0] == 200  # still serving


def test_oversized_body_is_refused(server: AdminServer, daemon: FakeDaemon) -> None:
    status, _, answer = raw(server, "POST", "/api/switch/pptp", b"{" + b" " * 70000 + b"}",
                            {"Content-Type": "application/json"})
    assert status == 413 and json.loads(answer)["status"] == 413
    assert daemon.switches["pptp"] is False


def test_form_post_is_refused(server: AdminServer, daemon: FakeDaemon) -> None:
    status, _, _ = raw(server, "POST", "/api/switch/pptp", b"on=true",
                       {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415
    assert daemon.switches["pptp"] is False


def test_garbage_bytes_on_the_socket_do_not_stop_the_server(server: AdminServer) -> None:
    for junk in (b"\x00\xff\x13garbage\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b""):
        with connect(server) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.recv(65536)
    assert raw(server, "GET", "/api/status")[0] == 200


def test_daemon_failure_is_a_500_and_the_server_keeps_serving(server: AdminServer, daemon: FakeDaemon) -> None:
    daemon.status_error = RuntimeError("engine exploded")
    status, _, answer = raw(server, "GET", "/api/status")
    assert status == 500
    assert "engine exploded" in json.loads(answer)["error"]
    daemon.status_error = None
    assert raw(server, "GET", "/api/status")[0] == 200


def test_concurrent_clients_all_get_answers(server: AdminServer) -> None:
    results: list[int] = []

    def worker() -> None:
        for _ in range(5):
            results.append(raw(server, "GET", "/api/status")[0])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * 40


# --- metrics ----------------------------------------------------------------------------------

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')


def parse_prometheus(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """A strict reader of the text exposition format: every sample's family has HELP and TYPE
    before it, names and labels are well formed, values are floats, no series repeats."""
    assert text.endswith("\n")
    families: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    types: dict[str, str] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        assert line.strip(), "no blank lines"
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert METRIC_NAME.fullmatch(name) and name not in helped
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "untyped", "histogram", "summary") and name not in types
            types[name] = kind
            continue
        assert not line.startswith("#")
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        assert match, line
        name, label_text, value = match.groups()
        assert name in types and name in helped, f"{name} sampled before its TYPE/HELP"
        labels: list[tuple[str, str]] = []
        pos = 0
        while label_text and pos < len(label_text):
            lm = LABEL.match(label_text, pos)
            assert lm, f"bad labels in {line}"
            raw = lm.group(2)
            labels.append((lm.group(1), raw.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")))
            pos = lm.end()
        key = tuple(sorted(labels))
        series = families.setdefault(name, {})
        assert key not in series, f"duplicate series {line}"
        series[key] = float(value)
        if types[name] == "counter":
            assert series[key] >= 0
    return families


def test_metrics_parse_as_prometheus_text(server: AdminServer, daemon: FakeDaemon) -> None:
    status, headers, text = raw(server, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    fam = parse_prometheus(text.decode())
    st = daemon.status()
    assert fam["natpass_packets_total"][(("source", "lan"),)] == st["counters"]["packets_from_lan"]
    assert fam["natpass_packets_total"][(("source", "wan"),)] == st["counters"]["packets_from_wan"]
    for reason, count in st["drops"].items():
        assert fam["natpass_drops_total"][(("reason", reason),)] == count  # odd reason escaped and back
    for proto, count in st["flows"]["by_proto"].items():
        assert fam["natpass_flows"][(("proto", proto),)] == count
    for name, on in st["switches"].items():
        assert fam["natpass_passthrough_enabled"][(("switch", name),)] == float(on)
    assert fam["natpass_tunnels"][(("switch", "ipsec"),)] == 1
    assert fam["natpass_tunnels"][(("switch", "pptp"),)] == 0
    assert fam["natpass_helper_stat"][(("stat", "esp_packets"), ("switch", "ipsec"))] == 40
    assert fam["natpass_datapath_events_total"][(("counter", "rx"),)] == 200


def test_metrics_follow_a_switch_change(server: AdminServer) -> None:
    client = unix(server)
    client.request("POST", "/api/switch/l2tp", {"on": True})
    _, text = client.request("GET", "/metrics")
    fam = parse_prometheus(text)
    assert fam["natpass_passthrough_enabled"][(("switch", "l2tp"),)] == 1


def test_metrics_from_an_empty_status_still_parse() -> None:
    from natpass.router import metrics

    fam = parse_prometheus(metrics.render({}))
    assert fam["natpass_up"][()] == 1
    fam = parse_prometheus(metrics.render({"flows": 3, "drops": {"x": float("nan")}, "counters": None}))
    assert fam["natpass_flows"][(("proto", "all"),)] == 3
    assert "natpass_drops_total" not in fam


def test_prometheus_checker_rejects_malformed_text() -> None:
    for bad in ("natpass_x 1\n", "# HELP a x\n# TYPE a gauge\na{b=\"1} 2\n",
                "# HELP a x\n# TYPE a gauge\na 1\na 2\n", "# HELP a x\n# TYPE a gauge\na one\n"):
        with pytest.raises((AssertionError, ValueError)):
            parse_prometheus(bad)


def test_head_request_has_no_body(server: AdminServer) -> None:
    status, headers, body = raw(server, "HEAD", "/api/status")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_stop_removes_the_socket(daemon: FakeDaemon, tmp_path: Path) -> None:
    path = tmp_path / "natpass.sock"
    srv = AdminServer(daemon, path).start()
    assert path.is_socket()
    srv.stop()
    assert not os.path.exists(path)


def test_connection_flood_is_capped_and_recovers(daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    import natpass.router.admin as admin

    monkeypatch.setattr(admin, "MAX_CONNECTIONS", 3)
    with AdminServer(daemon, tmp_path / "natpass.sock") as srv:
        idle = [connect(srv) for _ in range(3)]
        try:
            time.sleep(0.3)  # let the server accept the three
            extra = connect(srv)
            extra.sendall(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert extra.recv(100) == b""  # closed without an answer
            extra.close()
        finally:
            for s in idle:
                s.close()
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                if raw(srv, "GET", "/api/status")[0] == 200:
                    break
            except (ConnectionError, http.client.HTTPException):
                time.sleep(0.05)
        else:
            pytest.fail("the server did not recover after the flood")


def test_hung_daemon_call_gives_503_not_a_pile_of_threads(daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    import natpass.router.admin as admin

    monkeypatch.setattr(admin, "DAEMON_TIMEOUT", 0.3)
    release = threading.Event()
    original = daemon.status

    def slow_status() -> dict[str, Any]:
        release.wait(10)
        return original()

    daemon.status = slow_status  # type: ignore[method-assign]
    with AdminServer(daemon, tmp_path / "natpass.sock") as srv:
        first: list[int] = []
        t = threading.Thread(target=lambda: first.append(raw(srv, "GET", "/api/status")[0]))
        t.start()
        time.sleep(0.1)
        status, _, answer = raw(srv, "GET", "/metrics")
        assert status == 503 and "busy" in json.loads(answer)["error"]
        release.set()
        t.join(10)
        assert first == [200]


# --- with the real RouterDaemon and engine (no namespaces: the daemon is not started) -----------

def real_daemon(tmp_path: Path) -> Any:
    from natpass.passthrough import build_engine
    from natpass.router.daemon import RouterDaemon

    cfg = tmp_path / "natpass.toml"
    cfg.write_text('[wan]\naddresses = ["203.0.113.1"]\n[lan]\nprefixes = ["192.168.1.0/24"]\n'
                   f'[passthrough]\npptp = true\n[router]\nstate_dir = "{tmp_path / "state"}"\n')
    d = RouterDaemon(str(cfg))
    d.engine = build_engine(d.config.nat)
    return d


def test_real_daemon_status_metrics_and_switch(tmp_path: Path) -> None:
    from natpass.nat import verdict as V
    from natpass.packets.esp import build_esp_packet
    from natpass.packets.udp import build_udp
    from natpass.router.usage import UsageDB, UsageRecorder

    d = real_daemon(tmp_path)
    now = d.clock()
    assert d.engine.process(build_udp("192.168.1.10", "198.51.100.7", 5000, 53, b"q"), True, now) == V.TO_WAN
    assert d.engine.process(build_esp_packet("192.168.1.10", "198.51.100.9", 0x1234, 1, b"x" * 16),
                            True, now) == V.DROP
    with AdminServer(d, tmp_path / "natpass.sock") as srv:
        code, st = unix(srv).request("GET", "/api/status")
        assert code == 200
        assert st["flows"]["total"] == 1
        assert st["drops"]["passthrough-disabled:ipsec"] == 1
        assert st["switches"] == {"pptp": True, "ipsec": False, "l2tp": False}
        code, flows = unix(srv).request("GET", "/api/flows")
        assert flows["flows"][0]["remote_addr"] == "198.51.100.7" and flows["flows"][0]["remote_port"] == 53

        fam = parse_prometheus(raw(srv, "GET", "/metrics")[2].decode())
        assert fam["natpass_drops_total"][(("reason", "passthrough-disabled:ipsec"),)] == 1
        assert fam["natpass_flows"][(("proto", "udp"),)] == 1
        assert fam["natpass_passthrough_enabled"][(("switch", "pptp"),)] == 1

        code, answer = unix(srv).request("POST", "/api/switch/ipsec", {"on": True})
        assert code == 200 and answer["on"] is True and answer["saved"] is True
        assert d.engine.status()["switches"]["ipsec"] is True

        code, answer = unix(srv).request("POST", "/api/reload", {})  # the file now says ipsec on
        assert code == 200
        assert d.engine.status()["switches"]["ipsec"] is True

        code, answer = unix(srv).request("POST", "/api/switch/ipsec", {"on": False, "runtime_only": True})
        assert code == 200 and answer["saved"] is False
        code, answer = unix(srv).request("POST", "/api/reload", {})  # the file still says ipsec on
        assert code == 200 and answer["summary"] == "ipsec on"
        assert d.engine.status()["switches"]["ipsec"] is True

        (tmp_path / "natpass.toml").write_text("[passthrough]\nipsec = perhaps\n")
        code, answer = unix(srv).request("POST", "/api/reload", {})
        assert code == 422 and answer["line"] == 2 and answer["path"].endswith("natpass.toml")

    # The daemon's usage events feed the recorder: switch history and drop totals.
    d._usage_tick(now + 100)
    rec = UsageRecorder(tmp_path / "usage.sqlite3", d.usage_events, interval=3600)
    rec.close()
    with UsageDB(tmp_path / "usage.sqlite3") as u:
        assert u.drops_by_reason("ipsec") == {"passthrough-disabled:ipsec": 1}
        assert u.enabled_since("ipsec") is not None  # on (saved), off for a while, on again by the reload
        assert [e["event"] for e in reversed(u.events("ipsec"))] == ["switch-on", "switch-off", "switch-on"]


def documented_flow_fields() -> set[str]:
    """The field names of the /api/flows table in docs/ADMIN.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "ADMIN.md").read_text(encoding="utf-8")
    table = text.split("Each row of `/api/flows`", 1)[1].split("\n\n", 2)[1]
    fields: set[str] = set()
    for line in table.splitlines()[2:]:
        fields.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return fields


class SteppedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_api_flows_rows_carry_every_documented_field_with_wall_clock_last_use(tmp_path: Path) -> None:
    from natpass.nat import verdict as V
    from natpass.packets.udp import build_udp
    from natpass.passthrough import build_engine
    from natpass.router.daemon import RouterDaemon

    cfg = tmp_path / "natpass.toml"
    cfg.write_text('[wan]\naddresses = ["203.0.113.1"]\n[lan]\nprefixes = ["192.168.1.0/24"]\n'
                   f'[router]\nstate_dir = "{tmp_path / "state"}"\n')
    clock = SteppedClock(1000.0)
    d = RouterDaemon(str(cfg), clock=clock)
    d.engine = build_engine(d.config.nat)
    assert d.engine.process(build_udp("192.168.1.10", "198.51.100.7", 5000, 53, b"q"), True, 1000.0) == V.TO_WAN
    assert d.engine.process(build_udp("192.168.1.11", "198.51.100.8", 6000, 123, b"q"), True, 1004.0) == V.TO_WAN
    clock.now = 1010.5
    with AdminServer(d, tmp_path / "natpass.sock") as srv:
        before = time.time()
        code, answer = unix(srv).request("GET", "/api/flows")
        after = time.time()
    assert code == 200
    rows = {row["lan_addr"]: row for row in answer["flows"]}
    fields = documented_flow_fields()
    assert "last_seen" in fields and "idle_s" in fields
    for row in rows.values():
        assert set(row) == fields
    first, second = rows["192.168.1.10"], rows["192.168.1.11"]
    assert (first["proto"], first["lan_port"], first["remote_addr"], first["remote_port"]) == (17, 5000, "198.51.100.7", 53)
    assert first["wan_addr"] == "203.0.113.1" and first["outbound"] is True
    assert (first["idle_s"], second["idle_s"]) == (10.5, 6.5)
    assert before - 10.5 - 0.01 <= first["last_seen"] <= after - 10.5 + 0.01
    assert abs((second["last_seen"] - first["last_seen"]) - 4.0) < 0.01


def test_keep_alive_after_a_refused_body_is_not_confused(server: AdminServer) -> None:
    """A 405 on a POST with a body: the body must not be read as the next request."""
    conn = _UnixHTTPConnection(str(server.socket_path), 10)
    try:
        body = b'GET /api/switch/pptp HTTP/1.1\r\nHost: localhost\r\n\r\n'  # a request hidden in a body
        conn.request("POST", "/api/status", body=body, headers={"Content-Type": "application/json"})
        first = conn.getresponse()
        first.read()
        assert first.status == 405
        conn.request("GET", "/api/status")
        second = conn.getresponse()
        assert second.status == 200 and json.loads(second.read())["switches"]
    finally:
        conn.close()


def test_unix_socket_refuses_other_users(server: AdminServer, daemon: FakeDaemon) -> None:
    unix_server = server._servers[0]
    unix_server.allowed_uids = frozenset({os.geteuid() + 4242})  # as if we were another user
    code, answer = unix(server).request("POST", "/api/switch/pptp", {"on": True})
    assert code == 403 and "root" in answer["error"]
    assert daemon.switches["pptp"] is False


def test_hybrid_metrics_are_the_same_from_both_renderers() -> None:
    """The admin socket's /metrics and the web's (prometheus-client) carry the kernel's half."""
    from natpass.router import metrics
    from natpass.web import prometheus

    status = {"hybrid": {"kernel_conntrack": {"count": 7, "max": 262144},
                         "kernel_drops": {"natpass_share": 12, "forward_refused": 4, "input_refused": 0,
                                          "kernel_icmp_errors": 1}}}
    for text in (metrics.render(status), prometheus.render(status).decode()):
        fam = parse_prometheus(text)
        assert fam["natpass_kernel_conntrack_flows"][()] == 7
        assert fam["natpass_kernel_conntrack_max"][()] == 262144
        drops = {dict(k)["reason"]: v for k, v in fam["natpass_kernel_dropped_packets_total"].items()}
        assert drops == {"natpass_share": 12, "forward_refused": 4, "input_refused": 0, "kernel_icmp_errors": 1}
    # nft could not list the table: no drop family, the rest stays
    status["hybrid"]["kernel_drops"] = None
    for text in (metrics.render(status), prometheus.render(status).decode()):
        fam = parse_prometheus(text)
        assert "natpass_kernel_dropped_packets_total" not in fam and fam["natpass_kernel_conntrack_flows"][()] == 7
