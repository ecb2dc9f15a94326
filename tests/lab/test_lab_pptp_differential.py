"""Differential: the same two-client PPTP session through the kernel's PPTP helper and through natpass.

Both NATs must keep each call consistent: the Call ID the server learns in the Outgoing-Call-Request
(after NAT) is the GRE key the server sends, and the GRE key each client receives is its own Call ID.
How each NAT picks the translated Call IDs may differ; the differences (and the kernel's own view
from ``conntrack -L`` / ``conntrack -L expect``, natpass's from ``natpass status --json``) are
recorded as test properties and in ``differential-pptp.json`` in the lab state dir while it runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from natpass.lab import topology as T
from natpass.lab.capture import Capture, tshark_fields
from natpass.lab.netns import Netns
from natpass.lab.peers.pptp import Pptp

PREFIX = "nplab"
OCRQ, OCRP = "7", "8"  # RFC 2637 section 2.7/2.8 control message types


@pytest.fixture
def lab(root: None) -> Iterator[Netns]:
    n = Netns(PREFIX)
    with n.session():
        yield n


def pptp_session(lab: Netns, router: str) -> dict[str, Any]:
    """Two PPTP clients at once through ``router``; call IDs as seen on each LAN link and at the server."""
    topo = T.build(lab, "basic", router=router, clients=2, pptp=True)
    if router == "natpass":
        assert topo.home.pid and lab.alive(topo.home.pid), topo.home.error
    for c in topo.clients:
        assert T.wait_reachable(lab, c, topo.server_addrs[0], timeout=8)
    bpf = "tcp port 1723 or ip proto 47"
    caps = {c: Capture(lab, c, "eth0", bpf, lab.path(f"pptp-{router}-{c}.pcap")) for c in topo.clients}
    caps["srv"] = Capture(lab, "srv", "eth0", bpf, lab.path(f"pptp-{router}-srv.pcap"))
    peers = [Pptp(lab, topo, client=c, timeout=15) for c in topo.clients]
    for cap in caps.values():
        cap.start()
    view: dict[str, Any] = {}
    try:
        peers[0].start_server()
        for p in peers:
            p.start_client()
        connected = [lab.wait_for(p.connected, 15) for p in peers]
        assert connected == [True, True], [p.failure_detail() for p in peers]
        if router == "kernel":
            view["conntrack"] = T.conntrack(lab, "r1").strip().splitlines()
            view["expect"] = T.conntrack(lab, "r1", expect=True).strip().splitlines()
        else:
            st = T.natpass_status(lab, topo.home) or {}
            view["natpass_pptp"] = st.get("helpers", {}).get("pptp", {})
    finally:
        for p in reversed(peers):
            p.stop()
        for cap in caps.values():
            cap.stop()
    calls = []
    srv_pcap = caps["srv"].path
    for c in topo.clients:
        lan = caps[c].path
        req = tshark_fields(lan, f"pptp.control_message_type == {OCRQ}", ["pptp.call_id"])
        rep = tshark_fields(lan, f"pptp.control_message_type == {OCRP}", ["pptp.call_id", "pptp.peer_call_id"])
        assert req and rep, f"{router} {c}: no OCRQ/OCRP on the LAN link: " + str(
            tshark_fields(lan, "pptp || gre", ["frame.number", "ip.src", "ip.dst", "pptp.control_message_type"]))
        lan_call_id, server_call_id = int(req[0][0]), int(rep[0][0])
        # At the server: the OCRP carrying this server Call ID names the client's translated Call ID.
        srv_rep = tshark_fields(srv_pcap, f"pptp.control_message_type == {OCRP} && pptp.call_id == {server_call_id}",
                                ["pptp.peer_call_id"])
        wan_call_id = int(srv_rep[0][0])
        gre_to_client = {int(r[0]) for r in tshark_fields(
            lan, f"gre && ip.dst == {topo.client_addrs[c]}", ["gre.key.call_id"])}
        gre_at_server_out = {int(r[0]) for r in tshark_fields(
            srv_pcap, f"gre && ip.src == {topo.server_addrs[0]} && gre.key.call_id == {wan_call_id}",
            ["gre.key.call_id"])}
        gre_at_server_in = {int(r[0]) for r in tshark_fields(
            srv_pcap, f"gre && ip.dst == {topo.server_addrs[0]} && gre.key.call_id == {server_call_id}",
            ["gre.key.call_id"])}
        calls.append({
            "client": c, "lan_call_id": lan_call_id, "wan_call_id": wan_call_id,
            "server_call_id": server_call_id, "gre_keys_to_client": sorted(gre_to_client),
            "server_sent_gre_with_wan_call_id": bool(gre_at_server_out),
            "server_received_gre_with_its_call_id": bool(gre_at_server_in),
        })
    return {"router": router, "calls": calls, "view": view}


def test_pptp_call_ids_natpass_versus_kernel_helper(lab: Netns, record_property) -> None:
    sessions = {}
    for router in ("kernel", "natpass"):
        sessions[router] = pptp_session(lab, router)
        lab.cleanup()
    for router, s in sessions.items():
        wan_ids = [c["wan_call_id"] for c in s["calls"]]
        assert len(set(wan_ids)) == len(wan_ids), f"{router}: two calls share a Call ID at the server"
        for call in s["calls"]:
            assert call["gre_keys_to_client"] == [call["lan_call_id"]], (router, call)
            assert call["server_sent_gre_with_wan_call_id"], (router, call)
            assert call["server_received_gre_with_its_call_id"], (router, call)
    differences = {
        router: [{"client": c["client"], "rewritten": c["lan_call_id"] != c["wan_call_id"],
                  "lan": c["lan_call_id"], "wan": c["wan_call_id"]} for c in s["calls"]]
        for router, s in sessions.items()
    }
    record_property("pptp_call_id_translation", json.dumps(differences))
    record_property("pptp_kernel_conntrack", json.dumps(sessions["kernel"]["view"]))
    out = Path(lab.path("differential-pptp.json"))
    out.write_text(json.dumps(sessions, indent=2))
    print(json.dumps(differences, indent=2))
    print(json.dumps(sessions["kernel"]["view"], indent=2))
