"""A short fixed-seed slice of the fuzz targets (bench/fuzz.py runs them for hours): the seed
inputs and a few hundred mutations of them per target, with every invariant of
fuzz_targets.Checker checked on each emitted packet."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import fuzz_targets as F
import pytest

REPO = Path(__file__).resolve().parents[2]
PARSERS = ["ipv4", "tcp", "udp", "icmp", "gre", "esp", "ike", "l2tp", "pptp", "checksum"]
STATEFUL = ["pptp-helper", "ipsec-helper", "l2tp-helper", "engine"]


def mutations(name: str, n: int, seed: int) -> list[bytes]:
    rng = random.Random(f"{name}/{seed}")
    pool = F.seeds(name)
    out = list(pool)
    while len(out) < n:
        out.append(F.mutate(rng, rng.choice(pool)))
    return out


@pytest.mark.parametrize("name", PARSERS)
def test_parser_fuzz_slice_raises_only_packet_error(name):
    for data in mutations(name, 3000, 1):
        F.TARGETS[name](data)


@pytest.mark.parametrize("name", STATEFUL)
def test_stateful_fuzz_slice_keeps_every_invariant(name):
    for data in mutations(name, 60, 1):
        F.TARGETS[name](data)


def test_checker_catches_a_wrong_checksum_and_a_packet_to_an_unmapped_host():
    ck = F.new_engine()
    pkt = F.U.build_udp("192.168.1.10", "198.51.100.7", 40000, 53, b"q")
    out = ck.process(pkt, True, 0.0)
    assert out.code == F.V.TO_WAN
    bad = bytearray(pkt)
    bad[26] ^= 0xFF  # the UDP checksum
    with pytest.raises(F.Violation):
        ck.check_packet(bad, False, bytes(pkt), True, set(), False)
    stray = F.U.build_udp("198.51.100.7", "192.168.1.99", 53, 40000, b"a")
    with pytest.raises(F.Violation):
        ck.check_packet(stray, True, bytes(stray), True, ck.known_lan_hosts(), False)
    assert not F.dpkt_judges_ok(bad)


def test_fuzz_runner_reports_inputs_and_failures(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "fuzz.py"), "--minutes", "0.05", "--target", "esp",
                           "--seed", "3", "--out", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    res = json.loads(proc.stdout)
    assert res["targets"][0]["inputs"] > 100 and res["failures"] == 0, proc.stderr[-2000:]
    assert (tmp_path / "corpus" / "esp").is_dir()
