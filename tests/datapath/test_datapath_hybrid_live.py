"""Hybrid datapath in namespaces: the BPF filter and the nft rules agree frame by frame in the
kernel, and ``natpass run`` with ``datapath = "hybrid"`` splits real traffic, survives SIGKILL
(ordinary traffic keeps flowing through the kernel) and cleans up.

Needs root; namespaces with the prefixes ``nphy`` and ``nphyl``, removed at the end.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_root
from hybrid_frames import cases, fragment_cases
from test_datapath_live import ECHO_SERVER

from natpass.datapath.hybrid import Hybrid, kernel_drops
from natpass.datapath.owned import PPTP_PORT
from natpass.lab.netns import Netns
from natpass.lab.simple import CLIENT, LAN_PREFIX, ROUTER_WAN, SERVER, Topology, config_text, exclusive
from natpass.lab.topology import natpass_argv
from natpass.nat.config import NatConfig, PortForward
from natpass.packets.checksum import internet_checksum
from natpass.router.metrics import render as render_metrics

pytestmark = pytest.mark.root


def removing(config: Path) -> list[str]:
    """``natpass run`` that removes everything on SIGTERM: these tests check the split and the
    teardown, not the restart (a kept set-up is tested in test_datapath_restart)."""
    return natpass_argv("run", "--config", str(config), "--log-level", "debug", "--cleanup")


SERVER_BEHIND = bytes([192, 168, 1, 11])
NAT = NatConfig(wan_addresses=(bytes([203, 0, 113, 1]),),
                forwards=(PortForward(6, PPTP_PORT, SERVER_BEHIND, PPTP_PORT),
                          PortForward(6, 8080, SERVER_BEHIND, 8080)))

# Runs in the router namespace: natpass's two filtered sockets, printing the IP ID of each frame.
RECEIVER = """
import json, select, sys, time
from natpass.datapath import packetsock
from natpass.datapath.arp import ETH_P_IP
programs = json.loads(sys.argv[1])
socks = {side: packetsock.open_packet_socket(side + "0", ETH_P_IP, program=[tuple(i) for i in prog])
         for side, prog in programs.items()}
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    r, _, _ = select.select(list(socks.values()), [], [], 0.2)
    for side, s in socks.items():
        if s in r:
            f = s.recv(4096)
            print("got", side, int.from_bytes(f[18:20], "big"), flush=True)
"""

SENDER = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for frame in sys.argv[1:]:
    s.send(bytes.fromhex(frame))
"""


def _drops(lab: Netns) -> int:
    """What natpass's table took from the kernel (its own_* chains' counters)."""
    out = lab.run("rtr", ["nft", "-j", "list", "table", "inet", "natpass"]).stdout
    return kernel_drops(json.loads(out))["natpass_share"]


@pytest.fixture(scope="module")
def split_lab() -> Iterator[tuple[Netns, Hybrid]]:
    need_root()
    with exclusive("nphy"):
        lab = Netns("nphy")
        lab.cleanup()
        try:
            for node in ("peerl", "rtr", "peerw"):
                lab.add(node)
            lab.veth("peerl", "eth0", "rtr", "lan0")
            lab.veth("rtr", "wan0", "peerw", "eth0")
            lab.addr("rtr", "lan0", "192.168.1.1/24")
            lab.addr("rtr", "wan0", "203.0.113.1/24")
            # the router forwards, as with natpass running, and routes the remote side out of wan0
            # (so a frame natpass does not own reaches the kernel's forward path)
            lab.sysctl("rtr", "net.ipv4.ip_forward", 1)
            lab.route("rtr", "198.51.100.0/24", via="203.0.113.2")
            hybrid = Hybrid("lan0", "wan0", bytes([192, 168, 1, 1]), NAT, (61440, 65535), "kernel")
            lab.nft("rtr", hybrid.nft_ruleset())
            yield lab, hybrid
        finally:
            lab.cleanup()


