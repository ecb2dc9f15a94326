"""Lab topologies (basic, double NAT, carrier NAT) and the ``natpass lab`` command itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from natpass.lab import topology as T
from natpass.lab.netns import Netns, python_argv
from natpass.lab.peers.wireguard import WireGuard

PREFIX = "nplab"


@pytest.fixture
def lab(root: None) -> Iterator[Netns]:
    n = Netns(PREFIX)
    with n.session():
        yield n


def source_seen_by_server(lab: Netns, node: str, server: str) -> str:
    """The address:port the server sees for a UDP datagram from ``node`` (socat echoes it)."""
    # fork: every datagram is answered, so a retry after a lost answer gets one too
    pid = lab.spawn("srv", ["socat", "UDP-RECVFROM:5000,bind=" + server + ",fork", "SYSTEM:echo $SOCAT_PEERADDR"],
                    label="peer-echo")
    try:
        lab.wait_for(lambda: f"{server}:5000" in lab.run("srv", ["ss", "-lun"], check=False).stdout, 5)
        seen = ""
        for _ in range(3):  # UDP: a datagram lost while a router is still starting is retried
            proc = lab.run(node, ["socat", "-T2", "-", f"UDP:{server}:5000"], input="x\n", check=False, timeout=6)
            seen = proc.stdout.strip()
            if seen:
                break
        return seen
    finally:
        lab.kill(pid)


@pytest.mark.parametrize("name", T.TOPOLOGIES)
def test_every_client_reaches_both_server_addresses_through_kernel_nats(lab: Netns, name: str) -> None:
    topo = T.build(lab, name, router="kernel", clients=2)
    for client in topo.clients:
        for addr in topo.server_addrs:
            assert T.wait_reachable(lab, client, addr), f"{client} -> {addr} in {name}"
    # Whatever the number of NATs, the server sees the outermost router's WAN address.
    assert source_seen_by_server(lab, "c1", topo.server_addrs[0]) == T.WAN_ADDR
    expected = {"basic": ["r1"], "double-nat": ["r1", "r2"], "cgnat": ["r1", "cgn"]}[name]
    assert [r.node for r in topo.routers] == expected


@pytest.mark.parametrize("name", ["double-nat", "cgnat"])
def test_wireguard_crosses_two_kernel_nats(lab: Netns, name: str) -> None:
    topo = T.build(lab, name, router="kernel")
    res = WireGuard(lab, topo, timeout=10).run()
    assert res.connected, res.detail


def test_cgnat_home_router_wan_is_in_shared_address_space(lab: Netns) -> None:
    topo = T.build(lab, "cgnat", router="kernel")
    assert topo.home.wan_addr.startswith("100.64.")
    shown = lab.ip("r1", "-4", "-o", "addr", "show", "dev", "wan0")
    assert "100.64.0.2/10" in shown


def test_natpass_home_router_behind_kernel_carrier_nat(lab: Netns) -> None:
    topo = T.build(lab, "cgnat", router="natpass", outer="kernel")
    assert topo.home.pid and lab.alive(topo.home.pid), topo.home.error
    assert T.wait_reachable(lab, "c1", topo.server_addrs[0], timeout=8)
    assert source_seen_by_server(lab, "c1", topo.server_addrs[0]) == T.WAN_ADDR


def natpass_cli(*args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(T.natpass_argv("lab", *args), capture_output=True, text=True, timeout=120, cwd=cwd)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def decoy_folder(tmp_path: Path) -> Path:
    """A current folder holding a folder named natpass that is not natpass."""
    decoy = tmp_path / "natpass"
    decoy.mkdir()
    (decoy / "__init__.py").write_text('raise SystemExit("decoy natpass imported")\n')
    (decoy / "cli.py").write_text('raise SystemExit("decoy natpass imported")\n')
    return tmp_path


def test_lab_runs_its_own_natpass_whatever_the_current_folder_holds(decoy_folder: Path) -> None:
    from natpass import __version__

    naive = subprocess.run([sys.executable, "-m", "natpass.cli", "--version"], capture_output=True, text=True,
                           timeout=60, cwd=decoy_folder)
    assert "decoy" in naive.stderr  # what `python -m natpass.cli` does in such a folder
    proc = subprocess.run(T.natpass_argv("--version"), capture_output=True, text=True, timeout=60,
                          cwd=decoy_folder, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"natpass {__version__}"
    where = subprocess.run(python_argv("import natpass; print(natpass.__file__)"), capture_output=True, text=True,
                           timeout=60, cwd=decoy_folder)
    assert where.stdout.strip() == str(Path(T.__file__).resolve().parents[1] / "__init__.py"), where.stderr


def test_lab_up_fails_with_the_routers_error_when_natpass_does_not_start(root: None, decoy_folder: Path) -> None:
    """A forward the router's config check refuses: natpass run exits, so lab up must too."""
    try:
        natpass_cli("down", "--prefix", PREFIX)
        proc = natpass_cli("up", "--prefix", PREFIX, "--router", "natpass", "--forward",
                           "tcp:8080:192.168.7.10:80", check=False, cwd=decoy_folder)
        assert proc.returncode != 0, proc.stdout
        assert "natpass run on r1 exited" in proc.stderr
        assert "outside the LAN prefixes" in proc.stderr  # the router's own words
        assert Netns(PREFIX).namespaces() == []  # nothing half-built is left
    finally:
        natpass_cli("down", "--prefix", PREFIX)


