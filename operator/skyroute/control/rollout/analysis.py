"""Canary analysis: the candidate's outcomes against the stable version's.

Routers tag every outcome with the policy and the version that decided it
(a candidate's requests carry the policy's own name and the candidate's
version), so the control plane can hold the two sides of a rollout apart
without asking anything of the routers. ``OutcomeWindows`` listens to the
outcome aggregator and keeps, per (policy, version) under rollout, the
recent outcomes with their arrival time on this process's clock (routers'
clocks may disagree; arrival order is what intervals are cut by).

Cache hits are left out: each version caches in its own partition (a
candidate's answers never come from stable's cache), so stable's partition
is warm and the candidate's cold, and hits (free, a few milliseconds) would
make any candidate with caching look slower and dearer than it is.

``judge`` is Flagger's check, reduced to its core: over the same interval,
for each metric the policy lists, compare the candidate with stable against
a threshold; any metric out of bounds fails the interval, too few requests
on either side makes it inconclusive (hold, neither promote nor roll back),
otherwise it passes. Relative thresholds (p95, cost) are ratios to the
stable version's figure, so "no worse than 25% slower" holds whatever the
traffic's absolute latency is; success and fallback rates are compared in
absolute points, since a ratio of two rates near 1.0 says little.

Quality (the ``quality`` metric, only when the policy lists it) comes from
feedback, which arrives late (minutes, hours): it is not cut by interval but
counted per version since the rollout began, from the pieces the learner
accepted (one per answer, source and kind). Each side's quality is a Beta
posterior from a uniform prior, Beta(1 + good, 1 + bad) with a score
counting as that share of a good answer, so nothing but the two versions'
own feedback decides. The check fails when the posterior probability that
the candidate is worse than stable by more than the threshold is at least
:data:`QUALITY_CONFIDENCE` (normal approximation of the difference of two
Betas), so a candidate that answers worse rolls back even when it is faster
and cheaper; until each side has ``minFeedback`` pieces the interval cannot
pass (it holds), though another metric may still fail it.

Everything here is plain data and arithmetic on the event loop; the window
per version is bounded (``max_samples``), so a rollout left running for a
week costs the same memory as one that ran for a minute.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from skyroute.control.policy.model import AnalysisSpec
from skyroute.v1 import distribution_pb2

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
#: The posterior probability of "candidate worse than stable by more than the
#: threshold" at which the quality check fails.
QUALITY_CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class Window:
    """One side's figures over one interval."""

    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    cost_usd: float = 0.0
    p95_ms: float = 0.0

    @property
    def success_rate(self) -> float:
        return 1.0 - self.errors / self.requests if self.requests else 0.0

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.requests if self.requests else 0.0

    @property
    def cost_per_1k(self) -> float:
        return 1000.0 * self.cost_usd / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "successRate": round(self.success_rate, 4),
            "p95Ms": round(self.p95_ms, 1),
            "costPer1k": round(self.cost_per_1k, 4),
            "fallbackRate": round(self.fallback_rate, 4),
        }


@dataclass(slots=True)
class Feedbacks:
    """One version's feedback since its rollout began (a score is that share of a good answer)."""

    n: float = 0.0
    good: float = 0.0

    def beta(self) -> tuple[float, float]:
        """The posterior from a uniform prior."""
        return 1.0 + self.good, 1.0 + self.n - self.good

    @property
    def mean(self) -> float:
        a, b = self.beta()
        return a / (a + b)

    @property
    def variance(self) -> float:
        a, b = self.beta()
        return a * b / ((a + b) ** 2 * (a + b + 1.0))

    def as_dict(self) -> dict[str, float]:
        return {"feedback": self.n, "quality": round(self.mean, 4)}


# (arrival unix s, latency ms, failed, fell back, cost USD)
_Sample = tuple[float, float, bool, bool, float]


@dataclass(slots=True)
class OutcomeWindows:
    """Recent outcomes per (policy, version); only versions someone asked to watch."""

    max_samples: int = 200_000
    clock: Callable[[], float] = time.time
    _samples: dict[tuple[str, str], deque[_Sample]] = field(default_factory=dict)
    _feedback: dict[tuple[str, str], Feedbacks] = field(default_factory=dict)

    def watch(self, policy: str, version: str) -> None:
        self._samples.setdefault((policy, version), deque(maxlen=self.max_samples))
        self._feedback.setdefault((policy, version), Feedbacks())

    def watches(self, policy: str, version: str) -> bool:
        return (policy, version) in self._samples

    def unwatch_except(self, keep: set[tuple[str, str]]) -> None:
        for key in [k for k in self._samples if k not in keep]:
            del self._samples[key]
            self._feedback.pop(key, None)

    def feedback(self, batch: Sequence[distribution_pb2.Feedback]) -> None:
        """The learner's feedback listener: pieces it accepted (checked, one per answer)."""
        if not self._feedback:
            return
        for fb in batch:
            tally = self._feedback.get((fb.policy, fb.policy_version))
            kind = fb.WhichOneof("value")
            if tally is None or kind == "comment" or kind is None:
                continue
            if kind == "good":
                tally.n += 1.0
                tally.good += 1.0 if fb.good else 0.0
            elif 0.0 <= fb.score <= 1.0:
                tally.n += 1.0
                tally.good += fb.score

    def quality(self, policy: str, version: str) -> Feedbacks:
        """Feedback on ``version`` since it was first watched (a copy)."""
        got = self._feedback.get((policy, version))
        return Feedbacks(got.n, got.good) if got is not None else Feedbacks()

    def record(self, router_id: str, outcomes: Sequence[distribution_pb2.Outcome]) -> None:
        """The aggregator's listener: keep what belongs to a watched version."""
        if not self._samples:
            return
        now = self.clock()
        for o in outcomes:
            if o.cache_hit:
                # Model-served requests only: stable's cache partition is warm, the
                # candidate's starts cold, so hits ($0, a few ms) would skew cost and p95
                # against any candidate with caching on.
                continue
            samples = self._samples.get((o.policy, o.policy_version))
            if samples is not None:
                samples.append(
                    (now, o.latency_ms, bool(o.error_class), o.fallback_depth > 0, o.cost_usd)
                )

    def window(self, policy: str, version: str, since: float, until: float) -> Window:
        samples = self._samples.get((policy, version))
        if not samples:
            return Window()
        picked = [s for s in samples if since < s[0] <= until]
        if not picked:
            return Window()
        latencies = sorted(s[1] for s in picked if not s[2])
        p95 = (
            latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)]
            if latencies
            else 0.0
        )
        return Window(
            requests=len(picked),
            errors=sum(1 for s in picked if s[2]),
            fallbacks=sum(1 for s in picked if s[3]),
            cost_usd=sum(s[4] for s in picked),
            p95_ms=p95,
        )


