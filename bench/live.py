"""Live benchmark: the same bounded load through natpass and through the kernel's NAT, in one run.

Three identical client -- router -- server namespace topologies (prefix ``npdpb``): one router runs
``natpass run`` (datapath "packet"), one ``natpass run`` with datapath "hybrid" (the kernel forwards
ordinary traffic, natpass the VPN protocols), the third nftables masquerade with ip_forward = 1 and
the kernel's PPTP helper. The passthrough data rate (a PPTP call's GRE, a raw-ESP SA's packets, each
at most PASS_PACKETS in PASS_SECONDS) is measured through hybrid natpass and through the kernel. The client's and server's veth
ends have transmit offloads off in both (hosts on a wire, see natpass.lab.simple). For each
router: small-UDP packets/s arriving at the server (iperf3 -u -l 64, at most 500k pkt/s per stream for 4 s), TCP
throughput (iperf3, a few seconds), ping latency p50/p99 (-i 0.01, bounded count), and natpass's
RSS. Prints the ratios natpass/kernel; ``--json`` prints one JSON object. Needs root; about a
minute. ``--profile FILE`` also records a py-spy flame graph of natpass under the UDP load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from natpass.lab.netns import LabError, Netns  # noqa: E402
from natpass.lab.simple import SERVER, Topology, config_text, exclusive  # noqa: E402

UDP_SECONDS = 4
UDP_PAYLOAD = 64
# iperf3 -b counts payload bits: 256 Mbit/s of 64-byte datagrams caps the offered load at 500k pkt/s
# per stream (above what the sender reaches here), so one stream sends at most 2M packets in 4 s.
UDP_OFFERED = "256M"
TCP_SECONDS = 4
PING_COUNT = 300  # at -i 0.01: about 3 s
PASS_SECONDS = 3  # GRE / ESP load per router
PASS_PACKETS = 600_000  # at most this many per load (the sender does not reach 200k pkt/s here)
PPTP_HELPER = """table ip bench_pptp {
  ct helper pptp-h { type "pptp" protocol tcp; l3proto ip; }
  chain helpers {
    type filter hook prerouting priority filter; policy accept;
    tcp dport 1723 ct helper set "pptp-h"
  }
}
"""
# What every NAT router has besides masquerade: new flows only from the LAN, the rest only back
# (natpass's hybrid table has the same policy; plain masquerade forwards whatever is routed to it).
KERNEL_FORWARD = """table ip bench_fw {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iif "lan0" oif "wan0" ct state new accept
  }
}
"""
HYBRID_EXTRA = 'log_level = "info"\ndatapath = "hybrid"\n[passthrough]\npptp = true\nipsec = true\n'

# A PPTP server that answers the control channel (RFC 2637: SCCRQ/SCCRP, OCRQ/OCRP) and keeps it
# open; the GRE data it receives is counted on its interface.
PPTP_SERVER = """
import socket, sys, time
from natpass.packets import pptp
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 1723)); t.listen(1); t.settimeout(20)
c, _ = t.accept(); c.settimeout(30)
def read(n):
    buf = b""
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            sys.exit(0)
        buf += chunk
    return buf
read(pptp.message_length(pptp.SCCRQ)); c.sendall(pptp.build_sccrp())
ocrq = pptp.parse_pptp(read(pptp.message_length(pptp.OCRQ)))
c.sendall(pptp.build_pptp(pptp.OCRP, call_id=0x4242, peer_call_id=ocrq.fields["call_id"], result_code=1))
try:
    while c.recv(4096):
        pass
except OSError:
    pass
"""
# The PPTP client: control channel, then a bounded burst of GRE (or raw ESP) data packets.
PASS_CLIENT = """
import json, socket, struct, sys, time
from natpass.packets import gre, pptp, esp
kind, server, seconds, limit = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
payload = bytes(64)
if kind == "gre":
    c = socket.create_connection((server, 1723), timeout=5)
    c.sendall(pptp.build_sccrq()); c.recv(4096)
    c.sendall(pptp.build_pptp(pptp.OCRQ, call_id=0x1111, call_serial_number=1, maximum_bps=10**8,
                              bearer_type=3, framing_type=3, packet_recv_window_size=64))
    ocrp = b""
    while len(ocrp) < pptp.message_length(pptp.OCRP):
        ocrp += c.recv(4096)
    peer = pptp.parse_pptp(ocrp).fields["call_id"]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
    make = lambda i: bytes(gre.build_gre_v1(peer, payload, seq=i))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
    make = lambda i: bytes(esp.build_esp(0x5EC0001, i + 1, payload))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
