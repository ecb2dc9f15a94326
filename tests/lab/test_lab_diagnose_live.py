"""``natpass diagnose --live`` on a natpass router of the lab: both interfaces captured while a real
PPTP client tries through the router with the pptp switch off; the joint diagnosis must say the
GRE reached the LAN side and natpass dropped it, with the router's own drop counter as evidence."""

from __future__ import annotations

import json

from natpass.lab import topology as T
from natpass.lab.netns import Netns
from natpass.lab.peers.pptp import Pptp

PREFIX = "npdlive"
WINDOW = 12.0


def _json_of(log: str) -> dict[str, object]:
    start = log.index("{")
    out = json.loads(log[start:log.rindex("}") + 1])
    assert isinstance(out, dict)
    return out


def test_live_diagnosis_names_the_router_drop(root: None) -> None:
    lab = Netns(PREFIX)
    with lab.session():
        topo = T.build(lab, "basic", router="natpass", pptp=False)
        T.wait_reachable(lab, "c1", topo.server_addrs[0])
        r = topo.home
        assert r.config is not None
        pid = lab.spawn(r.node, T.natpass_argv("diagnose", "--live", "--seconds", str(WINDOW), "--config",
                                               r.config, "--json"), label="live")
        assert lab.wait_for(lambda: "capturing on" in lab.log("live"), 10)
        peer = Pptp(lab, topo, timeout=7)
        try:
            res = peer.wait(peer.start())
        finally:
            peer.stop()
        assert not res.connected  # GRE dropped by natpass: PPTP fails (Windows 619)
        assert lab.wait_for(lambda: not lab.alive(pid), WINDOW + 30)
        out = _json_of(lab.log("live"))
    live = out["live"]
    assert isinstance(live, dict)
    assert live["drops_known"] and live["drops"].get("passthrough-disabled:pptp", 0) > 0
    findings = out["findings"]
    assert isinstance(findings, list)
    hits = [f for f in findings if f["code"] == "dropped-by-router" and f["protocol"] == "pptp"]
    assert hits and "passthrough-disabled:pptp" in hits[0]["explanation"]
    assert "pptp = true" in hits[0]["advice"]
    lan = out["lan"]
    assert isinstance(lan, dict) and lan["vantage"] == "router-lan"
    assert any(p["name"] == "pptp" for p in lan["protocols"])