def test_bpf_and_nft_agree_in_the_kernel_frame_by_frame(root: None, split_lab: tuple[Netns, Hybrid]) -> None:
    lab, hybrid = split_lab
    macs = {side: lab.run("rtr", ["cat", f"/sys/class/net/{side}0/address"]).stdout.strip() for side in ("lan", "wan")}
    programs = json.dumps(hybrid.rx_programs())
    pid = lab.spawn("rtr", [sys.executable, "-u", "-c", RECEIVER, programs, "60"], label="receiver")
    try:
        assert lab.wait_for(lambda: "ready" in lab.log("receiver"), timeout=10), lab.log("receiver")
        nft_owned: dict[str, bool] = {}
        all_cases = cases("kernel")
        for case in all_cases:
            frame = case.frame
            if not case.broadcast:
                frame = bytes.fromhex(macs[case.side].replace(":", "")) + frame[6:]
            before = _drops(lab)
            lab.run("peerl" if case.side == "lan" else "peerw", [sys.executable, "-c", SENDER, frame.hex()])
            time.sleep(0.05)
            nft_owned[case.name] = _drops(lab) > before
        frags = fragment_cases()
        for case in frags:
            frame = bytes.fromhex(macs[case.side].replace(":", "")) + case.frame[6:]
            lab.run("peerl" if case.side == "lan" else "peerw", [sys.executable, "-c", SENDER, frame.hex()])
        time.sleep(0.5)
        got = {(line.split()[1], int(line.split()[2])) for line in lab.log("receiver").splitlines()
               if line.startswith("got ")}
        tracked = lab.run("rtr", ["conntrack", "-L"]).stdout
    finally:
        lab.kill(pid)
    # Dropped in the forward/input hooks, an owned packet's conntrack entry is never confirmed:
    # the kernel keeps no entry for natpass's traffic (its own traffic above does get entries).
    entries = [line.split() for line in tracked.splitlines() if line.strip()]  # proto, number, ...
    # (what LAN hosts send to the router's LAN address or broadcast stays the kernel's)
    entries = [e for e in entries if not {"dst=192.168.1.1", "dst=192.168.1.255"} & set(e)]
    assert any(e[0] == "udp" and "dport=53" in e for e in entries), tracked
    owned_entries = [e for e in entries if e[1] in ("47", "50", "51")
                     or {"dport=500", "dport=1701", "dport=1723", "dport=61500"} & set(e)]
    assert owned_entries == []
    ident = {c.name: int.from_bytes(c.frame[18:20], "big") for c in all_cases + frags}
    disagree = []
    for case in all_cases:
        bpf = (case.side, ident[case.name]) in got
        if not (bpf == nft_owned[case.name] == case.owned):
            disagree.append((case.name, case.owned, bpf, nft_owned[case.name]))
    assert disagree == []
    for case in frags:
        assert ((case.side, ident[case.name]) in got) == case.owned, case.name


ICMP_LISTENER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(0.2)
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        data = s.recv(2048)
    except TimeoutError:
        continue
    ihl = (data[0] & 15) * 4
    print("icmp", data[ihl], int.from_bytes(data[ihl + 8 + 4:ihl + 8 + 6], "big"), flush=True)
"""


def _ttl(frame: bytes, ttl: int) -> bytes:
    """``frame`` with the IPv4 TTL set (header checksum updated)."""
    ip = bytearray(frame[14:])
    ip[8] = ttl
    ip[10:12] = b"\x00\x00"
    ip[10:12] = internet_checksum(bytes(ip[:20])).to_bytes(2, "big")
    return frame[:14] + bytes(ip)


def test_the_kernel_does_not_answer_for_what_natpass_owns(root: None, split_lab: tuple[Netns, Hybrid]) -> None:
    """A packet that expires on the router: the kernel answers with ICMP time exceeded only for
    its own traffic; its error about natpass's is dropped in the output chain (natpass's engine
    answers those itself)."""
    lab, _hybrid = split_lab
    lab.addr("peerl", "eth0", "192.168.1.10/24")
    mac = lab.run("rtr", ["cat", "/sys/class/net/lan0/address"]).stdout.strip()
    by_name = {c.name: c for c in cases("kernel")}
    sent = {name: _ttl(bytes.fromhex(mac.replace(":", "")) + by_name[name].frame[6:], 1)
            for name in ("lan-udp-500", "lan-gre", "lan-tcp-1723", "lan-udp-53", "lan-tcp-80")}
    pid = lab.spawn("peerl", [sys.executable, "-u", "-c", ICMP_LISTENER, "20"], label="icmp-listener")
    try:
        assert lab.wait_for(lambda: "ready" in lab.log("icmp-listener"), timeout=10)
        for frame in sent.values():
            lab.run("peerl", [sys.executable, "-c", SENDER, frame.hex()])
            time.sleep(1.1)  # the kernel limits its ICMP errors to about one per second per host
        time.sleep(0.3)
        answered = {int(line.split()[2]) for line in lab.log("icmp-listener").splitlines()
                    if line.startswith("icmp 11 ")}
    finally:
        lab.kill(pid)
    got = {name: int.from_bytes(frame[18:20], "big") in answered for name, frame in sent.items()}
    assert got == {name: not by_name[name].owned for name in sent}


# ----- natpass run, datapath = "hybrid" -----------------------------------------------------------

PROBE = f"""
import json, socket, sys
out = {{}}
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
u.bind(("0.0.0.0", int(sys.argv[1])))
u.sendto(b"hello-udp", ("{SERVER}", int(sys.argv[2]))); out["udp"] = u.recvfrom(100)[0].decode()
t = socket.create_connection(("{SERVER}", 5001), timeout=3); t.sendall(b"hello-tcp")
out["tcp"] = t.recv(100).decode(); t.close()
print(json.dumps(out))
"""

# UDP echo on port 500 (IKE's port: natpass's traffic) besides ECHO_SERVER's 5000/5001.
ECHO_500 = """
import socket, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 500))
u.settimeout(0.5)
end = time.monotonic() + 60
while time.monotonic() < end:
    try:
        data, peer = u.recvfrom(2048)
    except TimeoutError:
        continue
    print("udp500", peer[0], peer[1], flush=True); u.sendto(data, peer)
