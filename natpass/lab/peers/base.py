"""What every real peer of the lab does: start a server, start a client, wait, report, stop by PID."""

from __future__ import annotations

import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from natpass.lab.netns import LabError, Netns
from natpass.lab.topology import Topology

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass
class PeerResult:
    """The outcome of one client's attempt to connect."""

    protocol: str
    connected: bool
    setup_s: float | None
    detail: str
    client: str = "c1"
    extra: dict[str, Any] = field(default_factory=dict)


class TunnelProbe:
    """Numbered probes sent through a connected peer's tunnel at a fixed rate (bounded count), and
    which of them were answered, when: what the lab measures a router restart with.

    Subclasses say how to start and stop the sender and how to read its answers."""

    def __init__(self, peer: Peer, count: int, interval: float) -> None:
        self.peer, self.count, self.interval = peer, count, interval
        self.pid: int | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.pid is not None:
            self.peer.lab.kill(self.pid, sig=signal.SIGINT)  # ping prints what it has on SIGINT
            self.pid = None

    def answers(self) -> dict[int, float]:
        """Probe number -> wall-clock time its answer came back."""
        raise NotImplementedError


class PingProbe(TunnelProbe):
    """``ping -D`` from the client to an address that only the tunnel reaches."""

    LINE = re.compile(r"^\[(\d+\.\d+)\].*icmp_seq=(\d+)")

    def __init__(self, peer: Peer, target: str, count: int, interval: float) -> None:
        super().__init__(peer, count, interval)
        self.target = target
        self.label = f"probe-{peer.client}"

    def start(self) -> None:
        self.pid = self.peer.spawn(self.peer.client, [
            "ping", "-D", "-n", "-i", f"{self.interval:.3f}", "-c", str(self.count), "-W", "2",
            self.target], self.label)

    def answers(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for line in self.peer.log(self.label).splitlines():
            m = self.LINE.match(line)
            if m and "DUP" not in line:
                out.setdefault(int(m.group(2)), float(m.group(1)))
        return out


class Peer:
    """A real VPN server on ``srv`` and a real client on a LAN client node.

    Subclasses fill :meth:`start_server`, :meth:`start_client` and :meth:`connected`; :meth:`run`
    drives one attempt and always stops what it started (by PID).
    """

    protocol = "?"
    needs: tuple[str, ...] = ()  # programs that must be installed

    def __init__(
        self,
        lab: Netns,
        topo: Topology,
        client: str = "c1",
        server_addr: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.lab = lab
        self.topo = topo
        self.client = client
        self.server = topo.server
        self.server_addr = server_addr or topo.server_addrs[0]
        self.timeout = timeout
        self.pids: list[int] = []
        self.server_pids: list[int] = []
        self.detail = ""

    # ----- to fill in ------------------------------------------------------------------------
    def start_server(self) -> None:
        raise NotImplementedError

    def start_client(self) -> None:
        raise NotImplementedError

    def connected(self) -> bool:
        raise NotImplementedError

    def failure_detail(self) -> str:
        """Why it did not connect (the last log lines of the client, by default)."""
        return self.detail or "timed out"

    def probe(self, count: int, interval: float) -> TunnelProbe:
        """A probe through this peer's tunnel (once connected)."""
        raise NotImplementedError(f"{self.protocol}: no tunnel probe")

    def reconnected(self) -> bool:
        """Whether the client set its tunnel up again since it first connected (it should not
        have to when only the router in between restarted)."""
        return False

    # ----- helpers ---------------------------------------------------------------------------
    def missing(self) -> list[str]:
        return [p for p in self.needs if shutil.which(p) is None]

    def file(self, name: str) -> Path:
        """A per-peer file under the lab's state dir."""
        return self.lab.path("peers", f"{self.protocol}-{self.client}", name)

    def spawn(self, node: str, argv: list[str], label: str, server: bool = False, **kw: Any) -> int:
        pid = self.lab.spawn(node, argv, label=f"{self.protocol}-{label}", **kw)
        self.pids.append(pid)
        if server:
            self.server_pids.append(pid)
        return pid

    def log(self, label: str) -> str:
        return self.lab.log(f"{self.protocol}-{label}")

    def check_alive(self, pid: int, what: str) -> None:
        if not self.lab.alive(pid):
            raise LabError(f"{what} exited early")

    @staticmethod
    def read(path: Path) -> str:
        """A log file's text so far ('' before it exists)."""
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def ping(self, node: str, addr: str, wait: float = 1.0) -> bool:
        proc = self.lab.run(node, ["ping", "-c1", "-W", str(max(1, int(wait))), addr], check=False)
        return proc.returncode == 0

    def standin_pppd(self) -> Path:
        """The stand-in pppd (natpass/lab/assets) copied executable into the state dir."""
        dst = self.lab.path("bin", "standin-pppd")
        if not dst.exists():
            text = (ASSETS / "standin-pppd").read_text()
            text = text.replace("#!/usr/bin/env python3", f"#!{sys.executable}", 1)
            dst.write_text(text)
            dst.chmod(0o755)
        return dst

    # ----- one attempt -----------------------------------------------------------------------
    def start(self) -> float:
        """Start server then client; returns the client's start time (monotonic)."""
        missing = self.missing()
        if missing:
            raise LabError(f"not installed: {', '.join(missing)} (run scripts/install-deps.sh)")
        self.start_server()
        t0 = time.monotonic()
        self.start_client()
        return t0

    def wait(self, t0: float) -> PeerResult:
        ok = self.lab.wait_for(self.connected, self.timeout, interval=0.2)
        setup = round(time.monotonic() - t0, 2) if ok else None
        return PeerResult(
            self.protocol, ok, setup, self.detail if ok else self.failure_detail(), client=self.client
        )

    def stop(self) -> None:
        for pid in reversed(self.pids):
            self.lab.kill(pid)
        self.pids.clear()
        self.server_pids.clear()

    def run(self) -> PeerResult:
        """start, wait for connected (or timeout), report, stop — stopping even on failure."""
        try:
            t0 = self.start()
            return self.wait(t0)
        except LabError as exc:
            return PeerResult(self.protocol, False, None, str(exc), client=self.client)
        finally:
            self.stop()


def run_together(peers: list[Peer], stagger: bool = False, hold: float = 0.0) -> list[PeerResult]:
    """Several clients of one server at the same time: the first peer's server serves them all.

    Every client is started before any is waited for, so their sessions overlap (e.g. two PPTP
    clients behind one NAT). With ``stagger`` each client is started only once the previous one
    has connected (its session stays up): non-overlapping set-ups, overlapping sessions. ``hold``
    keeps everything running that many seconds after the last result (to check the sessions still
    work side by side). Everything started is stopped at the end, also on failure.
    """
    first = peers[0]
    starts: list[float] = []
    results: list[PeerResult] = []
    try:
        missing = first.missing()
        if missing:
            raise LabError(f"not installed: {', '.join(missing)} (run scripts/install-deps.sh)")
        first.start_server()
        if stagger:
            for p in peers:
                t0 = time.monotonic()
                p.start_client()
                results.append(p.wait(t0))
        else:
            for p in peers:
                starts.append(time.monotonic())
                p.start_client()
            for p, t0 in zip(peers, starts, strict=True):
                results.append(p.wait(t0))
        if hold:
            time.sleep(hold)
    except LabError as exc:
        results += [PeerResult(p.protocol, False, None, str(exc), client=p.client) for p in peers[len(results):]]
    finally:
        for p in reversed(peers):
            p.stop()
    return results
