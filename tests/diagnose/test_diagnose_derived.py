"""Failure captures derived from the public ones: each finding code fires on a broken run and not
on the capture it was derived from."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "derive"))
from diagnose_derive import RECIPES, derive  # noqa: E402

from natpass.diagnose.run import diagnose  # noqa: E402

# recipe -> the code it must produce (the unmodified source capture must not produce it)
CODE = {
    "gre-blocked": "gre-blocked",
    "pptp-control-blocked": "pptp-control-blocked",
    "ike-no-response": "ike-no-response",
    "ikev2-no-response": "ike-no-response",
    "natt-blocked": "natt-blocked",
    "natt-blocked-ndpi": "natt-blocked",
    "esp-blocked": "esp-blocked",
    "ah-through-nat": "ah-through-nat",
    "cgnat": "cgnat",
    "cgnat-ike": "cgnat",
    "double-nat": "double-nat",
    "wireguard-no-response": "wireguard-no-response",
    "openvpn-no-response": "openvpn-no-response",
}
WINDOWS = {"gre-blocked": 619, "pptp-control-blocked": 800, "ike-no-response": 809,
           "natt-blocked": 809, "esp-blocked": 809}


def test_every_recipe_has_an_expected_code() -> None:
    assert set(CODE) == set(RECIPES)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_derived_failure_is_diagnosed(captures: Path, tmp_path: Path, recipe: str) -> None:
    code = CODE[recipe]
    diag = diagnose(derive(recipe, captures, tmp_path))
    hits = [f for f in diag.findings if f.code == code]
    assert hits, f"{recipe}: {sorted(diag.codes())}"
    assert all(f.evidence for f in hits)
    if code in WINDOWS:
        assert {f.windows_error for f in hits} == {WINDOWS[code]}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_source_capture_does_not_give_the_derived_finding(captures: Path, recipe: str) -> None:
    source = RECIPES[recipe][0]
    assert CODE[recipe] not in diagnose(captures / source).codes()


def test_gre_blocked_marks_pptp_failed_at_gre_in(captures: Path, tmp_path: Path) -> None:
    diag = diagnose(derive("gre-blocked", captures, tmp_path))
    (pptp,) = diag.protocols
    assert pptp.status == "failed" and pptp.stopped_at == "gre-in"
    assert pptp.client.startswith("172.16.30.107")


def test_esp_blocked_keeps_ike_established(captures: Path, tmp_path: Path) -> None:
    diag = diagnose(derive("esp-blocked", captures, tmp_path))
    status = {p.name: p.status for p in diag.protocols}
    assert status == {"ikev1": "established", "esp": "failed"}


@pytest.mark.parametrize("recipe", ["ah-through-nat", "cgnat", "cgnat-ike", "double-nat"])
def test_rewritten_captures_keep_correct_checksums(captures: Path, tmp_path: Path, recipe: str) -> None:
    """Address rewriting fixes the IP/UDP/TCP checksums: tshark flags no more than in the source."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import shutil

    from tshark_check import bad_checksums

    if shutil.which("tshark") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tshark must be installed in CI")
        pytest.skip("tshark not installed")
    derived = derive(recipe, captures, tmp_path)
    assert len(bad_checksums(derived)) <= len(bad_checksums(captures / RECIPES[recipe][0]))
