"""``natpass lab demo --json``: one result per protocol x router x switch, with the promised fields."""

from __future__ import annotations

import json
import subprocess
import sys

from natpass.lab.netns import Netns

PREFIX = "nplab"


def test_demo_json_rows_for_wireguard_and_pptp(root: None) -> None:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "natpass.cli", "lab", "demo", "--json", "--prefix", PREFIX,
             "--protocols", "wireguard,pptp", "--timeout", "8"],
            capture_output=True, text=True, timeout=300,
        )
    finally:
        Netns(PREFIX).cleanup()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[1/" in proc.stderr  # progress goes to stderr, the JSON alone to stdout
    out = json.loads(proc.stdout)
    rows = {(r["protocol"], r["router"], r["switch"]): r for r in out["results"]}
    assert set(rows) == {(p, "kernel", "on") for p in ("wireguard", "pptp")} | {
        (p, "natpass", s) for p in ("wireguard", "pptp") for s in ("off", "on")}
    for r in out["results"]:
        for key in ("protocol", "router", "switch", "connected", "setup_s", "windows_error", "drop_reason"):
            assert key in r
        assert (r["setup_s"] is not None) == r["connected"]
    assert rows[("wireguard", "natpass", "off")]["connected"]
    assert rows[("pptp", "kernel", "on")]["connected"]
    assert rows[("pptp", "natpass", "on")]["connected"]
    off = rows[("pptp", "natpass", "off")]
    assert not off["connected"]
    assert off["windows_error"] == 619
    assert off["drop_reason"] == "passthrough-disabled:pptp"
    assert Netns(PREFIX).namespaces() == []
