"""The cache on questions it was never tuned on: hits and false hits on the evaluation set.

The set (``bench/data/cache_eval``: 2,500 hand-written pairs over six
domains with hard negatives: negation, direction, quantities, entity swaps,
near-identical wording; see ``expand.py`` there) is kept apart from the
cache's unit-test set (``tests/cache/data``). Every pair is scored through
the cache's own lookup path (:func:`skyroute.router.cache.calibrate.score_pairs`:
guard, exact layer, meaning signature, embedding cosine) and counted as
served at the threshold a policy gets by default (the ``RoutingPolicy``
default, floored for the embedder, for a ``faq`` intent).

Reported: hit rate (share of same-meaning pairs served) and false-hit rate
(share of different-meaning pairs served) overall, per split, per kind of
negative and per domain, against the issue's bar (hits >= 60%, false hits
<= 1%), and the curve over thresholds. Then, for a few declared bounds
(``maxFalseHitRate``), the threshold the cache derives from its embedder's
calibration table (built on the tune split: ``bench/cache_calibration.py``)
and the rates on the held-out split at it.

Usage, from the repository root::

    .venv/bin/python bench/cache_eval.py [--embedder hashing]

Writes ``bench-out/cache_eval.json`` and prints tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from skyroute.control.policy.model import CacheSpec
from skyroute.router.cache import ResponseCache
from skyroute.router.cache.calibrate import Pair, curve, load_pairs, score_pairs, thresholds
from skyroute.router.embed import load_embedder
from skyroute.router.table import CacheSettings

REPO = Path(__file__).resolve().parents[1]
PAIRS = REPO / "bench" / "data" / "cache_eval" / "pairs.jsonl"
OUT = REPO / "bench-out" / "cache_eval.json"
BAR_HITS, BAR_FALSE_HITS = 0.60, 0.01
BOUNDS = (0.05, 0.02, 0.01, 0.005)
INTENT = "faq.eval"


def load() -> tuple[list[Pair], list[dict[str, Any]]]:
    """The pairs (as calibration reads them) and their labels (kind, domain, split)."""
    rows = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines()]
    return load_pairs(PAIRS), rows


def default_settings(bound: float | None = None) -> CacheSettings:
    """The settings a policy gets saying only ``enabled``, its intents (and ``bound``)."""
    spec = CacheSpec(enabled=True, intents=[INTENT], max_false_hit_rate=bound)
    threshold = spec.similarity_threshold if bound is None else 0.0  # as the compiler sends
    return CacheSettings(
        True, frozenset({INTENT}), threshold, spec.ttl_seconds, spec.max_entries, (), bound
    )


def rates(rows: list[dict[str, Any]], scores: list[float], t: float) -> dict[str, Any]:
    same = [s for r, s in zip(rows, scores, strict=True) if r["same"]]
    diff = [s for r, s in zip(rows, scores, strict=True) if not r["same"]]
    return {
        "same_pairs": len(same),
        "different_pairs": len(diff),
        "hit_rate": sum(s >= t for s in same) / len(same) if same else None,
        "false_hit_rate": sum(s >= t for s in diff) / len(diff) if diff else None,
    }


def evaluate(embedder: str) -> dict[str, Any]:
    pairs, rows = load()
    cache = ResponseCache(embedder=load_embedder(embedder))
    rule = cache.rule(default_settings(), INTENT)
    scores = score_pairs(pairs, cache)
    t = rule.threshold
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[f"split {r['split']}"].append(i)
        groups[f"domain {r['domain']}"].append(i)
        if not r["same"]:
            groups[f"negatives: {r['kind']}"].append(i)
    overall = rates(rows, scores, t)
    return {
        "pairs_file": str(PAIRS.relative_to(REPO)),
        "embedder": cache.embedder.name,
        "threshold": t,
        "threshold_source": rule.source,
        "overall": overall,
        "meets_bar": (
            overall["hit_rate"] >= BAR_HITS and overall["false_hit_rate"] <= BAR_FALSE_HITS
        ),
        "never_served_same": sum(
            s == float("-inf") for r, s in zip(rows, scores, strict=True) if r["same"]
        ),
        "groups": {
            name: rates([rows[i] for i in idx], [scores[i] for i in idx], t)
            for name, idx in sorted(groups.items())
        },
        "bounds": [
            {
                "max_false_hit_rate": bound,
                "threshold": (r := cache.rule(default_settings(bound), INTENT)).threshold,
                "source": r.source,
                "held": rates(
                    [rows[i] for i in groups["split held"]],
                    [scores[i] for i in groups["split held"]],
                    r.threshold,
                ),
            }
            for bound in BOUNDS
        ],
        "curve": [
            {"threshold": p.threshold, "hit_rate": p.hit_rate, "false_hit_rate": p.false_hit_rate}
            for p in curve(pairs, scores, thresholds(0.5, 1.0, 0.05))
        ],
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def show(console: Console, r: dict[str, Any]) -> None:
    o = r["overall"]
    t = Table(
        title=f"Cache evaluation set ({r['pairs_file']}), default settings: "
        f"{r['embedder']}, threshold {r['threshold']:.2f}"
    )
    for col in ("pairs", "same", "different", "hit rate", "false-hit rate"):
        t.add_column(col)
    t.add_row(
        "all",
        str(o["same_pairs"]),
        str(o["different_pairs"]),
        _pct(o["hit_rate"]),
        _pct(o["false_hit_rate"]),
    )
    for name, g in r["groups"].items():
        t.add_row(
            name,
            str(g["same_pairs"]),
            str(g["different_pairs"]),
            _pct(g["hit_rate"]),
            _pct(g["false_hit_rate"]),
        )
    console.print(t)
    verdict = "meets" if r["meets_bar"] else "MISSES"
    console.print(
        f"{verdict} the bar (hits >= {BAR_HITS:.0%}, false hits <= {BAR_FALSE_HITS:.0%}); "
        f"{r['never_served_same']} same-meaning pairs are never served "
        "(refused by the meaning signature)"
    )
    t = Table(title="Declared bound (maxFalseHitRate) -> threshold (tune table), held-out split")
    for col in ("maxFalseHitRate", "threshold", "hit rate", "false-hit rate", "within bound"):
        t.add_column(col)
    for b in r["bounds"]:
        h = b["held"]
        ok = h["false_hit_rate"] <= b["max_false_hit_rate"]
        t.add_row(
            f"{b['max_false_hit_rate']:g}",
            f"{b['threshold']:.2f}",
            _pct(h["hit_rate"]),
            _pct(h["false_hit_rate"]),
            "yes" if ok else "NO",
        )
    console.print(t)
    t = Table(title="Hit and false-hit rate against threshold (same set, same path)")
    for col in ("threshold", "hit rate", "false-hit rate"):
        t.add_column(col)
    for p in r["curve"]:
        t.add_row(f"{p['threshold']:.2f}", _pct(p["hit_rate"]), _pct(p["false_hit_rate"]))
    console.print(t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedder", default="", help="cache embedder name (default: the default)")
    args = ap.parse_args()
    report = evaluate(args.embedder)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))
    show(Console(), report)
    print(f"written {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
