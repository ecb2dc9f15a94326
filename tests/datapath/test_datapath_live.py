"""The live datapath in real namespaces: client -- router running ``natpass run`` -- server.

Every test here needs root (CI is root) and uses namespaces with the prefix ``npdp``, removed at the
end even when a test fails.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_root
from tshark_check import bad_checksums, decode

from natpass.lab.netns import Netns
from natpass.lab.simple import CLIENT, ROUTER_WAN, SERVER, Topology, config_text, exclusive
from natpass.lab.topology import natpass_argv as natpass_command


def natpass_argv(config: str) -> list[str]:
    """``natpass run`` of this package with debug logs."""
    return natpass_command("run", "--config", config, "--log-level", "debug")


pytestmark = pytest.mark.root

# A UDP and TCP echo server that says where each packet came from; it exits on its own after 60 s.
ECHO_SERVER = """
import select, socket, sys, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5000))
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 5001)); t.listen(8)
end = time.monotonic() + 60
while time.monotonic() < end:
    r, _, _ = select.select([u, t], [], [], 0.5)
    if u in r:
        data, peer = u.recvfrom(2048); print("udp", peer[0], peer[1], flush=True); u.sendto(data, peer)
    if t in r:
        c, peer = t.accept(); c.settimeout(2); print("tcp", peer[0], peer[1], flush=True)
        data = c.recv(2048); c.sendall(data); c.close()
