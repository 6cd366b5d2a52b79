"""Quality posteriors per (model, intent), learned from feedback, with the offline eval as prior.

Routers forward feedback already joined to the model and intent that served
the request (:mod:`skyroute.router.feedback`), so feedback hours later counts
like feedback at once. Per (model, intent) two conjugate posteriors share one
prior, the offline eval score ``q0`` with weight ``w`` (the policy's
``adaptation.qualityPriorWeight``, in observations):

- booleans: Beta(w·q0 + good, w·(1 − q0) + bad);
- scores in [0, 1]: a normal with prior mean q0 and prior precision w (in
  units of one observation's precision), so its posterior mean is
  (w·q0 + Σscore) / (w + n).

Both are the same estimator on the [0, 1] scale, so the figure pushed is
their pooled mean ``(w·q0 + good + Σscore) / (w + good + bad + n)``: with
no feedback it is the offline eval, and feedback overrules the eval once it
outnumbers ``w``. The same figure as a Beta: alpha = w·q0 + good + Σscore,
beta = w·(1 − q0) + bad + Σ(1 − score) (a score counting as that share of
a success), pushed with it for policies that Thompson-sample quality
(``adaptation.qualitySampling: thompson``). Comments are counted, not scored. One answer counts once
per source and kind: a repeat of (request id, source, boolean or score) is
ignored and counted (``duplicates``), within the last :data:`SEEN_MAX`
pieces, so a caller cannot outvote the fleet by rating one answer a thousand
times. Nothing decays here: a
quality judgement does not go stale on a latency half-life; the weight of
the prior is the one knob. The table is capped (``limits.SeriesCap``) and
saved and restored with the rest of the learned state (``persist``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from skyroute.control.limits import SeriesCap
from skyroute.v1 import distribution_pb2

#: Prior weight (observations) when no policy declares one.
DEFAULT_PRIOR_WEIGHT = 10.0
#: How many (request id, source, kind) keys are remembered to ignore repeats.
SEEN_MAX = 200_000


@dataclass(slots=True)
class Tally:
    """Feedback on one (model, intent)."""

    good: float = 0.0
    bad: float = 0.0
    scores: float = 0.0  # how many scores
    score_sum: float = 0.0
    score_sq: float = 0.0
    comments: int = 0

    @property
    def n(self) -> float:
        return self.good + self.bad + self.scores

    def posterior(self, prior: float, weight: float) -> float:
        """Pooled posterior mean quality in [0, 1]."""
        return (weight * prior + self.good + self.score_sum) / (weight + self.n)

    def beta(self, prior: float, weight: float) -> tuple[float, float]:
        """The pooled posterior as Beta(alpha, beta): what Thompson sampling draws from.

        A score s counts as s of a success and 1 - s of a failure (the usual way to
        Thompson-sample rewards in [0, 1]), so the mean alpha / (alpha + beta) is
        :meth:`posterior` and booleans alone give the conjugate Beta exactly.
        """
        return (
            weight * prior + self.good + self.score_sum,
            weight * (1.0 - prior) + self.bad + (self.scores - self.score_sum),
        )

    def as_list(self) -> list[float]:
        return [self.good, self.bad, self.scores, self.score_sum, self.score_sq, self.comments]

    @classmethod
    def of(cls, raw: object) -> Tally:
        """From :meth:`as_list` (saved state); ValueError when malformed."""
        if not isinstance(raw, list) or len(raw) != 6:
            raise ValueError("a tally is six numbers")
        vals = [float(x) for x in raw]
        if not all(math.isfinite(v) and v >= 0 for v in vals) or vals[3] > vals[2] + 1e-9:
            raise ValueError("a tally holds finite non-negative counts")
        return cls(vals[0], vals[1], vals[2], vals[3], vals[4], int(vals[5]))


class QualityPosteriors:
    """Feedback tallies per (model, intent); posteriors computed against a prior on demand."""

    def __init__(self, cap: SeriesCap) -> None:
        self.cap = cap
        self.tallies: dict[tuple[str, str], Tally] = {}
        self.received = 0
        self.rejected = 0  # feedback naming no model, or a score outside [0, 1]
        self.changed = False  # new feedback since the last push
        self.duplicates = 0  # repeats of one answer's rating, ignored
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def _repeat(self, fb: distribution_pb2.Feedback, kind: str) -> bool:
        key = (fb.request_id, fb.source, kind)
        if key in self._seen:
            self.duplicates += 1
            return True
        self._seen[key] = None
        if len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        return False

    def record(self, feedback: Iterable[distribution_pb2.Feedback]) -> int:
        """Add feedback; returns how many pieces were kept."""
        return len(self.accept(feedback))

    def accept(
        self, feedback: Iterable[distribution_pb2.Feedback]
    ) -> list[distribution_pb2.Feedback]:
        """Add feedback; returns the pieces kept (checked, repeats left out)."""
        kept: list[distribution_pb2.Feedback] = []
        for fb in feedback:
            kind = fb.WhichOneof("value")
            if not fb.model or kind is None or (kind == "score" and not (0.0 <= fb.score <= 1.0)):
                self.rejected += 1
                continue
            if kind != "comment" and fb.request_id and self._repeat(fb, kind):
                continue
            t = self.cap.entry(self.tallies, (fb.model, fb.intent), Tally, "learning.quality")
            if t is None:
                continue
            if kind == "good":
                if fb.good:
                    t.good += 1
                else:
                    t.bad += 1
            elif kind == "score":
                t.scores += 1
                t.score_sum += fb.score
                t.score_sq += fb.score * fb.score
            else:
                t.comments += 1
            kept.append(fb)
            self.changed = self.changed or kind != "comment"
        self.received += len(kept)
        return kept

    def for_model(self, model: str) -> list[tuple[str, Tally]]:
        return [(i, t) for (m, i), t in self.tallies.items() if m == model and t.n > 0]

    def rows(
        self, priors: dict[tuple[str, str], float], weight: float
    ) -> list[distribution_pb2.QualityPosterior]:
        """``skyroute status``: per (model, intent) with feedback, prior, n and posterior.

        ``priors`` is the offline eval per (model, intent); one the snapshot does not
        name starts from 0.5, as the router does. At most ``cap.limit`` rows (the table's cap).
        """
        out = []
        for (model, intent), t in sorted(self.tallies.items()):
            if t.n <= 0:
                continue
            prior = priors.get((model, intent), 0.5)
            out.append(
                distribution_pb2.QualityPosterior(
                    model=model,
                    intent=intent,
                    prior=prior,
                    prior_weight=weight,
                    n=t.n,
                    good=t.good,
                    bad=t.bad,
                    scores=t.scores,
                    posterior=round(t.posterior(prior, weight), 5),
                )
            )
        return out

    def as_dict(self, weight: float) -> dict[str, object]:
        """For /debug/learning: per (model, intent) the counts and the Beta of the booleans."""
        out: dict[str, object] = {}
        for (model, intent), t in sorted(self.tallies.items()):
            mean = t.score_sum / t.scores if t.scores else None
            out[f"{model}/{intent}"] = {
                "good": t.good,
                "bad": t.bad,
                "scores": t.scores,
                "score_mean": mean,
                "comments": t.comments,
                "n": t.n,
            }
        return {
            "prior_weight": weight,
            "received": self.received,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "by_model_intent": out,
        }
