"""Restarts of ``natpass run`` in real namespaces: the kernel never answers in the gap, a TCP
connection and a UDP flow carry on, one router per namespace, a failed start touches nothing.

Namespaces use the prefix ``npdr`` and are removed at the end even when a test fails.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_root
from tshark_check import decode

from natpass.lab.netns import Netns
from natpass.lab.simple import ROUTER_WAN, SERVER, Topology, config_text, exclusive
from natpass.lab.topology import natpass_argv

pytestmark = pytest.mark.root

# The server: a TCP echo that keeps one connection and a UDP echo; exits on its own after 60 s.
SERVER_PROG = """
import select, socket, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5000))
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 5001)); t.listen(4)
conns = []
end = time.monotonic() + 60
while time.monotonic() < end:
    r, _, _ = select.select([u, t] + conns, [], [], 0.5)
    for s in r:
        if s is u:
            data, peer = u.recvfrom(2048); u.sendto(data, peer)
        elif s is t:
            c, _ = t.accept(); conns.append(c)
        else:
            data = s.recv(2048)
            if not data:
                conns.remove(s); print("tcp-closed", flush=True); continue
            s.sendall(data)
"""

# The client: one TCP connection and one UDP socket, a numbered message every 50 ms on each for
# DURATION s; prints what came back, so losses and the longest silence can be counted.
CLIENT_PROG = f"""
import socket, sys, time
dur = float(sys.argv[1])
t = socket.create_connection(("{SERVER}", 5001), timeout=5); t.settimeout(0.05)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(0.0); u.connect(("{SERVER}", 5000))
sent = got = 0; last_ok = time.monotonic(); gap = 0.0; tcp_buf = b""; tcp_err = None
end = time.monotonic() + dur
while time.monotonic() < end:
    sent += 1
    try:
        t.sendall(b"m%06d\\n" % sent)
    except OSError as e:
        tcp_err = repr(e); break
    u.send(b"u%06d" % sent)
    time.sleep(0.05)
    try:
        while True:
            u.recv(100); got += 1
            now = time.monotonic(); gap = max(gap, now - last_ok); last_ok = now
    except BlockingIOError:
        pass
    try:
        tcp_buf += t.recv(65536)
    except socket.timeout:
        pass
    except OSError as e:
        tcp_err = repr(e); break
time.sleep(1.0)
try:
    t.settimeout(2.0)
    while tcp_buf.count(b"\\n") < sent:
        more = t.recv(65536)
        if not more:
            break
        tcp_buf += more
except OSError as e:
    tcp_err = tcp_err or repr(e)
try:
    while True:
        u.recv(100); got += 1
except OSError:
    pass
