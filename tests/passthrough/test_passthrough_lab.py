"""The passthrough helpers as real VPN programs see them: pptpd + pptp-linux, xl2tpd and crafted raw
ESP through ``natpass run`` in network namespaces (root; CI runs it). The lab peers are
natpass.lab's; what is checked here is the helpers' own view: the calls, tunnels, sessions and
SPIs they followed, and the switch semantics. This is also the real L2TPv2 control traffic that
no public capture has (xl2tpd's SCCRQ/SCCRP/SCCCN/ICRQ/ICRP/ICCN).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import need_root

from natpass.lab import topology as T
from natpass.lab.netns import Netns
from natpass.lab.peers.base import run_together
from natpass.lab.peers.esp import RawEsp
from natpass.lab.peers.l2tp import L2tp
from natpass.lab.peers.pptp import Pptp

PREFIX = "ptpass"  # namespaces of this module only
TIMEOUT = 15.0

pytestmark = pytest.mark.root


class Lab:
    def __init__(self, lab: Netns, topo: T.Topology) -> None:
        self.lab, self.topo = lab, topo

    def switches(self, **on: bool) -> None:
        r = self.topo.home
        for k, v in on.items():
            setattr(r, k, v)
        T.restart_router(self.lab, self.topo, r)
        assert r.pid and self.lab.alive(r.pid), r.error
        assert T.wait_reachable(self.lab, "c1", self.topo.server_addrs[0], timeout=8)

    def status(self) -> dict[str, Any]:
        st = T.natpass_status(self.lab, self.topo.home)
        assert st, "natpass status is not readable"
        return st

    def helper(self, name: str) -> dict[str, Any]:
        st = self.status()
        helpers = st.get("helpers") or st.get("engine", {}).get("helpers") or {}
        return helpers[name]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    need_root()
    netns = Netns(PREFIX)
    with netns.session():
        topo = T.build(netns, "basic", router="natpass", clients=2)
        yield Lab(netns, topo)


def test_two_real_pptp_clients_to_one_server_are_followed_call_by_call(root, lab):
    lab.switches(pptp=True, ipsec=False, l2tp=False)
    results = run_together([Pptp(lab.lab, lab.topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")])
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]
    stats = lab.helper("pptp")["stats"]
    assert stats["pptp:tunnels-up"] == 2 and stats["gre_packets"] > 0
    assert not any(k in stats for k in ("pptp:bad-cookie", "pptp:unknown-call", "pptp:stream-lost"))


def test_real_pptp_with_the_switch_off_gets_its_control_connection_but_no_gre(root, lab):
    lab.switches(pptp=False, ipsec=False, l2tp=False)
    res = Pptp(lab.lab, lab.topo, client="c1", timeout=6).run()
    assert not res.connected
    assert T.drops_of(lab.status()).get("passthrough-disabled:pptp", 0) > 0


def test_two_real_xl2tpd_clients_tunnels_and_sessions_are_tracked(root, lab):
    lab.switches(pptp=False, ipsec=False, l2tp=True)
    results = run_together([L2tp(lab.lab, lab.topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")])
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]
    tunnels = lab.helper("l2tp")["tunnels"]
    assert len(tunnels) == 2 and all(t["state"] == "up" and t["sessions"] == 1 for t in tunnels)
    assert all(t["lan_tunnel_id"] and t["remote_tunnel_id"] for t in tunnels)
    assert sorted(t["wan_port"] == 1701 for t in tunnels) == [False, True]  # 1701 kept for one


def test_raw_esp_of_two_hosts_one_after_the_other_is_bound_by_spi(root, lab):
    lab.switches(pptp=False, ipsec=True, l2tp=False)
    results = run_together([RawEsp(lab.lab, lab.topo, client=c, timeout=TIMEOUT) for c in ("c1", "c2")],
                           stagger=True, hold=2.5)
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]
    tunnels = lab.helper("ipsec")["tunnels"]
    assert len({t["lan"] for t in tunnels if t["state"] == "up"}) == 2
    spis = [set(t["spis_in"]) for t in tunnels]
    assert not spis[0] & spis[1]
