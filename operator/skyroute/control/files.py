"""Atomic state files: the whole new text or the old file, never half of one.

The control plane keeps small state files (learned statistics, rollout progress)
that a restart reads back. Each is written to a temporary file beside it, flushed
to disk, then renamed over the old one, so a crash mid-write leaves the previous
version intact.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (raises :class:`OSError` on failure)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
