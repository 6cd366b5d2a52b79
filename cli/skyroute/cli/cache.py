"""``skyroute cache calibrate`` and ``replay``: a threshold for a bound; the cache on traffic.

``replay`` (:func:`replay_traffic`) runs logged requests through the cache's
own path (:mod:`skyroute.router.cache.replay`) and prints, per intent, what
it would have served: hits (exact, semantic), refusals, and where rows carry
labels, the hits that served another question's answer.

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

import asyncio
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
from skyroute.router.cache.replay import TrafficError, load_traffic, replay
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


def replay_traffic(
    traffic_path: str,
    threshold: float | None,
    embedder: str,
    intents: str,
    as_json: bool,
) -> int:
    """``skyroute cache replay --traffic FILE``: what the cache would have served, per intent.

    Exit status 2 on a bad file or option, else 0.
    """
    try:
        rows = load_traffic(Path(traffic_path))
    except (TrafficError, OSError, UnicodeDecodeError) as e:
        print(f"skyroute cache replay: {e}", file=sys.stderr)
        return 2
    cache = ResponseCache(embedder=load_embedder(embedder))
    t = 0.9 if threshold is None else threshold
    if not 0.0 < t <= 1.0:
        print("skyroute cache replay: --threshold must be in (0, 1]", file=sys.stderr)
        return 2
    patterns = tuple(p.strip() for p in intents.split(",") if p.strip()) or ("*",)
    result = asyncio.run(replay(rows, cache, t, patterns))
    floor = cache.embedder.min_threshold
    used = max(t, floor)
    total = result.total()
    if as_json:
        print(
            json.dumps(
                {
                    "embedder": cache.embedder.name,
                    "threshold": used,
                    "requests": len(rows),
                    "intents": {k: v.as_dict() for k, v in sorted(result.per_intent.items())},
                    "total": total.as_dict(),
                    "refusals": result.refusals,
                },
                indent=2,
            )
        )
        return 0
    print(
        f"{len(rows)} requests, embedder {cache.embedder.name}, threshold {used:.2f}"
        + (f" (the embedder's floor; asked {t:.2f})" if used > t else "")
    )
    head = (
        f"{'intent':<24} {'requests':>8} {'off':>5} {'refused':>7} {'exact':>6} "
        f"{'semantic':>8} {'hit rate':>8} {'labelled':>8} {'false':>6} {'false %':>8}"
    )
    print(head)
    for name, r in [*sorted(result.per_intent.items()), ("(all)", total)]:
        d = r.as_dict()
        share = "-" if d["false_hit_share"] is None else f"{d['false_hit_share']:.1%}"
        print(
            f"{name[:24]:<24} {r.requests:>8} {r.off:>5} {r.refused:>7} {r.exact_hits:>6} "
            f"{r.semantic_hits:>8} {d['hit_rate']:>8.1%} {r.labelled_hits:>8} "
            f"{r.false_hits:>6} {share:>8}"
        )
    if result.refusals:
        why = ", ".join(f"{k} {v}" for k, v in sorted(result.refusals.items()))
        print(f"refused by the guard: {why}")
    print(
        "false %: of the hits where both requests carry a label, the share whose labels "
        "differ (another question's answer served)"
    )
    return 0