def test_lab_up_starts_natpass_from_a_folder_holding_a_natpass_folder(root: None, decoy_folder: Path) -> None:
    try:
        natpass_cli("down", "--prefix", PREFIX)
        natpass_cli("up", "--prefix", PREFIX, "--router", "natpass", cwd=decoy_folder)
        st = json.loads(natpass_cli("status", "--prefix", PREFIX, "--json", cwd=decoy_folder).stdout)
        assert st["routers"]["r1"]["running"] is True, st
        ping = natpass_cli("exec", "--prefix", PREFIX, "c1", "--", "ping", "-c1", "-W2", T.SRV_ADDRS[0])
        assert "1 received" in ping.stdout
    finally:
        natpass_cli("down", "--prefix", PREFIX)
    assert Netns(PREFIX).namespaces() == []


def test_lab_cli_up_status_exec_down(root: None) -> None:
    try:
        natpass_cli("down", "--prefix", PREFIX)
        natpass_cli("up", "--prefix", PREFIX, "--router", "kernel", "--clients", "2", "double-nat")
        st = json.loads(natpass_cli("status", "--prefix", PREFIX, "--json").stdout)
        assert st["topology"]["name"] == "double-nat"
        assert set(st["namespaces"]) == {f"{PREFIX}-{n}" for n in ("lan", "c1", "c2", "r1", "r2", "inet", "srv")}
        ping = natpass_cli("exec", "--prefix", PREFIX, "c2", "--", "ping", "-c1", "-W2", T.SRV_ADDRS[1])
        assert "1 received" in ping.stdout
        again = natpass_cli("up", "--prefix", PREFIX, check=False)
        assert again.returncode != 0 and "down" in again.stderr
    finally:
        natpass_cli("down", "--prefix", PREFIX)
    assert Netns(PREFIX).namespaces() == []


def test_lab_down_without_state_removes_stale_namespaces(root: None) -> None:
    """After a crash the state dir may be gone: `lab down` still finds namespaces by prefix."""
    lab = Netns(PREFIX)
    lab.cleanup()
    try:
        lab.add("c1")
        lab.add("r1")
        lab.spawn("r1", ["sleep", "60"], label="orphan")
        import shutil

        shutil.rmtree(lab.state_dir)
        out = natpass_cli("down", "--prefix", PREFIX).stdout
        assert f"{PREFIX}-c1" in out and f"{PREFIX}-r1" in out
        assert lab.namespaces() == []
    finally:
        lab.cleanup()


def test_pptp_and_wireguard_through_two_natpass_nats(lab: Netns) -> None:
    """Double NAT with natpass at both levels (pptp switch on at both): GRE crosses two helpers."""
    from natpass.lab.peers.pptp import Pptp

    topo = T.build(lab, "double-nat", router="natpass", outer="natpass", pptp=True)
    for r in topo.routers:
        assert r.pid and lab.alive(r.pid), r.error
    assert T.wait_reachable(lab, "c1", topo.server_addrs[0], timeout=8)
    for peer in (WireGuard(lab, topo, timeout=10), Pptp(lab, topo, timeout=15)):
        res = peer.run()
        assert res.connected, (res.protocol, res.detail)


def test_two_pptp_clients_through_natpass_behind_kernel_carrier_nat(lab: Netns) -> None:
    """natpass (pptp on) at home, the kernel's PPTP helper at the carrier: Call IDs translated twice."""
    from natpass.lab.peers.base import run_together
    from natpass.lab.peers.pptp import Pptp

    topo = T.build(lab, "cgnat", router="natpass", outer="kernel", pptp=True, clients=2)
    assert topo.home.pid and lab.alive(topo.home.pid), topo.home.error
    for c in topo.clients:
        assert T.wait_reachable(lab, c, topo.server_addrs[0], timeout=8)
    results = run_together([Pptp(lab, topo, client=c, timeout=15) for c in topo.clients])
    assert [r.connected for r in results] == [True, True], [r.detail for r in results]
