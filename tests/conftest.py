"""Fixtures shared by every suite (the process harness lives in harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import Proc


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Collects processes a test starts and stops them all afterwards."""
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop()
