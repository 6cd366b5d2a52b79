"""``skyroute cache calibrate``: the threshold that meets a stated false-hit bound.

Reads labelled pairs (JSON lines ``{"a": ..., "b": ..., "same": true}``),
scores them through the cache's own path (:mod:`skyroute.router.cache.calibrate`)
with the chosen embedder, and prints hit rate and false-hit rate per
threshold with a bar plot, then the threshold to set (``cache.similarityThreshold``
or a family's) for the bound, and what declaring the bound instead
(``cache.maxFalseHitRate``) gives: the threshold the router derives, within the
bound at 95% confidence, from these pairs and from the table shipped with the
embedder (:mod:`skyroute.router.cache.bounds`). Exit status 2 on a bad file, 1
when no threshold meets the bound.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from skyroute.router.cache import ResponseCache
from skyroute.router.cache.bounds import build_table, threshold_for
from skyroute.router.cache.calibrate import (
    PairsError,
    curve,
    load_pairs,
    pick,
    score_pairs,
    thresholds,
)
from skyroute.router.embed import load_embedder

_BAR = 30


def _bar(rate: float, mark: str) -> str:
    n = round(rate * _BAR)
    return mark * n + "·" * (_BAR - n)


def calibrate(pairs_path: str, max_false_hit_rate: float, embedder: str, as_json: bool) -> int:
    if not 0.0 <= max_false_hit_rate < 1.0:
        print("--max-false-hit-rate must be in [0, 1)", file=sys.stderr)
        return 2
    try:
        pairs = load_pairs(Path(pairs_path))
    except (PairsError, OSError, UnicodeDecodeError) as e:
        print(f"skyroute cache calibrate: {e}", file=sys.stderr)
        return 2
    cache = ResponseCache(embedder=load_embedder(embedder))
    floor = cache.embedder.min_threshold
    scores = score_pairs(pairs, cache)
    points = curve(pairs, scores, thresholds())
    best = pick(points, max_false_hit_rate, floor)
    same = sum(p.same for p in pairs)
    # Declaring the bound instead: the router's 95%-confident derivation, on these pairs
    # and on the embedder's shipped table.
    mine = build_table(
        cache.embedder.name,
        [s for p, s in zip(pairs, scores, strict=True) if p.same],
        [s for p, s in zip(pairs, scores, strict=True) if not p.same],
        thresholds(),
    )
    confident = threshold_for(mine, max_false_hit_rate, floor).threshold
    shipped = (
        threshold_for(cache.bound_table, max_false_hit_rate, floor).threshold
        if cache.bound_table is not None
        else None
    )
    if as_json:
        print(
            json.dumps(
                {
                    "embedder": cache.embedder.name,
                    "pairs": {"same": same, "different": len(pairs) - same},
                    "max_false_hit_rate": max_false_hit_rate,
                    "floor": floor,
                    "threshold": best.threshold if best else None,
                    "threshold_95": confident,
                    "shipped_table_threshold": shipped,
                    "curve": [
                        {"threshold": p.threshold, "hit_rate": p.hit_rate, "fhr": p.false_hit_rate}
                        for p in points
                    ],
                },
                indent=2,
            )
        )
        return 0 if best else 1
    print(
        f"{len(pairs)} pairs ({same} same meaning, {len(pairs) - same} different), "
        f"embedder {cache.embedder.name} (floor {floor:.2f})"
    )
    print(f"{'threshold':>9}  {'hits':>6}  {'false hits':>10}  hits # / false hits x")
    for i, p in enumerate(points):
        chosen = best is not None and p.threshold == best.threshold
        if i % 2 and not chosen:
            continue
        marker = " <- threshold" if chosen else ""
        print(
            f"{p.threshold:9.2f}  {p.hit_rate:6.1%}  {p.false_hit_rate:10.2%}  "
            f"{_bar(p.hit_rate, '#')} {_bar(p.false_hit_rate, 'x')}{marker}"
        )
    table_note = (
        f"{shipped:.2f} from the table shipped with {cache.embedder.name}"
        if shipped is not None
        else f"the default threshold (no table ships with {cache.embedder.name})"
    )
    print(
        f"declaring cache.maxFalseHitRate: {max_false_hit_rate:g} instead gives {table_note}; "
        f"on these pairs, within the bound at 95% confidence: {confident:.2f}"
    )
    if best is None:
        print(f"no threshold at or above {floor:.2f} keeps false hits <= {max_false_hit_rate:.2%}")
        return 1
    print(
        f"threshold {best.threshold:.2f}: {best.hit_rate:.1%} of same-meaning pairs hit, "
        f"{best.false_hit_rate:.2%} of different-meaning pairs served (bound "
        f"{max_false_hit_rate:.2%}); set cache.similarityThreshold: {best.threshold:.2f}"
    )
    return 0
