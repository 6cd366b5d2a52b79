"""A declared error bound instead of a magic threshold: each embedder's calibration table.

A policy may state the false-hit rate it accepts per cache rule or intent
family (``maxFalseHitRate: 0.01``: at most 1% of different-meaning questions
served the other's answer) instead of a similarity threshold. The cache
turns the bound into a threshold with a table shipped with each embedder
(``calibration/<embedder name>.json``): for thresholds 0.50 to 1.00, how many
of the evaluation set's tune-split pairs (``bench/data/cache_eval``) were
served, same-meaning and different-meaning, through the cache's own lookup
path. ``bench/cache_calibration.py`` writes the tables;
``tests/cache/test_cache_bounds.py`` fails when one is stale.

:func:`threshold_for` picks the lowest threshold whose false-hit rate is
within the bound *with 95% confidence* (the one-sided Wilson upper bound on
the measured rate, so a few hundred negatives cannot promise 0.1%), never
below the embedder's floor; if no threshold qualifies, 1.0 (in effect exact
repeats only). An explicit threshold in the policy wins over a bound (see
:mod:`.rules`); an embedder without a table keeps the default threshold and
says so.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger("skyroute.router.cache")

TABLES = Path(__file__).resolve().parent / "calibration"
MAX_TABLE_BYTES = 64 * 1024
_Z = 1.6449  # one-sided 95%


@dataclass(slots=True, frozen=True)
class TablePoint:
    threshold: float
    hits: int  # same-meaning pairs served at this threshold
    false_hits: int  # different-meaning pairs served at this threshold


@dataclass(slots=True, frozen=True)
class BoundTable:
    """One embedder's measured hits and false hits per threshold (hashable: memoized rules)."""

    embedder: str
    same_pairs: int
    different_pairs: int
    points: tuple[TablePoint, ...]

    def to_json(self, source: str) -> str:
        """The shipped file's text: a header, then one ``[threshold, hits, false hits]`` a line."""
        head = {
            "embedder": self.embedder,
            "source": source,
            "same_pairs": self.same_pairs,
            "different_pairs": self.different_pairs,
        }
        rows = ",\n".join(f"  [{p.threshold}, {p.hits}, {p.false_hits}]" for p in self.points)
        return json.dumps(head, indent=1)[:-2] + ',\n "points": [\n' + rows + "\n ]\n}\n"


def build_table(
    embedder: str, same: list[float], different: list[float], thresholds: list[float]
) -> BoundTable:
    """The table from pair scores as :func:`~.calibrate.score_pairs` gives them."""
    return BoundTable(
        embedder,
        len(same),
        len(different),
        tuple(
            TablePoint(t, sum(s >= t for s in same), sum(s >= t for s in different))
            for t in thresholds
        ),
    )


def upper_rate(k: int, n: int, z: float = _Z) -> float:
    """One-sided Wilson upper confidence bound on a rate of ``k`` in ``n``."""
    if n <= 0:
        return 1.0
    p = k / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return min(1.0, (centre + margin) / (1 + z2 / n))


def _parse(data: object, name: str) -> BoundTable:
    if not isinstance(data, dict) or data.get("embedder") != name:
        raise ValueError("not a table for this embedder")
    same, diff, raw = data.get("same_pairs"), data.get("different_pairs"), data.get("points")
    if not isinstance(same, int) or not isinstance(diff, int) or diff < 1:
        raise ValueError("bad pair counts")
    if not isinstance(raw, list) or not 1 <= len(raw) <= 1000:
        raise ValueError("bad points")
    points = []
    for row in raw:
        if (
            not isinstance(row, list)
            or len(row) != 3
            or not isinstance(row[0], (int, float))
            or not 0.0 <= row[0] <= 1.0
            or not all(isinstance(c, int) and c >= 0 for c in row[1:])
            or row[1] > same
            or row[2] > diff
        ):
            raise ValueError(f"bad point {row!r}")
        points.append(TablePoint(float(row[0]), row[1], row[2]))
    return BoundTable(name, same, diff, tuple(sorted(points, key=lambda p: p.threshold)))


@lru_cache(maxsize=16)
def load_table(embedder: str, folder: Path = TABLES) -> BoundTable | None:
    """The calibration table shipped for ``embedder`` (None: none, or unreadable: logged)."""
    path = folder / f"{embedder}.json"
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_TABLE_BYTES:
            raise ValueError(f"over {MAX_TABLE_BYTES} bytes")
        return _parse(json.loads(path.read_text(encoding="utf-8")), embedder)
    except (OSError, ValueError) as e:
        log.error("calibration table %s unusable (%s); bounds fall back to thresholds", path, e)
        return None


@dataclass(slots=True, frozen=True)
class Derived:
    """A threshold derived from a bound, and how (for stats and status)."""

    threshold: float
    source: str


def threshold_for(table: BoundTable, bound: float, floor: float) -> Derived:
    """The lowest threshold at or above ``floor`` whose false-hit rate is within ``bound``."""
    for p in table.points:
        if p.threshold < floor:
            continue
        upper = upper_rate(p.false_hits, table.different_pairs)
        if upper <= bound:
            return Derived(
                p.threshold,
                f"maxFalseHitRate {bound:g}: {table.embedder} table, "
                f"{p.false_hits}/{table.different_pairs} false hits "
                f"(<= {upper:.2%} at 95%) at {p.threshold:.2f}"
                + (" (the embedder's floor)" if p.threshold <= floor else ""),
            )
    return Derived(
        1.0,
        f"maxFalseHitRate {bound:g}: below what the {table.embedder} table can show "
        f"({table.different_pairs} negatives): exact repeats only",
    )