"""

# A TCP stream of one line every 20 ms for SECONDS; the server prints how many lines it got.
STREAM_SERVER = """
import socket, sys, time
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 5002)); t.listen(1); c, _ = t.accept(); c.settimeout(5)
n = 0
while True:
    try:
        data = c.recv(4096)
    except TimeoutError:
        break
    if not data:
        break
    n += data.count(b"\\n")
    print("lines", n, round(time.monotonic(), 2), flush=True)
"""
STREAM_CLIENT = f"""
import socket, sys, time
c = socket.create_connection(("{SERVER}", 5002), timeout=5)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    c.sendall(b"tick\\n"); time.sleep(0.02)
c.close()
"""


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    need_root()
    with exclusive("nphyl"):
        lab = Netns("nphyl")
        lab.cleanup()
        try:
            yield Topology(lab).build()
        finally:
            lab.cleanup()


@pytest.fixture
def config(topo: Topology) -> Path:
    state = topo.lab.path("state", "x").parent
    return topo.lab.write("natpass.toml", config_text(str(state), str(topo.lab.path("natpass.sock")),
                                                      'datapath = "hybrid"\n'))


@pytest.fixture
def servers(topo: Topology) -> Iterator[None]:
    pids = [topo.lab.spawn(topo.srv, [sys.executable, "-u", "-c", ECHO_SERVER], label="echo"),
            topo.lab.spawn(topo.srv, [sys.executable, "-u", "-c", ECHO_500], label="echo500")]
    time.sleep(0.4)
    try:
        yield
    finally:
        for pid in pids:
            topo.lab.kill(pid)


def _status(topo: Topology, config: Path) -> dict:  # type: ignore[type-arg]
    proc = topo.lab.run(topo.rtr, [sys.executable, "-m", "natpass.cli", "status", "--json", "--config",
                                   str(config)], check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _probe(topo: Topology, sport: int, dport: int) -> dict:  # type: ignore[type-arg]
    out = topo.lab.run(topo.cli, [sys.executable, "-c", PROBE, str(sport), str(dport)], check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _sources(topo: Topology, label: str, kind: str) -> list[int]:
    return [int(line.split()[2]) for line in topo.lab.log(label).splitlines() if line.startswith(kind + " ")]


def test_hybrid_splits_traffic_between_kernel_and_natpass(root: None, topo: Topology, config: Path,
                                                          servers: None) -> None:
    assert topo.sysctl("net.ipv4.ip_forward") == "0"
    before_timeout = topo.sysctl("net.netfilter.nf_conntrack_udp_timeout")
    pid = topo.start_natpass(config, runner=removing(config))
    try:
        assert topo.sysctl("net.ipv4.ip_forward") == "1"
        assert topo.sysctl("net.netfilter.nf_conntrack_udp_timeout_stream") == "300"
        rx_before = _status(topo, config)["datapath_counters"]["rx_lan"]
        # Ordinary UDP and TCP: the kernel forwards and masquerades them, natpass never sees them.
        assert _probe(topo, 40000, 5000) == {"udp": "hello-udp", "tcp": "hello-tcp"}
        st = _status(topo, config)
        assert st["datapath_counters"]["rx_lan"] == rx_before
        klo, khi = st["hybrid"]["kernel_ports"]
        assert all(klo <= p <= khi for p in _sources(topo, "echo", "udp") + _sources(topo, "echo", "tcp"))
        assert st["hybrid"]["kernel_conntrack"]["count"] >= 1
        taken = st["hybrid"]["kernel_drops"]["natpass_share"]
        # UDP to port 500 is natpass's: through its engine, from its own ports (or 500 itself).
        assert _probe(topo, 500, 500)["udp"] == "hello-udp"
        st = _status(topo, config)
        # the kernel dropped its copy of the datagram and of the reply (natpass's taps had them)
        assert st["hybrid"]["kernel_drops"]["natpass_share"] >= taken + 2
        assert st["datapath_counters"]["rx_lan"] > rx_before
        assert st["datapath_counters"]["rx_wan"] >= 1
        nlo, nhi = st["hybrid"]["natpass_ports"]
        assert all(p == 500 or nlo <= p <= nhi for p in _sources(topo, "echo500", "udp500"))
        assert st["datapath"] == "hybrid"
        assert any("UDP 500" in what for what in st["hybrid"]["natpass"])
    finally:
        topo.signal(pid, signal.SIGTERM)
        assert topo.wait_exit(pid)
    assert not topo.nft_table_present()
    assert topo.sysctl("net.ipv4.ip_forward") == "0"
    assert topo.sysctl("net.netfilter.nf_conntrack_udp_timeout") == before_timeout


# Runs on the LAN client: a TCP listener and a UDP socket; prints what reached them.
LAN_LISTENER = """
import select, socket, sys, time
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 7000)); t.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 7001))
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    r, _, _ = select.select([t, u], [], [], 0.2)
    if t in r:
        c, peer = t.accept(); print("tcp", peer[0], flush=True); c.close()
    if u in r:
        data, peer = u.recvfrom(100); print("udp", peer[0], data.decode(), flush=True)
