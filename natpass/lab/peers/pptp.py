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

from natpass.lab.netns import LabError
from natpass.lab.peers.base import Peer

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
        self.spawn(self.client, [str(standin), "pty", f"pptp {self.server_addr} --nolaunchpppd --loglevel 1"],
                   f"client-{self.client}", env={"NATPASS_STANDIN_LOG": str(self.client_log)},
                   private_run=True)  # pptp's call manager socket is /var/run/pptp/SERVER: one per client

    def _client_events(self) -> str:
        return self.read(self.client_log)

    def connected(self) -> bool:
        return "LCP opened" in self._client_events()

    def failure_detail(self) -> str:
        ev = self._client_events()
        sent = ev.count("sent LCP")
        recv = ev.count("recv LCP")
        ctl = "control connection up" if "recv LCP" in ev or "Outgoing call established" in self.log(
            f"client-{self.client}") else "no answer"
        tail = [x for x in self.log(f"client-{self.client}").splitlines() if "standin-pppd" not in x][-2:]
        return f"LCP not opened: {sent} frames sent, {recv} received ({ctl}); pptp: {' | '.join(tail)}"
