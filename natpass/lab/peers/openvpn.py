"""OpenVPN 2.6 over UDP or TCP with a static key (REAL-PEERS.md: the simplest that works).

Connected means a ping to the server's tunnel address crossed the tunnel: the tunnel addresses
(192.168.100.0/24) exist only on the two tun devices, so the reply cannot come any other way.
"""

from __future__ import annotations

from natpass.lab.peers.base import Peer, PingProbe, TunnelProbe

PORT = 1194  # IANA openvpn
TUN_SERVER = "192.168.100.1"


class OpenVpn(Peer):
    protocol = "openvpn-udp"
    needs = ("openvpn",)

    def __init__(self, *args: object, tcp: bool = False, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.tcp = tcp
        self.protocol = "openvpn-tcp" if tcp else "openvpn-udp"
        idx = int(self.client.lstrip("c") or 1)
        self.tun_client = f"192.168.100.{10 + idx}"
        self.port = PORT + idx - 1  # one server per client, so two clients never share a static key

    def _key(self) -> str:
        key = self.file("static.key")
        if not key.exists():
            self.lab.run(self.client, ["openvpn", "--genkey", "secret", str(key)])
        return str(key)

    def _common(self, dev: str) -> list[str]:
        return [
            "openvpn", "--dev", dev, "--dev-type", "tun", "--cipher", "AES-256-CBC", "--auth", "SHA256",
            "--verb", "3", "--ping", "2", "--ping-exit", "30", "--mute-replay-warnings",
        ]

    def start_server(self) -> None:
        key = self._key()
        proto = ["--proto", "tcp-server"] if self.tcp else ["--proto", "udp"]
        argv = self._common(f"ovs{self.port}") + proto + [
            "--local", self.server_addr, "--lport", str(self.port), "--secret", key, "0",
            "--ifconfig", TUN_SERVER, self.tun_client,
        ]
        self.spawn(self.server, argv, "server", server=True)
        if self.tcp:
            self.lab.wait_for(lambda: "Listening for incoming TCP connection" in self.log("server"), 5)

    def start_client(self) -> None:
        proto = ["--proto", "tcp-client"] if self.tcp else ["--proto", "udp"]
        argv = self._common("ovc0") + proto + [
            "--remote", self.server_addr, str(self.port), "--nobind", "--secret", self._key(), "1",
            "--ifconfig", self.tun_client, TUN_SERVER, "--connect-retry", "1", "1",
        ]
        self.spawn(self.client, argv, f"client-{self.client}")

    def connected(self) -> bool:
        return "Initialization Sequence Completed" in self.log(f"client-{self.client}") and self.ping(
            self.client, TUN_SERVER
        )

    def probe(self, count: int, interval: float) -> TunnelProbe:
        return PingProbe(self, TUN_SERVER, count, interval)

    def reconnected(self) -> bool:
        log = self.log(f"client-{self.client}")
        return "process restarting" in log or log.count("Initialization Sequence Completed") > 1

    def failure_detail(self) -> str:
        lines = self.log(f"client-{self.client}").strip().splitlines()
        return "no ping across the tunnel; client log: " + " | ".join(lines[-3:])
