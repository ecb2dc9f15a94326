"""Raw ESP (IP protocol 50, RFC 4303) crafted with scapy's SecurityAssociation.

No real program here sends raw ESP: the kernel has no ESP (``ip xfrm state add ... proto esp``
fails) and strongSwan's kernel-libipsec only does ESP in UDP (REAL-PEERS.md). So both ends are this
module: real ESP encryption (AES-CBC, HMAC-SHA2-256-128) on crafted packets, sent and received on
raw IP sockets, which is what an IPsec gateway's ESP looks like to a NAT in between. Each client
has its own SA pair (its own SPIs and keys); the responder on the server decrypts each ESP packet
with the SA of its SPI and answers with an ESP packet under the client's inbound SPI.
Connected means the client decrypted a reply carrying its own nonce.

``python -m natpass.lab.peers.esp server SA_DIR`` / ``client SA_FILE SERVER`` are the two ends.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

from natpass.lab.netns import module_argv
from natpass.lab.peers.base import Peer, TunnelProbe

IPPROTO_ESP = 50  # RFC 4303
SPI_OUT_BASE = 0x4E500000  # client -> server SPIs (one per client)
SPI_IN_BASE = 0x4E510000  # server -> client SPIs
INNER_PORT = 4242


def _sa(spi: int, keys: dict[str, str]) -> Any:
    """A scapy ESP security association (scapy is untyped)."""
    from scapy.layers.ipsec import ESP, SecurityAssociation

    make: Any = SecurityAssociation
    return make(
        ESP, spi=spi, crypt_algo="AES-CBC", crypt_key=bytes.fromhex(keys["crypt"]),
        auth_algo="SHA2-256-128", auth_key=bytes.fromhex(keys["auth"]),
    )


def new_sa_file(path: Path, index: int) -> dict[str, object]:
    spec = {
        "spi_out": SPI_OUT_BASE + index, "spi_in": SPI_IN_BASE + index,
        "out": {"crypt": secrets.token_hex(32), "auth": secrets.token_hex(32)},
        "in": {"crypt": secrets.token_hex(32), "auth": secrets.token_hex(32)},
    }
    path.write_text(json.dumps(spec))
    return spec


def serve(sa_dir: Path) -> None:
    """Responder: decrypt each ESP packet by its SPI, answer 'pong' + the nonce under the peer's SA."""
    from scapy.layers.inet import IP, UDP

    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ESP)
    sas: dict[int, tuple[object, object]] = {}
    print("esp responder ready", flush=True)
    while True:
        data, (src, _) = sock.recvfrom(65535)
        pkt = IP(data)
        if len(data) < pkt.ihl * 4 + 8:
            continue
        spi = int.from_bytes(data[pkt.ihl * 4 : pkt.ihl * 4 + 4], "big")
        inner = None
        for attempt in range(2):
            if spi not in sas or attempt:
                # (re)read the SA files: a client writes its SA just before it starts
                for f in sa_dir.glob("*.json"):
                    spec = json.loads(f.read_text())
                    sas[spec["spi_out"]] = (_sa(spec["spi_out"], spec["out"]), _sa(spec["spi_in"], spec["in"]))
            if spi not in sas:
                print(f"from {src}: unknown SPI 0x{spi:08x}", flush=True)
                break
            rx, tx = sas[spi]
            try:
                inner = rx.decrypt(pkt)  # type: ignore[attr-defined]
                break
            except Exception as exc:  # scapy raises plain exceptions on bad ICV/padding
                print(f"from {src}: SPI 0x{spi:08x} failed to decrypt: {exc}", flush=True)
        if inner is None:
            continue
        payload = bytes(inner[UDP].payload) if UDP in inner else b""
        print(f"from {src}: SPI 0x{spi:08x} seq {pkt.seq if hasattr(pkt, 'seq') else '?'} {payload!r}", flush=True)
        reply = IP(src=pkt.dst, dst=src, proto=17) / UDP(sport=INNER_PORT, dport=INNER_PORT) / (b"pong " + payload)
        enc = tx.encrypt(reply)  # type: ignore[attr-defined]
        sock.sendto(bytes(enc.payload), (src, 0))


