"""The traffic generator: deterministic, the case study's mix, realistic shape."""

from __future__ import annotations

import json
import random

import pytest

from skyroute.cli import demo_corpus as corpus
from skyroute.cli.demo_traffic import (
    INTENT_MIX,
    PeakWindow,
    arrival_times,
    describe,
    fingerprint,
    generate_traffic,
    to_jsonl,
)


def test_same_seed_same_sample_and_other_seed_differs() -> None:
    a = generate_traffic(500, seed=7, duration_s=20)
    b = generate_traffic(500, seed=7, duration_s=20)
    c = generate_traffic(500, seed=8, duration_s=20)
    assert fingerprint(a) == fingerprint(b)
    assert to_jsonl(a) == to_jsonl(b)
    assert fingerprint(a) != fingerprint(c)


def test_intent_mix_sums_to_one_and_families_match_the_case_study() -> None:
    assert abs(sum(INTENT_MIX.values()) - 1.0) < 1e-9
    shares = describe(generate_traffic(4000, seed=1))["family_share"]
    cost = shares["faq"] + shares["lowrisk"]
    quality = shares["reasoning"] + shares["tools"] + shares["safety"]
    assert 0.51 <= cost <= 0.59, shares
    assert 0.34 <= shares["general"] <= 0.42, shares
    assert 0.05 <= quality <= 0.09, shares


def test_faq_has_exact_repeats_and_paraphrases() -> None:
    reqs = generate_traffic(3000, seed=3)
    faq_texts = [r.messages[-1]["content"] for r in reqs if r.is_faq]
    distinct = len(set(faq_texts))
    assert distinct < len(faq_texts) * 0.5  # popular questions come back verbatim
    assert distinct > 40  # ...but there is a long tail of paraphrases
    canon = {q for qs in corpus.FAQ_CANONICAL.values() for q in qs}
    assert any(t not in canon for t in faq_texts)


def test_tools_only_on_tool_intents_in_openai_format() -> None:
    reqs = generate_traffic(3000, seed=4)
    with_tools = [r for r in reqs if r.has_tools]
    assert with_tools
    assert all(r.intent.startswith("tools.") for r in with_tools)
    assert all(r.has_tools for r in reqs if r.intent.startswith("tools."))
    for tool in with_tools[0].tools:
        assert tool["type"] == "function"
        assert set(tool["function"]) == {"name", "description", "parameters"}
    assert "tools" in with_tools[0].body("acmeshop")


def test_faq_prompts_carry_no_per_user_context() -> None:
    # A cache partitions on everything but the last user message: FAQ contexts must repeat.
    reqs = generate_traffic(2000, seed=5)
    contexts = {(r.tenant, r.locale, r.intent, r.messages[0]["content"]) for r in reqs if r.is_faq}
    keys = {(r.tenant, r.locale, r.intent) for r in reqs if r.is_faq}
    assert len(contexts) == len(keys)


def test_prompt_sizes_vary_and_bodies_are_json() -> None:
    reqs = generate_traffic(1000, seed=6)
    sizes = [r.prompt_chars() for r in reqs]
    assert max(sizes) > 3 * min(sizes)
    body = reqs[0].body("baseline")
    assert body["model"] == "baseline"
    json.dumps(body)
    assert reqs[0].headers()["x-skyroute-tenant"] in dict(corpus.TENANTS)


def test_arrivals_are_sorted_within_duration_and_denser_at_peak() -> None:
    peak = PeakWindow(0.4, 0.6, 3.0)
    times = arrival_times(random.Random(0), 6000, 60.0, peak)
    assert times == sorted(times)
    assert times[0] >= 0.0 and times[-1] < 60.0
    in_peak = sum(24.0 <= t < 36.0 for t in times)
    before = sum(0.0 <= t < 12.0 for t in times)
    assert 2.4 < in_peak / before < 3.6


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count": 0},
        {"count": 10, "duration_s": 0.0},
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"count|duration_s"):
        generate_traffic(**kwargs)  # type: ignore[arg-type]


def test_bad_peak_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="peak window"):
        PeakWindow(0.7, 0.5)
    with pytest.raises(ValueError, match="factor"):
        PeakWindow(0.1, 0.5, 0.5)


def test_committed_sample_is_what_the_generator_writes() -> None:
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "examples" / "acmeshop" / "traffic-sample.jsonl"
    fresh = to_jsonl(generate_traffic(40, duration_s=30.0))
    assert sample.read_text() == fresh, (
        "examples/acmeshop/traffic-sample.jsonl is stale; regenerate it with "
        "`.venv/bin/python -m skyroute.cli.demo_traffic --requests 40 "
        "--out examples/acmeshop/traffic-sample.jsonl`"
    )
