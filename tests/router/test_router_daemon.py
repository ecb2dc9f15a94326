"""RouterDaemon's interface as the admin side uses it: from another thread, while packets flow."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from natpass.lab.netns import Netns
from natpass.lab.simple import CLIENT, SERVER, Topology, config_text, exclusive

# Runs inside the router namespace: the daemon's loop in the main thread, "admin" calls from another.
DRIVER = """
import json, logging, os, sys, threading, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from natpass.router.config import ConfigError
from natpass.router.daemon import RouterDaemon

d = RouterDaemon({config!r})
d.start()
out = {{}}

def admin():
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists({go!r}) and time.monotonic() < deadline:
            time.sleep(0.05)
        out["caller_thread"] = threading.current_thread().name
        out["status"] = d.status()
        out["flows"] = d.flows(limit=50)
        out["flows_limited"] = len(d.flows(limit=1))
        out["torn_down"] = d.set_switch("pptp", True)
        try:
            d.set_switch("nonsense", True)
            out["bad_switch"] = "accepted"
        except ValueError as exc:
            out["bad_switch"] = str(exc)
        try:
            d.reload({bad!r})
            out["bad_reload"] = "accepted"
        except ConfigError as exc:
            out["bad_reload"] = {{"path": exc.path, "line": exc.line, "message": exc.message}}
        out["status_after_bad"] = d.status()["config_path"]
        d.reload({good2!r})
        out["status_after_good"] = d.status()["config_path"]
        out["events"] = d.usage_events()
        out["events_again"] = d.usage_events()
    except Exception as exc:
        out["error"] = repr(exc)
    finally:
        d.stop()

threading.Thread(target=admin, name="admin-test").start()
try:
    d.run()
finally:
    d.close()
print("RESULT " + json.dumps(out, default=str), flush=True)
"""


@pytest.fixture
def lab(root: None) -> Iterator[Netns]:
    with exclusive("npdpd"):  # npdp-* belongs to tests/datapath; a parallel run waits, never collides
        lab = Netns("npdpd")
        lab.cleanup()
        try:
            yield lab
        finally:
            lab.cleanup()


def test_admin_calls_from_another_thread_see_live_traffic_and_keep_a_good_config(lab: Netns) -> None:
    topo = Topology(lab).build()
    state = str(lab.path("state", "x").parent)
    sock = str(lab.path("natpass.sock"))
    config = lab.write("natpass.toml", config_text(state, sock))
    good2 = lab.write("natpass2.toml", config_text(state, sock, "\n[passthrough]\nipsec = true\n"))
    bad = lab.write("bad.toml", config_text(state, sock) + "\n[nat]\nmapping = \"sideways\"\n")
    go = str(lab.path("go"))
    script = DRIVER.format(config=str(config), go=go, bad=str(bad), good2=str(good2))
    pid = lab.spawn(topo.rtr, [sys.executable, "-c", script], label="driver")
    assert lab.wait_for(lambda: "natpass running" in lab.log("driver") or not lab.alive(pid), timeout=15)
    ping = lab.run(topo.cli, ["ping", "-c", "3", "-i", "0.2", "-W", "2", SERVER], check=False)
    assert ping.returncode == 0, ping.stdout + lab.log("driver")
    Path(go).touch()
    assert lab.wait_for(lambda: not lab.alive(pid), timeout=30), lab.log("driver")
    lab.kill(pid)
    lines = [line for line in lab.log("driver").splitlines() if line.startswith("RESULT ")]
    assert lines, lab.log("driver")
    out = json.loads(lines[-1][len("RESULT "):])
    assert "error" not in out, out
    status = out["status"]
    assert status["config_path"] == str(config)
    assert status["interfaces"]["lan"]["name"] == "lan0"
    assert status["interfaces"]["wan"]["addresses"] == ["203.0.113.1"]
    assert status["datapath_counters"]["rx_lan"] >= 3
    assert status["datapath_counters"]["tx_wan"] >= 3
    assert status["uptime"] > 0
    json.dumps(status)  # JSON-serialisable as the admin API needs
    assert any(f["lan_addr"] == CLIENT and f["proto"] == 1 for f in out["flows"]), out["flows"]
    assert out["flows_limited"] == 1
    assert "nonsense" in out["bad_switch"]
    assert out["bad_reload"]["path"] == str(bad) and out["bad_reload"]["line"] > 0
    assert out["status_after_bad"] == str(config)  # the running config was kept
    assert out["status_after_good"] == str(good2)
    switch_events = [(e["switch"], e["on"]) for e in out["events"] if e["event"] == "switch"]
    assert ("pptp", True) in switch_events  # set_switch is recorded for the usage DB
    assert ("ipsec", True) in switch_events  # and the state after the reload
    assert out["events_again"] == []  # drained
    # Everything set up was removed when the loop stopped.
    assert lab.run(topo.rtr, ["nft", "list", "table", "inet", "natpass"], check=False).returncode != 0


def test_natpass_run_is_a_registered_command() -> None:
    out = subprocess.run([sys.executable, "-m", "natpass.cli", "run", "--help"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "--config" in out.stdout and "SIGHUP" in out.stdout


def test_natpass_run_refuses_an_invalid_config_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "natpass.toml"
    bad.write_text("[wan]\naddresses = [\"203.0.113.1\"]\n\n[lan]\nprefixes = 12\n")
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "natpass.cli", "run", "--config", str(bad)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert f"{bad}:5" in out.stderr
    assert time.monotonic() - start < 30
