"""Aggregation of replay outcomes into the before/after figures, and their rendering."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from skyroute.cli.demo_replay import Outcome
from skyroute.cli.demo_report import percentile, render, report_json, summarize


def _o(
    i: int,
    *,
    ok: bool = True,
    ms: float = 100.0,
    cost: float = 0.001,
    pool: str = "cost",
    intent: str = "faq.refund",
    cache: str = "miss",
    dup: int = 0,
    attempts: int = 1,
    error: str = "",
) -> Outcome:
    return Outcome(
        index=i,
        intent=intent,
        has_tools=False,
        ok=ok,
        status=200 if ok else 504,
        error=error,
        latency_ms=ms,
        client_attempts=attempts,
        router_attempts=attempts,
        cost_usd=cost,
        pool=pool,
        cache=cache,
        duplicate_tool_actions=dup,
    )


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 95) == 95
    assert percentile(values, 50) == 50
    assert percentile(values, 100) == 100
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 95) == 0.0
    with pytest.raises(ValueError, match="percentile"):
        percentile(values, 101)


def test_summary_figures() -> None:
    outs = [_o(i, ms=float(i + 1)) for i in range(96)]
    outs += [
        _o(96, ok=False, ms=5000.0, cost=0.0, error="timeout", attempts=3, dup=2),
        _o(97, ok=False, ms=6000.0, cost=0.002, error="http_502", attempts=3),
        _o(98, pool="balanced", intent="support.general"),
        _o(99, pool="balanced", intent="faq.pricing", cache="hit", cost=0.0),
    ]
    s = summarize(outs)
    assert s.requests == 100
    assert s.success_rate == pytest.approx(0.98)
    assert s.p95_ms == 95.0  # the two slow failures sit above the 95th rank
    assert s.cost_per_1k_usd == pytest.approx((96 * 0.001 + 0.002 + 0.001) / 100 * 1000)
    assert s.mix == {"cost": pytest.approx(0.98), "balanced": pytest.approx(0.02)}
    assert sum(s.mix.values()) == pytest.approx(1.0)
    # 99 FAQ requests, one hit
    assert s.faq_cache_hit_rate == pytest.approx(1 / 99)
    assert s.duplicate_tool_actions == 2
    assert s.client_attempts == 104
    assert s.errors == {"http_502": 1, "timeout": 1}


def test_json_shape_and_rendering() -> None:
    base = summarize([_o(i, ms=1500.0, cost=0.004, pool="baseline") for i in range(10)])
    routed = summarize([_o(i, ms=900.0, cost=0.003) for i in range(10)])
    doc = report_json(base, routed, meta={"requests_per_arm": 10})
    for arm in ("baseline", "routed"):
        for key in (
            "p95_ms",
            "success_rate",
            "cost_per_1k_usd",
            "mix",
            "faq_cache_hit_rate",
            "requests",
            "duplicate_tool_actions",
        ):
            assert key in doc[arm], (arm, key)
    json.dumps(doc)
    console = Console(record=True, width=140)
    render(console, base, routed)
    text = console.export_text()
    assert "p95 latency" in text and "1.50 s" in text and "0.90 s" in text
    assert "$4.00" in text and "$3.00" in text and "25% cheaper" in text
    assert "40% faster" in text
    assert "Router mix" in text


def test_empty_arm_is_an_error() -> None:
    with pytest.raises(ValueError, match="no outcomes"):
        summarize([])
