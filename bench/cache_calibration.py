"""Write (or check) each embedder's calibration table from the evaluation set's tune split.

The table (``dataplane/skyroute/router/cache/calibration/<embedder>.json``,
read by :mod:`skyroute.router.cache.bounds`) holds, per threshold 0.50 to
1.00, how many tune-split pairs of ``bench/data/cache_eval`` the cache serves,
same-meaning and different-meaning, scored through its own lookup path
(:func:`skyroute.router.cache.calibrate.score_pairs`). A policy's
``maxFalseHitRate`` becomes a threshold through it; ``bench/cache_eval.py``
reports the held-out split at that threshold.

Usage, from the repository root::

    .venv/bin/python bench/cache_calibration.py [--check] [--embedder hashing]

``--check`` fails if a shipped table is not what the set gives (the cache
tests run it). Embedders whose extra is not installed are skipped with a
note (their bound falls back to the default threshold, and says so).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cache_eval import PAIRS, REPO, load

from skyroute.router.cache import ResponseCache
from skyroute.router.cache.bounds import TABLES, build_table
from skyroute.router.cache.calibrate import score_pairs, thresholds
from skyroute.router.embed import EMBEDDERS, load_embedder

SPLIT = "tune"


def table_text(embedder: str) -> tuple[Path, str]:
    pairs, rows = load()
    tune = [(p, r) for p, r in zip(pairs, rows, strict=True) if r["split"] == SPLIT]
    cache = ResponseCache(embedder=load_embedder(embedder))
    scores = score_pairs([p for p, _ in tune], cache)
    same = [s for (p, _), s in zip(tune, scores, strict=True) if p.same]
    diff = [s for (p, _), s in zip(tune, scores, strict=True) if not p.same]
    table = build_table(cache.embedder.name, same, diff, thresholds(0.5, 1.0, 0.01))
    source = f"{PAIRS.relative_to(REPO)} split {SPLIT}, by bench/cache_calibration.py"
    return TABLES / f"{cache.embedder.name}.json", table.to_json(source)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if a shipped table is stale")
    ap.add_argument("--embedder", action="append", help="only these embedders")
    args = ap.parse_args()
    stale = 0
    for name in args.embedder or list(EMBEDDERS):
        try:
            path, text = table_text(name)
        except (ImportError, RuntimeError) as e:  # an optional extra missing
            print(f"{name}: skipped ({e})")
            continue
        if args.check:
            fresh = path.is_file() and path.read_text(encoding="utf-8") == text
            stale += not fresh
            print(f"{path.name}: {'fresh' if fresh else 'STALE: run bench/cache_calibration.py'}")
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
