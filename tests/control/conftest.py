"""Shared fixtures for the control-plane tests: copies of the AcmeShop example."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "acmeshop"


@pytest.fixture
def acmeshop(tmp_path: Path) -> Path:
    """A private copy of the example's policy files (pools.yaml, policy.yaml)."""
    folder = tmp_path / "acmeshop"
    folder.mkdir()
    for name in ("pools.yaml", "policy.yaml"):
        shutil.copy(EXAMPLE / name, folder / name)
    return folder