packets = [make(i) for i in range(1024)]
t0 = time.perf_counter(); end = t0 + seconds; sent = 0
while sent < limit:
    for p in packets:
        try:
            s.sendto(p, (server, 0)); sent += 1
        except OSError:
            pass
    if time.perf_counter() > end:
        break
print(json.dumps({"sent": sent, "seconds": time.perf_counter() - t0}), flush=True)
time.sleep(0.5)
"""
IPERF_PORT = 5201


def _iperf(topo: Topology, args: list[str], seconds: int) -> dict[str, Any]:
    lab = topo.lab
    server = lab.spawn(topo.srv, ["iperf3", "-s", "-1", "-p", str(IPERF_PORT), "--idle-timeout", "20",
                                  "--rcv-timeout", "5000"], label=f"iperf3-s-{topo.srv}")
    try:
        time.sleep(0.4)
        try:
            # The server's --rcv-timeout ends a test whose UDP stream set-up datagram was lost under
            # load (iperf3 would otherwise wait for ever); lab.run's timeout bounds the rest.
            proc = lab.run(topo.cli, ["iperf3", "-c", SERVER, "-p", str(IPERF_PORT), "-J",
                                      "--connect-timeout", "3000", *args],
                           timeout=seconds + 30, check=False)
        except LabError as exc:
            return {"error": str(exc)[-500:]}
        try:
            return json.loads(proc.stdout)  # type: ignore[no-any-return]
        except ValueError:
            return {"error": (proc.stderr or proc.stdout)[-500:]}
    finally:
        lab.kill(server)


STREAMS = 1  # iperf3 -P for the UDP load (--streams)


def udp_pps(topo: Topology) -> dict[str, float]:
    res = _iperf(topo, ["-u", "-l", str(UDP_PAYLOAD), "-b", UDP_OFFERED, "-t", str(UDP_SECONDS),
                        "-P", str(STREAMS)], UDP_SECONDS)
    if "error" in res and "end" not in res:
        return {"pps": 0.0, "sent_pps": 0.0, "error": res["error"]}  # type: ignore[dict-item]
    end = res["end"]
    s = end["sum"]
    seconds = float(s.get("seconds") or UDP_SECONDS)
    received = int(s.get("packets", 0)) - int(s.get("lost_packets", 0))
    sent = int(end.get("sum_sent", s).get("packets", s.get("packets", 0)))
    return {"pps": received / seconds, "sent_pps": sent / seconds,
            "lost_percent": float(s.get("lost_percent", 0.0))}


def _busy_seconds() -> float:
    """CPU time the whole machine spent busy so far (all CPUs; /proc/stat less idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def tcp_run(topo: Topology) -> dict[str, float]:
    """One iperf3 TCP stream: Gbit/s at the server, and the whole machine's busy CPU seconds per
    GB delivered (sender, router and receiver all run on this machine's CPUs; per GB it is the
    steadier of the two while other work shares them)."""
    busy = _busy_seconds()
    res = _iperf(topo, ["-t", str(TCP_SECONDS)], TCP_SECONDS)
    busy = _busy_seconds() - busy
    try:
        got = res["end"]["sum_received"]
        gbps, gbytes = float(got["bits_per_second"]) / 1e9, float(got["bytes"]) / 1e9
    except (KeyError, TypeError):
        return {"gbps": 0.0, "cpu_s_per_gb": 0.0}
    return {"gbps": gbps, "cpu_s_per_gb": busy / gbytes if gbytes else 0.0}


def tcp_gbps(topo: Topology) -> float:
    return tcp_run(topo)["gbps"]


def ping_latency(topo: Topology) -> dict[str, float]:
    proc = topo.lab.run(topo.cli, ["ping", "-n", "-i", "0.01", "-c", str(PING_COUNT), "-W", "1", SERVER],
                        timeout=PING_COUNT * 0.05 + 20, check=False)
    times = sorted(float(line.rsplit("time=", 1)[1].split()[0])
                   for line in proc.stdout.splitlines() if "time=" in line)
    if not times:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "received": 0}

    def pct(p: float) -> float:
        return times[min(len(times) - 1, int(round(p * (len(times) - 1))))]

    return {"p50_ms": pct(0.50), "p99_ms": pct(0.99), "received": len(times)}


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of ``pid`` in MiB."""
    cur = peak = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    return cur, peak


BURST_PACKETS = 3000  # fits the RX ring (4096 frames) and the plain socket's 4 MiB buffer
SINK = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9999))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.settimeout(15); stamps = []
try:
    while True:
        s.recv(2048); stamps.append(time.perf_counter()); s.settimeout(1.0)
except OSError:
    pass
# stamps[0] is the warm-up packet sent before the burst: time the burst from its first packet.
print(len(stamps) - 1, (stamps[-1] - stamps[1]) if len(stamps) > 2 else 0.0, flush=True)
"""
BLAST = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range({BURST_PACKETS}):
    s.sendto(b"x" * 64, ("{SERVER}", 9999))
