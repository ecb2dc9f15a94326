"""PPTP: real pptpd on the server, real pptp-linux (``pptp --nolaunchpppd``) on each client.

Real pppd cannot run here (no /dev/ppp), so both ends get the lab's stand-in pppd
(natpass/lab/assets/standin-pppd): pptpd launches it with ``-e``, and on the client it runs pptp on
a pty (``pty "pptp SERVER --nolaunchpppd"``). The control connection (TCP 1723: SCCRQ/SCCRP,
OCRQ/OCRP, SLI) and the GRE v1 data path with the call IDs the programs choose are all real; the
stand-ins exchange LCP Configure-Request/Ack and Echo frames over that GRE. Connected means the
client's stand-in saw LCP open: its frames reached pptpd's stand-in and the answers came back.

pptpd logs only to syslog: it runs with a private /dev whose /dev/log is a socat listener's socket
in the lab's state dir (``pptpd-syslog`` log). pptpd relays GRE only after its "pppd" writes first,
which the stand-in does (it sends its Configure-Request at once).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path

from natpass.lab.netns import LabError
from natpass.lab.peers.base import Peer, TunnelProbe

PORT = 1723  # RFC 2637 section 3.1
LOCAL_IP = "192.168.104.1"
REMOTE_IPS = "192.168.104.10-40"


class Pptp(Peer):
    protocol = "pptp"
    needs = ("pptpd", "pptp", "socat")

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.server_log = self.lab.path("peers", "pptp-server", "standin.log")
        self.client_log = self.file("standin.log")
        self.probe_file = self.file("probe.req")
        self.client_pid: int | None = None

    def start_server(self) -> None:
        standin = self.standin_pppd()
        self.server_log.unlink(missing_ok=True)
        d = self.server_log.parent
        conf = d / "pptpd.conf"
        conf.write_text(f"localip {LOCAL_IP}\nremoteip {REMOTE_IPS}\n")
        opts = d / "options.pptpd"
        opts.write_text("# stand-in pppd ignores its options\n")
        sock = d / "syslog.sock"
        sock.unlink(missing_ok=True)
        self.spawn(self.server, ["socat", "-u", f"UNIX-RECV:{sock}", "STDOUT"], "syslog", server=True)
        self.lab.wait_for(sock.exists, 3)
        self.spawn(
            self.server,
            ["pptpd", "-f", "-d", "-c", str(conf), "-o", str(opts), "-e", str(standin), "-l", self.server_addr,
             "-p", str(d / "pptpd.pid")],
            "server", server=True, dev_log=str(sock), env={"NATPASS_STANDIN_LOG": str(self.server_log)},
        )
        if not self.lab.wait_for(lambda: f"{self.server_addr}:{PORT}" in self.lab.run(
                self.server, ["ss", "-ltn"], check=False).stdout, 5):
            raise LabError(f"pptpd is not listening on {self.server_addr}:{PORT}: {self.log('syslog')[-300:]}")

    def start_client(self) -> None:
        standin = self.standin_pppd()
        self.client_log.unlink(missing_ok=True)
        self.client_pid = self.spawn(
            self.client, [str(standin), "pty", f"pptp {self.server_addr} --nolaunchpppd --loglevel 1"],
            f"client-{self.client}", env={"NATPASS_STANDIN_LOG": str(self.client_log),
                                          "NATPASS_STANDIN_PROBE": str(self.probe_file)},
            private_run=True)  # pptp's call manager socket is /var/run/pptp/SERVER: one per client

    def _client_events(self) -> str:
        return self.read(self.client_log)

    def connected(self) -> bool:
        return "LCP opened" in self._client_events()

    def probe(self, count: int, interval: float) -> TunnelProbe:
        return LcpEchoProbe(self, self.client_log, self.probe_file, count, interval)

    def reconnected(self) -> bool:
        """The call was hung up, or LCP had to open again (a new call)."""
        ev = self._client_events()
        return "hang-up" in ev or ev.count("LCP opened") > 1 or (
            self.client_pid is not None and not self.lab.alive(self.client_pid))

    def failure_detail(self) -> str:
        ev = self._client_events()
        sent = ev.count("sent LCP")
        recv = ev.count("recv LCP")
        ctl = "control connection up" if "recv LCP" in ev or "Outgoing call established" in self.log(
            f"client-{self.client}") else "no answer"
        tail = [x for x in self.log(f"client-{self.client}").splitlines() if "standin-pppd" not in x][-2:]
        return f"LCP not opened: {sent} frames sent, {recv} received ({ctl}); pptp: {' | '.join(tail)}"


class LcpEchoProbe(TunnelProbe):
    """Numbered LCP Echo-Requests from the client's stand-in pppd through the tunnel (the stand-in
    at the server answers each): the PPP session's own traffic, no IP needed. Used for PPTP (over
    GRE) and L2TP (over the L2TP session)."""

    ANSWER = re.compile(r"^(\d+\.\d+) \S+ probe echo (\d+) answered")
    STARTED = re.compile(r"^\S+ standin-pppd\[(\d+)\] started")

    def __init__(self, peer: Peer, events: Path, request: Path, count: int, interval: float) -> None:
        super().__init__(peer, count, interval)
        self.events, self.request = events, request

    def standin_pid(self) -> int:
        """The client's stand-in, as its log names it (the latest one, should there be several)."""
        pids = [int(m.group(1)) for line in Peer.read(self.events).splitlines()
                if (m := self.STARTED.match(line))]
        if not pids:
            raise LabError("the client's stand-in pppd has not started")
        return pids[-1]

    def start(self) -> None:
        self.request.write_text(f"{self.interval} {self.count}\n")
        os.kill(self.standin_pid(), signal.SIGUSR1)

    def stop(self) -> None:
        with contextlib.suppress(LabError, ProcessLookupError):
            os.kill(self.standin_pid(), signal.SIGUSR2)

    def answers(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for line in Peer.read(self.events).splitlines():
            m = self.ANSWER.match(line)
            if m:
                out.setdefault(int(m.group(2)), float(m.group(1)))
        return out
