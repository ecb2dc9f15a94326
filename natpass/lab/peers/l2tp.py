"""L2TP (RFC 2661) with xl2tpd at both ends over UDP 1701, PPP frames from the stand-in pppd.

xl2tpd's pppd path is fixed, so the stand-in (natpass/lab/assets/standin-pppd) is bind-mounted over
/usr/sbin/pppd inside each xl2tpd's private mount namespace (never in the root one). The stand-in
does not echo frames back, so having it at both ends cannot loop. xl2tpd keeps its control pipe
under /var/run/xl2tpd: each daemon gets a private /run. The control exchange (SCCRQ, SCCRP, SCCCN,
ICRQ, ICRP, ICCN) and the data channel are the real xl2tpd's. Connected means the client's stand-in
saw LCP open over the L2TP session. Plain L2TP without IPsec: what L2TP/IPsec carries inside ESP.
"""

from __future__ import annotations

from pathlib import Path

from natpass.lab.peers.base import Peer, TunnelProbe
from natpass.lab.peers.pptp import LcpEchoProbe

PORT = 1701  # RFC 2661 section 8.1


class L2tp(Peer):
    protocol = "l2tp"
    needs = ("xl2tpd",)

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.server_log = self.lab.path("peers", "l2tp-server", "standin.log")
        self.client_log = self.file("standin.log")
        self.probe_file = self.file("probe.req")

    def _xl2tpd(self, node: str, label: str, conf_text: str, standin_log: Path, server: bool = False,
                probe: Path | None = None) -> None:
        """One xl2tpd in ``node`` with its own /run and the stand-in bound over /usr/sbin/pppd."""
        standin = self.standin_pppd()
        standin_log.unlink(missing_ok=True)
        d = standin_log.parent
        conf = d / "xl2tpd.conf"
        conf.write_text(conf_text)
        self.spawn(node, ["xl2tpd", "-D", "-c", str(conf), "-p", str(d / "xl2tpd.pid"), "-C", str(d / "l2tp-control")],
                   label, server=server, private_run=True, binds=[(str(standin), "/usr/sbin/pppd")],
                   env={"NATPASS_STANDIN_LOG": str(standin_log),
                        **({"NATPASS_STANDIN_PROBE": str(probe)} if probe else {})})

    def start_server(self) -> None:
        self._xl2tpd(self.server, "server", (
            "[global]\n"
            f"listen-addr = {self.server_addr}\n"
            f"port = {PORT}\n"
            "[lns default]\n"
            "ip range = 192.168.105.10-192.168.105.40\n"
            "local ip = 192.168.105.1\n"
            "require authentication = no\n"
            "length bit = yes\n"
        ), self.server_log, server=True)
        self.lab.wait_for(lambda: "Listening on IP address" in self.log("server"), 3)

    def start_client(self) -> None:
        self._xl2tpd(self.client, f"client-{self.client}", (
            "[global]\n"
            f"port = {PORT}\n"
            "[lac lab]\n"
            f"lns = {self.server_addr}\n"
            "autodial = yes\n"
            "redial = yes\n"
            "redial timeout = 1\n"
            "max redials = 30\n"
            "length bit = yes\n"
        ), self.client_log, probe=self.probe_file)

    def _events(self) -> str:
        return self.read(self.client_log)

    def connected(self) -> bool:
        return "LCP opened" in self._events()

    def probe(self, count: int, interval: float) -> TunnelProbe:
        return LcpEchoProbe(self, self.client_log, self.probe_file, count, interval)

    def reconnected(self) -> bool:
        """The session was hung up or LCP had to open again (xl2tpd redials)."""
        ev = self._events()
        return "hang-up" in ev or ev.count("LCP opened") > 1

    def failure_detail(self) -> str:
        log = self.log(f"client-{self.client}")
        stage = "call established" if "Call established" in log else (
            "tunnel established" if "Connection established" in log else "no tunnel")
        ev = self._events()
        return f"LCP not opened ({stage}; {ev.count('sent LCP')} frames sent, {ev.count('recv LCP')} received)"
