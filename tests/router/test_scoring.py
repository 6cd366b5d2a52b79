"""Scored selection inside a pool: weights, constraints, family-first fallbacks."""

from __future__ import annotations

from dataclasses import dataclass

from skyroute.router.decide import decide, explain
from skyroute.router.signals import signals_from_messages
from skyroute.router.table import Candidate, build_table
from skyroute.v1 import snapshot_pb2 as pb


def cand(
    model: str,
    family: str,
    price_in: float,
    price_out: float,
    quality: dict[str, float],
    **kw: float,
) -> pb.Candidate:
    return pb.Candidate(
        model=model,
        provider="openai",
        endpoint="http://127.0.0.1:1/v1",
        family=family,
        input_price_per_mtok=price_in,
        output_price_per_mtok=price_out,
        quality=quality,
        supports_tools=True,
        **kw,
    )  # type: ignore[arg-type]


def table(
    selection: pb.Selection,
    weights: tuple[float, float, float, float] = (1, 1, 1, 1),
    **pools: list[pb.Candidate],
):  # type: ignore[no-untyped-def]
    policy = pb.Policy(
        name="p",
        version="v",
        default_pool="mixed",
        selection=selection,
        weights=pb.ScoringWeights(
            cost=weights[0], latency=weights[1], success=weights[2], quality=weights[3]
        ),
        intents=[
            pb.Intent(name="reasoning.plan", keywords=["plan"]),
            pb.Intent(name="faq.price", keywords=["price"]),
        ],
    )
    snap = pb.Snapshot(
        version="sha256:x",
        default_policy="p",
        policies=[policy],
        pools=[pb.Pool(name=n, candidates=c) for n, c in pools.items()],
    )
    t = build_table(snap).policy("p")
    assert t is not None
    return t


MIXED = [
    cand("flash", "gemini", 0.5, 3.0, {"reasoning.plan": 0.35, "*": 0.8}, observed_p95_ms=400),
    cand("sonnet", "claude", 3.0, 15.0, {"reasoning.plan": 0.9, "*": 0.85}, observed_p95_ms=1400),
    cand("opus", "claude", 5.0, 25.0, {"reasoning.plan": 0.95, "*": 0.9}, observed_p95_ms=3000),
    cand("gpt", "openai", 1.75, 14.0, {"reasoning.plan": 0.88, "*": 0.85}, observed_p95_ms=1500),
]


def ask(text: str):  # type: ignore[no-untyped-def]
    return signals_from_messages([{"role": "user", "content": text}], False)


def test_cheap_fast_model_wins_simple_asks() -> None:
    t = table(pb.Selection(scored=True, family_first=True), mixed=MIXED)
    d = decide(t, ask("what is the price of prime?"))
    assert d.chain[0].model == "flash"


def test_poor_quality_model_never_gets_complex_intents_under_min_quality() -> None:
    t = table(pb.Selection(scored=True, min_quality=0.6, family_first=True), mixed=MIXED)
    d = decide(t, ask("help me plan a migration of 200 seats"))
    assert "flash" not in [c.model for c in d.chain]
    e = explain(d, ask("help me plan a migration of 200 seats"))
    flash = next(x for x in e.scores if x.model == "flash")
    assert "minQuality" in flash.excluded
    # Everything else is still there, best first, same family before another family.
    models = [c.model for c in d.chain]
    first_family = d.chain[0].family
    families = [c.family for c in d.chain]
    assert families[: families.count(first_family)] == [first_family] * families.count(first_family)
    assert set(models) == {"sonnet", "opus", "gpt"}


def test_quality_weight_alone_picks_the_best_model() -> None:
    t = table(pb.Selection(scored=True), weights=(0, 0, 0, 1), mixed=MIXED)
    assert decide(t, ask("plan the rollout")).chain[0].model == "opus"


def test_cost_constraint_excludes_expensive_models() -> None:
    t = table(pb.Selection(scored=True, max_cost_per_1k=2.0), mixed=MIXED)
    d = decide(t, ask("x " * 2000 + " price"))  # ~1000 prompt tokens
    assert d.scores is not None
    kept = [x for x in d.scores if not x.excluded]
    dropped = [x for x in d.scores if x.excluded]
    assert kept and dropped
    assert all(x.cost * 1000 <= 2.0 for x in kept)
    assert all(x.cost * 1000 > 2.0 and "maxCostPer1k" in x.excluded for x in dropped)
    assert [c.model for c in d.chain] == [
        x.cand.model for x in sorted(kept, key=lambda x: x.score)
    ][:1] + [c.model for c in d.chain[1:]]


@dataclass
class FakeStats:
    """Live observations as the engine's EndpointHealth would give them."""

    p95: dict[str, float]

    def p95_s(self, c: Candidate) -> float | None:
        return self.p95.get(c.model)

    def failures(self, c: Candidate) -> float:
        return 0.0


def test_a_model_whose_latency_triples_loses_its_place() -> None:
    pool = [MIXED[1], MIXED[3]]  # sonnet vs gpt: close on everything
    t = table(pb.Selection(scored=True, family_first=False), weights=(1, 2, 1, 1), mixed=pool)
    s = ask("hello there")
    normal = decide(t, s, FakeStats({"sonnet": 1.0, "gpt": 1.1}))
    slow = decide(t, s, FakeStats({"sonnet": 3.0, "gpt": 1.1}))
    assert normal.chain[0].model == "sonnet"
    assert slow.chain[0].model == "gpt"


def test_ordered_selection_keeps_declared_order() -> None:
    t = table(pb.Selection(scored=False), mixed=MIXED)
    assert [c.model for c in decide(t, ask("price")).chain] == ["flash", "sonnet", "opus", "gpt"]
