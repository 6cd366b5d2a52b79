"""A declared error bound becomes a threshold through the embedder's calibration table."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cachekit import probe, result, scope

from skyroute.router.cache import ResponseCache
from skyroute.router.cache.bounds import (
    BoundTable,
    TablePoint,
    load_table,
    threshold_for,
    upper_rate,
)
from skyroute.router.cache.calibrate import load_pairs, score_pairs
from skyroute.router.cache.rules import LONG_TAIL_THRESHOLD, rule_for
from skyroute.router.table import CacheSettings

REPO = Path(__file__).resolve().parents[2]
TABLE = BoundTable(
    "toy",
    100,
    1000,
    tuple(
        TablePoint(t, h, f)
        for t, h, f in [(0.8, 90, 40), (0.85, 80, 12), (0.9, 70, 4), (0.95, 50, 0), (1.0, 0, 0)]
    ),
)


def _settings(threshold: float = 0.0, bound: float | None = 0.01, **kw: object) -> CacheSettings:
    return CacheSettings(True, frozenset({"faq.a"}), threshold, 600.0, 100, **kw)  # type: ignore[arg-type]


def test_shipped_table_is_what_the_evaluation_set_gives() -> None:
    run = subprocess.run(
        [sys.executable, "bench/cache_calibration.py", "--check", "--embedder", "hashing"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hashing-512.json: fresh" in run.stdout


def test_upper_rate_is_above_the_measured_rate_and_shrinks_with_more_pairs() -> None:
    assert upper_rate(0, 889) == pytest.approx(2.706 / (889 + 2.706), rel=1e-3)
    assert upper_rate(4, 1000) > 0.004
    assert upper_rate(10, 10_000) < upper_rate(1, 1000) < upper_rate(0, 100)
    assert upper_rate(0, 0) == 1.0


def test_bound_picks_the_lowest_threshold_within_it_at_95_percent() -> None:
    # 4/1000 measured: upper bound about 0.9%, within 1%; 12/1000 is not.
    d = threshold_for(TABLE, 0.01, 0.5)
    assert d.threshold == 0.9
    assert "4/1000 false hits" in d.source
    assert threshold_for(TABLE, 0.06, 0.5).threshold == 0.8  # 40/1000: <= 5.3%
    # Never below the floor.
    floored = threshold_for(TABLE, 0.05, 0.85)
    assert floored.threshold == 0.85 and "floor" in floored.source
    # 0/1000 cannot show 0.1%: exact repeats only.
    none = threshold_for(TABLE, 0.001, 0.5)
    assert none.threshold == 1.0 and "exact repeats only" in none.source


def test_rule_uses_bound_only_without_an_explicit_threshold() -> None:
    derived = rule_for(_settings(0.0, max_false_hit_rate=0.01), "faq.a", 0.5, TABLE, "toy")
    assert (derived.threshold, derived.max_false_hit_rate) == (0.9, 0.01)
    assert derived.source.startswith("maxFalseHitRate 0.01: toy table")
    explicit = rule_for(_settings(0.87, max_false_hit_rate=0.01), "faq.a", 0.5, TABLE, "toy")
    assert (explicit.threshold, explicit.source) == (0.87, "similarityThreshold")
    low = rule_for(_settings(0.7), "faq.a", 0.85, TABLE, "toy")
    assert low.threshold == 0.85 and "floor" in low.source
    # A long-tail family is still raised, and says so.
    tail = rule_for(_settings(0.0, max_false_hit_rate=0.05), "orders.x", 0.5, TABLE, "toy")
    assert tail.threshold == LONG_TAIL_THRESHOLD and "long-tail" in tail.source


def test_family_bound_and_family_threshold() -> None:
    s = _settings(
        0.9,
        families=(("faq", 0.0, 60.0), ("docs", 0.97, 30.0)),
        family_bounds=(("docs", 0.05), ("faq", 0.01)),
    )
    faq = rule_for(s, "faq.a", 0.5, TABLE, "toy")
    assert (faq.threshold, faq.ttl_s, faq.max_false_hit_rate) == (0.9, 60.0, 0.01)
    assert faq.source.startswith("families.faq.maxFalseHitRate 0.01")
    docs = rule_for(s, "docs.b", 0.5, TABLE, "toy")
    assert (docs.threshold, docs.source) == (0.97, "families.docs.similarityThreshold")


def test_no_table_keeps_the_default_and_says_so() -> None:
    r = rule_for(_settings(0.0, max_false_hit_rate=0.01), "faq.a", 0.85, None, "minilm-x")
    assert r.threshold == 0.9
    assert "no calibration table for minilm-x" in r.source


def test_unusable_tables_are_none(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text(json.dumps({"embedder": "other", "points": []}))
    bad_point = {"embedder": "c", "same_pairs": 1, "different_pairs": 1, "points": [[0.9, 5, 0]]}
    (tmp_path / "c.json").write_text(json.dumps(bad_point))
    (tmp_path / "d.json").write_text(" " * 70_000)
    for name in ("a", "b", "c", "d", "missing"):
        assert load_table(name, tmp_path) is None, name


def test_default_cache_reads_its_table_and_stats_show_each_threshold_source() -> None:
    cache = ResponseCache()
    assert cache.bound_table is not None
    assert cache.bound_table.embedder == cache.embedder.name
    settings = _settings(0.0, max_false_hit_rate=0.01)
    rule = cache.rule(settings, "faq.account")
    assert cache.embedder.min_threshold <= rule.threshold < 1.0
    assert rule.source.startswith(f"maxFalseHitRate 0.01: {cache.embedder.name} table")

    async def go() -> None:
        sc = scope()
        cache.store(probe(cache, "How do I reset my password?", sc), rule, result("a"), "m")
        assert await cache.lookup(probe(cache, "How do I reset my password?", sc), rule)

    asyncio.run(go())
    stats = cache.stats()
    assert stats["thresholds"]["faq.account"] == rule.threshold
    assert stats["threshold_sources"]["faq.account"] == rule.source


def test_bound_holds_on_the_held_out_split() -> None:
    """The threshold chosen on the tune split keeps 1% on pairs it was not chosen on."""
    path = REPO / "bench" / "data" / "cache_eval" / "pairs.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    pairs = load_pairs(path)
    held = [p for p, r in zip(pairs, rows, strict=True) if r["split"] == "held" and not p.same]
    cache = ResponseCache()
    rule = cache.rule(_settings(0.0, max_false_hit_rate=0.01), "faq.account")
    scores = score_pairs(held, cache)
    assert len(held) > 800
    assert sum(s >= rule.threshold for s in scores) / len(held) <= 0.01