"""
WAN_OPENER = """
import json, socket, sys
out = {}
try:
    socket.create_connection((sys.argv[1], 7000), timeout=1.5).close(); out["tcp"] = "connected"
except OSError as e:
    out["tcp"] = type(e).__name__
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    u.sendto(b"from-wan", (sys.argv[1], 7001))
print(json.dumps(out))
"""


def test_the_kernel_forwards_new_flows_only_from_the_lan(root: None, topo: Topology, config: Path,
                                                         servers: None) -> None:
    """The forward chain: a WAN host that routes the LAN prefix to the router cannot open a flow
    to a LAN host (TCP or UDP) through the kernel; flows the LAN opens still get their replies."""
    lab = topo.lab
    pid = topo.start_natpass(config, runner=removing(config))
    listener = lab.spawn(topo.cli, [sys.executable, "-u", "-c", LAN_LISTENER, "15"], label="lan-listener")
    lab.route(topo.srv, LAN_PREFIX, via=ROUTER_WAN)
    try:
        assert lab.wait_for(lambda: "ready" in lab.log("lan-listener"), 5)
        out = lab.run(topo.srv, [sys.executable, "-c", WAN_OPENER, CLIENT], check=False)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["tcp"] != "connected"
        time.sleep(0.5)
        assert not [line for line in lab.log("lan-listener").splitlines() if line.startswith(("tcp", "udp"))]
        chain = lab.run(topo.rtr, ["nft", "list", "chain", "inet", "natpass", "forward"]).stdout
        refused = int(re.findall(r"counter packets (\d+) bytes \d+ drop", chain)[-1])
        assert refused >= 4  # SYN(s) + 3 UDP
        st = _status(topo, config)
        drops = st["hybrid"]["kernel_drops"]
        assert drops["forward_refused"] >= refused and drops["natpass_share"] == 0
        metrics = render_metrics(st)
        assert f'natpass_kernel_dropped_packets_total{{reason="forward_refused"}} {drops["forward_refused"]}' in metrics
        assert _probe(topo, 40001, 5000) == {"udp": "hello-udp", "tcp": "hello-tcp"}
    finally:
        lab.ip(topo.srv, "route", "del", LAN_PREFIX)
        lab.kill(listener)
        topo.signal(pid, signal.SIGTERM)
        assert topo.wait_exit(pid)


def _lines(topo: Topology) -> list[tuple[int, float]]:
    return [(int(p[1]), float(p[2])) for p in (line.split() for line in topo.lab.log("stream").splitlines())
            if p and p[0] == "lines"]


def test_sigkill_leaves_ordinary_traffic_flowing_and_the_next_start_cleans_up(
        root: None, topo: Topology, config: Path, servers: None) -> None:
    lab = topo.lab
    pid = topo.start_natpass(config, label="natpass-kill", runner=removing(config))
    server = lab.spawn(topo.srv, [sys.executable, "-u", "-c", STREAM_SERVER], label="stream")
    time.sleep(0.3)
    client = lab.spawn(topo.cli, [sys.executable, "-u", "-c", STREAM_CLIENT, "6"], label="stream-client")
    pid2 = None
    try:
        time.sleep(1.5)
        topo.signal(pid, signal.SIGKILL)
        assert topo.wait_exit(pid)
        killed_at = time.monotonic()
        time.sleep(1.5)
        # Nobody undid anything: the kernel keeps forwarding the ordinary TCP stream.
        assert topo.nft_table_present()
        lines = _lines(topo)
        assert lines and lines[-1][1] > killed_at + 1.0, lines[-3:]
        # The next start undoes the old set-up, makes it again, and natpass's traffic flows again.
        pid2 = topo.start_natpass(config, label="natpass-restart", runner=removing(config))
        assert "cleaned up after a previous run" in lab.log("natpass-restart")
        restarted_at = time.monotonic()
        assert lab.wait_for(lambda: not lab.alive(client), timeout=10)
        time.sleep(0.3)
        lines = _lines(topo)
        assert lines[-1][1] > restarted_at, lines[-3:]
        # One line every 20 ms for 6 s: nothing lost on the way (TCP), the stream never stalled.
        assert lines[-1][0] >= 200, lines[-1]
        assert _probe(topo, 500, 500)["udp"] == "hello-udp"
    finally:
        for p in (client, server):
            lab.kill(p)
        if pid2 is not None:
            topo.signal(pid2, signal.SIGTERM)
            assert topo.wait_exit(pid2)
    assert not topo.nft_table_present()
    assert topo.sysctl("net.ipv4.ip_forward") == "0"


BULK_SERVER = """
import socket
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 1723)); t.listen(1); t.settimeout(20)
c, _ = t.accept()
c.sendall(bytes(range(251)) * 12000)  # 3 MB: many segments per NAPI poll, so GRO merges them
c.close()
"""
BULK_CLIENT = f"""
import hashlib, json, socket
c = socket.create_connection(("{SERVER}", 1723), timeout=10)
h = hashlib.sha256(); n = 0
while True:
    data = c.recv(1 << 16)
    if not data:
        break
    h.update(data); n += len(data)