print("RESULT", sent, got, tcp_buf.count(b"\\n"), round(gap * 1000), tcp_err, flush=True)
"""


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    need_root()
    with exclusive("npdr"):
        lab = Netns("npdr")
        lab.cleanup()
        try:
            yield Topology(lab).build()
        finally:
            lab.cleanup()


def _config(topo: Topology, name: str = "natpass.toml", state: str = "state",
            extra: str = "") -> Path:
    st = topo.lab.path(state, "x").parent
    return topo.lab.write(name, config_text(str(st), str(topo.lab.path(f"{state}.sock")), extra))


def _run(config: Path, *more: str) -> list[str]:
    return natpass_argv("run", "--config", str(config), "--log-level", "debug", *more)


def test_a_restart_keeps_tcp_and_udp_and_the_kernel_never_answers(topo: Topology,
                                                                  tmp_path: Path) -> None:
    config = _config(topo)
    pcap = tmp_path / "server.pcap"
    srv = topo.lab.spawn(topo.srv, [sys.executable, "-c", SERVER_PROG], label="restart-server")
    pid = topo.start_natpass(config, label="natpass-r1", runner=_run(config))
    cap = topo.capture(topo.srv, "eth0", pcap, f"host {ROUTER_WAN}")
    pid2 = None
    try:
        cli = topo.lab.spawn(topo.cli, [sys.executable, "-c", CLIENT_PROG, "6"], label="restart-client")
        time.sleep(2.0)
        t0 = time.monotonic()
        topo.signal(pid, signal.SIGTERM)
        assert topo.wait_exit(pid, timeout=10), topo.lab.log("natpass-r1")
        exit_s = time.monotonic() - t0
        time.sleep(0.5)  # a gap with traffic arriving from both sides
        assert topo.nft_table_present()  # the guard stayed
        pid2 = topo.start_natpass(config, label="natpass-r2", runner=_run(config))
        assert topo.lab.wait_for(lambda: not topo.lab.alive(cli), timeout=20)
    finally:
        topo.stop_capture(cap)
        topo.lab.kill(srv)
    log1, log2 = topo.lab.log("natpass-r1"), topo.lab.log("natpass-r2")
    assert "connection state saved" in log1, log1
    assert "adopted nft table" in log2 and "restored" in log2, log2
    out = [line for line in topo.lab.log("restart-client").splitlines() if line.startswith("RESULT")]
    assert out, topo.lab.log("restart-client")
    _, sent, got, tcp_back, gap_ms, tcp_err = out[-1].split()
    assert tcp_err == "None", out  # the TCP connection carried on
    assert int(tcp_back) == int(sent)  # every TCP message came back (retransmitted over the gap)
    assert int(got) >= int(sent) - 40  # UDP lost only what the gap swallowed (50 ms apart)
    frames = decode(pcap)
    from_router = [f for f in frames if "ip" in f and f["ip"]["ip.src"] == ROUTER_WAN]
    assert not [f for f in from_router if "icmp" in f], "the kernel sent ICMP in the gap"
    assert not [f for f in from_router if "tcp" in f and f["tcp"].get("tcp.flags.reset") in
                ("1", "True")], "a TCP RST reached the server"
    print(f"SIGTERM exit {exit_s:.3f} s; UDP {sent} sent {got} back, longest gap {gap_ms} ms")
    assert exit_s < 1.5
    topo.signal(pid2, signal.SIGTERM)
    assert topo.wait_exit(pid2)


def test_a_second_router_is_refused_and_a_failed_start_touches_nothing(topo: Topology) -> None:
    config = _config(topo)
    other = _config(topo, "other.toml", "state-other")
    wrong = topo.lab.write("wrong.toml", other.read_text().replace('"wan0"', '"nowan9"'))
    pid = topo.start_natpass(config, label="natpass-first", runner=_run(config))
    try:
        for label, cfg in (("natpass-second", other), ("natpass-wrong", wrong)):
            second = topo.lab.spawn(topo.rtr, _run(cfg), label=label)
            assert topo.wait_exit(second, timeout=10)
            log = topo.lab.log(label)
            assert f"already running in this network namespace (pid {pid})" in log, log
            assert "cleaned up" not in log and "adopted" not in log
            assert topo.nft_table_present()
            ping = topo.lab.run(topo.cli, ["ping", "-c", "1", "-W", "2", SERVER], check=False)
            assert ping.returncode == 0, ping.stdout
        assert "removed" not in topo.lab.log("natpass-first")
    finally:
        topo.signal(pid, signal.SIGTERM)
        assert topo.wait_exit(pid)
        topo.lab.kill(pid)


def test_run_cleanup_and_natpass_cleanup_remove_the_guard(topo: Topology) -> None:
    config = _config(topo)
    pid = topo.start_natpass(config, label="natpass-c1", runner=_run(config))
    topo.signal(pid, signal.SIGTERM)
    assert topo.wait_exit(pid)
    assert topo.nft_table_present()
    out = topo.lab.run(topo.rtr, natpass_argv("cleanup", "--config", str(config)))
    assert "nft table inet natpass" in out.stdout
    assert not topo.nft_table_present()
    pid = topo.start_natpass(config, label="natpass-c2", runner=_run(config, "--cleanup"))
    topo.signal(pid, signal.SIGTERM)
    assert topo.wait_exit(pid)
    assert not topo.nft_table_present()


def test_a_failed_restart_keeps_the_guard_and_a_failed_first_start_removes_it(topo: Topology) -> None:
    config = _config(topo, "keep.toml", "state-keep")
    wrong = topo.lab.write("keep-wrong.toml", config.read_text().replace('"wan0"', '"nowan9"'))
    record = Path(topo.lab.path("state-keep", "live-state.json"))
    pid = topo.start_natpass(config, label="natpass-k1", runner=_run(config))
    topo.signal(pid, signal.SIGTERM)
    assert topo.wait_exit(pid)
    # a restart whose start fails (here: the config names a missing interface) keeps what it adopted
    failed = topo.lab.spawn(topo.rtr, _run(wrong), label="natpass-k2")
    assert topo.wait_exit(failed, timeout=15)
    log = topo.lab.log("natpass-k2")
    assert "cannot start" in log and "kept the previous run's nft table" in log, log
    assert topo.nft_table_present() and record.is_file()
    assert topo.sysctl("net.ipv4.ip_forward") == "0"  # no untranslated forwarding meanwhile
    pid = topo.start_natpass(config, label="natpass-k3", runner=_run(config))
    assert "adopted nft table" in topo.lab.log("natpass-k3")
    ping = topo.lab.run(topo.cli, ["ping", "-c", "1", "-W", "2", SERVER], check=False)
    assert ping.returncode == 0, ping.stdout
    topo.signal(pid, signal.SIGTERM)
    assert topo.wait_exit(pid)
    topo.lab.run(topo.rtr, natpass_argv("cleanup", "--config", str(config)))
    assert not topo.nft_table_present()
    # a first start that fails leaves nothing behind
    failed = topo.lab.spawn(topo.rtr, _run(wrong), label="natpass-k4")
    assert topo.wait_exit(failed, timeout=15)
    log = topo.lab.log("natpass-k4")
    assert "cannot start" in log and "kept" not in log, log
    assert not topo.nft_table_present() and not record.exists()
