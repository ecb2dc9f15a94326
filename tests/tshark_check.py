"""Independent decoding of what natpass writes: tshark with every checksum check switched on."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

CHECKS = [
    "-o", "ip.check_checksum:TRUE",
    "-o", "tcp.check_checksum:TRUE",
    "-o", "udp.check_checksum:TRUE",
]


def tshark_available() -> bool:
    return shutil.which("tshark") is not None


def decode(pcap: Path | str, *extra: str) -> list[dict]:
    """Every frame of ``pcap`` as tshark's JSON (layers only)."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), *CHECKS, "-T", "json", *extra],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    return [frame["_source"]["layers"] for frame in json.loads(out or "[]")]


def bad_checksums(pcap: Path | str) -> list[str]:
    """Lines of tshark's expert info that complain about checksums or malformed packets."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), *CHECKS, "-z", "expert,warn", "-q"],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    flagged = []
    for line in out.splitlines():
        low = line.lower()
        if ("checksum" in low and ("bad" in low or "incorrect" in low)) or "malformed" in low:
            flagged.append(line.strip())
    # tshark prints a summary line per group; keep only lines that name a count or a problem.
    return [f for f in flagged if not f.startswith("=")]


def frame_count(pcap: Path | str) -> int:
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-T", "fields", "-e", "frame.number"],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    return len(out.split())
