"""IKEv2 with NAT-T: strongSwan charon at both ends, or pvpn (Python) as the responder.

One charon per namespace, each with its own tmpfs on /run and its own vici socket under the lab's
state dir (REAL-PEERS.md). ESP goes through kernel-libipsec (a TUN device): the kernel here has no
ESP, and libipsec supports only UDP-encapsulated ESP, so every tunnel is NAT-T on UDP 4500 after IKE
on UDP 500. Proposals aes256-sha256 (no GCM plugin needed). The client asks for a virtual IP from
192.168.102.0/24 and the server's protected net is 192.168.103.0/24 (an address on the server's lo):
a ping to 192.168.103.1 can only come back through the tunnel.
"""

from __future__ import annotations

import re
import time

from natpass.lab.netns import LabError
from natpass.lab.peers.base import Peer, PeerResult, PingProbe, TunnelProbe

PSK = "natpass-lab-psk"
ECHO_PORT = 7  # RFC 862 echo
PROTECTED = "192.168.103.1"
POOL = "192.168.102.0/24"
PLUGINS = (
    "random nonce openssl pem pkcs1 x509 pubkey curve25519 aes sha1 sha2 hmac kdf gmp "
    "kernel-libipsec kernel-netlink socket-default vici updown"
)


def strongswan_conf(vici: str, log: str) -> str:
    return f"""charon {{
  load_modular = no
  load = {PLUGINS}
  install_routes = yes
  retransmit_tries = 3
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  plugins {{
    vici {{
      socket = unix://{vici}
    }}
    kernel-libipsec {{
      allow_peer_ts = yes
    }}
  }}
  filelog {{
    lab {{
      path = {log}
      default = 1
      ike = 2
      time_format = %H:%M:%S
      flush_line = yes
    }}
  }}
}}
"""


def swanctl_server(local: str) -> str:
    return f"""connections {{
  lab {{
    version = 2
    local_addrs = {local}
    proposals = aes256-sha256-modp2048,aes256-sha256-curve25519
    pools = labpool
    local {{
      auth = psk
      id = server@natpass.lab
    }}
    remote {{
      auth = psk
    }}
    children {{
      net {{
        local_ts = 192.168.103.0/24
        esp_proposals = aes256-sha256
      }}
    }}
  }}
}}
pools {{
  labpool {{
    addrs = {POOL}
  }}
}}
secrets {{
  ike-lab {{
    secret = {PSK}
  }}
}}
"""


def swanctl_client(remote: str, ident: str, virtual_ip: bool = True) -> str:
    vips = "    vips = 0.0.0.0\n" if virtual_ip else ""
    return f"""connections {{
  lab {{
    version = 2
    remote_addrs = {remote}
    proposals = aes256-sha256-modp2048,aes256-sha256-curve25519
{vips}    local {{
      auth = psk
      id = {ident}
    }}
    remote {{
      auth = psk
      id = %any
    }}
    children {{
      net {{
        remote_ts = 192.168.103.0/24
        esp_proposals = aes256-sha256
      }}
    }}
  }}
}}
secrets {{
  ike-lab {{
    secret = {PSK}
  }}
}}
"""


class Charon:
    """One charon daemon in one namespace, with its vici socket and swanctl config in the state dir."""

    def __init__(self, peer: Peer, node: str, label: str) -> None:
        self.peer, self.node, self.label = peer, node, label
        self.vici = peer.file(f"{label}.vici")
        self.conf = peer.file(f"{label}-strongswan.conf")
        self.swanctl = peer.file(f"{label}-swanctl.conf")
        self.logfile = peer.file(f"{label}-charon.log")

    def start(self, swanctl_conf: str) -> None:
        self.logfile.unlink(missing_ok=True)
        self.vici.unlink(missing_ok=True)
        self.conf.write_text(strongswan_conf(str(self.vici), str(self.logfile)))
        self.swanctl.write_text(swanctl_conf)
        self.peer.spawn(self.node, ["/usr/lib/ipsec/charon"], self.label, server=(self.node == self.peer.server),
                        env={"STRONGSWAN_CONF": str(self.conf)}, private_run=True)
        if not self.peer.lab.wait_for(self.vici.exists, 8):
            raise LabError(f"charon in {self.node} did not open its vici socket: {self.peer.log(self.label)[-400:]}")
        self.swan("--load-all", "--file", str(self.swanctl))

    def swan(self, *args: str, check: bool = True, timeout: float = 20.0) -> str:
        proc = self.peer.lab.run(
            self.node, ["swanctl", *args, "--uri", f"unix://{self.vici}"], check=check, timeout=timeout
        )
        return proc.stdout + proc.stderr

    def log(self) -> str:
        return self.peer.read(self.logfile)