print(json.dumps({{"bytes": n, "sha256": h.hexdigest()}}))
"""
GET_GRO = """
from natpass.datapath.packetsock import get_offload
print(get_offload("lan0", "gro"), get_offload("wan0", "gro"))
"""
SET_GRO = """
import sys
from natpass.datapath.packetsock import set_offload
for name in sys.argv[2:]:
    set_offload(name, "gro", sys.argv[1] == "on")
"""


def test_gro_stays_on_and_merged_frames_are_segmented_by_natpass(root: None, topo: Topology,
                                                                  config: Path) -> None:
    """GRO on the router's interfaces (as on a NIC): natpass's TCP (PPTP's port 1723 here) arrives
    merged; natpass segments it again and the client gets every byte."""
    import hashlib

    lab = topo.lab
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    lab.run(topo.rtr, [sys.executable, "-c", SET_GRO, "on", "lan0", "wan0"], env=env)
    pid = topo.start_natpass(config, label="natpass-gro", runner=removing(config))
    server = lab.spawn(topo.srv, [sys.executable, "-u", "-c", BULK_SERVER], label="bulk")
    try:
        time.sleep(0.4)
        out = lab.run(topo.cli, [sys.executable, "-c", BULK_CLIENT], timeout=60)
        got = json.loads(out.stdout)
        expected = bytes(range(251)) * 12000
        assert got == {"bytes": len(expected), "sha256": hashlib.sha256(expected).hexdigest()}
        st = _status(topo, config)
        assert st["hybrid"]["merged_frames"] > 0, st["hybrid"]
        # natpass left GRO as it found it (on): hybrid mode does not switch offloads off.
        gro = lab.run(topo.rtr, [sys.executable, "-c", GET_GRO], env=env).stdout.split()
        assert gro == ["True", "True"]
        assert st["datapath_counters"]["oversize_frames"] == 0
    finally:
        lab.kill(server)
        topo.signal(pid, signal.SIGTERM)
        assert topo.wait_exit(pid)
        lab.run(topo.rtr, [sys.executable, "-c", SET_GRO, "off", "lan0", "wan0"], env=env)


def test_run_datapath_option_overrides_the_config(root: None, topo: Topology) -> None:
    state = topo.lab.path("state-opt", "x").parent
    cfg = topo.lab.write("natpass-packet.toml", config_text(str(state), str(topo.lab.path("opt.sock"))))
    pid = topo.start_natpass(cfg, label="natpass-opt", runner=[
        sys.executable, "-m", "natpass.router.cli_run", "--config", str(cfg), "--datapath", "hybrid", "--cleanup"])
    try:
        assert topo.sysctl("net.ipv4.ip_forward") == "1"
        assert "hybrid datapath: natpass handles" in topo.lab.log("natpass-opt")
    finally:
        topo.signal(pid, signal.SIGTERM)
        assert topo.wait_exit(pid)
    assert topo.sysctl("net.ipv4.ip_forward") == "0"


UDP_LISTEN = """
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 7000)); u.settimeout(20)
data, peer = u.recvfrom(100)
print("got", data.decode(), peer[0], flush=True)
"""
UDP_SEND = """
import socket, sys, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(20):
    u.sendto(b"to-7000", (sys.argv[1], 7000)); time.sleep(0.1)
