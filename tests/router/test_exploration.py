"""Epsilon-greedy exploration in scored selection: share, bounds and Explain."""

from __future__ import annotations

import math
import random

from skyroute.router.decide import decide, explain
from skyroute.router.signals import signals_from_messages
from skyroute.router.table import build_table
from skyroute.v1 import snapshot_pb2 as pb


def _cand(model: str, p95_ms: float, quality: float) -> pb.Candidate:
    return pb.Candidate(
        model=model,
        provider="openai",
        endpoint="http://127.0.0.1:1/v1",
        family=model,
        input_price_per_mtok=1.0,
        output_price_per_mtok=1.0,
        quality={"*": quality},
        observed_p95_ms=p95_ms,
    )


def _table(exploration: float, enabled: bool = True, min_quality: float = 0.0):  # type: ignore[no-untyped-def]
    policy = pb.Policy(
        name="p",
        version="v",
        default_pool="pool",
        selection=pb.Selection(scored=True, min_quality=min_quality),
        weights=pb.ScoringWeights(cost=0.1, latency=1.0, success=1.0, quality=1.0),
        adaptation=pb.Adaptation(
            enabled=enabled, exploration=exploration, half_life_s=60, min_samples=10, interval_s=5
        ),
    )
    pool = pb.Pool(
        name="pool",
        candidates=[
            _cand("best", 100, 0.9),
            _cand("second", 200, 0.9),
            _cand("third", 400, 0.9),
            _cand("bad", 50, 0.1),
        ],
    )
    snap = pb.Snapshot(version="sha256:x", default_policy="p", policies=[policy], pools=[pool])
    t = build_table(snap).policy("p")
    assert t is not None
    return t


ASK = signals_from_messages([{"role": "user", "content": "hello"}], False)


def _firsts(t, n: int, seed: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    draw = random.Random(seed).random
    counts: dict[str, int] = {}
    for _ in range(n):
        first = decide(t, ASK, draw=draw).chain[0].model
        counts[first] = counts.get(first, 0) + 1
    return counts


def test_exploration_share_is_respected_statistically() -> None:
    n, eps = 20_000, 0.1
    counts = _firsts(_table(eps, min_quality=0.5), n, seed=3)
    # Only the best and the runner-up ever lead; never the excluded low-quality model.
    assert set(counts) == {"best", "second"}, counts
    share = counts["second"] / n
    sigma = math.sqrt(eps * (1 - eps) / n)
    assert abs(share - eps) < 4 * sigma, (share, sigma)


def test_no_exploration_when_adaptation_is_off_or_share_is_zero() -> None:
    assert _firsts(_table(0.3, enabled=False), 2000, seed=1) == {"best": 2000}
    assert _firsts(_table(0.0), 2000, seed=1) == {"best": 2000}


def test_never_explores_a_candidate_excluded_by_a_constraint() -> None:
    # "bad" is fastest (p95 50 ms) and would be the runner-up, but minQuality excludes it.
    t = _table(0.5, min_quality=0.5)
    for _ in range(500):
        d = decide(t, ASK)
        assert "bad" not in [c.model for c in d.chain]


def test_explain_says_when_it_explored() -> None:
    t = _table(0.5)
    d = decide(t, ASK, draw=lambda: 0.0)  # always explore
    assert [c.model for c in d.chain][:2] == ["second", "best"]
    reasons = list(explain(d, ASK).reasons)
    assert any("exploring: runner-up 'second'" in r for r in reasons), reasons
    d = decide(t, ASK, draw=lambda: 0.99)  # never
    assert d.chain[0].model == "best"
    assert not any("exploring" in r for r in explain(d, ASK).reasons)