@dataclass(frozen=True, slots=True)
class Check:
    metric: str
    stable: float
    candidate: float
    limit: float
    ok: bool
    note: str = ""

    def describe(self) -> str:
        return (
            f"{self.metric} candidate {self.candidate:.4g} vs stable {self.stable:.4g} "
            f"(threshold {self.limit:g}{self.note}): {'ok' if self.ok else 'FAILED'}"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    result: str  # PASS, FAIL or INCONCLUSIVE
    stable: Window
    candidate: Window
    checks: tuple[Check, ...] = ()
    reason: str = ""
    # (stable, candidate) feedback, when the quality metric is compared.
    quality: tuple[Feedbacks, Feedbacks] | None = None

    def summary(self) -> str:
        if self.result == INCONCLUSIVE:
            return self.reason
        failed = [c.describe() for c in self.checks if not c.ok]
        return "; ".join(failed) if failed else "all metrics within thresholds"

    def as_dict(self) -> dict[str, object]:
        stable: dict[str, object] = {**self.stable.as_dict()}
        candidate: dict[str, object] = {**self.candidate.as_dict()}
        if self.quality is not None:
            stable.update(self.quality[0].as_dict())
            candidate.update(self.quality[1].as_dict())
        return {
            "result": self.result,
            "stable": stable,
            "candidate": candidate,
            "message": self.summary(),
        }


def _check(metric: str, limit: float, stable: Window, cand: Window) -> Check:
    if metric == "success-rate":
        s, c = stable.success_rate, cand.success_rate
        ok = c >= s - limit - 1e-12
    elif metric == "p95-latency":
        s, c = stable.p95_ms, cand.p95_ms
        ok = c <= max(s, 1.0) * limit
    elif metric == "cost-per-1k":
        s, c = stable.cost_per_1k, cand.cost_per_1k
        ok = c <= s * limit + 1e-9
    else:  # fallback-rate
        s, c = stable.fallback_rate, cand.fallback_rate
        ok = c <= s + limit + 1e-12
    return Check(metric, s, c, limit, ok)


def _quality_check(limit: float, stable: Feedbacks, cand: Feedbacks) -> Check:
    """Fails when P(candidate < stable - limit) >= QUALITY_CONFIDENCE under the posteriors."""
    sd = math.sqrt(stable.variance + cand.variance)
    z = (stable.mean - limit - cand.mean) / sd
    worse = 0.5 * math.erfc(-z / math.sqrt(2.0))  # the normal CDF at z
    note = f"; P(worse by more) {worse:.3f}, feedback {cand.n:g} vs {stable.n:g}"
    return Check("quality", stable.mean, cand.mean, limit, worse < QUALITY_CONFIDENCE, note)


def judge(
    spec: AnalysisSpec,
    stable: Window,
    candidate: Window,
    quality: tuple[Feedbacks, Feedbacks] | None = None,
) -> Verdict:
    """Pass, fail or inconclusive for one interval; ``quality`` is (stable's, candidate's)."""
    short = [
        f"{side} {w.requests} requests"
        for side, w in (("candidate", candidate), ("stable", stable))
        if w.requests < spec.min_requests
    ]
    if short:
        return Verdict(
            INCONCLUSIVE,
            stable,
            candidate,
            reason=f"inconclusive: {', '.join(short)} < minRequests "
            f"{spec.min_requests} in the interval",
        )
    checks = tuple(
        _check(m.name, m.limit, stable, candidate) for m in spec.checks if m.name != "quality"
    )
    wanted = next((m for m in spec.checks if m.name == "quality"), None)
    waiting = ""
    fb: tuple[Feedbacks, Feedbacks] | None = None
    if wanted is not None:
        fb = quality or (Feedbacks(), Feedbacks())
        if min(fb[0].n, fb[1].n) < spec.min_feedback:
            waiting = (
                f"inconclusive: quality needs minFeedback {spec.min_feedback} on each side "
                f"(candidate {fb[1].n:g}, stable {fb[0].n:g} since the rollout began)"
            )
        else:
            checks += (_quality_check(wanted.limit, fb[0], fb[1]),)
    if not all(c.ok for c in checks):
        return Verdict(FAIL, stable, candidate, checks, quality=fb)
    if waiting:
        return Verdict(INCONCLUSIVE, stable, candidate, checks, waiting, fb)
    return Verdict(PASS, stable, candidate, checks, quality=fb)
