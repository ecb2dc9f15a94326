"""A client -- router -- server namespace topology for the live datapath tests and benchmark.

Addresses are documentation ranges only: the LAN is 192.168.1.0/24 with the router
at .1 and the client at .10; the WAN link is 203.0.113.0/24 with the router at .1 and the server at
.2 (on-link, so no gateway). The client's and server's veth ends have their transmit offloads off
(checksum, TSO, GSO) so that they behave like hosts on a wire: a packet socket on the router then
sees finished checksums and frames no larger than the MTU, as it would from a real NIC.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from natpass.lab.netns import PACKAGE_ROOT, STATE_ROOT, Netns
from natpass.lab.topology import natpass_argv

LAN_PREFIX = "192.168.1.0/24"
ROUTER_LAN = "192.168.1.1"
CLIENT = "192.168.1.10"
ROUTER_WAN = "203.0.113.1"
SERVER = "203.0.113.2"
LAN_IF = "lan0"
WAN_IF = "wan0"
NFT_KERNEL_NAT = f"""table ip labnat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{WAN_IF}" masquerade
  }}
}}
"""


def config_text(state_dir: str, admin_socket: str, extra: str = "") -> str:
    """A natpass.toml for the router of this topology."""
    return f"""[wan]
addresses = ["{ROUTER_WAN}"]
interface = "{WAN_IF}"

[lan]
prefixes = ["{LAN_PREFIX}"]
interface = "{LAN_IF}"
address = "{ROUTER_LAN}"

[router]
state_dir = "{state_dir}"
admin_socket = "{admin_socket}"
{extra}"""


@contextlib.contextmanager
def exclusive(prefix: str, timeout: float = 600.0) -> Iterator[None]:
    """Hold a lock for the namespace prefix ``prefix`` (flock, released even if the holder dies).

    Two test runs on one machine use the same namespace names; without it one run's cleanup
    deletes the other's namespaces mid-test. A second run waits here instead.
    """
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    fd = os.open(STATE_ROOT / f".{prefix}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"namespace prefix {prefix} busy for {timeout:.0f} s") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # releases the lock


def _pythonpath() -> str:
    """This package first, for a ``runner`` that imports natpass by module name."""
    extra = os.environ.get("PYTHONPATH")
    return f"{PACKAGE_ROOT}:{extra}" if extra else str(PACKAGE_ROOT)


class Topology:
    """``<prefix>-cli<tag>`` -- ``<prefix>-rtr<tag>`` -- ``<prefix>-srv<tag>``."""

    def __init__(self, lab: Netns, tag: str = "") -> None:
        self.lab = lab
        self.cli = f"cli{tag}"
        self.rtr = f"rtr{tag}"
        self.srv = f"srv{tag}"

    def build(self, kernel_nat: bool = False, router_gro: bool = False) -> Topology:
        """Create the namespaces and links; ``kernel_nat``: the router is the kernel's masquerade;
        ``router_gro``: GRO on the router's two interfaces, as a NIC driver has it (veth has it
        off unless asked)."""
        lab = self.lab
        for node in (self.cli, self.rtr, self.srv):
            lab.add(node)
        lab.veth(self.cli, "eth0", self.rtr, LAN_IF)
        lab.veth(self.rtr, WAN_IF, self.srv, "eth0")
        lab.addr(self.cli, "eth0", f"{CLIENT}/24")
        lab.addr(self.rtr, LAN_IF, f"{ROUTER_LAN}/24")
        lab.addr(self.rtr, WAN_IF, f"{ROUTER_WAN}/24")
        lab.addr(self.srv, "eth0", f"{SERVER}/24")
        lab.route(self.cli, "default", via=ROUTER_LAN)
        lab.offloads_off(self.cli, "eth0", ("tx-checksum", "tso", "gso"))
        lab.offloads_off(self.srv, "eth0", ("tx-checksum", "tso", "gso"))
        if router_gro:
            for ifname in (LAN_IF, WAN_IF):
                lab.set_offloads(self.rtr, ifname, ("gro",), True)
        if kernel_nat:
            lab.sysctl(self.rtr, "net.ipv4.ip_forward", 1)
            lab.nft(self.rtr, NFT_KERNEL_NAT)
        return self

    def start_natpass(self, config: Path, label: str = "natpass", runner: list[str] | None = None,
                      env: dict[str, str] | None = None) -> int:
        """Start ``natpass run`` (or ``runner``) in the router namespace; returns its PID once the
        nft table is in place (it is then ready to forward)."""
        argv = runner or natpass_argv("run", "--config", str(config), "--log-level", "debug")
        # Start from an empty log whether the lab appends to it or starts it afresh.
        with contextlib.suppress(FileNotFoundError):
            (self.lab.state_dir / "logs" / f"{label}.log").unlink()
        pid = self.lab.spawn(self.rtr, argv, label=label, env={"PYTHONPATH": _pythonpath(), **(env or {})})
        ok = self.lab.wait_for(lambda: not self.lab.alive(pid) or self.natpass_ready(label), timeout=15)
        if not ok or not self.lab.alive(pid):
            self.lab.kill(pid)  # never leave a half-started router behind
            raise RuntimeError(f"natpass did not start:\n{self.lab.log(label)}")
        return pid

    def natpass_ready(self, label: str = "natpass") -> bool:
        return "natpass running" in self.lab.log(label)

    def nft_table_present(self, table: str = "natpass") -> bool:
        proc = self.lab.run(self.rtr, ["nft", "list", "table", "inet", table], check=False)
        return proc.returncode == 0

    def sysctl(self, key: str) -> str:
        return self.lab.run(self.rtr, ["sysctl", "-n", key]).stdout.strip()

    def signal(self, pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def wait_exit(self, pid: int, timeout: float = 10.0) -> bool:
        return self.lab.wait_for(lambda: not self.lab.alive(pid), timeout=timeout, interval=0.05)

    def capture(self, node: str, ifname: str, path: Path, bpf: str = "") -> subprocess.Popen[bytes]:
        """tcpdump writing ``path`` inside ``node`` until :meth:`stop_capture` (bounded by -c)."""
        # --immediate-mode: libpcap's TPACKET_V3 block timer would otherwise keep the last packets
        # from tcpdump until after it has been told to stop.
        argv = self.lab.argv(node, ["tcpdump", "-i", ifname, "--immediate-mode", "-U", "-n", "-c", "5000",
                                    "-w", str(path), *([bpf] if bpf else [])])
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not path.exists():
            time.sleep(0.05)
        time.sleep(0.3)
        return proc

    @staticmethod
    def stop_capture(proc: subprocess.Popen[bytes]) -> None:
        time.sleep(0.3)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


__all__ = ["Topology", "config_text", "exclusive"]
