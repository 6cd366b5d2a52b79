"""Canaries judge quality: the ``quality`` analysis metric over feedback, in the controller.

As in ``test_control_rollout``: no API server and no routers, objects
validated and compiled as the control plane does, the clock a variable.
Feedback is fed through the learner's listener (what the distribution
service does with each router batch), so repeats of one answer's rating are
left out before the analysis sees them.

- A candidate faster and cheaper than stable, with every outcome metric in
  bounds, but whose answers are rated worse, is rolled back on feedback
  alone, and the reason names quality.
- An equal candidate passes and is promoted; until each side has
  ``minFeedback`` pieces the rollout holds (never promoted unjudged).
- One answer rated a hundred times counts once.
- Without ``quality`` among the metrics feedback changes nothing (the
  default metrics stay the four outcome ones).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from test_control_rollout import REF, Clock, compile_with, outcomes, policy

from skyroute.control.learning.loop import Learner
from skyroute.control.policy.model import AnalysisSpec
from skyroute.control.policy.store import SnapshotStore
from skyroute.control.rollout.analysis import FAIL, INCONCLUSIVE, PASS, Feedbacks, Window, judge
from skyroute.control.rollout.controller import RolloutController
from skyroute.control.rollout.state import HOLDING, PROGRESSING, PROMOTED, ROLLED_BACK, STABLE
from skyroute.v1 import distribution_pb2

QUALITY_ROLLOUT: dict[str, Any] = {
    "stickiness": "user",
    "steps": [{"weight": 10, "pauseSeconds": 0}, {"weight": 50, "pauseSeconds": 0}],
    "analysis": {
        "intervalSeconds": 5,
        "minRequests": 20,
        "failureLimit": 2,
        "minFeedback": 40,
        "metrics": [
            {"name": "success-rate"},
            {"name": "p95-latency"},
            {"name": "cost-per-1k"},
            {"name": "quality", "threshold": 0.05},
        ],
    },
}


def _started(
    tmp_path: Path, rollout: dict[str, Any] = QUALITY_ROLLOUT
) -> tuple[RolloutController, Learner, Clock, str, str]:
    clock = Clock()
    ctl = RolloutController(clock=clock)
    learner = Learner(SnapshotStore(tmp_path))
    learner.feedback_listeners.append(ctl.windows.feedback)
    first = ctl.apply(*compile_with(policy("fast", rollout)))
    served = ctl.apply(*compile_with(policy("smart", rollout)))
    assert ctl.states[REF].phase == PROGRESSING
    return ctl, learner, clock, first.policies[0].version, served.policies[1].version


def _rated(version: str, n: int, quality: float, rng: random.Random, tag: str) -> list[Any]:
    return [
        distribution_pb2.Feedback(
            request_id=f"{tag}-{version}-{i}",
            policy="support",
            policy_version=version,
            model="m",
            intent="faq",
            source="user",
            good=rng.random() < quality,
        )
        for i in range(n)
    ]


def _interval(
    ctl: RolloutController,
    learner: Learner,
    clock: Clock,
    versions: tuple[str, str],
    hidden: tuple[float, float],
    n_feedback: int,
    rng: random.Random,
    tag: str,
) -> None:
    """One analysis interval: the candidate 30% faster and cheaper, feedback from ``hidden``."""
    stable_v, cand_v = versions
    clock.now += 5
    ctl.windows.record(
        "r",
        outcomes(stable_v, 100, latency=100, cost=0.002)
        + outcomes(cand_v, 50, latency=70, cost=0.0014),
    )
    learner.feedback(
        _rated(stable_v, n_feedback, hidden[0], rng, tag)
        + _rated(cand_v, n_feedback, hidden[1], rng, tag)
    )
    clock.now += 0.1
    ctl.tick()


def test_a_faster_cheaper_candidate_with_worse_answers_is_rolled_back_on_feedback(
    tmp_path: Path,
) -> None:
    ctl, learner, clock, stable_v, cand_v = _started(tmp_path)
    rng = random.Random(7)
    for i in range(6):
        _interval(ctl, learner, clock, (stable_v, cand_v), (0.85, 0.55), 25, rng, f"i{i}")
        if ctl.states[REF].phase == ROLLED_BACK:
            break
    st = ctl.states[REF]
    assert st.phase == ROLLED_BACK and st.failed_version == cand_v, st.message
    last = ctl.events[-1]
    assert last.reason == "RolledBack" and "quality" in last.message, last.message
    # Every other metric was within bounds: the candidate was faster and cheaper.
    assert "p95-latency" not in last.message and "cost-per-1k" not in last.message
    analysis = st.last_analysis or {}
    cand = analysis["candidate"]
    stable = analysis["stable"]
    assert cand["p95Ms"] < stable["p95Ms"] and cand["costPer1k"] < stable["costPer1k"]
    assert cand["quality"] < stable["quality"] - 0.1 and cand["feedback"] >= 40
    # The first interval (25 pieces a side < minFeedback 40) held instead of judging.
    reasons = [e.reason for e in ctl.events]
    assert reasons[:3] == ["RolloutStarted", "Holding", "AnalysisFailed"], reasons


def test_an_equal_candidate_holds_until_enough_feedback_then_is_promoted(tmp_path: Path) -> None:
    ctl, learner, clock, stable_v, cand_v = _started(tmp_path)
    rng = random.Random(3)
    _interval(ctl, learner, clock, (stable_v, cand_v), (0.8, 0.8), 10, rng, "a")
    st = ctl.states[REF]
    assert st.phase == HOLDING and "minFeedback 40" in st.message, st.message
    for i in range(8):
        _interval(ctl, learner, clock, (stable_v, cand_v), (0.8, 0.8), 40, rng, f"b{i}")
        if ctl.states[REF].phase == PROMOTED:
            break
    assert ctl.states[REF].phase == PROMOTED, ctl.states[REF].message
    assert ctl.states[REF].stable_version == cand_v


def test_one_answer_rated_a_hundred_times_counts_once(tmp_path: Path) -> None:
    ctl, learner, _, stable_v, cand_v = _started(tmp_path)
    bad = distribution_pb2.Feedback(
        request_id="same",
        policy="support",
        policy_version=cand_v,
        model="m",
        intent="faq",
        source="user",
        good=False,
    )
    learner.feedback([bad] * 100)
    assert ctl.windows.quality("support", cand_v).n == 1
    assert ctl.windows.quality("support", stable_v).n == 0
    # Feedback on a version nobody watches is not kept.
    learner.feedback(_rated("sha256:0000000000000000", 5, 0.5, random.Random(1), "x"))
    assert ctl.windows.quality("support", "sha256:0000000000000000").n == 0


def test_without_the_quality_metric_feedback_changes_nothing(tmp_path: Path) -> None:
    plain = {**QUALITY_ROLLOUT, "analysis": {"intervalSeconds": 5, "minRequests": 20}}
    ctl, learner, clock, stable_v, cand_v = _started(tmp_path, plain)
    rng = random.Random(5)
    for i in range(4):
        _interval(ctl, learner, clock, (stable_v, cand_v), (0.9, 0.1), 50, rng, f"p{i}")
    assert ctl.states[REF].phase in (PROMOTED, STABLE), ctl.states[REF].message
    assert [m.name for m in AnalysisSpec().checks] == [
        "success-rate",
        "p95-latency",
        "cost-per-1k",
        "fallback-rate",
    ]


@pytest.mark.parametrize(
    ("stable", "cand", "result"),
    [
        (Feedbacks(100, 85), Feedbacks(100, 55), FAIL),  # clearly worse
        (Feedbacks(100, 85), Feedbacks(100, 83), PASS),  # within the threshold
        (Feedbacks(100, 85), Feedbacks(100, 95), PASS),  # better
        (Feedbacks(100, 85), Feedbacks(5, 0), INCONCLUSIVE),  # too little feedback
    ],
)
def test_judge_quality(stable: Feedbacks, cand: Feedbacks, result: str) -> None:
    spec = AnalysisSpec.model_validate(
        {"minRequests": 1, "minFeedback": 30, "metrics": [{"name": "quality"}]}
    )
    w = Window(requests=10, p95_ms=100, cost_usd=0.01)
    verdict = judge(spec, w, w, (stable, cand))
    assert verdict.result == result, verdict.summary()
    if result == FAIL:
        assert "P(worse by more)" in verdict.summary()


def test_a_followers_ratings_reach_the_leaders_analysis(acmeshop: Path) -> None:
    """The follower's forwarder sends accepted ratings of watched versions over real gRPC."""
    import asyncio

    from test_control_distribution import eventually, run

    from skyroute.control.kube.forward import OutcomeForwarder
    from skyroute.control.server import ControlPlane

    async def scenario(plane: ControlPlane) -> None:
        leader = plane.rollouts.windows
        plane.service.on_forwarded_feedback = leader.feedback  # as operator.py wires it
        leader.watch("support", "v-cand")
        follower = Learner(SnapshotStore(acmeshop))
        forwarder = OutcomeForwarder(
            "op-b", lambda: plane.address, lambda: True, lambda p, v: p == "support", 0.05
        )
        follower.feedback_listeners.append(forwarder.feedback)
        rated = _rated("v-cand", 12, 0.5, random.Random(2), "f")
        follower.feedback(rated + rated[:4])  # repeats: the follower's learner drops them
        elsewhere = distribution_pb2.Feedback(
            request_id="x", policy="other", policy_version="v", model="m", good=True
        )
        follower.feedback([elsewhere])  # no rollout of it: not forwarded
        stop = asyncio.Event()
        task = asyncio.create_task(forwarder.run(stop))
        try:
            await eventually(lambda: leader.quality("support", "v-cand").n == 12, timeout=10)
        finally:
            stop.set()
            await task
        got = leader.quality("support", "v-cand")
        assert got.good == sum(fb.good for fb in rated)
        assert forwarder.forwarded == 12 and forwarder.dropped == 0

    run(scenario, acmeshop)