def client(sa_file: Path, server: str, count: int, interval: float) -> int:
    """Send ESP 'ping NONCE n' ``count`` times; print each decrypted reply; exit 0 when any came back.

    It keeps going after the first reply so that a second host's session can be checked not to
    disturb this one's (replies keep arriving under this host's own inbound SPI)."""
    from scapy.layers.inet import IP, UDP

    spec = json.loads(sa_file.read_text())
    tx, rx = _sa(spec["spi_out"], spec["out"]), _sa(spec["spi_in"], spec["in"])
    nonce = secrets.token_hex(8).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ESP)
    sock.settimeout(interval)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((server, 9))
    local = probe.getsockname()[0]
    probe.close()
    got = 0
    for n in range(count):
        inner = IP(src=local, dst=server, proto=17) / UDP(sport=INNER_PORT, dport=INNER_PORT) / (
            b"ping " + nonce + b" %d" % n)
        t = time.monotonic()
        sock.sendto(bytes(tx.encrypt(inner).payload), (server, 0))
        deadline = t + interval
        while time.monotonic() < deadline:
            try:
                data, (src, _) = sock.recvfrom(65535)
            except TimeoutError:
                break
            pkt = IP(data)
            spi = int.from_bytes(data[pkt.ihl * 4 : pkt.ihl * 4 + 4], "big")
            if spi != spec["spi_in"]:
                continue
            try:
                dec = rx.decrypt(pkt)
            except Exception as exc:
                print(f"reply from {src} failed to decrypt: {exc}", flush=True)
                continue
            body = bytes(dec[UDP].payload) if UDP in dec else b""
            if nonce in body:
                got += 1
                # the number the reply carries: a late reply is counted for its own ping
                tail = body.rsplit(b" ", 1)[-1]
                m = int(tail) if tail.isdigit() else n
                print(f"reply {m} from {src} spi 0x{spi:08x} in {time.monotonic() - t:.3f}s at {time.time():.3f}: {body!r}",
                      flush=True)
                if m == n:
                    break
        time.sleep(max(0.0, deadline - time.monotonic()))
    return 0 if got else 1


class RawEsp(Peer):
    """Raw ESP through the NAT (crafted with scapy: no real stack here sends raw ESP)."""

    protocol = "esp"

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.sa_dir = self.lab.path("peers", "esp-server", "sa", ".keep").parent
        self.index = int(self.client.lstrip("c") or 1)

    def missing(self) -> list[str]:
        try:
            import scapy.layers.ipsec  # noqa: F401
        except ImportError:
            return ["python3-scapy (pip install scapy)"]
        return []

    def start_server(self) -> None:
        for stale in self.sa_dir.glob("*.json"):
            stale.unlink()
        self.spawn(self.server, module_argv("natpass.lab.peers.esp", "server", str(self.sa_dir)),
                   "server", server=True)
        self.lab.wait_for(lambda: "esp responder ready" in self.log("server"), 10)

    def start_client(self) -> None:
        sa_file = self.sa_dir / f"{self.client}.json"
        new_sa_file(sa_file, self.index)
        count = max(1, int(self.timeout))
        self.spawn(self.client, module_argv("natpass.lab.peers.esp", "client", str(sa_file),
                                            self.server_addr, str(count), "1.0"),
                   f"client-{self.client}")

    def connected(self) -> bool:
        log = self.log(f"client-{self.client}")
        replies = [x for x in log.splitlines() if x.startswith("reply ")]
        if replies:
            self.detail = replies[0].split(" at ")[0]
            return True
        return False

    def reply_times(self) -> list[float]:
        """Wall-clock times of the decrypted replies this client received."""
        return [float(x.split(" at ")[1].split(":")[0]) for x in self.log(f"client-{self.client}").splitlines()
                if x.startswith("reply ") and " at " in x]

    def probe(self, count: int, interval: float) -> TunnelProbe:
        return EspProbe(self, count, interval)

    def failure_detail(self) -> str:
        srv = [x for x in self.log("server").splitlines() if f"0x{SPI_OUT_BASE + self.index:08x}" in x]
        if srv:
            return f"ESP reached the server ({len(srv)} packets) but no reply came back"
        return "no ESP reached the server"


class EspProbe(TunnelProbe):
    """A second sender under the client's SA: ``count`` numbered ESP pings ``interval`` apart."""

    ANSWER = re.compile(r"^reply (\d+) .* at (\d+\.\d+):")

    def __init__(self, peer: RawEsp, count: int, interval: float) -> None:
        super().__init__(peer, count, interval)
        self.esp = peer
        self.label = f"probe-{peer.client}"

    def start(self) -> None:
        sa_file = self.esp.sa_dir / f"{self.esp.client}.json"
        self.pid = self.esp.spawn(self.esp.client, module_argv(
            "natpass.lab.peers.esp", "client", str(sa_file), self.esp.server_addr, str(self.count),
            f"{self.interval:.3f}"), self.label)

    def answers(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for line in self.esp.log(self.label).splitlines():
            m = self.ANSWER.match(line)
            if m:
                out.setdefault(int(m.group(1)), float(m.group(2)))
        return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["server"] and len(argv) == 2:
        serve(Path(argv[1]))
        return 0
    if argv[:1] == ["client"] and len(argv) >= 3:
        count = int(argv[3]) if len(argv) > 3 else 10
        interval = float(argv[4]) if len(argv) > 4 else 1.0
        return client(Path(argv[1]), argv[2], count, interval)
    print("usage: python -m natpass.lab.peers.esp server SA_DIR | client SA_FILE SERVER [COUNT [INTERVAL]]",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.environ.setdefault("SCAPY_USE_LIBPCAP", "no")
    sys.exit(main(sys.argv[1:]))
