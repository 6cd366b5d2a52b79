"""The cache evaluation set (bench/data/cache_eval): fresh, large, hard, apart from the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from cachekit import pairs

from skyroute.router.cache.calibrate import load_pairs

EVAL = Path(__file__).resolve().parents[2] / "bench" / "data" / "cache_eval"


def _rows() -> list[dict[str, object]]:
    return [json.loads(line) for line in (EVAL / "pairs.jsonl").read_text().splitlines()]


def test_pairs_file_is_what_the_seeds_give() -> None:
    run = subprocess.run(
        [sys.executable, str(EVAL / "expand.py"), "--check"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def test_set_is_large_with_every_kind_of_hard_negative_in_every_split() -> None:
    rows = _rows()
    assert len(load_pairs(EVAL / "pairs.jsonl")) == len(rows) >= 2000
    kinds = Counter((r["split"], r["kind"]) for r in rows if not r["same"])
    for split in ("tune", "held"):
        for kind in ("negation", "direction", "quantity", "entity", "wording"):
            assert kinds[(split, kind)] >= 50, (split, kind)
    assert len({r["domain"] for r in rows}) >= 6
    assert sum(bool(r["same"]) for r in rows) >= 600


def test_no_pair_is_both_labels_or_in_the_unit_test_set() -> None:
    rows = _rows()
    labels: dict[frozenset[str], set[object]] = {}
    for r in rows:
        labels.setdefault(frozenset((str(r["a"]), str(r["b"]))), set()).add(r["same"])
    assert all(len(v) == 1 for v in labels.values())
    unit = {
        frozenset(p) for name in ("same_meaning.tsv", "different_meaning.tsv") for p in pairs(name)
    }
    assert not unit & set(labels)