"""

CLIENT_PROBE = f"""
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
u.sendto(b"hello-udp", ("{SERVER}", 5000)); print("udp-reply", u.recvfrom(100)[0].decode())
t = socket.create_connection(("{SERVER}", 5001), timeout=3); t.sendall(b"hello-tcp")
print("tcp-reply", t.recv(100).decode()); t.close()
"""


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    need_root()
    with exclusive("npdp"):
        lab = Netns("npdp")
        lab.cleanup()
        try:
            yield Topology(lab).build()
        finally:
            lab.cleanup()


@pytest.fixture
def config(topo: Topology) -> Path:
    state = topo.lab.path("state", "x").parent
    return topo.lab.write("natpass.toml", config_text(str(state), str(topo.lab.path("natpass.sock"))))


@pytest.fixture
def natpass(topo: Topology, config: Path) -> Iterator[int]:
    pid = topo.start_natpass(config, runner=[*natpass_argv(str(config)), "--cleanup"])
    try:
        yield pid
    finally:
        topo.lab.kill(pid, timeout=5)


@pytest.fixture
def echo_server(topo: Topology) -> Iterator[int]:
    pid = topo.lab.spawn(topo.srv, [sys.executable, "-u", "-c", ECHO_SERVER], label="echo")
    time.sleep(0.3)
    try:
        yield pid
    finally:
        topo.lab.kill(pid)


def test_ping_udp_tcp_cross_translated_to_the_wan_address(topo: Topology, natpass: int, echo_server: int,
                                                         tmp_path: Path) -> None:
    wan_pcap, lan_pcap = tmp_path / "wan.pcap", tmp_path / "lan.pcap"
    wan_cap = topo.capture(topo.srv, "eth0", wan_pcap, "ip")
    lan_cap = topo.capture(topo.cli, "eth0", lan_pcap, "ip")
    try:
        ping = topo.lab.run(topo.cli, ["ping", "-c", "3", "-i", "0.2", "-W", "2", SERVER], check=False)
        probe = topo.lab.run(topo.cli, [sys.executable, "-c", CLIENT_PROBE], check=False)
        forwarding = topo.sysctl("net.ipv4.ip_forward")
        tracked = topo.lab.run(topo.rtr, ["conntrack", "-L"], check=False).stdout
    finally:
        topo.stop_capture(wan_cap)
        topo.stop_capture(lan_cap)
    assert ping.returncode == 0, ping.stdout + topo.lab.log("natpass")
    assert "udp-reply hello-udp" in probe.stdout, probe.stderr + topo.lab.log("natpass")
    assert "tcp-reply hello-tcp" in probe.stdout, probe.stderr
    # The kernel neither forwarded nor NATed any of it.
    assert forwarding == "0"
    assert CLIENT not in tracked
    # The server saw the router's WAN address, never the client's LAN address.
    seen = [line.split() for line in topo.lab.log("echo").splitlines() if line.startswith(("udp", "tcp"))]
    assert {kind for kind, *_ in seen} == {"udp", "tcp"}
    assert {addr for _kind, addr, _port in seen} == {ROUTER_WAN}
    frames = decode(wan_pcap)
    sources = {f["ip"]["ip.src"] for f in frames if "ip" in f}
    assert sources == {ROUTER_WAN, SERVER}, sources
    assert CLIENT not in {f["ip"]["ip.dst"] for f in frames if "ip" in f}
    protos = {f["ip"]["ip.proto"] for f in frames if "ip" in f and f["ip"]["ip.src"] == ROUTER_WAN}
    assert protos >= {"1", "6", "17"}, protos
    # Replies reached the client translated back, with correct checksums on both sides.
    lan_frames = decode(lan_pcap)
    assert {f["ip"]["ip.src"] for f in lan_frames if "ip" in f and f["ip"]["ip.dst"] == CLIENT} == {SERVER}
    assert bad_checksums(wan_pcap) == []
    assert bad_checksums(lan_pcap) == []


def test_the_plain_socket_path_without_rings_translates_the_same(topo: Topology, config: Path,
                                                                 echo_server: int) -> None:
    pid = topo.start_natpass(config, label="natpass-norings", runner=natpass_argv(str(config)),
                             env={"NATPASS_PACKET_RINGS": "0"})
    try:
        ping = topo.lab.run(topo.cli, ["ping", "-c", "2", "-i", "0.2", "-W", "2", SERVER], check=False)
        probe = topo.lab.run(topo.cli, [sys.executable, "-c", CLIENT_PROBE], check=False)
        ttl = topo.lab.run(topo.cli, ["ping", "-c", "1", "-t", "1", "-W", "2", SERVER], check=False)
        topo.signal(pid, signal.SIGTERM)
        assert topo.wait_exit(pid)
    finally:
        topo.lab.kill(pid)
    log = topo.lab.log("natpass-norings")
    assert ping.returncode == 0, ping.stdout + log
    assert "udp-reply hello-udp" in probe.stdout and "tcp-reply hello-tcp" in probe.stdout, probe.stderr + log
    assert "Time to live exceeded" in ttl.stdout
    assert "'rings': 0" in log  # it really ran without the rings
    seen = {line.split()[1] for line in topo.lab.log("echo").splitlines() if line.startswith(("udp", "tcp"))}
    assert seen == {ROUTER_WAN}


def test_inbound_unsolicited_traffic_is_dropped_silently(topo: Topology, natpass: int, tmp_path: Path) -> None:
    pcap = tmp_path / "wan.pcap"
    cap = topo.capture(topo.srv, "eth0", pcap, "ip")
    probe = f"""
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b"x", ("{ROUTER_WAN}", 6000))
t = socket.socket(); t.settimeout(1.5)
try:
    t.connect(("{ROUTER_WAN}", 22)); print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("timeout", e)
