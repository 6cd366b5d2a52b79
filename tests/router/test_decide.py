"""Routing tables and the per-request decision, in process."""

from __future__ import annotations

import pytest

from skyroute.router.decide import decide, explain
from skyroute.router.signals import signals_from_messages
from skyroute.router.table import SnapshotError, build_table
from skyroute.v1 import snapshot_pb2 as pb


def cand(model: str, provider: str = "openai", **kw: object) -> pb.Candidate:
    return pb.Candidate(
        model=model,
        provider=provider,
        endpoint="http://127.0.0.1:1/x",
        input_price_per_mtok=1.0,
        output_price_per_mtok=2.0,
        **kw,
    )  # type: ignore[arg-type]


def snap(**policy_kw: object) -> pb.Snapshot:
    policy = pb.Policy(
        name="p",
        version="pv",
        default_pool="balanced",
        intents=[
            pb.Intent(name="faq.password", keywords=["reset my password"]),
            pb.Intent(name="tools.invoice", patterns=[r"invoice\s+#?\d+"]),
            pb.Intent(name="faq.pricing", keywords=["price", "pricing"]),
        ],
        rules=[
            pb.Rule(
                name="faq-no-tools",
                intents=["faq.password", "faq.pricing"],
                tools=pb.TOOL_MATCH_ABSENT,
                pool="cost",
            ),
            pb.Rule(name="enterprise", user_tiers=["enterprise"], pool="quality"),
            pb.Rule(name="big", min_prompt_tokens=1000, pool="quality"),
            pb.Rule(name="invoices", intents=["tools.invoice"], pool="quality"),
        ],
        cache=pb.CachePolicy(enabled=True, intents=["faq.password", "faq.pricing"]),
        **policy_kw,  # type: ignore[arg-type]
    )
    return pb.Snapshot(
        version="sha256:1",
        default_policy="p",
        policies=[policy],
        pools=[
            pb.Pool(name="cost", candidates=[cand("flash", "gemini"), cand("haiku", "anthropic")]),
            pb.Pool(name="balanced", candidates=[cand("sonnet", "anthropic"), cand("gpt")]),
            pb.Pool(
                name="quality",
                candidates=[
                    cand("high", context_window=2000),
                    cand("opus", "anthropic", supports_tools=True),
                ],
            ),
        ],
    )


def sig(text: str, tools: bool = False, **kw: str):  # type: ignore[no-untyped-def]
    return signals_from_messages(
        [{"role": "system", "content": "be nice"}, {"role": "user", "content": text}], tools, **kw
    )


def test_keyword_rule_picks_cost_pool_and_cacheable() -> None:
    t = build_table(snap()).policy("auto")
    assert t is not None
    d = decide(t, sig("How do I RESET my password?".replace("RESET", "reset")))
    assert (d.intent, d.rule, d.pool) == ("faq.password", "faq-no-tools", "cost")
    assert [c.model for c in d.chain] == ["flash", "haiku"]
    assert d.cacheable


def test_tools_skip_the_tool_free_rule_and_are_never_cacheable() -> None:
    t = build_table(snap()).policy("p")
    assert t is not None
    d = decide(t, sig("what is the price?", tools=True))
    assert d.intent == "faq.pricing" and d.pool == "balanced" and not d.cacheable
    # Candidates that cannot take tools are dropped from the chain.
    assert [c.model for c in d.chain] == []  # supports_tools defaults to false in the proto
    pb_d = explain(d, sig("what is the price?", tools=True))
    assert any("no candidate" in r for r in pb_d.reasons)


def test_pattern_tier_and_size_rules() -> None:
    t = build_table(snap()).policy("p")
    assert t is not None
    assert decide(t, sig("send invoice #1234")).pool == "quality"
    assert decide(t, sig("hello there", user_tier="enterprise")).rule == "enterprise"
    big = decide(t, sig("x" * 5000))
    assert big.rule == "big" and big.intent == "unknown"
    # The 2000-token window of "high" cannot take a ~1250-token prompt? It can; 9000 cannot.
    assert [c.model for c in big.chain] == ["high", "opus"]
    huge = decide(t, sig("x" * 9000))
    assert [c.model for c in huge.chain] == ["opus"]
    assert decide(t, sig("anything else")).rule == "default"


