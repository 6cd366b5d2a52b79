"""Thompson sampling over quality in scored selection: draws, shares, seeds and Explain.

- The sampler's Beta draws have the right mean and variance (checked against
  the closed forms, tolerances several standard errors wide).
- A pool of two models, the better one's posterior settled by feedback and
  the other's uncertain: each leads in about the share of draws in which its
  quality exceeds the other's (the probability computed by numerical
  integration of the two Betas), the hallmark of Thompson sampling.
- The draws are a function of the request id: the same id gives the same
  decision and draws, another id others; without a request id (policy tests)
  the posterior means decide, as with ``qualitySampling: mean``.
- ``minQuality`` is judged on the posterior mean, never on a lucky draw.
- Explain shows prior, n, the posterior and the draw (``quality_draw``).
- A bad ``quality_sampling`` in a snapshot is refused with the policy named.
"""

from __future__ import annotations

import math
import statistics

import pytest

from skyroute.router.decide import decide, explain
from skyroute.router.sampling import draw, seed_of
from skyroute.router.signals import signals_from_messages
from skyroute.router.table import SnapshotError, build_table
from skyroute.v1 import snapshot_pb2 as pb

ASK = signals_from_messages([{"role": "user", "content": "hello"}], False)
# intent "unknown": no intents are declared


def _cand(model: str, quality: float, learned: pb.LearnedQuality | None = None) -> pb.Candidate:
    c = pb.Candidate(
        model=model,
        provider="openai",
        endpoint="http://127.0.0.1:1/v1",
        family=model,
        input_price_per_mtok=1.0,
        output_price_per_mtok=1.0,
        quality={"*": quality},
    )
    if learned is not None:
        c.learned_quality["unknown"].CopyFrom(learned)
    return c


def _table(  # type: ignore[no-untyped-def]
    sampling: str = "thompson",
    min_quality: float = 0.0,
    cands: list[pb.Candidate] | None = None,
):
    policy = pb.Policy(
        name="p",
        version="v",
        default_pool="pool",
        selection=pb.Selection(mode="scored", min_quality=min_quality),
        weights=pb.ScoringWeights(cost=0.0, latency=0.0, success=0.0, quality=1.0),
        adaptation=pb.Adaptation(
            enabled=True,
            exploration=0.0,
            quality_prior_weight=4,
            quality_sampling=sampling,
        ),
    )
    # "sure": 90 observations, Beta(63, 27) (mean 0.7); "unsure": its eval 0.6 with weight 4.
    sure = pb.LearnedQuality(prior=0.5, n=90, posterior=0.7, alpha=63, beta=27)
    pool = pb.Pool(
        name="pool", candidates=cands or [_cand("sure", 0.5, sure), _cand("unsure", 0.6)]
    )
    snap = pb.Snapshot(version="sha256:x", default_policy="p", policies=[policy], pools=[pool])
    t = build_table(snap).policy("p")
    assert t is not None
    return t


@pytest.mark.parametrize(("a", "b"), [(8.0, 4.0), (0.5, 0.5), (2.0, 30.0), (120.0, 60.0)])
def test_beta_draws_have_the_closed_form_mean_and_variance(a: float, b: float) -> None:
    n = 20_000
    xs = [draw(seed_of(f"r{i}"), 7, a, b) for i in range(n)]
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert all(0.0 < x < 1.0 for x in xs)
    assert abs(statistics.fmean(xs) - mean) < 5 * math.sqrt(var / n)
    assert statistics.variance(xs) == pytest.approx(var, rel=0.06)


def _p_greater(a1: float, b1: float, a2: float, b2: float, steps: int = 4000) -> float:
    """P(X > Y) for X ~ Beta(a1, b1), Y ~ Beta(a2, b2), by the midpoint rule."""

    def pdf(x: float, a: float, b: float) -> float:
        return math.exp(
            (a - 1) * math.log(x)
            + (b - 1) * math.log(1 - x)
            + math.lgamma(a + b)
            - math.lgamma(a)
            - math.lgamma(b)
        )

    h = 1.0 / steps
    xs = [(i + 0.5) * h for i in range(steps)]
    cdf_y, total = 0.0, 0.0
    for x in xs:
        cdf_y += pdf(x, a2, b2) * h
        total += pdf(x, a1, b1) * cdf_y * h
    return total