"""
    try:
        out = topo.lab.run(topo.srv, [sys.executable, "-c", probe]).stdout
    finally:
        topo.stop_capture(cap)
    assert out.startswith("timeout"), out  # no RST from the kernel, no SYN-ACK from anyone
    from_router = [f for f in decode(pcap) if "ip" in f and f["ip"]["ip.src"] == ROUTER_WAN]
    assert from_router == []  # not even an ICMP port unreachable for the UDP probe
    status = topo.lab.run(topo.rtr, ["nft", "list", "table", "inet", "natpass"]).stdout
    assert "drop" in status


def test_ping_to_the_router_wan_address_is_answered_by_natpass(topo: Topology, natpass: int) -> None:
    ping = topo.lab.run(topo.srv, ["ping", "-c", "2", "-i", "0.2", "-W", "2", ROUTER_WAN], check=False)
    assert ping.returncode == 0, ping.stdout + topo.lab.log("natpass")


def test_ttl_expiry_is_answered_with_icmp_time_exceeded(topo: Topology, natpass: int) -> None:
    ping = topo.lab.run(topo.cli, ["ping", "-c", "1", "-t", "1", "-W", "2", SERVER], check=False)
    assert "Time to live exceeded" in ping.stdout, ping.stdout + topo.lab.log("natpass")


def test_sighup_with_an_invalid_config_keeps_the_running_one(topo: Topology, natpass: int,
                                                            config: Path) -> None:
    good = config.read_text()
    config.write_text(good + "\n[passthrough]\npptp = maybe\n")
    try:
        topo.signal(natpass, signal.SIGHUP)
        assert topo.lab.wait_for(lambda: "reload refused" in topo.lab.log("natpass"), timeout=5), \
            topo.lab.log("natpass")
        assert f"{config}:" in topo.lab.log("natpass")  # the message names the file and line
        assert topo.lab.alive(natpass)
        ping = topo.lab.run(topo.cli, ["ping", "-c", "2", "-i", "0.2", "-W", "2", SERVER], check=False)
        assert ping.returncode == 0, ping.stdout
    finally:
        config.write_text(good)
    topo.signal(natpass, signal.SIGHUP)
    assert topo.lab.wait_for(lambda: "config reloaded" in topo.lab.log("natpass"), timeout=5)


def test_sigterm_removes_the_nft_table_and_restores_sysctls(topo: Topology, config: Path) -> None:
    topo.lab.sysctl(topo.rtr, "net.ipv4.ip_forward", 1)  # so that the restore is visible
    pid = topo.start_natpass(config, label="natpass-term",
                             runner=[*natpass_argv(str(config)), "--cleanup"])
    try:
        assert topo.nft_table_present()
        assert topo.sysctl("net.ipv4.ip_forward") == "0"
        topo.signal(pid, signal.SIGTERM)
        assert topo.wait_exit(pid), topo.lab.log("natpass-term")
    finally:
        topo.lab.kill(pid)
    assert not topo.nft_table_present()
    assert topo.sysctl("net.ipv4.ip_forward") == "1"
    state = config.parent / "state"
    assert not (state / "natpass.pid").exists()
    assert not (state / "live-state.json").exists()
    topo.lab.sysctl(topo.rtr, "net.ipv4.ip_forward", 0)


def test_a_crash_leaves_state_that_the_next_start_cleans(topo: Topology, config: Path) -> None:
    topo.lab.sysctl(topo.rtr, "net.ipv4.ip_forward", 1)
    pid = topo.start_natpass(config, label="natpass-crash", runner=natpass_argv(str(config)))
    topo.signal(pid, signal.SIGKILL)
    assert topo.wait_exit(pid)
    topo.lab.kill(pid)
    assert topo.nft_table_present()  # a SIGKILL leaves everything behind
    assert (config.parent / "state" / "live-state.json").exists()
    pid = topo.start_natpass(config, label="natpass-again",
                             runner=[*natpass_argv(str(config)), "--cleanup"])
    try:
        log = topo.lab.log("natpass-again")
        assert "cleaned up after a previous run" in log, log
        ping = topo.lab.run(topo.cli, ["ping", "-c", "2", "-i", "0.2", "-W", "2", SERVER], check=False)
        assert ping.returncode == 0, ping.stdout
        topo.signal(pid, signal.SIGTERM)
        assert topo.wait_exit(pid)
    finally:
        topo.lab.kill(pid)
    assert not topo.nft_table_present()
    assert topo.sysctl("net.ipv4.ip_forward") == "1"  # the value from before the crashed run
    topo.lab.sysctl(topo.rtr, "net.ipv4.ip_forward", 0)


def test_a_second_instance_refuses_to_start_while_one_runs(topo: Topology, natpass: int,
                                                          config: Path) -> None:
    pid = topo.lab.spawn(topo.rtr, natpass_argv(str(config)), label="natpass-second")
    assert topo.wait_exit(pid, timeout=10)
    assert "already running" in topo.lab.log("natpass-second")
    assert topo.nft_table_present()  # the first one's set-up is untouched
    ping = topo.lab.run(topo.cli, ["ping", "-c", "1", "-W", "2", SERVER], check=False)
    assert ping.returncode == 0


def test_a_link_flap_on_the_wan_side_does_not_stop_the_router(topo: Topology, natpass: int) -> None:
    topo.lab.ip(topo.rtr, "link", "set", "wan0", "down")
    time.sleep(0.5)
    topo.lab.ip(topo.rtr, "link", "set", "wan0", "up")
    assert topo.lab.alive(natpass), topo.lab.log("natpass")
    ok = topo.lab.wait_for(lambda: topo.lab.run(topo.cli, ["ping", "-c", "1", "-W", "1", SERVER],
                                                check=False).returncode == 0, timeout=10)
    assert ok, topo.lab.log("natpass")
    assert topo.lab.alive(natpass)


def test_a_missing_interface_is_refused_and_nothing_is_left_behind(topo: Topology, config: Path) -> None:
    config.write_text(config.read_text().replace('interface = "wan0"', 'interface = "wan9"'))
    pid = topo.lab.spawn(topo.rtr, natpass_argv(str(config)), label="natpass-noif")
    assert topo.wait_exit(pid, timeout=15)
    topo.lab.kill(pid)
    log = topo.lab.log("natpass-noif")
    assert "wan9 does not exist" in log, log
    assert not topo.nft_table_present()
    assert not (config.parent / "state" / "live-state.json").exists()


def test_traffic_beyond_the_wan_link_goes_to_the_configured_gateway(topo: Topology, config: Path) -> None:
    far = "198.51.100.2"  # a host beyond the WAN link: the server namespace holds it on lo
    topo.lab.addr(topo.srv, "lo", f"{far}/32")
    # The server answers ARP only for eth0's own address: asking for `far` directly would fail.
    topo.lab.sysctl(topo.srv, "net.ipv4.conf.all.arp_ignore", 1)
    config.write_text(config.read_text().replace('interface = "wan0"',
                                                 f'interface = "wan0"\ngateway = "{SERVER}"'))
    pid = topo.start_natpass(config, label="natpass-gw", runner=natpass_argv(str(config)))
    try:
        ping = topo.lab.run(topo.cli, ["ping", "-c", "2", "-i", "0.2", "-W", "2", far], check=False)
        assert ping.returncode == 0, ping.stdout + topo.lab.log("natpass-gw")
        neigh = topo.lab.run(topo.srv, ["ip", "neigh", "show", "dev", "eth0"]).stdout
        assert ROUTER_WAN in neigh  # the router asked for the gateway's MAC (and so learned of it)
    finally:
        topo.lab.kill(pid)
        topo.lab.ip(topo.srv, "addr", "del", f"{far}/32", "dev", "lo")
        topo.lab.sysctl(topo.srv, "net.ipv4.conf.all.arp_ignore", 0)


def test_a_second_wan_address_not_on_the_interface_gets_arp_answers_from_natpass(
        topo: Topology, config: Path, echo_server: int) -> None:
    extra = "203.0.113.5"
    config.write_text(config.read_text().replace(f'addresses = ["{ROUTER_WAN}"]',
                                                 f'addresses = ["{ROUTER_WAN}", "{extra}"]'))
    pid = topo.start_natpass(config, label="natpass-pool", runner=natpass_argv(str(config)))
    try:
        topo.lab.run(topo.srv, ["ip", "neigh", "flush", "dev", "eth0"], check=False)
        ping = topo.lab.run(topo.srv, ["ping", "-c", "2", "-i", "0.2", "-W", "2", extra], check=False)
        assert ping.returncode == 0, ping.stdout + topo.lab.log("natpass-pool")
        neigh = topo.lab.run(topo.srv, ["ip", "neigh", "show", extra]).stdout
        assert "lladdr" in neigh  # resolved through natpass's ARP reply
        probe = topo.lab.run(topo.cli, [sys.executable, "-c", CLIENT_PROBE], check=False)
        assert "udp-reply hello-udp" in probe.stdout, probe.stderr + topo.lab.log("natpass-pool")
        seen = {line.split()[1] for line in topo.lab.log("echo").splitlines() if line.startswith("udp")}
        assert seen <= {ROUTER_WAN, extra} and seen
    finally:
        topo.lab.kill(pid)
    assert "answering ARP on wan0 for 203.0.113.5" in topo.lab.log("natpass-pool")


def test_wan_mtu_fragments_or_answers_fragmentation_needed_through_the_live_path(
        topo: Topology, config: Path, tmp_path: Path) -> None:
    config.write_text(config.read_text().replace('interface = "wan0"', 'interface = "wan0"\nmtu = 1000'))
    pid = topo.start_natpass(config, label="natpass-mtu", runner=natpass_argv(str(config)))
    pcap = tmp_path / "wan.pcap"
    cap = topo.capture(topo.srv, "eth0", pcap, "ip")
    try:
        # DF set: the engine answers "fragmentation needed" (RFC 1191) with the WAN MTU.
        df = topo.lab.run(topo.cli, ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1400", SERVER], check=False)
        # DF clear: the engine fragments (MULTI) and the server reassembles and answers.
        frag = topo.lab.run(topo.cli, ["ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "dont", "-s", "1400",
                                       SERVER], check=False)
    finally:
        topo.stop_capture(cap)
        topo.lab.kill(pid)
    log = topo.lab.log("natpass-mtu")
    assert "mtu = 1000" in df.stdout, df.stdout + log
    assert frag.returncode == 0, frag.stdout + log
    sizes = [int(f["ip"]["ip.len"]) for f in decode(pcap) if "ip" in f and f["ip"]["ip.src"] == ROUTER_WAN]
    assert sizes and max(sizes) <= 1000, sizes
    assert bad_checksums(pcap) == []


def test_tcpdump_on_the_router_wan_sees_what_natpass_sends(topo: Topology, natpass: int,
                                                           tmp_path: Path) -> None:
    # An admin debugging a VPN captures on the router itself: natpass's own output must show.
    pcap = tmp_path / "router-wan.pcap"
    cap = topo.capture(topo.rtr, "wan0", pcap, "icmp")
    try:
        ping = topo.lab.run(topo.cli, ["ping", "-c", "2", "-i", "0.2", "-W", "2", SERVER], check=False)
    finally:
        topo.stop_capture(cap)
    assert ping.returncode == 0, ping.stdout + topo.lab.log("natpass")
    frames = [f for f in decode(pcap) if "ip" in f]
    assert any(f["ip"]["ip.src"] == ROUTER_WAN for f in frames), frames
    assert any(f["ip"]["ip.src"] == SERVER for f in frames), frames


BULK_SENDER = f"""
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_UDP, 103, 500)  # UDP_SEGMENT: one GSO super-packet (500: under any cached path MTU)
u.sendto(b"x" * 8000, ("{SERVER}", 5000))
try:  # and TCP with TSO: its first flight leaves as one super-packet when the connection opens in time
    t = socket.create_connection(("{SERVER}", 5001), timeout=3)
    t.sendall(b"x" * 200000)
except OSError:
    pass
"""


def test_a_gso_super_packet_is_counted_and_explained_not_forwarded_malformed(
        topo: Topology, config: Path, echo_server: int) -> None:
    # veth hands TSO/GSO super-packets (up to 64 KiB) to its peer whole; no wire carries them.
    topo.lab.run(topo.cli, [sys.executable, "-c",
                            "from natpass.datapath.packetsock import set_offload as s\n"
                            "for f in ('tx-checksum', 'scatter-gather', 'tso', 'gso'): s('eth0', f, True)"],
                 env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    pid = topo.start_natpass(config, label="natpass-gso", runner=natpass_argv(str(config)))
    try:
        topo.lab.run(topo.cli, [sys.executable, "-c", BULK_SENDER], timeout=30)
        topo.signal(pid, signal.SIGTERM)
        assert topo.wait_exit(pid)
    finally:
        topo.lab.kill(pid)
        topo.lab.offloads_off(topo.cli, "eth0", ("tx-checksum", "tso", "gso"))
    log = topo.lab.log("natpass-gso")
    assert "segmentation offload super-packet" in log, log[-2000:]
    assert "'oversize_frames': 0" not in log
