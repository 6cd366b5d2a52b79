"""The rollout controller on its own: canary snapshots, analysis, promotion, rollback, pin.

No API server and no routers: objects are validated and compiled exactly as
the control plane does (``validate`` + ``compile_objects``), outcomes are fed
to the controller's windows as routers' batches would be, and the clock is a
variable. The served snapshots are checked by building the router's own
tables from them (``skyroute.router.table.build_table``), the way a router
receives them, and splitting with the router's own hash.
"""

from __future__ import annotations

from typing import Any

import yaml

from skyroute.control.policy.compiler import compile_objects
from skyroute.control.policy.loader import SourceDocument
from skyroute.control.policy.model import RoutingPolicy
from skyroute.control.policy.validate import validate
from skyroute.control.rollout.controller import CANDIDATE_SUFFIX, RolloutController
from skyroute.control.rollout.state import (
    HOLDING,
    PINNED,
    PROGRESSING,
    PROMOTED,
    ROLLED_BACK,
    STABLE,
    RolloutState,
)
from skyroute.router.canary import choose
from skyroute.router.table import build_table
from skyroute.v1 import distribution_pb2, snapshot_pb2

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: fast}
spec:
  models:
    - {name: cheap-a, provider: openai, endpoint: "http://127.0.0.1:9/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: smart}
spec:
  models:
    - {name: smart-b, provider: anthropic, endpoint: "http://127.0.0.1:9",
       pricing: {inputPerMTok: 3.0, outputPerMTok: 15.0}}
"""


def policy(pool: str, rollout: dict[str, Any] | None = None, pin: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "default": True,
        "intents": [{"name": "faq", "keywords": ["password"]}],
        "rules": [{"name": "faq", "match": {"intents": ["faq"]}, "pool": pool}],
        "defaultPool": "fast",
    }
    if rollout is not None:
        spec["rollout"] = rollout
    if pin:
        spec["pinVersion"] = pin
    return {
        "apiVersion": "skyroute.io/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": "support"},
        "spec": spec,
    }


ROLLOUT = {
    "stickiness": "user",
    "steps": [{"weight": 5, "pauseSeconds": 10}, {"weight": 50, "pauseSeconds": 10}],
    "analysis": {"intervalSeconds": 5, "minRequests": 20, "failureLimit": 2},
}
REF = ("default", "support")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def compile_with(pol: dict[str, Any]) -> tuple[snapshot_pb2.Snapshot, dict[Any, RoutingPolicy]]:
    docs = [
        SourceDocument(file="pools.yaml", index=i, data=d)
        for i, d in enumerate(yaml.safe_load_all(POOLS))
    ]
    docs.append(SourceDocument(file="policy.yaml", index=0, data=pol))
    objects = validate(docs)
    snapshot = compile_objects(objects)
    policies = {
        ("default", p.obj.metadata.name): p.obj
        for p in objects.policies
        if isinstance(p.obj, RoutingPolicy)
    }
    return snapshot, policies


def step(ctl: RolloutController, pol: dict[str, Any]) -> snapshot_pb2.Snapshot:
    return ctl.apply(*compile_with(pol))


def outcomes(
    version: str, n: int, failures: int = 0, latency: float = 100.0, cost: float = 0.001
) -> list[distribution_pb2.Outcome]:
    return [
        distribution_pb2.Outcome(
            policy="support",
            policy_version=version,
            latency_ms=latency,
            cost_usd=cost,
            error_class="server_error" if i < failures else "",
        )
        for i in range(n)
    ]


def share(snapshot: snapshot_pb2.Snapshot, users: int = 20_000) -> float:
    stable = build_table(snapshot).policy("support")
    assert stable is not None
    hits = sum(choose(stable, user=f"u{i}").track == "candidate" for i in range(users))
    return hits / users


def started() -> tuple[RolloutController, Clock, str, str]:
    clock = Clock()
    ctl = RolloutController(clock=clock)
    first = step(ctl, policy("fast", ROLLOUT))
    assert ctl.states[REF].phase == STABLE and ctl.events == []
    stable_version = first.policies[0].version
    served = step(ctl, policy("smart", ROLLOUT))
    st = ctl.states[REF]
    assert st.phase == PROGRESSING and st.weight == 5
    assert [e.reason for e in ctl.events] == ["RolloutStarted"]
    return ctl, clock, stable_version, served.policies[1].version


def test_new_spec_becomes_a_sticky_five_percent_candidate() -> None:
    ctl, _, stable_version, candidate_version = started()
    served = step(ctl, policy("smart", ROLLOUT))
    names = [p.name for p in served.policies]
    assert names == ["support", "support" + CANDIDATE_SUFFIX]
    stable, candidate = served.policies
    assert stable.version == stable_version and stable.rules[0].pool == "fast"
    assert candidate.candidate_of == "support" and candidate.rules[0].pool == "smart"
    assert stable.canary.weight_bp == 500 and stable.canary.policy == candidate.name
    assert candidate.version == candidate_version != stable_version
    # 20,000 users: 5% +- 4.5 standard deviations (0.7 points).
    assert abs(share(served) - 0.05) < 0.007
    table = build_table(served).policy("support")
    assert table is not None
    picks = {u: choose(table, user=u).version for u in (f"u{i}" for i in range(500))}
    assert all(choose(table, user=u).version == v for u, v in picks.items())


def test_promotes_after_passing_steps_and_keeps_users_on_the_candidate() -> None:
    ctl, clock, stable_v, cand_v = started()
    before = build_table(step(ctl, policy("smart", ROLLOUT))).policy("support")
    assert before is not None
    early = {
        u for u in (f"u{i}" for i in range(4000)) if choose(before, user=u).track == "candidate"
    }
    for _ in range(2):  # step 1: two passing intervals (pause 10 s)
        clock.now += 5
        ctl.windows.record("r", outcomes(stable_v, 200) + outcomes(cand_v, 30))
        clock.now += 0.5
        changed = ctl.tick()
    assert changed and ctl.states[REF].weight == 50
    after = build_table(step(ctl, policy("smart", ROLLOUT))).policy("support")
    assert after is not None
    # Sticky across the weight change: nobody who had the candidate goes back.
    assert all(choose(after, user=u).track == "candidate" for u in early)
    for _ in range(2):
        clock.now += 5
        ctl.windows.record("r", outcomes(stable_v, 100) + outcomes(cand_v, 100))
        clock.now += 0.5
        ctl.tick()
    st = ctl.states[REF]
    assert st.phase == PROMOTED and st.stable_version == cand_v
    assert [e.reason for e in ctl.events][-2:] == ["StepAdvanced", "Promoted"]
    served = step(ctl, policy("smart", ROLLOUT))
    assert [p.name for p in served.policies] == ["support"]
    assert served.policies[0].version == cand_v and not served.policies[0].HasField("canary")
    assert [(h.version, h.result) for h in st.history] == [
        (stable_v, "superseded"),
        (cand_v, "promoted"),
    ]


def test_worse_candidate_is_rolled_back_and_not_retried() -> None:
    ctl, clock, stable_v, cand_v = started()
    for _ in range(2):
        clock.now += 5
        ctl.windows.record(
            "r", outcomes(stable_v, 200, failures=2) + outcomes(cand_v, 40, failures=8)
        )
        clock.now += 0.1
        ctl.tick()
    st = ctl.states[REF]
    assert st.phase == ROLLED_BACK and st.failed_version == cand_v
    assert [e.reason for e in ctl.events][-3:] == ["AnalysisFailed", "AnalysisFailed", "RolledBack"]
    assert "success-rate" in ctl.events[-1].message
    served = step(ctl, policy("smart", ROLLOUT))  # the spec still says smart
    assert [p.name for p in served.policies] == ["support"]
    assert served.policies[0].version == stable_v and served.policies[0].rules[0].pool == "fast"
    assert ctl.states[REF].phase == ROLLED_BACK


def test_too_few_requests_holds_and_slower_candidate_fails() -> None:
    ctl, clock, stable_v, cand_v = started()
    clock.now += 5.5
    ctl.windows.record("r", outcomes(stable_v, 200) + outcomes(cand_v, 3))
    assert not ctl.tick()
    assert ctl.states[REF].phase == HOLDING and ctl.states[REF].weight == 5
    clock.now += 5.5
    ctl.windows.record(
        "r", outcomes(stable_v, 200, latency=100) + outcomes(cand_v, 50, latency=400)
    )
    ctl.tick()
    assert ctl.states[REF].failed_checks == 1
    assert "p95-latency" in ctl.events[-1].message


def test_manual_promote_abort_and_pin() -> None:
    ctl, _, stable_v, cand_v = started()
    acted, message = ctl.action(REF, "promote")
    assert acted and "manual promote" in message
    assert ctl.states[REF].stable_version == cand_v
    acted, message = ctl.action(REF, "abort")
    assert not acted and "no rollout in progress" in message
    # Pin the first version: it serves alone although the spec says otherwise.
    served = step(ctl, policy("smart", ROLLOUT, pin=stable_v))
    assert ctl.states[REF].phase == PINNED
    assert [p.version for p in served.policies] == [stable_v]
    served = step(ctl, policy("smart", ROLLOUT, pin="sha256:0000000000000000"))
    assert ctl.events[-1].reason == "PinNotFound"


def test_state_round_trips_through_status() -> None:
    ctl, _, _, _ = started()
    status, history = ctl.status(REF) or ({}, [])
    restored = RolloutState.from_status({"rollout": status, "history": history}, 0.0)
    assert restored is not None
    assert restored.as_status() == status and restored.history_status() == history


def _pools(price: float) -> str:
    return POOLS.replace("inputPerMTok: 3.0", f"inputPerMTok: {price}")


def compile_pools(
    pol: dict[str, Any], pools: str
) -> tuple[snapshot_pb2.Snapshot, dict[Any, RoutingPolicy]]:
    docs = [
        SourceDocument(file="pools.yaml", index=i, data=d)
        for i, d in enumerate(yaml.safe_load_all(pools))
    ]
    docs.append(SourceDocument(file="policy.yaml", index=0, data=pol))
    objects = validate(docs)
    return compile_objects(objects), {
        ("default", p.obj.metadata.name): p.obj
        for p in objects.policies
        if isinstance(p.obj, RoutingPolicy)
    }


def test_cache_hits_are_left_out_of_the_analysis() -> None:
    ctl, clock, stable_v, cand_v = started()
    clock.now += 5
    hits = [
        distribution_pb2.Outcome(
            policy="support", policy_version=stable_v, latency_ms=2, cache_hit=True
        )
        for _ in range(100)
    ]
    ctl.windows.record(
        "r",
        hits
        + outcomes(stable_v, 30, latency=100, cost=0.001)
        + outcomes(cand_v, 30, latency=100, cost=0.001),
    )
    clock.now += 0.5
    ctl.tick()
    analysis = ctl.states[REF].last_analysis
    assert analysis is not None and analysis["result"] == "pass", analysis
    assert analysis["stable"]["requests"] == 30


def test_a_pool_edit_mid_rollout_moves_nobody_and_keeps_the_analysis_going() -> None:
    ctl, clock, _, _ = started()
    before = build_table(step(ctl, policy("smart", ROLLOUT))).policy("support")
    assert before is not None
    users = [f"u{i}" for i in range(3000)]
    sides = {u: choose(before, user=u).track for u in users}
    # The candidate's pool changes price: new versions on both sides' snapshot entries.
    edited = ctl.apply(*compile_pools(policy("smart", ROLLOUT), _pools(4.0)))
    st = ctl.states[REF]
    assert st.phase == PROGRESSING
    new_stable = edited.policies[0].version
    new_candidate = edited.policies[1].version
    assert new_candidate == st.candidate_version
    after = build_table(edited).policy("support")
    assert after is not None
    assert all(choose(after, user=u).track == sides[u] for u in users)
    clock.now += 5
    ctl.windows.record("r", outcomes(new_stable, 100) + outcomes(new_candidate, 30))
    clock.now += 0.5
    ctl.tick()
    assert st.phase == PROGRESSING and (st.last_analysis or {}).get("result") == "pass"


def test_fewer_steps_mid_rollout_are_clamped_not_a_crash() -> None:
    ctl, clock, stable_v, cand_v = started()
    for _ in range(2):
        clock.now += 5
        ctl.windows.record("r", outcomes(stable_v, 200) + outcomes(cand_v, 30))
        clock.now += 0.5
        ctl.tick()
    assert ctl.states[REF].step == 1
    one_step = {**ROLLOUT, "steps": [{"weight": 20, "pauseSeconds": 10}]}
    step(ctl, policy("smart", one_step))
    st = ctl.states[REF]
    assert (st.step, st.weight, st.steps) == (0, 20, 1)
    clock.now += 11
    ctl.windows.record("r", outcomes(stable_v, 200) + outcomes(cand_v, 30))
    clock.now += 0.5
    ctl.tick()
    assert st.phase == PROMOTED
