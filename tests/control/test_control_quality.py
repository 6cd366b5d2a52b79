"""Quality posteriors: the offline eval as prior, feedback overrules it, pushed and persisted."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_control_learning import POLICY, POOLS, _setup

from skyroute.control.learning.loop import Learner
from skyroute.control.learning.persist import dump, restore
from skyroute.control.learning.quality import QualityPosteriors, Tally
from skyroute.control.limits import SeriesCap
from skyroute.control.policy.compiler import compile_folder
from skyroute.control.policy.store import SnapshotStore
from skyroute.v1 import distribution_pb2


def _fb(model: str, intent: str, **value: object) -> distribution_pb2.Feedback:
    return distribution_pb2.Feedback(model=model, intent=intent, **value)  # type: ignore[arg-type]


def test_posterior_is_the_prior_without_feedback_and_moves_with_it() -> None:
    t = Tally()
    assert t.posterior(0.9, 10) == pytest.approx(0.9)
    t.bad += 10
    assert t.posterior(0.9, 10) == pytest.approx(0.45)  # Beta(9, 11)
    assert t.beta(0.9, 10) == (9.0, 11.0)
    t.scores, t.score_sum = 20, 4.0
    assert t.posterior(0.9, 10) == pytest.approx((9 + 4) / 40)


def test_scores_count_as_shares_of_a_success_in_the_beta() -> None:
    t = Tally(good=3, bad=1, scores=4, score_sum=3.0)
    a, b = t.beta(0.5, 2)
    assert (a, b) == (1 + 3 + 3.0, 1 + 1 + 1.0)
    assert a / (a + b) == pytest.approx(t.posterior(0.5, 2))  # the same mean


def test_record_counts_kinds_and_rejects_what_names_no_model() -> None:
    q = QualityPosteriors(SeriesCap())
    kept = q.record(
        [
            _fb("a", "code", good=True),
            _fb("a", "code", good=False),
            _fb("a", "code", score=0.25),
            _fb("a", "code", comment="meh"),
            _fb("", "code", good=True),
            _fb("a", "code"),
            _fb("a", "code", score=1.5),
        ]
    )
    assert kept == 4 and q.rejected == 3 and q.changed
    t = q.tallies[("a", "code")]
    assert (t.good, t.bad, t.scores, t.score_sum, t.comments) == (1, 1, 1, 0.25, 1)
    d = q.as_dict(10.0)["by_model_intent"]
    assert d["a/code"]["n"] == 3  # type: ignore[index]


def test_one_answer_counts_once_per_source_and_kind() -> None:
    q = QualityPosteriors(SeriesCap())
    same = _fb("a", "code", good=True)
    same.request_id, same.source = "r1", "user"
    other = _fb("a", "code", good=True)
    other.request_id, other.source = "r1", "evaluator"
    scored = _fb("a", "code", score=0.5)
    scored.request_id, scored.source = "r1", "user"
    assert q.record([same, same, same, other, scored]) == 3
    assert q.duplicates == 2
    assert q.tallies[("a", "code")].n == 3


def test_feedback_is_pushed_as_the_posterior_per_candidate_and_intent(tmp_path: Path) -> None:
    store, learner, clock, _ = _setup(tmp_path)
    clock.t += 100
    learner.feedback([_fb("a", "faq", good=False) for _ in range(30)])
    assert learner.tick()
    cands = {c.model: c for pool in store.snapshot.pools for c in pool.candidates}
    lq = cands["a"].learned_quality["faq"]
    prior = cands["a"].quality.get("faq", cands["a"].quality.get("*", 0.5))
    assert (lq.prior, lq.n) == (prior, 30)
    assert lq.posterior == pytest.approx(10 * prior / 40, abs=1e-5)  # default weight 10
    # Thompson sampling's Beta: prior pseudo-counts plus the 30 bad answers.
    assert (lq.alpha, lq.beta) == pytest.approx((10 * prior, 10 * (1 - prior) + 30), abs=1e-4)
    assert "faq" not in cands["b"].learned_quality
    clock.t += 100
    assert not learner.tick()  # nothing new: no push
    assert learner.as_dict()["quality"]["received"] == 30  # type: ignore[index]


def test_tallies_survive_a_restart_and_bad_rows_are_skipped(tmp_path: Path) -> None:
    store, learner, _, _ = _setup(tmp_path)
    learner.feedback([_fb("m", "i", good=True), _fb("m", "i", score=0.5)])
    doc = dump(learner)
    doc["quality"].append(["m", "j", [1, 2]])
    doc["quality"].append(["m", "k", [1, 0, 1, 5, 0, 0]])  # a score sum above its count
    again = Learner(store)
    out = restore(again, doc)
    assert out.skipped == 2
    assert again.quality.tallies[("m", "i")].as_list() == [1, 0, 1, 0.5, 0.25, 0]
    assert again.quality.changed


def test_a_quality_posterior_falling_below_its_eval_raises_drift_and_clears(
    tmp_path: Path,
) -> None:
    (tmp_path / "pools.yaml").write_text(POOLS)
    policy = POLICY.replace("ENABLED", "true").replace(
        "driftCostRatio: 3.0", "driftCostRatio: 3.0, driftQualityDrop: 0.2"
    )
    (tmp_path / "policy.yaml").write_text(policy)
    store = SnapshotStore(str(tmp_path))
    drifts: list[tuple[str, str, bool, str]] = []
    learner = Learner(store, on_drift=lambda *a: drifts.append(a))
    store.publish(compile_folder(tmp_path))
    cand = {c.model: c for p in store.snapshot.pools for c in p.candidates}["a"]
    q0 = cand.quality.get("faq", cand.quality.get("*", 0.5))
    learner.feedback([_fb("a", "faq", good=False) for _ in range(9)])
    learner.tick()
    assert drifts == []  # fewer observations than the prior weight (10): not judged yet
    learner.feedback([_fb("a", "faq", good=False) for _ in range(11)])
    learner.tick()
    assert [(m, k, up) for m, k, up, _ in drifts] == [("a", "quality", True)]
    assert "faq" in drifts[0][3] and learner.alerts[("a", "quality")].baseline == q0
    learner.feedback([_fb("a", "faq", good=True) for _ in range(200)])
    learner.tick()
    assert [(m, k, up) for m, k, up, _ in drifts][-1] == ("a", "quality", False)
    assert ("a", "quality") not in learner.alerts
