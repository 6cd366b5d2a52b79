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


# (arrival unix s, latency ms, failed, fell back, cost USD)
_Sample = tuple[float, float, bool, bool, float]


@dataclass(slots=True)
class OutcomeWindows:
    """Recent outcomes per (policy, version); only versions someone asked to watch."""

    max_samples: int = 200_000
    clock: Callable[[], float] = time.time
    _samples: dict[tuple[str, str], deque[_Sample]] = field(default_factory=dict)

    def watch(self, policy: str, version: str) -> None:
        self._samples.setdefault((policy, version), deque(maxlen=self.max_samples))

    def watches(self, policy: str, version: str) -> bool:
        return (policy, version) in self._samples

    def unwatch_except(self, keep: set[tuple[str, str]]) -> None:
        for key in [k for k in self._samples if k not in keep]:
            del self._samples[key]

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

    def describe(self) -> str:
        return (
            f"{self.metric} candidate {self.candidate:.4g} vs stable {self.stable:.4g} "
            f"(threshold {self.limit:g}): {'ok' if self.ok else 'FAILED'}"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    result: str  # PASS, FAIL or INCONCLUSIVE
    stable: Window
    candidate: Window
    checks: tuple[Check, ...] = ()
    reason: str = ""

    def summary(self) -> str:
        if self.result == INCONCLUSIVE:
            return self.reason
        failed = [c.describe() for c in self.checks if not c.ok]
        return "; ".join(failed) if failed else "all metrics within thresholds"

    def as_dict(self) -> dict[str, object]:
        return {
            "result": self.result,
            "stable": self.stable.as_dict(),
            "candidate": self.candidate.as_dict(),
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


def judge(spec: AnalysisSpec, stable: Window, candidate: Window) -> Verdict:
    """Pass, fail or inconclusive for one interval."""
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
    checks = tuple(_check(m.name, m.limit, stable, candidate) for m in spec.checks)
    return Verdict(PASS if all(c.ok for c in checks) else FAIL, stable, candidate, checks)
