"""A real VPN session through a restart of natpass (SIGTERM, start again, as ``systemctl restart``
does), measured from the peers' own traffic.

For one protocol: the client connects through natpass, then sends numbered probes through its
tunnel at a fixed rate (pings to an address only the tunnel reaches; LCP echoes for PPTP; ESP
pings for raw ESP); natpass gets SIGTERM and, once it has exited, is started again; the probes go on
for a while after the new router is up. The row says whether the tunnel still carried traffic
afterwards without the client setting it up again (``connected``), how many probes went unanswered
(``lost_packets``), the longest silence between two answers (``gap_ms``) and the time from SIGTERM
to the new router running (``restart_s``). Captures on the client's and the server's links count
every ICMP unreachable and TCP RST sent from the router's addresses (``kernel_answers``): natpass
keeps its guard table across the restart, so there must be none.
"""

from __future__ import annotations

import itertools
import signal
import time
from dataclasses import dataclass
from typing import Any

from natpass.lab import topology as T
from natpass.lab.capture import Capture, count_packets
from natpass.lab.netns import LabError, Netns
from natpass.lab.peers.base import Peer, TunnelProbe

INTERVAL = 0.02  # seconds between probes
MAX_PROBE_S = 40.0  # the probe's count bound: it never runs longer than this
WARM_S = 1.0  # probes answered before the SIGTERM
AFTER_S = 2.0  # probes after the first answer through the new router
EXIT_TIMEOUT = 10.0  # SIGTERM, then SIGKILL after this


@dataclass
class Measured:
    """What the probes and captures of one restart showed."""

    sent: int  # probes numbered up to the last answered one
    lost: int
    gap_ms: int
    answered_after: int  # answers received after the new router was up
    kernel_answers: int

    @classmethod
    def of(cls, answers: dict[int, float], up_wall: float, kernel_answers: int) -> Measured:
        if not answers:
            return cls(0, 0, 0, 0, kernel_answers)
        first, last = min(answers), max(answers)
        times = sorted(answers.values())
        gap = max((b - a for a, b in itertools.pairwise(times)), default=0.0)
        return cls(last - first + 1, last - first + 1 - len(answers), round(gap * 1000),
                   sum(1 for t in times if t > up_wall), kernel_answers)


def kernel_answer_filter(r: T.Router) -> str:
    """BPF for what the router's kernel would send if it answered for natpass: ICMP unreachable
    or a TCP RST from one of the router's own addresses."""
    return (f"(src host {r.wan_addr} or src host {r.lan_addr}) and "
            "((icmp and icmp[0] == 3) or (tcp and tcp[13] & 4 != 0))")


def restart_natpass(lab: Netns, r: T.Router) -> tuple[float, float, bool]:
    """SIGTERM the router, wait for it to exit, start it again with the same config.

    Returns (seconds to exit, seconds from SIGTERM to the new router running, exited by itself)."""
    if r.pid is None or not lab.alive(r.pid):
        raise LabError(f"natpass on {r.node} is not running")
    pid = r.pid
    t0 = time.monotonic()
    lab.kill(pid, timeout=EXIT_TIMEOUT, sig=signal.SIGTERM)
    exit_s = time.monotonic() - t0
    clean = "natpass stopped" in lab.log(f"natpass-{r.node}")
    r.pid = None
    T.start_natpass(lab, r)
    return exit_s, time.monotonic() - t0, clean


def not_measured(detail: str) -> dict[str, Any]:
    """A restart row before (or without) any measurement."""
    return {"restart": True, "connected": False, "lost_packets": None, "gap_ms": None,
            "restart_s": None, "exit_s": None, "probes": 0, "kernel_answers": None,
            "reconnected": None, "setup_s": None, "detail": detail}


def prove(lab: Netns, topo: T.Topology, r: T.Router, peer: Peer, interval: float = INTERVAL,
          after_s: float = AFTER_S) -> dict[str, Any]:
    """Connect ``peer``, restart natpass under its probes, and report (the peer is stopped)."""
    out = not_measured("")
    caps: list[Capture] = []
    probe: TunnelProbe | None = None
    try:
        t0 = peer.start()
        res = peer.wait(t0)
        out["setup_s"] = res.setup_s
        if not res.connected:
            out["detail"] = f"did not connect before the restart: {res.detail}"
            return out
        bpf = kernel_answer_filter(r)
        for node, ifname in ((peer.client, "eth0"), (topo.server, "eth0")):
            path = lab.path("restart", f"{peer.protocol}-{node}.pcap")
            caps.append(Capture(lab, node, ifname, bpf, path).start())
        probe = peer.probe(int(MAX_PROBE_S / interval), interval)
        probe.start()
        if not lab.wait_for(lambda: len(probe.answers()) >= 3, 5.0, interval=0.05):
            out["detail"] = "the tunnel answered no probes before the restart"
            return out
        time.sleep(WARM_S)
        exit_s, restart_s, clean = restart_natpass(lab, r)
        up_wall = time.time()
        out["exit_s"], out["restart_s"] = round(exit_s, 2), round(restart_s, 2)
        lab.wait_for(lambda: any(t > up_wall for t in probe.answers().values()), 10.0, interval=0.05)
        time.sleep(after_s)
        probe.stop()
        time.sleep(0.3)  # answers still on their way
        for cap in caps:
            cap.stop()
        kernel = sum(count_packets(cap.path) for cap in caps)
        m = Measured.of(probe.answers(), up_wall, kernel)
        reconnected = peer.reconnected()
        out.update(connected=m.answered_after > 0 and not reconnected, lost_packets=m.lost,
                   gap_ms=m.gap_ms, probes=m.sent, kernel_answers=kernel, reconnected=reconnected)
        out["detail"] = (f"{m.sent} probes {interval * 1000:.0f} ms apart, {m.lost} lost, longest gap "
                         f"{m.gap_ms} ms; natpass exited in {exit_s:.2f} s"
                         f"{'' if clean else ' (killed)'}, running again {restart_s:.2f} s after SIGTERM"
                         + (f"; {kernel} ICMP unreachable/RST from the router" if kernel else "")
                         + ("; the client set its tunnel up again" if reconnected else "")
                         + ("" if m.answered_after else "; no answer after the restart"))
        return out
    except LabError as exc:
        out["detail"] = str(exc)
        return out
    finally:
        if probe is not None:
            probe.stop()
        for cap in caps:
            cap.stop()
        peer.stop()
