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


# The layers natpass writes or rewrites (headers, Call IDs, SPIs, tunnel IDs). tshark also guesses
# applications from port numbers, and a translated port can land on one of them (Elasticsearch
# on UDP 54328, say): a payload natpass never touched then shows as "Malformed".
WRITTEN = {"ip", "ipv4", "tcp", "udp", "icmp", "gre", "pptp", "ppp", "esp", "ah", "isakmp", "l2tp"}


def in_natpass_layers(flagged: list[str]) -> list[str]:
    """The lines of :func:`bad_checksums` about a layer natpass writes (every bad checksum is)."""
    out = []
    for line in flagged:
        fields = [f for f in line.split("  ") if f.strip()]
        group, proto = (fields[1].strip(), fields[2].strip()) if len(fields) >= 4 else ("", "")
        if group.lower() != "malformed" or proto.lower() in WRITTEN:
            out.append(line)
    return out


def frame_count(pcap: Path | str) -> int:
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-T", "fields", "-e", "frame.number"],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    return len(out.split())