def test_declared_intent_only_when_trusted() -> None:
    untrusted = build_table(snap()).policy("p")
    trusted = build_table(snap(trust_declared_intent=True)).policy("p")
    assert untrusted is not None and trusted is not None
    s = sig("hello", declared_intent="faq.pricing")
    assert decide(untrusted, s).intent == "unknown"
    assert decide(trusted, s).intent == "faq.pricing"


def test_unusable_snapshots_are_refused_with_where() -> None:
    bad = snap()
    bad.pools[0].candidates[0].provider = "watsonx"
    with pytest.raises(SnapshotError, match=r"pool 'cost' model 'flash'.*watsonx"):
        build_table(bad)
    missing = snap()
    missing.policies[0].rules[0].pool = "nowhere"
    with pytest.raises(SnapshotError, match=r"rule 'faq-no-tools'.*nowhere"):
        build_table(missing)
    with pytest.raises(SnapshotError, match="no version"):
        build_table(pb.Snapshot())


def test_cost_uses_per_million_prices() -> None:
    t = build_table(snap()).policy("p")
    assert t is not None
    flash = t.pools["cost"][0]
    assert flash.cost(1_000_000, 500_000) == pytest.approx(1.0 + 1.0)


def test_embedding_classifier_finds_the_nearest_intent_by_its_examples() -> None:
    policy = pb.Policy(
        name="p",
        version="v",
        default_pool="balanced",
        intent_min_similarity=0.5,
        intents=[
            pb.Intent(
                name="faq.refund",
                keywords=["refund policy"],
                examples=[
                    "how do I get my money back for a return",
                    "can I return an item and get reimbursed",
                ],
            ),
            pb.Intent(
                name="faq.shipping",
                keywords=["shipping cost"],
                examples=["how long does delivery take to my country"],
            ),
        ],
        cache=pb.CachePolicy(enabled=True, intents=["faq.refund"]),
    )
    snap = pb.Snapshot(
        version="sha256:e",
        default_policy="p",
        policies=[policy],
        pools=[pb.Pool(name="balanced", candidates=[cand("gpt")])],
    )
    t = build_table(snap).policy("p")
    assert t is not None
    d = decide(t, sig("How do I get my money back for a return I made?"))
    assert d.intent == "faq.refund" and d.intent_source == "embedding"
    assert 0.5 <= d.confidence <= 1.0 and d.cacheable
    unrelated = decide(t, sig("tell me a joke about penguins"))
    assert unrelated.intent == "unknown" and unrelated.confidence < 0.5
    e = explain(d, sig("How do I get my money back for a return I made?"))
    assert e.signals.intent_source == "embedding" and e.signals.intent_confidence == d.confidence


def test_predicted_tool_use_keeps_an_intent_out_of_the_cache() -> None:
    policy = pb.Policy(
        name="p",
        version="v",
        default_pool="balanced",
        intents=[
            pb.Intent(name="faq.order", keywords=["my order"], tool_use_probability=0.8),
            pb.Intent(name="faq.hours", keywords=["opening hours"]),
        ],
        cache=pb.CachePolicy(enabled=True, intents=["faq.order", "faq.hours"]),
    )
    snap = pb.Snapshot(
        version="sha256:t",
        default_policy="p",
        policies=[policy],
        pools=[pb.Pool(name="balanced", candidates=[cand("gpt")])],
    )
    t = build_table(snap).policy("p")
    assert t is not None
    order = decide(t, sig("what happened to my order"))
    hours = decide(t, sig("what are your opening hours"))
    assert order.tool_use == 0.8 and not order.cacheable
    assert hours.tool_use == 0.0 and hours.cacheable
