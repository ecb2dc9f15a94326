"""Port forwards on a real daemon (engine, config file, history; no packet sockets) through the web
API and the Port forwarding page: added and removed live, saved with the file's comments, and every
refusal with its documented status, changing nothing."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import natpass.web.app as web_app
from natpass.nat.engine import TO_LAN
from natpass.packets.ipv4 import addr_to_str
from natpass.packets.tcp import SYN, build_tcp
from tests.router.test_router_web import FAST, PASSWORD, ROUTER

CONFIG = """\
# office router: keep this comment
[wan]
addresses = ["203.0.113.1"]

[lan]
prefixes = ["192.168.1.0/24"]
interface = "lan0"

[router]
state_dir = "{state}"

[[forward]]
# the mail server: keep this comment too
proto = "tcp"
port = 25
to = "192.168.1.5"
"""

SERVER = "192.168.1.10"
REMOTE = "198.51.100.7"
WAN = "203.0.113.1"


@pytest.fixture
def real(tmp_path: Path):
    from natpass.passthrough import build_engine
    from natpass.router.auth import Auth
    from natpass.router.daemon import RouterDaemon

    cfg = tmp_path / "natpass.toml"
    cfg.write_text(CONFIG.format(state=tmp_path / "state"))
    daemon = RouterDaemon(str(cfg))
    daemon.engine = build_engine(daemon._nat_config(daemon.config))
    daemon._record_version("start")
    auth = Auth(tmp_path / "state", hasher=FAST)
    auth.password.set(PASSWORD)
    c = TestClient(web_app.create_app(daemon, auth), base_url=ROUTER, follow_redirects=False)
    return daemon, c, cfg


def login(c: TestClient) -> str:
    r = c.post("/api/login", json={"password": PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["csrf"])


_SPORTS = itertools.count(40000)


def reaches(daemon, port: int) -> str | None:
    """A new connection (SYN) from the internet to the router's WAN ``port``: the LAN endpoint it
    is sent to, or None. Each probe is a new connection: one already forwarded outlives its forward."""
    buf = build_tcp(REMOTE, WAN, next(_SPORTS), port, flags=SYN)
    if daemon.engine.process(buf, False, daemon.clock()) != TO_LAN:
        return None
    dport = int.from_bytes(buf[22:24], "big")
    return f"{addr_to_str(bytes(buf[16:20]))}:{dport}"


def state(daemon, cfg: Path) -> tuple:
    return (cfg.read_bytes(), tuple(daemon.config.nat.forwards), [v.as_dict() for v in daemon.history.versions()])


def test_a_forward_added_through_the_api_is_live_saved_and_removed(real):
    daemon, c, cfg = real
    csrf = login(c)
    assert reaches(daemon, 8080) is None
    r = c.post("/api/forwards", json={"proto": "tcp", "port": 8080, "to": f"{SERVER}:80", "comment": "web"},
               headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    assert r.json()["saved"] is True and r.json()["action"] == "added"
    assert reaches(daemon, 8080) == f"{SERVER}:80"
    text = cfg.read_text()
    assert "# office router: keep this comment" in text and "# the mail server: keep this comment too" in text
    assert 'to = "192.168.1.10:80"' in text and 'comment = "web"' in text
    newest = daemon.history.versions()[0]
    assert (newest.who, newest.summary) == ("web session admin", "forward +tcp/8080->192.168.1.10:80")
    listed = c.get("/api/forwards").json()["forwards"]
    assert [(f["proto"], f["port"], f["to"]) for f in listed] == [("tcp", 25, "192.168.1.5:25"),
                                                                  ("tcp", 8080, "192.168.1.10:80")]
    r = c.delete("/api/forwards/tcp/8080", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["saved"] is True, r.text
    assert reaches(daemon, 8080) is None and reaches(daemon, 25) == "192.168.1.5:25"
    assert cfg.read_text() == CONFIG.format(state=cfg.parent / "state")
    assert daemon.history.versions()[0].summary == "forward -tcp/8080->192.168.1.10:80"


def test_a_runtime_only_forward_leaves_the_file_alone(real):
    daemon, c, cfg = real
    csrf = login(c)
    before = cfg.read_bytes()
    r = c.post("/api/forwards", json={"proto": "udp", "port": 5060, "to": SERVER, "runtime_only": True},
               headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201 and r.json()["saved"] is False and r.json()["save_error"] is None
    assert cfg.read_bytes() == before and len(daemon.config.nat.forwards) == 2
    assert c.delete("/api/forwards/udp/5060?runtime_only=1", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert cfg.read_bytes() == before and len(daemon.config.nat.forwards) == 1


@pytest.mark.parametrize(("body", "status", "reason"), [
    ({"proto": "tcp", "port": 8080, "to": "10.0.0.5:80"}, 422, "is not in the LAN"),
    ({"proto": "icmp", "port": 8080, "to": SERVER}, 422, "proto must be"),
    ({"proto": "tcp", "port": 70000, "to": SERVER}, 422, "from 1 to 65535"),
    ({"proto": "tcp", "port": 8080, "to": "192.168.1.10:0"}, 422, "from 1 to 65535"),
    ({"proto": "tcp", "port": 8080, "to": "server.lan"}, 422, "ADDRESS[:PORT]"),
    ({"proto": "tcp", "port": 8080, "to": SERVER, "wan_address": "203.0.113.9"}, 422, "not one of the router's WAN"),
    ({"proto": "tcp", "port": 25, "to": "192.168.1.6"}, 409, "already forwarded"),
    ({"proto": "udp", "port": 500, "to": SERVER}, 409, "IKE"),
    ({"proto": "tcp", "port": 1723, "to": SERVER}, 409, "PPTP"),
])
def test_an_invalid_or_colliding_forward_is_refused_and_changes_nothing(real, body, status, reason):
    daemon, c, cfg = real
    csrf = login(c)
    before = state(daemon, cfg)
    r = c.post("/api/forwards", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == status, r.text
    assert reason in r.json()["error"]
    assert state(daemon, cfg) == before and reaches(daemon, body["port"]) in (None, "192.168.1.5:25")


def test_a_wan_port_a_connection_holds_is_refused(real):
    daemon, c, cfg = real
    csrf = login(c)
    out = build_tcp("192.168.1.20", REMOTE, 5555, 443, flags=SYN)
    assert daemon.engine.process(out, True, daemon.clock()) != TO_LAN
    wan_port = int.from_bytes(out[20:22], "big")
    before = state(daemon, cfg)
    r = c.post("/api/forwards", json={"proto": "tcp", "port": wan_port, "to": SERVER}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409 and "in use by a connection (192.168.1.20:5555" in r.json()["error"]
    assert state(daemon, cfg) == before
    # the other protocol's port of the same number is free
    assert c.post("/api/forwards", json={"proto": "udp", "port": wan_port, "to": SERVER},
                  headers={"X-CSRF-Token": csrf}).status_code == 201


def test_forward_changes_need_a_session_and_its_csrf_token(real):
    daemon, c, cfg = real
    before = state(daemon, cfg)
    good = {"proto": "tcp", "port": 8080, "to": SERVER}
    assert c.get("/api/forwards").status_code == 401
    assert c.post("/api/forwards", json=good).status_code == 401
    assert c.delete("/api/forwards/tcp/25").status_code == 401
    assert c.get("/forwards").status_code == 303
    csrf = login(c)
    for head in ({}, {"X-CSRF-Token": "wrong"}):
        assert c.post("/api/forwards", json=good, headers=head).status_code == 403
        assert c.delete("/api/forwards/tcp/25", headers=head).status_code == 403
    assert c.post("/forwards", data={"action": "add", "proto": "tcp", "port": "8080", "to": SERVER}).status_code == 403
    assert c.post("/api/forwards", json=good, headers={"X-CSRF-Token": csrf, "Origin": "null"}).status_code == 403
    assert c.delete("/api/forwards/tcp/26", headers={"X-CSRF-Token": csrf}).status_code == 404
    assert c.delete("/api/forwards/gre/25", headers={"X-CSRF-Token": csrf}).status_code == 404
    assert c.post("/api/forwards", content=b"[1]", headers={"X-CSRF-Token": csrf,
                                                             "Content-Type": "application/json"}).status_code == 400
    assert state(daemon, cfg) == before and reaches(daemon, 8080) is None


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:300]
    return m.group(1)


def test_the_page_lists_adds_refuses_with_the_reason_and_removes(real):
    daemon, c, cfg = real
    assert c.post("/login", data={"password": PASSWORD, "next": "/forwards"}).status_code == 303
    page = c.get("/forwards").text
    assert "Port forwarding" in page and "192.168.1.5:25" in page and 'id="remove-tcp-25"' in page
    csrf = csrf_of(page)
    before = state(daemon, cfg)
    r = c.post("/forwards", data={"csrf": csrf, "action": "add", "proto": "tcp", "port": "8080", "to": "10.1.1.1:80"})
    assert r.status_code == 422 and "Refused:" in r.text and "is not in the LAN" in r.text
    assert 'value="10.1.1.1:80"' in r.text  # kept in the form to correct
    assert state(daemon, cfg) == before
    r = c.post("/forwards", data={"csrf": csrf, "action": "add", "proto": "tcp", "port": "8080", "to": f"{SERVER}:80"})
    assert r.status_code == 303 and reaches(daemon, 8080) == f"{SERVER}:80"
    page = c.get(r.headers["location"]).text
    assert "saved in the config file" in page and 'id="remove-tcp-8080"' in page
    r = c.post("/forwards", data={"csrf": csrf, "action": "remove", "proto": "tcp", "port": "8080", "wan_address": ""})
    assert r.status_code == 303 and reaches(daemon, 8080) is None
    assert "8080" not in cfg.read_text()
    log = c.get("/log").text
    assert "port forward tcp *:8080 -&gt; 192.168.1.10:80 added by session admin" in log


# ----- the Unix admin socket and `natpass forward` -----------------------------------------------

def test_natpass_forward_add_list_remove_over_the_admin_socket(real, capsys):
    from natpass.cli import main
    from natpass.router.admin import AdminServer

    daemon, _, cfg = real
    srv = AdminServer(daemon, cfg.parent / "natpass.sock").start()
    sock = str(srv.socket_path)
    try:
        assert main(["forward", "add", "tcp", "2222", f"{SERVER}:22", "--comment", "ssh", "--socket", sock]) == 0
        out = capsys.readouterr().out
        assert "port forward added: tcp *:2222 -> 192.168.1.10:22" in out and "saved in the config file" in out
        assert reaches(daemon, 2222) == f"{SERVER}:22" and 'comment = "ssh"' in cfg.read_text()
        assert daemon.history.versions()[0].who == "admin-unix"
        assert main(["forward", "list", "--socket", sock]) == 0
        out = capsys.readouterr().out
        assert "tcp *:25 -> 192.168.1.5:25" in out and "tcp *:2222 -> 192.168.1.10:22   # ssh" in out
        before = state(daemon, cfg)
        assert main(["forward", "add", "udp", "4500", SERVER, "--socket", sock]) == 2
        assert "IKE" in capsys.readouterr().err
        assert main(["forward", "add", "tcp", "2223", "10.9.9.9", "--socket", sock]) == 2
        assert "is not in the LAN" in capsys.readouterr().err
        assert main(["forward", "remove", "udp", "2222", "--socket", sock]) == 2
        assert "no port forward of udp port 2222" in capsys.readouterr().err
        assert state(daemon, cfg) == before
        assert main(["forward", "remove", "tcp", "2222", "--socket", sock]) == 0
        assert reaches(daemon, 2222) is None and "2222" not in cfg.read_text()
        assert "port forward removed" in capsys.readouterr().out
        assert main(["forward", "list", "--json", "--socket", sock]) == 0
        assert [f["port"] for f in json.loads(capsys.readouterr().out)] == [25]
    finally:
        srv.stop()
    assert main(["forward", "list", "--socket", sock]) == 1
    assert "no router is running" in capsys.readouterr().err


def test_with_the_hybrid_datapath_a_forward_replaces_the_kernels_rules_or_changes_nothing(real):
    import dataclasses

    from natpass.datapath.live_setup import SetupError
    from natpass.router.daemon import _hybrid_for

    daemon, c, cfg = real
    daemon.hybrid = _hybrid_for(dataclasses.replace(daemon.config, datapath="hybrid"))
    applied: list[str] = []

    class Setup:  # what the daemon asks of HostSetup here: replace the kernel's table
        refuse = True

        def update_share(self, share) -> None:
            if self.refuse:
                raise SetupError("nft: Error: Could not process rule")
            applied.append(share.ruleset)

    setup = daemon.setup = Setup()
    csrf = login(c)
    before = state(daemon, cfg)
    r = c.post("/api/forwards", json={"proto": "tcp", "port": 8080, "to": f"{SERVER}:80"},
               headers={"X-CSRF-Token": csrf})
    assert r.status_code == 500 and "kernel" in r.json()["error"] and "Could not process rule" in r.json()["error"]
    assert state(daemon, cfg) == before and applied == []

    setup.refuse = False
    r = c.post("/api/forwards", json={"proto": "tcp", "port": 8080, "to": f"{SERVER}:80"},
               headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    assert re.search(r"tcp dport 8080 dnat ip to 192\.168\.1\.10:80", applied[-1]), applied[-1]
    assert daemon.hybrid.kernel_share().ruleset == applied[-1]
    r = c.delete("/api/forwards/tcp/8080", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and "dport 8080" not in applied[-1]
    assert "dport 25 dnat ip to 192.168.1.5:25" in applied[-1]  # the file's forward stays
