"""Helpers for control tests that add one model to the AcmeShop example's first pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyroute.control.policy.compiler import compile_folder
from skyroute.control.policy.errors import PolicyError, Problem

ANCHOR = "  models:\n"


def add_first_model(folder: Path, block: str) -> Path:
    """Puts ``block`` (a YAML list item) first in the first pool ("cost"); its file."""
    pools = folder / "pools.yaml"
    text = pools.read_text()
    pools.write_text(text.replace(ANCHOR, ANCHOR + block, 1))
    return pools


def problems(folder: Path) -> list[Problem]:
    """The problems compiling ``folder`` reports (it must fail)."""
    with pytest.raises(PolicyError) as info:
        compile_folder(folder)
    return list(info.value.problems)