"""


def burst_capacity(topo: Topology, natpass_pid: int) -> dict[str, float]:
    """natpass's drain rate with full batches: stop it, queue a burst in its RX ring, resume, and
    time the arrivals at the server. Less sensitive to the other work on the machine than iperf3."""
    import signal as _signal

    lab = topo.lab
    sink = lab.spawn(topo.srv, [sys.executable, "-u", "-c", SINK], label=f"sink-{topo.srv}")
    try:
        time.sleep(0.3)
        lab.run(topo.cli, [sys.executable, "-c", BLAST.replace(f"range({BURST_PACKETS})", "range(1)")])
        time.sleep(0.2)  # the one packet above makes the mapping and the ARP entries
        os.kill(natpass_pid, _signal.SIGSTOP)
        try:
            lab.run(topo.cli, [sys.executable, "-c", BLAST])
            time.sleep(0.2)
        finally:
            os.kill(natpass_pid, _signal.SIGCONT)
        lab.wait_for(lambda: not lab.alive(sink), timeout=15)
    finally:
        lab.kill(sink)
    words = lab.log(f"sink-{topo.srv}").split()
    n, seconds = (int(words[-2]), float(words[-1])) if len(words) >= 2 else (0, 0.0)
    return {"packets": n, "pps": (n / seconds) if seconds > 0 else 0.0}


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (user and kernel time, the kernel part includes the sends)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rx_packets(topo: Topology) -> int:
    return int(topo.lab.run(topo.srv, ["cat", "/sys/class/net/eth0/statistics/rx_packets"]).stdout)


def _spy(pid: int, profile: str, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy recording ``pid`` for ``seconds`` into ``profile`` (.svg flame graph, .txt collapsed
    stacks), or None without py-spy."""
    if not shutil.which("py-spy"):
        return None
    fmt = ["-f", "raw"] if profile.endswith(".txt") else []
    return subprocess.Popen(["py-spy", "record", "-o", profile, *fmt, "-d", str(seconds), "-r", "200",
                             "-p", str(pid), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def passthrough_pps(topo: Topology, kind: str, natpass_pid: int | None = None,
                    profile: str | None = None) -> dict[str, float]:
    """Packets/s of a PPTP call's GRE (``kind`` "gre") or a raw-ESP SA ("esp") arriving at the
    server: at most PASS_PACKETS in PASS_SECONDS from one sender. With ``profile`` (and natpass's
    pid), py-spy records natpass meanwhile."""
    lab = topo.lab
    env = {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    server = None
    if kind == "gre":
        server = lab.spawn(topo.srv, [sys.executable, "-u", "-c", PPTP_SERVER], label=f"pptpd-{topo.srv}",
                           env=env)
        time.sleep(0.4)
    spy = None
    cpu0 = cpu_seconds(natpass_pid) if natpass_pid else 0.0
    try:
        before = _rx_packets(topo)
        if profile and natpass_pid:
            spy = _spy(natpass_pid, profile, PASS_SECONDS)
        proc = lab.run(topo.cli, [sys.executable, "-c", PASS_CLIENT, kind, SERVER, str(PASS_SECONDS),
                                  str(PASS_PACKETS)], timeout=PASS_SECONDS + 30, check=False, env=env)
        time.sleep(0.3)  # what natpass still had queued
        arrived = _rx_packets(topo) - before
    finally:
        if server is not None:
            lab.kill(server)
        if spy is not None:
            spy.wait(timeout=60)
    cpu = cpu_seconds(natpass_pid) - cpu0 if natpass_pid else 0.0
    try:
        sent = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"pps": 0.0, "sent_pps": 0.0, "error": (proc.stderr or proc.stdout)[-300:]}  # type: ignore[dict-item]
    seconds = float(sent["seconds"]) or 1.0
    out = {"pps": arrived / seconds, "sent_pps": sent["sent"] / seconds}
    if natpass_pid and arrived:
        out["cpu_us_per_packet"] = cpu / arrived * 1e6  # natpass's CPU per packet it forwarded
    return out


def measure(topo: Topology, natpass_pid: int | None, profile: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cpu0 = cpu_seconds(natpass_pid) if natpass_pid else 0.0
    spy = _spy(natpass_pid, profile, UDP_SECONDS + 1) if profile and natpass_pid else None
    out["udp"] = udp_pps(topo)
    if natpass_pid and out["udp"]["pps"]:
        # CPU per forwarded packet: steadier than pkt/s on a machine shared with other work.
        forwarded = out["udp"]["pps"] * UDP_SECONDS
        out["udp"]["cpu_us_per_packet"] = (cpu_seconds(natpass_pid) - cpu0) / forwarded * 1e6
    if spy is not None:
        spy.wait(timeout=60)
    if natpass_pid:
        out["burst"] = burst_capacity(topo, natpass_pid)
    tcp = tcp_run(topo)
    out["tcp_gbps"], out["tcp_cpu_s_per_gb"] = tcp["gbps"], tcp["cpu_s_per_gb"]
    out["latency"] = ping_latency(topo)
    if natpass_pid:
        out["rss_mb"], out["peak_rss_mb"] = rss_mb(natpass_pid)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--profile", metavar="SVG", help="py-spy profile of natpass under UDP load (.svg flame graph, .txt collapsed stacks)")
    parser.add_argument("--profile-hybrid", metavar="PREFIX",
                        help="py-spy profiles of hybrid natpass under the GRE and ESP loads "
                             "(PREFIX-gre.txt, PREFIX-esp.txt: collapsed stacks)")
    parser.add_argument("--split-cost", action="store_true",
                        help="also measure the hybrid router after natpass is SIGKILLed (its nft table "
                             "stays, its packet taps go): what the taps cost the kernel's forwarding")
    parser.add_argument("--alternate", type=int, default=0, metavar="N",
                        help="instead of the full run: hybrid, the kernel NAT and the kernel NAT with a "
                             "router's forward chain side by side, TCP and small UDP measured N times each "
                             "in rotation (the pairwise ratios are steadier than one run's on a shared machine)")
    parser.add_argument("--router-gro", action="store_true",
                        help="with --alternate: GRO on every router's interfaces, as NIC drivers have it "
                             "(veth has it off by default)")
    parser.add_argument("--pairs", type=int, default=3, metavar="N",
                        help="the full run's last phases: hybrid and the two kernel routers measured in N rounds, "
                             "TCP and small UDP as veth comes (GRO off), then TCP with GRO on both routers; "
                             "0 skips them (default 3)")
    parser.add_argument("--only", choices=("natpass", "hybrid", "kernel"), help="measure one router only")
    parser.add_argument("--no-rings", action="store_true",
                        help="natpass without PACKET_MMAP rings (one syscall per packet), for comparison")
    parser.add_argument("--streams", type=int, default=1, metavar="N",
                        help="parallel UDP streams (iperf3 -P; the kernel NAT then uses several CPUs)")
    args = parser.parse_args(argv)
    global STREAMS
    STREAMS = max(1, min(args.streams, 8))
    if os.geteuid() != 0:
        print("bench/live.py needs root (network namespaces)", file=sys.stderr)
        return 2
    # Its own prefix (npdpb-*), so that a test run of the npdp-* lab elsewhere cannot remove it mid-run.
    lab = Netns("npdpb")
    started = time.monotonic()
    results: dict[str, Any] = {}
    with exclusive("npdpb"):
        lab.cleanup()
        if args.alternate:
            _alternate(lab, args.alternate, results, router_gro=args.router_gro)
        else:
            _run(lab, args, results)
    if args.alternate:
        results["seconds"] = round(time.monotonic() - started, 1)
        print(json.dumps(results))
        return 0
    _report(args, results, started)
    return 0


def _alternate(lab: Netns, rounds: int, results: dict[str, Any], router_gro: bool = False,
               udp: bool = True, tag: str = "", topo_tag: str = "") -> None:
    """Hybrid natpass, the kernel NAT and the kernel NAT with a router's stateful forward chain
    (``kernel_fw``) built side by side, measured in turns (TCP Gbit/s, the machine's CPU seconds
    per GB of TCP and, with ``udp``, small-UDP pkt/s); ``router_gro``: every router with GRO on
    its interfaces. Keys get ``tag`` inserted ("_gro": hybrid_tcp_gro_gbps); ``topo_tag`` keeps
    the namespaces apart from the full run's."""
    try:
        hyb = Topology(lab, f"bh{topo_tag}").build(router_gro=router_gro)
        kern = Topology(lab, f"bk{topo_tag}").build(kernel_nat=True, router_gro=router_gro)
        lab.nft(kern.rtr, PPTP_HELPER)
        kfw = Topology(lab, f"bf{topo_tag}").build(kernel_nat=True, router_gro=router_gro)
        lab.nft(kfw.rtr, PPTP_HELPER)
        lab.nft(kfw.rtr, KERNEL_FORWARD)
        state = lab.path(f"bench-hybrid{topo_tag}-state", "x").parent
        cfg = lab.write(f"bench-hybrid{topo_tag}.toml",
                        config_text(str(state), str(lab.path(f"bench-hybrid{topo_tag}.sock")), HYBRID_EXTRA))
        pid = hyb.start_natpass(cfg, label=f"natpass-hybrid{topo_tag}",
                                runner=[sys.executable, "-m", "natpass.router.cli_run", "--config", str(cfg)])
        routers = [(hyb, "hybrid"), (kern, "kernel"), (kfw, "kernel_fw")]
        runs: dict[str, list[float]] = {f"{n}_{k}": [] for _, n in routers
                                        for k in ("tcp_gbps", "tcp_cpu_s_per_gb") + (("pps",) if udp else ())}
        try:
            for i in range(rounds):
                # which router goes first rotates too, so none always follows another's load
                order = routers[i % 3:] + routers[:i % 3]
                for topo, name in order:
                    tcp = tcp_run(topo)
                    runs[f"{name}_tcp_gbps"].append(round(tcp["gbps"], 3))
                    runs[f"{name}_tcp_cpu_s_per_gb"].append(round(tcp["cpu_s_per_gb"], 3))
                if udp:
                    for topo, name in order:
                        runs[f"{name}_pps"].append(round(udp_pps(topo)["pps"]))
        finally:
            lab.kill(pid, timeout=5)
        results.update({key.replace("_tcp", f"_tcp{tag}"): v for key, v in runs.items()})
        pairs = [("tcp_ratios", "tcp_gbps"), ("tcp_cpu_ratios", "tcp_cpu_s_per_gb")] + ([("pps_ratios", "pps")] if udp else [])
        for reference, prefix in (("kernel", ""), ("kernel_fw", "fw_")):
            for key, what in pairs:
                a, b = runs[f"hybrid_{what}"], runs[f"{reference}_{what}"]
                ratios = sorted(round(x / y, 3) if y else 0.0 for x, y in zip(a, b, strict=True))
                key = prefix + key.replace("tcp", f"tcp{tag}")
                results[key] = ratios
                results[key.replace("ratios", "ratio_median")] = round(statistics.median(ratios), 3)
    finally:
        lab.cleanup()


def _run(lab: Netns, args: argparse.Namespace, results: dict[str, Any]) -> None:
    try:
        if args.only in (None, "natpass"):
            nat = Topology(lab, "bn").build()
            state = lab.path("bench-state", "x").parent
            cfg = lab.write("bench.toml", config_text(str(state), str(lab.path("bench.sock")),
                                                      'log_level = "info"\n'))
            pid = nat.start_natpass(cfg, label="natpass-bench",
                                    runner=[sys.executable, "-m", "natpass.router.cli_run", "--config",
                                            str(cfg)],
                                    env={"NATPASS_PACKET_RINGS": "0" if args.no_rings else "1"})
            try:
                results["natpass"] = measure(nat, pid, args.profile)
            finally:
                lab.kill(pid, timeout=5)
            log = lab.log("natpass-bench")
            counters = [line for line in log.splitlines() if "datapath counters" in line]
            if counters:
                results["natpass"]["counters"] = counters[-1].split("datapath counters: ", 1)[1]
        if args.only in (None, "hybrid"):
            hyb = Topology(lab, "bh").build()
            state = lab.path("bench-hybrid-state", "x").parent
            cfg = lab.write("bench-hybrid.toml", config_text(str(state), str(lab.path("bench-hybrid.sock")),
                                                             HYBRID_EXTRA))
            pid = hyb.start_natpass(cfg, label="natpass-hybrid",
                                    runner=[sys.executable, "-m", "natpass.router.cli_run", "--config",
                                            str(cfg)])
            try:
                cpu0 = cpu_seconds(pid)
                results["hybrid"] = measure(hyb, None)
                # natpass's own CPU while the kernel carried the ordinary load: close to nothing.
                results["hybrid"]["natpass_cpu_s"] = cpu_seconds(pid) - cpu0
                prof = args.profile_hybrid
                results["hybrid"]["gre"] = passthrough_pps(hyb, "gre", pid, prof and f"{prof}-gre.txt")
                results["hybrid"]["esp"] = passthrough_pps(hyb, "esp", pid, prof and f"{prof}-esp.txt")
                results["hybrid"]["rss_mb"], results["hybrid"]["peak_rss_mb"] = rss_mb(pid)
                if args.split_cost:
                    # SIGKILL leaves the table and ip_forward (by design): the kernel's forwarding
                    # with natpass's rules but without its packet sockets.
                    lab.kill(pid, timeout=5, sig=signal.SIGKILL)
                    results["hybrid_notap"] = {"udp": udp_pps(hyb), "tcp_gbps": tcp_gbps(hyb)}
            finally:
                lab.kill(pid, timeout=5)
        if args.only in (None, "kernel"):
            kern = Topology(lab, "bk").build(kernel_nat=True)
            lab.nft(kern.rtr, PPTP_HELPER)
            results["kernel"] = measure(kern, None)
            results["kernel"]["gre"] = passthrough_pps(kern, "gre")
            results["kernel"]["esp"] = passthrough_pps(kern, "esp")
        if args.only is None and args.pairs:
            # Last (each removes every topology of this run when it ends): hybrid and kernel in
            # turns, as veth comes (GRO off) and with GRO on the routers as NIC drivers have it.
            results["pairs"] = {}
            _alternate(lab, args.pairs, results["pairs"], topo_tag="p")
            results["gro"] = {}
            _alternate(lab, args.pairs, results["gro"], router_gro=True, udp=False, tag="_gro", topo_tag="g")
    finally:
        lab.cleanup()


def _report(args: argparse.Namespace, results: dict[str, Any], started: float) -> None:
    n, k, h = results.get("natpass", {}), results.get("kernel", {}), results.get("hybrid", {})

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    summary: dict[str, Any] = {
        "natpass_pps": round(n["udp"]["pps"]) if n else None,
        "kernel_pps": round(k["udp"]["pps"]) if k else None,
        "natpass_sent_pps": round(n["udp"]["sent_pps"]) if n else None,
        "kernel_sent_pps": round(k["udp"]["sent_pps"]) if k else None,
        "natpass_tcp_gbps": round(n["tcp_gbps"], 3) if n else None,
        "kernel_tcp_gbps": round(k["tcp_gbps"], 3) if k else None,
        "natpass_p50_ms": n["latency"]["p50_ms"] if n else None,
        "natpass_p99_ms": n["latency"]["p99_ms"] if n else None,
        "kernel_p50_ms": k["latency"]["p50_ms"] if k else None,
        "kernel_p99_ms": k["latency"]["p99_ms"] if k else None,
        "natpass_burst_pps": round(n["burst"]["pps"]) if n else None,
        "natpass_burst_packets": n["burst"]["packets"] if n else None,
        "natpass_cpu_us_per_packet": round(n["udp"].get("cpu_us_per_packet", 0.0), 2) if n else None,
        "natpass_rss_mb": round(n["rss_mb"], 1) if n else None,
        "natpass_peak_rss_mb": round(n["peak_rss_mb"], 1) if n else None,
        "hybrid_pps": round(h["udp"]["pps"]) if h else None,
        "hybrid_sent_pps": round(h["udp"]["sent_pps"]) if h else None,
        "hybrid_tcp_gbps": round(h["tcp_gbps"], 3) if h else None,
        "hybrid_p50_ms": h["latency"]["p50_ms"] if h else None,
        "hybrid_p99_ms": h["latency"]["p99_ms"] if h else None,
        "hybrid_natpass_cpu_s": round(h["natpass_cpu_s"], 3) if h else None,
        "hybrid_rss_mb": round(h["rss_mb"], 1) if h else None,
        "hybrid_gre_pps": round(h["gre"]["pps"]) if h else None,
        "hybrid_gre_sent_pps": round(h["gre"]["sent_pps"]) if h else None,
        "hybrid_esp_pps": round(h["esp"]["pps"]) if h else None,
        "hybrid_esp_sent_pps": round(h["esp"]["sent_pps"]) if h else None,
        "kernel_gre_pps": round(k["gre"]["pps"]) if k else None,
        "kernel_gre_sent_pps": round(k["gre"]["sent_pps"]) if k else None,
        "kernel_esp_pps": round(k["esp"]["pps"]) if k else None,
        "kernel_esp_sent_pps": round(k["esp"]["sent_pps"]) if k else None,
        "seconds": round(time.monotonic() - started, 1),
    }
    for key, side in (("natpass", n), ("hybrid", h), ("kernel", k)):
        if side:
            summary[f"{key}_tcp_cpu_s_per_gb"] = round(side["tcp_cpu_s_per_gb"], 2)
    p, g = results.get("pairs"), results.get("gro")
    if p and g:
        # the goal's figures: medians of the pairwise ratios (one pair swings by +-15 % here)
        summary["hybrid_tcp_ratio_median"] = p["tcp_ratio_median"]
        summary["hybrid_tcp_cpu_ratio_median"] = p["tcp_cpu_ratio_median"]
        summary["hybrid_pps_ratio_median"] = p["pps_ratio_median"]
        for name in ("hybrid", "kernel"):
            summary[f"{name}_tcp_gro_gbps"] = round(statistics.median(g[f"{name}_tcp_gro_gbps"]), 3)
        summary["hybrid_tcp_gro_ratio_median"] = g["tcp_gro_ratio_median"]
        summary["hybrid_tcp_gro_cpu_ratio_median"] = g["tcp_gro_cpu_ratio_median"]
        summary["hybrid_tcp_fw_ratio_median"] = p["fw_tcp_ratio_median"]
        summary["hybrid_tcp_fw_cpu_ratio_median"] = p["fw_tcp_cpu_ratio_median"]
        summary["hybrid_pps_fw_ratio_median"] = p["fw_pps_ratio_median"]
        summary["hybrid_tcp_gro_fw_ratio_median"] = g["fw_tcp_gro_ratio_median"]
        summary["pairs"] = {**p, **g}
    if h and k:
        summary["hybrid_tcp_cpu_ratio"] = ratio(h["tcp_cpu_s_per_gb"], k["tcp_cpu_s_per_gb"])
        summary["hybrid_pps_ratio"] = ratio(h["udp"]["pps"], k["udp"]["pps"])
        summary["hybrid_tcp_ratio"] = ratio(h["tcp_gbps"], k["tcp_gbps"])
        summary["gre_ratio"] = ratio(h["gre"]["pps"], k["gre"]["pps"])
        summary["esp_ratio"] = ratio(h["esp"]["pps"], k["esp"]["pps"])
    if n and k:
        summary["pps_ratio"] = ratio(n["udp"]["pps"], k["udp"]["pps"])
        summary["tcp_ratio"] = ratio(n["tcp_gbps"], k["tcp_gbps"])
        summary["p99_ratio"] = ratio(n["latency"]["p99_ms"], k["latency"]["p99_ms"])
    for kind in ("gre", "esp"):
        if h and "cpu_us_per_packet" in h[kind]:
            summary[f"hybrid_{kind}_cpu_us_per_packet"] = round(h[kind]["cpu_us_per_packet"], 2)
    nt = results.get("hybrid_notap")
    if nt:
        summary["hybrid_notap_pps"] = round(nt["udp"]["pps"])
        summary["hybrid_notap_sent_pps"] = round(nt["udp"]["sent_pps"])
        summary["hybrid_notap_tcp_gbps"] = round(nt["tcp_gbps"], 3)
    if n.get("counters"):
        summary["natpass_counters"] = n["counters"]
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"small UDP ({UDP_PAYLOAD} B) at the server: natpass {summary['natpass_pps']} pkt/s, "
              f"kernel {summary['kernel_pps']} pkt/s (sent {summary['natpass_sent_pps']} / "
              f"{summary['kernel_sent_pps']}), ratio {summary.get('pps_ratio')}")
        print(f"natpass drain rate of a {BURST_PACKETS}-packet burst queued while it was stopped: "
              f"{summary['natpass_burst_pps']} pkt/s ({summary['natpass_burst_packets']} arrived)")
        print(f"natpass CPU per forwarded small UDP packet: {summary['natpass_cpu_us_per_packet']} us")
        print(f"TCP: natpass {summary['natpass_tcp_gbps']} Gbit/s, kernel {summary['kernel_tcp_gbps']} Gbit/s, "
              f"ratio {summary.get('tcp_ratio')}")
        print(f"ping p50/p99: natpass {summary['natpass_p50_ms']}/{summary['natpass_p99_ms']} ms, "
              f"kernel {summary['kernel_p50_ms']}/{summary['kernel_p99_ms']} ms")
        print(f"hybrid (kernel forwards ordinary traffic): small UDP {summary['hybrid_pps']} pkt/s "
              f"(ratio to kernel {summary.get('hybrid_pps_ratio')}), TCP {summary['hybrid_tcp_gbps']} Gbit/s "
              f"(ratio {summary.get('hybrid_tcp_ratio')}), natpass CPU during it "
              f"{summary['hybrid_natpass_cpu_s']} s")
        if "hybrid_tcp_gro_ratio_median" in summary:
            print(f"hybrid/kernel in {args.pairs} alternating pairs (medians): TCP "
                  f"{summary['hybrid_tcp_ratio_median']} (CPU per GB {summary['hybrid_tcp_cpu_ratio_median']}), "
                  f"64-byte UDP {summary['hybrid_pps_ratio_median']}; with GRO on the routers' interfaces "
                  f"(as NIC drivers have it): TCP {summary['hybrid_tcp_gro_ratio_median']} (hybrid "
                  f"{summary['hybrid_tcp_gro_gbps']}, kernel {summary['kernel_tcp_gro_gbps']} Gbit/s)")
            print(f"against the kernel NAT with a router's stateful forward chain: TCP "
                  f"{summary['hybrid_tcp_fw_ratio_median']}, 64-byte UDP {summary['hybrid_pps_fw_ratio_median']}, "
                  f"TCP with GRO {summary['hybrid_tcp_gro_fw_ratio_median']}")
        print(f"PPTP GRE at the server: hybrid {summary['hybrid_gre_pps']} pkt/s, kernel "
              f"{summary['kernel_gre_pps']} pkt/s (ratio {summary.get('gre_ratio')}); raw ESP: hybrid "
              f"{summary['hybrid_esp_pps']}, kernel {summary['kernel_esp_pps']} (ratio {summary.get('esp_ratio')})")
        print(f"natpass RSS {summary['natpass_rss_mb']} MiB (peak {summary['natpass_peak_rss_mb']}); "
              f"{summary['seconds']} s")


if __name__ == "__main__":
    sys.exit(main())
