"""The diagnose test captures recorded again from the real programs (root, namespaces): the fresh
recordings must be diagnosed as the committed ones are (tests/data/diagnose)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

DERIVE = Path(__file__).resolve().parents[1] / "diagnose" / "derive"
sys.path.insert(0, str(DERIVE))

from diagnose_expect import EXPECT  # noqa: E402
from diagnose_record_lab import record  # noqa: E402

from natpass.diagnose.run import diagnose  # noqa: E402

JOBS = [  # (recorder name, topology, stem of the committed pair, connects)
    ("plain", "cgnat", "plain-cgnat", True),
    ("openvpn-static", "basic", "openvpn-static-basic", True),
    ("openvpn-tls-crypt", "basic", "openvpn-tls-crypt-basic", True),
    ("ikev2-natt-blocked", "basic", "ikev2-natt-blocked-basic", False),
    ("ikev2-ipv6-blocked", "basic", "ikev2-ipv6-blocked-basic", False),
]


@pytest.mark.parametrize("name,topology,stem,ok", JOBS, ids=[j[2] for j in JOBS])
def test_rerecorded_real_programs_give_the_same_diagnosis(root: None, tmp_path: Path, name: str,
                                                           topology: str, stem: str, ok: bool) -> None:
    client, wan = record(name, topology, tmp_path, "kernel", None, ok)
    EXPECT[stem](diagnose(client), diagnose(wan))