"""


def test_reload_replaces_the_kernels_share_without_a_restart(root: None, topo: Topology, config: Path,
                                                             servers: None) -> None:
    """A reload that changes timeouts and forwards: the kernel's table and conntrack timeouts are
    replaced (one nft transaction), natpass's sockets take a forwarded PPTP port, traffic flows."""
    from natpass.lab.simple import CLIENT, ROUTER_WAN

    lab = topo.lab
    before_timeout = topo.sysctl("net.netfilter.nf_conntrack_udp_timeout")
    pid = topo.start_natpass(config, label="natpass-reload", runner=removing(config))
    try:
        assert topo.sysctl("net.netfilter.nf_conntrack_udp_timeout") == "300"
        assert not any("1723 forwarded" in w for w in _status(topo, config)["hybrid"]["natpass"])
        config.write_text(config.read_text() + (
            "\n[timeouts]\nudp = 420\n\n"
            f'[[forward]]\nproto = "udp"\nport = 7000\nto = "{CLIENT}"\n\n'
            f'[[forward]]\nproto = "tcp"\nport = 1723\nto = "{CLIENT}"\n'))
        topo.signal(pid, signal.SIGHUP)
        assert lab.wait_for(lambda: topo.sysctl("net.netfilter.nf_conntrack_udp_timeout") == "420",
                            timeout=10), lab.log("natpass-reload")[-2000:]
        assert topo.sysctl("net.netfilter.nf_conntrack_udp_timeout_stream") == "420"
        assert lab.alive(pid)
        table = lab.run(topo.rtr, ["nft", "list", "table", "inet", "natpass"]).stdout
        assert f"udp dport 7000 dnat ip to {CLIENT}:7000" in table
        st = _status(topo, config)
        assert any(f"TCP 1723 forwarded to {CLIENT}:1723" in w for w in st["hybrid"]["natpass"])
        # the kernel serves the new UDP forward; ordinary traffic still flows
        listener = lab.spawn(topo.cli, [sys.executable, "-u", "-c", UDP_LISTEN], label="listen7000")
        time.sleep(0.3)
        lab.run(topo.srv, [sys.executable, "-c", UDP_SEND, ROUTER_WAN], timeout=20)
        assert lab.wait_for(lambda: "got to-7000" in lab.log("listen7000"), timeout=5)
        lab.kill(listener)
        assert _probe(topo, 40001, 5000) == {"udp": "hello-udp", "tcp": "hello-tcp"}
    finally:
        topo.signal(pid, signal.SIGTERM)
        assert topo.wait_exit(pid)
    # the value from before natpass comes back, not the one the first start set
    assert topo.sysctl("net.netfilter.nf_conntrack_udp_timeout") == before_timeout
    assert not topo.nft_table_present()
