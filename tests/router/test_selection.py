"""Selection inside a pool: one unit for every term, declared order, per-rule modes, objectives.

The scored terms are each normalised to [0, 1] over the pool, so a weight
means the same thing whatever its term's natural scale; the property tests
check what that buys: raising a weight never lowers its term's share of any
candidate's score, and never makes the chosen model worse on that term.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from skyroute.control.policy.compiler import compile_folder
from skyroute.router.decide import decide, explain, score_pool, signals_from_messages
from skyroute.router.table import MIN_WEIGHT, Candidate, PolicyTable, SnapshotError, build_table
from skyroute.v1 import snapshot_pb2 as pb

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acmeshop"


def cand(model: str, family: str, price_out: float, quality: float, p95_ms: int) -> pb.Candidate:
    return pb.Candidate(
        model=model,
        provider="openai",
        endpoint="http://127.0.0.1:1/v1",
        family=family,
        input_price_per_mtok=price_out / 5,
        output_price_per_mtok=price_out,
        quality={"*": quality},
        supports_tools=True,
        observed_p95_ms=p95_ms,
    )


# Declared order: cheap-slow first, then fast, then the best and dearest.
POOL = [
    cand("cheap", "a", 2.0, 0.80, 3000),
    cand("fast", "b", 10.0, 0.85, 500),
    cand("best", "c", 30.0, 0.95, 2000),
]


def table(
    pool: list[pb.Candidate],
    selection: pb.Selection,
    weights: tuple[float, float, float, float] = (1, 1, 1, 1),
    rules: list[pb.Rule] | None = None,
) -> PolicyTable:
    w = pb.ScoringWeights(
        cost=weights[0], latency=weights[1], success=weights[2], quality=weights[3]
    )
    policy = pb.Policy(
        name="p",
        version="v",
        default_pool="pool",
        selection=selection,
        weights=w,
        intents=[
            pb.Intent(name="faq.price", keywords=["price"]),
            pb.Intent(name="chat.quick", keywords=["quick"]),
            pb.Intent(name="chat.cheap", keywords=["cheap"]),
            pb.Intent(name="chat.ordered", keywords=["ordered"]),
        ],
        rules=rules or [],
    )
    snap = pb.Snapshot(
        version="sha256:x",
        default_policy="p",
        policies=[policy],
        pools=[pb.Pool(name="pool", candidates=pool)],
    )
    t = build_table(snap).policy("p")
    assert t is not None
    return t


def ask(text: str):  # type: ignore[no-untyped-def]
    return signals_from_messages([{"role": "user", "content": text}], False)


def chain(t: PolicyTable, text: str) -> list[str]:
    return [c.model for c in decide(t, ask(text)).chain]


def test_ties_keep_the_declared_order() -> None:
    twins = [cand("first", "a", 5.0, 0.9, 1000), cand("second", "a", 5.0, 0.9, 1000)]
    assert chain(table(twins, pb.Selection(mode="scored")), "hello") == ["first", "second"]
    swapped = [twins[1], twins[0]]
    assert chain(table(swapped, pb.Selection(mode="scored")), "hello") == ["second", "first"]


def test_every_term_is_in_the_same_unit_and_explained() -> None:
    t = table(POOL, pb.Selection(mode="scored"), weights=(1, 2, 0, 4))
    s = ask("hello")
    d = decide(t, s)
    assert d.scores is not None
    for term in range(4):
        values = [x.terms[term] for x in d.scores]
        weight = (1, 2, 0, 4)[term]
        # The pool's best is 0 on every term; nothing exceeds its weight.
        assert min(values) == 0.0 and max(values) <= weight + 1e-12
    by = {x.cand.model: x for x in d.scores}
    assert by["cheap"].terms[0] == 0.0 and by["best"].terms[0] == 1.0  # cost: full spread
    assert by["fast"].terms[1] == 0.0 and by["cheap"].terms[1] == 2.0  # latency x 2
    assert by["best"].terms[3] == 0.0 and by["cheap"].terms[3] == 4.0  # quality x 4
    for x in d.scores:
        assert abs(sum(x.terms) - x.score) < 1e-12
    e = explain(d, s)
    assert e.selection == "scored"
    parts = {c.model: c for c in e.scores}
    assert parts["best"].cost_term == 1.0 and parts["cheap"].quality_term == 4.0
    line = next(r for r in e.reasons if r.startswith("cheap: score"))
    assert "= cost 0.000 + latency 2.000 + failures 0.000 + quality 4.000" in line
    assert any(r.startswith("selection scored: score = 1 x cost + 2 x p95") for r in e.reasons)


def test_a_spread_below_the_floor_is_not_stretched() -> None:
    close = [cand("a", "a", 10.0, 0.90, 1000), cand("b", "b", 10.2, 0.91, 1000)]
    d = decide(table(close, pb.Selection(mode="scored")), ask("hello"))
    assert d.scores is not None
    by = {x.cand.model: x for x in d.scores}
    # 2% dearer: 0.2 / 1.02 of the floor (10% of the dearest); 1 quality point: 0.2
    # of the 5-point floor.
    assert abs(by["b"].terms[0] - 0.2 / 1.02) < 1e-9 and abs(by["a"].terms[3] - 0.2) < 1e-9


def test_per_rule_selection_modes_and_weights() -> None:
    rules = [
        pb.Rule(
            name="quick",
            intents=["chat.quick"],
            pool="pool",
            selection=pb.Selection(mode="fastest"),
        ),
        pb.Rule(
            name="cheap",
            intents=["chat.cheap"],
            pool="pool",
            selection=pb.Selection(mode="cheapest"),
        ),
        pb.Rule(
            name="ordered",
            intents=["chat.ordered"],
            pool="pool",
            selection=pb.Selection(mode="ordered"),
        ),
        pb.Rule(
            name="price",
            intents=["faq.price"],
            pool="pool",
            selection=pb.Selection(mode="scored"),
            weights=pb.ScoringWeights(quality=1),
        ),
    ]
    t = table(POOL, pb.Selection(mode="scored"), weights=(1, 0, 0, 0), rules=rules)
    assert chain(t, "hello")[0] == "cheap"  # the policy's own weights: cost only
    assert chain(t, "quick question")[0] == "fast"
    assert chain(t, "cheap answer")[0] == "cheap"
    assert chain(t, "ordered please") == ["cheap", "fast", "best"]
    assert chain(t, "the price?")[0] == "best"  # the rule's weights: quality only
    d = decide(t, ask("quick question"))
    assert d.rule == "quick" and explain(d, ask("quick question")).selection == "fastest"


def test_latency_objective_puts_candidates_that_miss_it_last() -> None:
    sel = pb.Selection(mode="scored", objective_p95_ms=2500)
    t = table(POOL, sel, weights=(1, 0, 0, 0))  # cost alone would pick "cheap" (3 s p95)
    d = decide(t, ask("hello"))
    assert [c.model for c in d.chain] == ["fast", "best", "cheap"]
    e = explain(d, ask("hello"))
    assert any("cheap" in r and "misses the p95 objective" in r for r in e.reasons)
    # Ordered with an objective: declared order among those that meet it.
    ordered = table(POOL, pb.Selection(mode="ordered", objective_p95_ms=2500))
    assert chain(ordered, "hello") == ["fast", "best", "cheap"]


def test_rule_selection_compiles_from_the_crd_fields(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all((EXAMPLE / "policy.yaml").read_text()))
    acme = next(d for d in docs if d["metadata"]["name"] == "acmeshop")
    rule = next(r for r in acme["spec"]["rules"] if r["name"] == "faq-and-low-risk")
    rule["selection"] = {"mode": "ordered", "objective": {"p95Ms": 900}}
    rule["weights"] = {"quality": 2}
    acme["spec"]["tests"] = []
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump_all(docs))
    (tmp_path / "pools.yaml").write_text((EXAMPLE / "pools.yaml").read_text())
    snap = compile_folder(tmp_path)
    compiled = next(r for r in snap.policies[0].rules if r.name == "faq-and-low-risk")
    assert compiled.selection.mode == "ordered" and compiled.selection.objective_p95_ms == 900
    assert compiled.weights.quality == 2 and compiled.weights.cost == 0.25
    others = [r for r in snap.policies[0].rules if r.name != "faq-and-low-risk"]
    assert not any(r.HasField("selection") for r in others)
    t = build_table(snap).policy("acmeshop")
    assert t is not None
    d = decide(t, ask("how do i reset my password"))
    assert d.selection is not None and d.selection.mode == "ordered"
    assert t.selection.mode == "scored"  # the policy's own stays


@dataclass
class Live:
    p95: dict[str, float]
    fail: dict[str, float]

    def p95_s(self, c: Candidate) -> float | None:
        return self.p95.get(c.model)

    def failures(self, c: Candidate) -> float:
        return self.fail.get(c.model, 0.0)


# Every weight a policy may declare: 0, or between the floor and 100.
_weight = st.one_of(st.just(0.0), st.floats(min_value=MIN_WEIGHT, max_value=100.0))
_model = st.tuples(
    st.floats(min_value=0.1, max_value=100.0),  # output price
    st.floats(min_value=0.0, max_value=1.0),  # quality
    st.floats(min_value=0.05, max_value=30.0),  # p95 s
    st.floats(min_value=0.0, max_value=1.0),  # failure rate
)


@settings(max_examples=300, deadline=None)
@given(
    models=st.lists(_model, min_size=2, max_size=5),
    weights=st.tuples(_weight, _weight, _weight, _weight),
    term=st.integers(min_value=0, max_value=3),
    factor=st.floats(min_value=1.0, max_value=50.0),
    extra=st.one_of(st.just(0.0), st.floats(min_value=MIN_WEIGHT, max_value=10.0)),
)
def test_raising_a_weight_never_lowers_that_terms_share(
    models: list[tuple[float, float, float, float]],
    weights: tuple[float, float, float, float],
    term: int,
    factor: float,
    extra: float,
) -> None:
    pool = [cand(f"m{i}", f"f{i}", price, q, 0) for i, (price, q, _, _) in enumerate(models)]
    live = Live(
        {f"m{i}": p95 for i, (_, _, p95, _) in enumerate(models)},
        {f"m{i}": fail for i, (_, _, _, fail) in enumerate(models)},
    )
    raised = list(weights)
    raised[term] = weights[term] * factor + extra
    s = ask("hello")

    def scored(w: tuple[float, ...]) -> tuple[list[float], list[float], float]:
        t = table(pool, pb.Selection(mode="scored"), weights=(w[0], w[1], w[2], w[3]))
        xs = score_pool(t, t.pools["pool"], "unknown", s, live)
        shares = [x.terms[term] / x.score if x.score else 0.0 for x in xs]
        raw = [x.terms[term] / w[term] if w[term] else 0.0 for x in xs]
        chosen = decide(t, s, live).chain[0].model
        return shares, raw, raw[int(chosen[1:])] if w[term] else 0.0

    before, _, chosen_before = scored(weights)
    after, raw_after, chosen_after = scored(tuple(raised))
    for b, a in zip(before, after, strict=True):
        assert a >= b - 1e-9  # the term's share of every candidate's score
    if weights[term] > 0:
        # The chosen model is never worse on the term whose weight went up.
        assert chosen_after <= chosen_before + 1e-9
    assert all(0.0 <= v <= 1.0 + 1e-9 for v in raw_after)


def test_a_weight_below_the_floor_is_refused_with_the_snapshot() -> None:
    pool = [cand("a", "f0", 1.0, 0.5, 0), cand("b", "f1", 2.0, 0.9, 0)]
    with pytest.raises(SnapshotError, match=r"each is 0 or >= 1e-06"):
        table(pool, pb.Selection(mode="scored"), weights=(1e-9, 1, 1, 1))
    # Scaling every weight together never changes the choice.
    s = ask("hello")
    small = decide(table(pool, pb.Selection(mode="scored"), weights=(2e-6, 0, 0, 1e-6)), s)
    large = decide(table(pool, pb.Selection(mode="scored"), weights=(2, 0, 0, 1)), s)
    assert [c.model for c in small.chain] == [c.model for c in large.chain]
