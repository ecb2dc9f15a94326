"""tcpdump inside a lab namespace: record what really crossed a link (for tests and test data)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from natpass.lab.netns import LabError, Netns


class Capture:
    """``with Capture(lab, "srv", "eth0", "udp port 1701", path):`` records while the block runs."""

    def __init__(self, lab: Netns, node: str, iface: str, bpf: str, path: Path, snaplen: int = 0) -> None:
        self.lab, self.node, self.iface, self.bpf, self.path, self.snaplen = lab, node, iface, bpf, path, snaplen
        self.pid: int | None = None
        self.label = f"tcpdump-{node}-{iface}-{abs(hash(str(path))) % 10000}"

    def start(self) -> Capture:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        # --immediate-mode: without it packets wait in the ring buffer and are lost when we stop.
        argv = ["tcpdump", "-i", self.iface, "-U", "--immediate-mode", "-n", "-s", str(self.snaplen),
                "-w", str(self.path),
                *self.bpf.split()]
        self.pid = self.lab.spawn(self.node, argv, label=self.label)
        # tcpdump says "listening on" once the socket is open: only then can nothing be missed.
        self.lab.wait_for(lambda: "listening on" in self.lab.log(self.label), 5, interval=0.05)
        return self

    def stop(self) -> Path:
        if self.pid is not None:
            time.sleep(0.2)  # let the last packets be written (-U flushes per packet)
            self.lab.kill(self.pid, sig=2)  # SIGINT: tcpdump closes the file cleanly
            self.pid = None
        return self.path

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tshark_fields(path: Path, display_filter: str, fields: list[str]) -> list[list[str]]:
    """Rows of ``fields`` for each packet of ``path`` matching ``display_filter`` (tshark decodes)."""
    argv = ["tshark", "-n", "-r", str(path), "-Y", display_filter, "-T", "fields", "-E", "separator=\t"]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def count_packets(path: Path) -> int:
    """How many packets ``path`` holds (read with tcpdump, which the lab needs anyway); a capture
    that is missing or unreadable is an error, never 0."""
    proc = subprocess.run(["tcpdump", "-r", str(path), "-n", "-q"], capture_output=True, text=True,
                          check=False, timeout=60)
    if proc.returncode != 0:
        raise LabError(f"cannot read capture {path}: {proc.stderr.strip()[:300]}")
    return len([line for line in proc.stdout.splitlines() if line.strip()])
