"""``skyroute.control.files.write_atomic``: the new text, or the old file intact."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

from skyroute.control.files import write_atomic


def test_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, "one")
    write_atomic(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_write_keeps_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, "good")
    with mock.patch("os.fsync", side_effect=OSError("disk full")), pytest.raises(OSError):
        write_atomic(path, "half")
    assert path.read_text() == "good"
