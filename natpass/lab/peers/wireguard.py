"""WireGuard with wireguard-go (userspace) and wg from wireguard-tools.

The control socket ``/var/run/wireguard/IF.sock`` lives on the file system every namespace shares,
so each namespace's interface gets a distinct name (REAL-PEERS.md): ``<prefix>wgs`` on the server,
``<prefix>wg<client>`` on a client. Connected means a ping to the server's tunnel address
(192.168.101.1, only on the WireGuard devices) came back.
"""

from __future__ import annotations

from natpass.lab.peers.base import Peer, PingProbe, TunnelProbe

PORT = 51820
TUN_SERVER = "192.168.101.1"


class WireGuard(Peer):
    protocol = "wireguard"
    needs = ("wireguard-go", "wg")

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        idx = int(self.client.lstrip("c") or 1)
        self.tun_client = f"192.168.101.{10 + idx}"
        self.port = PORT + idx - 1
        self.if_server = f"{self.lab.prefix}wgs{idx}"
        self.if_client = f"{self.lab.prefix}wg{self.client}"

    def _keys(self, who: str) -> tuple[str, str]:
        priv = self.file(f"{who}.key")
        if not priv.exists():
            key = self.lab.run(self.client, ["wg", "genkey"]).stdout.strip()
            priv.write_text(key + "\n")
            priv.chmod(0o600)
        pub = self.lab.run(self.client, ["wg", "pubkey"], input=priv.read_text()).stdout.strip()
        return str(priv), pub

    def _device(self, node: str, ifname: str, label: str) -> None:
        self.spawn(node, ["wireguard-go", "-f", ifname], label, server=(node == self.server),
                   env={"LOG_LEVEL": "error"})
        ok = self.lab.wait_for(
            lambda: self.lab.run(node, ["ip", "link", "show", ifname], check=False).returncode == 0, 5
        )
        if not ok:
            self.detail = f"wireguard-go did not create {ifname}: {self.log(label)[-300:]}"

    def start_server(self) -> None:
        spriv, _ = self._keys("server")
        _, cpub = self._keys("client")
        self._device(self.server, self.if_server, "server")
        self.lab.run(self.server, ["wg", "set", self.if_server, "private-key", spriv, "listen-port",
                                   str(self.port), "peer", cpub, "allowed-ips", f"{self.tun_client}/32"])
        self.lab.ip(self.server, "addr", "add", f"{TUN_SERVER}/32", "peer", f"{self.tun_client}/32",
                    "dev", self.if_server)
        self.lab.ip(self.server, "link", "set", self.if_server, "up")

    def start_client(self) -> None:
        cpriv, _ = self._keys("client")
        _, spub = self._keys("server")
        self._device(self.client, self.if_client, f"client-{self.client}")
        self.lab.run(self.client, ["wg", "set", self.if_client, "private-key", cpriv, "peer", spub,
                                   "endpoint", f"{self.server_addr}:{self.port}",
                                   "allowed-ips", f"{TUN_SERVER}/32", "persistent-keepalive", "5"])
        self.lab.ip(self.client, "addr", "add", f"{self.tun_client}/32", "peer", f"{TUN_SERVER}/32",
                    "dev", self.if_client)
        self.lab.ip(self.client, "link", "set", self.if_client, "up")

    def connected(self) -> bool:
        return self.ping(self.client, TUN_SERVER)

    def probe(self, count: int, interval: float) -> TunnelProbe:
        return PingProbe(self, TUN_SERVER, count, interval)

    def failure_detail(self) -> str:
        shown = self.lab.run(self.client, ["wg", "show", self.if_client], check=False).stdout
        hs = "no handshake" if "latest handshake" not in shown else "handshake done but no ping"
        return f"{hs} with {self.server_addr}:{self.port}"