class StrongSwan(Peer):
    """strongSwan initiator on a LAN client, strongSwan (or pvpn) responder on the server."""

    protocol = "ikev2-natt"
    needs: tuple[str, ...] = ("swanctl",)

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.client_charon = Charon(self, self.client, f"charon-{self.client}")
        self.server_charon = Charon(self, self.server, "charon-server")

    def start_server(self) -> None:
        self.lab.run(self.server, ["ip", "addr", "replace", f"{PROTECTED}/24", "dev", "lo"])
        self.server_charon.start(swanctl_server(self.server_addr))

    def start_client(self) -> None:
        self.client_charon.start(swanctl_client(self.server_addr, f"{self.client}@natpass.lab"))
        self.initiate()

    def initiate(self) -> None:
        """Ask the client's charon to bring the CHILD_SA up (swanctl blocks: run it in the background)."""
        self.spawn(self.client, ["swanctl", "--initiate", "--child", "net", "--timeout", str(int(self.timeout)),
                                 "--uri", f"unix://{self.client_charon.vici}"], f"initiate-{self.client}")

    def connected(self) -> bool:
        if "CHILD_SA net{" not in self.client_charon.log() and "established" not in self.log(
            f"initiate-{self.client}"
        ):
            return False
        return self.ping(self.client, PROTECTED)

    def probe(self, count: int, interval: float) -> TunnelProbe:
        return PingProbe(self, PROTECTED, count, interval)

    def reconnected(self) -> bool:
        """A second IKE_SA or CHILD_SA set up by the client (after DPD declared the peer dead)."""
        log = self.client_charon.log()
        return (len(re.findall(r"IKE_SA lab\[\d+\] established", log)) > 1
                or len(re.findall(r"CHILD_SA net\{\d+\} established", log)) > 1)

    def nat_t(self) -> dict[str, object]:
        """What IKE saw: NAT detected, the UDP ports used (4500 after NAT-T's port float)."""
        log = self.client_charon.log()
        return {
            "nat_detected": "local host is behind NAT" in log,
            "ports": sorted(set(re.findall(r" to [\d.]+\[(\d+)\]", log))),
        }

    def wait(self, t0: float) -> PeerResult:
        res = super().wait(t0)
        res.extra.update(self.nat_t())
        if res.connected:
            nat = "NAT detected, ESP in UDP 4500" if res.extra["nat_detected"] else "no NAT detected"
            res.detail = f"{nat}; {self.detail}" if self.detail else nat
        return res

    def failure_detail(self) -> str:
        lines = [x for x in self.client_charon.log().splitlines() if "[IKE]" in x or "[ENC]" in x]
        return "no CHILD_SA/ping; " + " | ".join(x.split("]", 1)[-1].strip() for x in lines[-3:])


class Pvpn(StrongSwan):
    """pvpn (PyPI, Python) as the IKEv2 responder, strongSwan as the initiator.

    pvpn answers IKEv2 with PSK ``-p`` and relays the tunnel's TCP/UDP to its own sockets; it
    defaults to a public DNS resolver, so it is always given ``-dns`` with a lab address.
    """

    protocol = "ikev2-pvpn"
    needs = ("swanctl", "pvpn")

    def start_server(self) -> None:
        self.lab.run(self.server, ["ip", "addr", "replace", f"{PROTECTED}/24", "dev", "lo"])
        pid = self.spawn(self.server, ["pvpn", "-p", PSK, "-dns", self.server_addr, "-v"], "server",
                         server=True)
        # pvpn is a Python program: on a loaded machine its start-up takes seconds, and an IKE
        # request sent before it listens is lost to strongSwan's long retransmission back-off.
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            self.check_alive(pid, "pvpn")
            out = self.lab.run(self.server, ["ss", "-Hlun", "sport", "=", ":500"], check=False).stdout
            if out.strip():
                return
            time.sleep(0.2)
        raise LabError("pvpn did not open UDP port 500 within 20 s: " + self.log("server")[-300:])

    def connected(self) -> bool:
        """CHILD_SA up, and a TCP SYN sent into the tunnel reached pvpn (it logs each relayed flow).

        pvpn's relay does not answer back through the tunnel in this lab, so the proof of ESP
        crossing the NAT is one-way here (client -> pvpn), unlike the strongSwan pair's ping.
        """
        log = self.client_charon.log()
        if "CHILD_SA net{" not in log or "established" not in log:
            return False
        self.lab.run(self.client, ["timeout", "1", "socat", "-u", "OPEN:/dev/null",
                                   f"TCP:{PROTECTED}:{ECHO_PORT},connect-timeout=1"], check=False, timeout=5)
        relayed = f"-> {PROTECTED}:{ECHO_PORT}" in self.log("server")
        self.detail = "CHILD_SA up; tunnelled TCP reached pvpn" if relayed else ""
        return relayed

    def start_client(self) -> None:
        # pvpn's own address pool is not a lab range: no virtual IP, the client keeps its own address.
        conf = swanctl_client(self.server_addr, f"{self.client}@natpass.lab", virtual_ip=False)
        self.client_charon.start(conf)
        self.initiate()
