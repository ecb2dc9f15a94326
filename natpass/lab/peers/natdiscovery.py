"""RFC 5780 NAT behaviour discovery with coturn: ``turnserver --stun-only`` on the server's two
addresses and ``turnutils_natdiscovery -m -f SERVER`` on a client. The report gives the mapping and
filtering behaviour of the NAT(s) in between; the kernel's masquerade shows endpoint-independent
mapping and address-and-port-dependent filtering (REAL-PEERS.md).
"""

from __future__ import annotations

import re

from natpass.lab.peers.base import Peer, PeerResult

STUN_PORT = 3478  # RFC 5389 section 18.4
ALT_PORT = 3479  # the alternate port RFC 5780 tests use (coturn: listening port + 1)

BEHAVIOURS = {
    "endpoint independent": "endpoint-independent",
    "address dependent": "address-dependent",
    "address and port dependent": "address-and-port-dependent",
}


def parse_report(text: str) -> dict[str, str | None]:
    """Mapping and filtering behaviour from turnutils_natdiscovery's output (None when not stated)."""
    out: dict[str, str | None] = {"mapping": None, "filtering": None, "nat": None}
    low = text.lower()
    for kind in ("mapping", "filtering"):
        m = re.search(r"nat with ([a-z ]+?) " + kind, low)
        if m and m.group(1).strip() in BEHAVIOURS:
            out[kind] = BEHAVIOURS[m.group(1).strip()]
    if "no nat" in low:
        out["nat"] = "none"
    elif out["mapping"] or out["filtering"]:
        out["nat"] = "yes"
    return out


class NatDiscovery(Peer):
    protocol = "natdiscovery"
    needs = ("turnserver", "turnutils_natdiscovery")

    def start_server(self) -> None:
        a, b = self.topo.server_addrs[0], self.topo.server_addrs[1]
        # Debian's /etc/turnserver.conf says no-rfc5780: start from an empty config instead.
        empty = self.file("turnserver.conf")
        empty.write_text("# natpass lab: RFC 5780 needs the defaults (two listening addresses)\n")
        self.spawn(self.server, ["turnserver", "-c", str(empty), "--stun-only", "-L", a, "-L", b, "-p", str(STUN_PORT),
                                 "--no-cli", "--no-tls", "--no-dtls", "--log-file", "stdout", "--simple-log",
                                 "--pidfile", str(self.file("turnserver.pid")),
                                 "--userdb", str(self.file("turndb"))],
                   "server", server=True)
        self.lab.wait_for(lambda: f"{b}:{ALT_PORT}" in self.lab.run(
            self.server, ["ss", "-lun"], check=False).stdout, 5)

    def start_client(self) -> None:
        self.spawn(self.client, ["turnutils_natdiscovery", "-m", "-f", self.server_addr],
                   f"client-{self.client}")

    def report(self) -> dict[str, str | None]:
        return parse_report(self.log(f"client-{self.client}"))

    def connected(self) -> bool:
        rep = self.report()
        return rep["mapping"] is not None and rep["filtering"] is not None

    def wait(self, t0: float) -> PeerResult:
        res = super().wait(t0)
        res.extra.update(self.report())
        res.detail = f"mapping {res.extra['mapping']}, filtering {res.extra['filtering']}"
        return res


class HairpinDiscovery(NatDiscovery):
    """RFC 5780 section 4.5 hairpinning test: the client sends a STUN request to its own mapped
    address; coturn's tool says so when the request comes back to it through the NAT. Whether it
    does also depends on the NAT's filtering (the hairpinned packet comes from the WAN address)."""

    protocol = "hairpinning"

    def start_client(self) -> None:
        self.spawn(self.client, ["turnutils_natdiscovery", "-H", self.server_addr], f"client-{self.client}")

    def connected(self) -> bool:
        return "successful hairpinning" in self.log(f"client-{self.client}")

    def wait(self, t0: float) -> PeerResult:
        res = Peer.wait(self, t0)
        res.detail = "hairpinned request received" if res.connected else "no hairpinned request came back"
        return res
