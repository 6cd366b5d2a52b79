"""The learning loop in process: merged sketches, decay, priors pushed, drift alerts."""

from __future__ import annotations

import math
import random
from pathlib import Path

from ddsketch import DDSketch
from ddsketch.pb.proto import DDSketchProto

from skyroute.control.learning.fleet import DecayedStats
from skyroute.control.learning.loop import Learner
from skyroute.control.policy.compiler import compile_folder, policy_version, snapshot_version
from skyroute.control.policy.store import SnapshotStore
from skyroute.v1 import distribution_pb2 as dpb

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: pool}
spec:
  models:
    - {name: a, provider: openai, endpoint: "http://127.0.0.1:1/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}}
    - {name: b, provider: openai, endpoint: "http://127.0.0.1:1/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}}
"""
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: p}
spec:
  defaultPool: pool
  intents:
    - {name: invoice, keywords: ["invoice"], toolUse: 0.2}
    - {name: faq, keywords: ["password"], toolUse: 0.3}
  adaptation: {enabled: ENABLED, halfLifeS: 10, minSamples: 20, intervalS: 5,
               driftLatencyRatio: 2.0, driftCostRatio: 3.0}
"""


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _stats(
    model: str,
    latencies: list[float],
    failures: int = 0,
    cost: float = 0.0,
    intent: str = "unknown",
) -> dpb.ModelStats:
    sk = DDSketch(0.01)
    for x in latencies:
        sk.add(x)
    ok = len(latencies)
    return dpb.ModelStats(
        model=model,
        intent=intent,
        requests=ok + failures,
        failures=failures,
        completion_tokens=30 * ok,
        cost_usd=cost * ok,
        latency_sketch=DDSketchProto.to_proto(sk).SerializeToString(),
    )


def _setup(tmp_path: Path, enabled: bool = True) -> tuple[SnapshotStore, Learner, Clock, list]:  # type: ignore[type-arg]
    (tmp_path / "pools.yaml").write_text(POOLS)
    (tmp_path / "policy.yaml").write_text(POLICY.replace("ENABLED", str(enabled).lower()))
    store = SnapshotStore(str(tmp_path))
    clock = Clock()
    drifts: list[tuple[str, str, bool, str]] = []
    learner = Learner(store, clock=clock, on_drift=lambda *a: drifts.append(a))
    store.publish(compile_folder(tmp_path))
    return store, learner, clock, drifts


def test_two_routers_merge_to_the_p95_of_all_traffic(tmp_path: Path) -> None:
    rng = random.Random(5)
    lat = [rng.lognormvariate(math.log(200), 0.6) for _ in range(20_000)]
    router1, router2 = lat[:7_000], lat[7_000:]
    _, learner, _, _ = _setup(tmp_path)
    learner.record([_stats("a", router1)])
    learner.record([_stats("a", router2)])
    merged = learner.figures()["a"].p95_ms
    one = DDSketch(0.01)
    for x in lat:
        one.add(x)
    assert merged is not None
    assert math.isclose(merged, one.get_quantile_value(0.95), rel_tol=1e-9)
    exact = sorted(lat)[int(0.95 * (len(lat) - 1))]
    assert abs(merged - exact) <= 0.01 * exact, (merged, exact)
    # A p95 of p95s is not the same thing (that is why sketches are shipped).
    assert learner.models["a"].requests == 20_000


def test_counts_and_bins_halve_every_half_life() -> None:
    st = DecayedStats(0.0)
    st.add(_stats("a", [100.0] * 64, failures=16))
    st.decay(10.0, half_life_s=10.0)
    assert math.isclose(st.requests, 40.0) and math.isclose(st.failures, 8.0)
    assert math.isclose(st.latency_samples, 32.0)
    assert st.quantile(0.95) is not None and abs(st.quantile(0.95) - 100.0) <= 1.0  # type: ignore[operator]


def test_priors_are_pushed_at_a_bounded_rate_with_exact_versions(tmp_path: Path) -> None:
    store, learner, clock, _ = _setup(tmp_path)
    compiled = store.version
    base = store.snapshot
    assert base is not None
    learner.record([_stats("a", [100.0] * 50), _stats("b", [300.0] * 50, failures=10)])
    assert learner.tick()
    snap = store.snapshot
    assert snap is not None and snap.version != compiled
    assert snap.version == snapshot_version(snap)
    pool = snap.pools[0]
    # The policy's version is the compiled spec's: priors move the snapshot, not the policy.
    assert snap.policies[0].version == base.policies[0].version
    assert policy_version(snap.policies[0], [base.pools[0]]) == snap.policies[0].version
    a, b = pool.candidates
    assert abs(a.observed_p95_ms - 100) <= 1 and abs(b.observed_p95_ms - 300) <= 3
    assert math.isclose(b.observed_failure_rate, 10 / 60, rel_tol=1e-3)
    assert a.observed_completion_tokens == 30
    # Within the interval nothing is pushed, however much the figures move.
    learner.record([_stats("a", [1000.0] * 500)])
    clock.t += 4.9
    assert not learner.tick()
    clock.t += 0.2
    assert learner.tick()
    # Nothing moved materially: no new version.
    version = store.version
    clock.t += 5.0
    assert not learner.tick() and store.version == version
    # A folder change recompiles and the priors come back in the same push.
    (tmp_path / "pools.yaml").write_text(
        POOLS.replace(
            "outputPerMTok: 2.0}}\n    - {name: b", "outputPerMTok: 3.0}}\n    - {name: b"
        )
    )
    assert store.publish(compile_folder(tmp_path))
    assert store.snapshot is not None and store.snapshot.pools[0].candidates[0].observed_p95_ms


def test_nothing_pushed_when_adaptation_is_off(tmp_path: Path) -> None:
    store, learner, _, _ = _setup(tmp_path, enabled=False)
    version = store.version
    learner.record([_stats("a", [100.0] * 50)])
    assert not learner.tick() and store.version == version
    assert learner.as_dict()["models"]["a"]["p95_ms"] is not None  # type: ignore[index]


def test_drift_is_raised_and_cleared(tmp_path: Path) -> None:
    _, learner, clock, drifts = _setup(tmp_path)
    learner.record([_stats("a", [100.0] * 100, cost=0.001)])
    learner.tick()
    assert learner.baselines == {}  # one look is not a stable window
    clock.t += 5
    learner.tick()  # baseline: p95 100 ms, $0.001 per request
    assert set(learner.baselines) == {"a"}
    clock.t += 30  # three half-lives: the old samples weigh 1/8
    learner.record([_stats("a", [350.0] * 100, cost=0.001)])
    learner.tick()
    assert [(m, k, r) for m, k, r, _ in drifts] == [("a", "latency", True)]
    alerts = learner.as_dict()["alerts"]
    assert [(x["model"], x["kind"]) for x in alerts] == [("a", "latency")]  # type: ignore[index, union-attr]
    clock.t += 60
    learner.record([_stats("a", [110.0] * 200, cost=0.001)])
    learner.tick()
    assert [(m, k, r) for m, k, r, _ in drifts][-1] == ("a", "latency", False)
    assert learner.as_dict()["alerts"] == []
    assert "recovered" in drifts[-1][3]


def _tool_outcomes(
    intent: str, offered: int, called: int, *, policy: str = "p", cache_hit: bool = False
) -> list[dpb.Outcome]:
    return [
        dpb.Outcome(
            policy=policy,
            intent=intent,
            has_tools=True,
            cache_hit=cache_hit,
            tool_called=i < called,
        )
        for i in range(offered)
    ]


def test_observed_tool_use_replaces_the_declared_guess(tmp_path: Path) -> None:
    store, learner, clock, _ = _setup(tmp_path)
    declared = {i.name: i.tool_use_probability for i in store.snapshot.policies[0].intents}  # type: ignore[union-attr]
    assert declared == {"invoice": 0.2, "faq": 0.3}
    # 30 invoice requests offered tools and 27 answers called one; faq has too few samples;
    # requests without tools, cache hits and other policies say nothing.
    learner.tool_use.record("r1", _tool_outcomes("invoice", 30, 27))
    learner.tool_use.record("r1", _tool_outcomes("faq", 5, 0))
    learner.tool_use.record("r1", _tool_outcomes("invoice", 50, 0, cache_hit=True))
    learner.tool_use.record("r1", _tool_outcomes("invoice", 50, 0, policy="other"))
    learner.tool_use.record("r1", [dpb.Outcome(policy="p", intent="invoice")] * 50)
    assert learner.tick()
    served = {i.name: i.tool_use_probability for i in store.snapshot.policies[0].intents}  # type: ignore[union-attr]
    assert served == {"invoice": 0.9, "faq": 0.3}
    learned = learner.as_dict()["tool_use"]
    assert learned["p/invoice"] == 0.9 and "p/faq" not in learned  # type: ignore[index,operator]
    # A move below 0.1 is not worth a push; a larger one is, after the interval.
    clock.t += 6
    learner.tool_use.record("r1", _tool_outcomes("invoice", 4, 4))
    assert not learner.tick()


def test_tool_use_is_not_learned_without_adaptation(tmp_path: Path) -> None:
    store, learner, _, _ = _setup(tmp_path, enabled=False)
    learner.tool_use.record("r1", _tool_outcomes("invoice", 40, 40))
    learner.tick()
    served = {i.name: i.tool_use_probability for i in store.snapshot.policies[0].intents}  # type: ignore[union-attr]
    assert served == {"invoice": 0.2, "faq": 0.3}


def test_priors_per_intent_reach_the_router_score(tmp_path: Path) -> None:
    from skyroute.router.decide import score_pool
    from skyroute.router.signals import signals_from_messages
    from skyroute.router.table import build_table

    store, learner, _, _ = _setup(tmp_path)
    # Model a is quick on FAQs and slow on invoices; b the same everywhere.
    learner.record(
        [
            _stats("a", [100.0] * 40, intent="faq"),
            _stats("a", [900.0] * 40, intent="invoice"),
            _stats("b", [400.0] * 80, intent="faq"),
        ]
    )
    assert learner.tick()
    snap = store.snapshot
    assert snap is not None
    a = next(c for c in snap.pools[0].candidates if c.model == "a")
    assert abs(a.observed_by_intent["faq"].p95_ms - 100) <= 2
    assert abs(a.observed_by_intent["invoice"].p95_ms - 900) <= 10
    assert (
        "invoice"
        not in next(c for c in snap.pools[0].candidates if c.model == "b").observed_by_intent
    )
    table = build_table(snap).policy("p")
    assert table is not None
    s = signals_from_messages([{"role": "user", "content": "x"}], False)
    p95 = {
        i: {x.cand.model: x.p95_s for x in score_pool(table, table.pools["pool"], i, s, None)}
        for i in ("faq", "invoice")
    }
    assert abs(p95["faq"]["a"] - 0.1) < 0.005 and abs(p95["invoice"]["a"] - 0.9) < 0.02  # type: ignore[operator]
    assert p95["invoice"]["b"] == p95["faq"]["b"]  # b: its model-wide prior for both
