"""Shared fixtures: where the public captures are, and whether root-only lab tests may run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def shared_dir() -> Path:
    return Path(os.environ.get("NATPASS_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def captures() -> Path:
    """``../shared/captures``: read in place, never copied or edited."""
    path = shared_dir() / "captures"
    if not path.is_dir():
        if IN_CI:
            pytest.fail(f"{path} is missing in CI")
        pytest.skip(f"public captures not present at {path} (a user's own clone)")
    return path


def need_root() -> None:
    """Lab tests need root and network namespaces; in CI (root) they must never skip."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI must run as root")
        pytest.skip("needs root and network namespaces")


@pytest.fixture(scope="session")
def root() -> None:
    need_root()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the ``root`` fixture is a ``root`` test: ``-m "not root"`` leaves out
    every test that needs namespaces."""
    for item in items:
        if isinstance(item, pytest.Function) and "root" in item.fixturenames:
            item.add_marker(pytest.mark.root)