def test_each_model_leads_in_the_share_its_posterior_is_the_larger() -> None:
    t = _table()
    n = 6000
    led = sum(decide(t, ASK, request_id=f"req-{i}").chain[0].model == "unsure" for i in range(n))
    # unsure ~ Beta(2.4, 1.6) (eval 0.6, weight 4); sure ~ Beta(63, 27).
    expected = _p_greater(2.4, 1.6, 63, 27)
    sigma = math.sqrt(expected * (1 - expected) / n)
    assert 0.2 < expected < 0.5
    assert abs(led / n - expected) < 5 * sigma, (led / n, expected)
    # With the means, the higher posterior mean always leads: sure (0.7) over unsure (0.6).
    means = _table(sampling="mean")
    assert {decide(means, ASK, request_id=f"req-{i}").chain[0].model for i in range(200)} == {
        "sure"
    }


def test_draws_are_a_function_of_the_request_id() -> None:
    t = _table()

    def draws(rid: str | None) -> dict[str, float | None]:
        d = decide(t, ASK, request_id=rid)
        assert d.scores is not None
        return {x.cand.model: x.draw for x in d.scores}

    assert draws("abc") == draws("abc")
    assert draws("abc") != draws("abd")
    # Another table built from the same snapshot (another router) draws the same.
    assert draws("abc") == {
        x.cand.model: x.draw for x in decide(_table(), ASK, request_id="abc").scores or ()
    }
    # No request id (policy tests): no draw, the posterior mean decides.
    assert draws(None) == {"sure": None, "unsure": None}
    assert decide(t, ASK).chain[0].model == "sure"


def test_min_quality_is_judged_on_the_posterior_mean_not_the_draw() -> None:
    t = _table(min_quality=0.65)
    for i in range(300):
        d = decide(t, ASK, request_id=f"q{i}")
        assert [c.model for c in d.chain] == ["sure"], d.scores


def test_explain_shows_prior_n_posterior_and_the_draw() -> None:
    t = _table()
    d = decide(t, ASK, request_id="explained")
    out = explain(d, ASK)
    by = {s.model: s for s in out.scores}
    sure, unsure = by["sure"], by["unsure"]
    assert (sure.quality_prior, sure.quality_n, sure.quality) == (0.5, 90, pytest.approx(0.7))
    assert sure.HasField("quality_draw") and unsure.HasField("quality_draw")
    assert sure.quality_draw == draw(seed_of("explained"), t.pools["pool"][0].sample_key, 63, 27)
    assert unsure.quality_draw == draw(
        seed_of("explained"), t.pools["pool"][1].sample_key, 2.4, 1.6
    )
    # The quality term is the draw's gap, not the mean's.
    best = min(sure.quality_draw, unsure.quality_draw)
    lead = out.chain[0]
    assert by[lead].quality_draw == max(sure.quality_draw, unsure.quality_draw), (best, out)
    text = "\n".join(out.reasons)
    assert "posterior from prior 0.50 and n 90" in text
    assert f"Thompson draw {sure.quality_draw:.3f} from Beta(63, 27)" in text
    # Mean mode: no draw in Explain.
    plain = explain(decide(_table(sampling="mean"), ASK, request_id="x"), ASK)
    assert not any(s.HasField("quality_draw") for s in plain.scores)


def test_an_older_push_without_beta_parameters_is_drawn_around_its_posterior() -> None:
    old = pb.LearnedQuality(prior=0.5, n=96, posterior=0.75)  # no alpha/beta
    t = _table(cands=[_cand("old", 0.5, old), _cand("other", 0.5)])
    assert t.pools["pool"][0].quality_beta("unknown", 4.0) == pytest.approx((75.0, 25.0))
    bad = pb.LearnedQuality(prior=0.5, n=96, posterior=0.75, alpha=float("nan"), beta=-1)
    t = _table(cands=[_cand("bad", 0.5, bad), _cand("other", 0.5)])
    assert t.pools["pool"][0].quality_beta("unknown", 4.0) == pytest.approx((75.0, 25.0))


def test_a_bad_quality_sampling_is_refused_naming_the_policy() -> None:
    with pytest.raises(SnapshotError, match=r"policy 'p'.*quality_sampling 'ucb'"):
        _table(sampling="ucb")
