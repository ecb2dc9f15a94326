"""OpenVPN 2.6 in TLS mode with a protected control channel (``--tls-crypt``, ``--tls-auth``) or
none: a throw-away CA, server and client certificates made with openssl, point-to-point TLS
(``--tls-server`` / ``--tls-client``) so no server pool is needed.

Connected means a ping to the server's tunnel address crossed the tunnel.
"""

from __future__ import annotations

from natpass.lab.peers.base import Peer
from natpass.lab.peers.openvpn import PORT, TUN_SERVER

CONTROL_MODES = ("tls-crypt", "tls-auth", "tls")


class OpenVpnTls(Peer):
    protocol = "openvpn-tls"
    needs = ("openvpn", "openssl")

    def __init__(self, *args: object, control: str = "tls-crypt", tcp: bool = False, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        if control not in CONTROL_MODES:
            raise ValueError(f"control mode {control!r} is not one of {', '.join(CONTROL_MODES)}")
        self.control = control
        self.tcp = tcp
        self.protocol = f"openvpn-{control}"
        idx = int(self.client.lstrip("c") or 1)
        self.tun_client = f"192.168.100.{10 + idx}"
        self.port = PORT + 10 + idx - 1  # not the static-key peer's port, so both can run at once

    def _pki(self) -> dict[str, str]:
        """CA, server and client key/certificate (EC P-256, valid two days) and the control key."""
        names = {n: str(self.file(n)) for n in ("ca.key", "ca.crt", "server.key", "server.crt",
                                                "client.key", "client.crt", "control.key")}
        if self.file("client.crt").exists():
            return names
        run = self.lab.run
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run(self.client, ["openssl", "req", "-x509", *ec, "-keyout", names["ca.key"], "-out", names["ca.crt"],
                          "-days", "2", "-subj", "/CN=natpass lab CA"])
        for who in ("server", "client"):
            csr = str(self.file(f"{who}.csr"))
            run(self.client, ["openssl", "req", *ec, "-keyout", names[f"{who}.key"], "-out", csr,
                              "-subj", f"/CN=natpass-lab-{who}"])
            run(self.client, ["openssl", "x509", "-req", "-in", csr, "-CA", names["ca.crt"], "-CAkey",
                              names["ca.key"], "-CAcreateserial", "-out", names[f"{who}.crt"], "-days", "2"])
        if self.control != "tls":
            kind = "tls-crypt" if self.control == "tls-crypt" else "tls-auth"
            run(self.client, ["openvpn", "--genkey", kind, names["control.key"]])
        return names

    def _common(self, dev: str, role: str, pki: dict[str, str]) -> list[str]:
        argv = ["openvpn", "--dev", dev, "--dev-type", "tun", f"--tls-{role}", "--ca", pki["ca.crt"],
                "--cert", pki[f"{role}.crt"], "--key", pki[f"{role}.key"], "--verb", "3", "--ping", "2",
                "--ping-exit", "30", "--data-ciphers", "AES-256-GCM"]
        if role == "server":
            argv += ["--dh", "none"]
        if self.control == "tls-crypt":
            argv += ["--tls-crypt", pki["control.key"]]
        elif self.control == "tls-auth":
            argv += ["--tls-auth", pki["control.key"], "0" if role == "server" else "1"]
        return argv

    def start_server(self) -> None:
        pki = self._pki()
        proto = ["--proto", "tcp-server"] if self.tcp else ["--proto", "udp"]
        argv = self._common(f"ots{self.port}", "server", pki) + proto + [
            "--local", self.server_addr, "--lport", str(self.port), "--ifconfig", TUN_SERVER, self.tun_client,
        ]
        self.spawn(self.server, argv, "server", server=True)
        if self.tcp:
            self.lab.wait_for(lambda: "Listening for incoming TCP connection" in self.log("server"), 5)

    def start_client(self) -> None:
        pki = self._pki()
        proto = ["--proto", "tcp-client"] if self.tcp else ["--proto", "udp"]
        argv = self._common("otc0", "client", pki) + proto + [
            "--remote", self.server_addr, str(self.port), "--nobind", "--ifconfig", self.tun_client, TUN_SERVER,
            "--connect-retry", "1", "1",
        ]
        self.spawn(self.client, argv, f"client-{self.client}")

    def connected(self) -> bool:
        return "Initialization Sequence Completed" in self.log(f"client-{self.client}") and self.ping(
            self.client, TUN_SERVER
        )

    def failure_detail(self) -> str:
        lines = self.log(f"client-{self.client}").strip().splitlines()
        return "no ping across the tunnel; client log: " + " | ".join(lines[-3:])
