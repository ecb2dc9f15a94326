"""Ordinary traffic, no VPN: a web page fetched with curl and a traceroute, for the network facts
``natpass diagnose`` must find in any capture (carrier-grade NAT, double NAT, the capture point).

The server is Python's http.server on the lab server; the client runs curl a few times and
``traceroute -n`` (UDP probes; each router on the way answers ICMP time exceeded).
"""

from __future__ import annotations

import sys

from natpass.lab.peers.base import Peer

HTTP_PORT = 8080
FETCHES = 3


class PlainWeb(Peer):
    protocol = "plain-web"
    needs = ("curl", "traceroute")

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.fetched = 0

    def start_server(self) -> None:
        root = self.file("www")
        root.mkdir(parents=True, exist_ok=True)
        (root / "index.html").write_text("natpass lab\n")
        self.spawn(self.server, [sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", self.server_addr,
                                 "--directory", str(root)], "server", server=True)
        url = f"http://{self.server_addr}:{HTTP_PORT}/"
        self.lab.wait_for(lambda: self.lab.run(self.server, ["curl", "-s", "-o", "/dev/null", url],
                                               check=False).returncode == 0, 5)

    def start_client(self) -> None:
        url = f"http://{self.server_addr}:{HTTP_PORT}/"
        for _ in range(FETCHES):
            proc = self.lab.run(self.client, ["curl", "-s", "-m", "3", "-o", "/dev/null", url], check=False)
            self.fetched += proc.returncode == 0
        self.lab.run(self.client, ["traceroute", "-n", "-q", "1", "-w", "1", "-m", "4", self.server_addr],
                     check=False, timeout=20)

    def connected(self) -> bool:
        return self.fetched == FETCHES

    def failure_detail(self) -> str:
        return f"{self.fetched} of {FETCHES} fetches worked"
