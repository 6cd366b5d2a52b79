"""Counting and summarising the outcomes routers report.

Routers stream one ``Outcome`` per request (which pool and model served it,
latency, cost, error class, fallback depth, cache hit). Today the control
plane counts them for ``skyroute status``; next it will adapt each policy's
scoring weights from them (the brief's "adaptive learning"). This module is
the seam between the two: ``OutcomeAggregator.record`` is the only writer,
and readers get plain counts (``by_pool``, ``by_model``, ``by_router``) or
per (pool, model) ``ModelStats`` with success rate, mean cost and a recent
p95 latency. A weight adapter can also subscribe with ``add_listener`` and
see every batch as it arrives, without the gRPC layer knowing it exists.

Memory stays bounded: counters are per key, and the latency window per
(pool, model) keeps only the most recent ``window`` samples. Every keyed
table is capped (``limits.SeriesCap``): at the cap an outcome with a new key
still counts in the total and in the series already tracked, the new key is
not created, and the drop is counted (``dropped_series``).
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from skyroute.control.limits import SeriesCap
from skyroute.v1 import distribution_pb2

log = logging.getLogger("skyroute.control.outcomes")

# Keys used when an outcome names no pool or model (served from cache, or failed early).
CACHE_KEY = "(cache)"
NONE_KEY = "(none)"
Listener = Callable[[str, Sequence[distribution_pb2.Outcome]], None]


@dataclass(slots=True)
class ModelStats:
    """Running figures for one (pool, model)."""

    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    cache_hits: int = 0
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms_sum: float = 0.0
    recent_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=512))

    @property
    def success_rate(self) -> float:
        return 1.0 - self.errors / self.requests if self.requests else 1.0

    @property
    def mean_cost_usd(self) -> float:
        return self.cost_usd / self.requests if self.requests else 0.0

    @property
    def mean_latency_ms(self) -> float:
        return self.latency_ms_sum / self.requests if self.requests else 0.0

    def p95_latency_ms(self) -> float:
        """Nearest-rank p95 over the recent window; 0 when there is none."""
        if not self.recent_latency_ms:
            return 0.0
        ordered = sorted(self.recent_latency_ms)
        rank = max(1, math.ceil(0.95 * len(ordered)))
        return ordered[rank - 1]

    def as_dict(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "fallbacks": self.fallbacks,
            "cache_hits": self.cache_hits,
            "success_rate": round(self.success_rate, 6),
            "mean_cost_usd": self.mean_cost_usd,
            "mean_latency_ms": round(self.mean_latency_ms, 3),
            "p95_latency_ms": round(self.p95_latency_ms(), 3),
        }


class OutcomeAggregator:
    """Counts outcomes in total, per router, per pool, per model and per (pool, model)."""

    def __init__(self, window: int = 512) -> None:
        self._window = window
        self._total = 0
        self._by_router: Counter[str] = Counter()
        self._by_pool: Counter[str] = Counter()
        self._by_model: Counter[str] = Counter()
        self._stats: dict[tuple[str, str], ModelStats] = {}
        # Per (policy, policy version, pool): the case-study figures `skyroute top` shows.
        self._versions: dict[tuple[str, str, str], ModelStats] = {}
        self._listeners: list[Listener] = []
        self.cap = SeriesCap()

    def _new_stats(self) -> ModelStats:
        return ModelStats(recent_latency_ms=deque(maxlen=self._window))

    def _count(self, counter: Counter[str], key: str, n: int, name: str, owner: str = "") -> None:
        if key in counter or self.cap.admit(len(counter), name, owner, n):
            counter[key] += n

    @property
    def dropped_series(self) -> dict[str, int]:
        return dict(self.cap.dropped)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(router_id, outcomes)`` after each recorded batch."""
        self._listeners.append(listener)

    def record(self, router_id: str, outcomes: Iterable[distribution_pb2.Outcome]) -> int:
        """Count a batch from ``router_id``; returns how many outcomes it held."""
        batch = list(outcomes)
        for o in batch:
            unset = CACHE_KEY if o.cache_hit else NONE_KEY
            pool = o.pool or unset
            model = o.model or unset
            self._count(self._by_pool, pool, 1, "outcomes.by_pool", router_id)
            self._count(self._by_model, model, 1, "outcomes.by_model", router_id)
            stats = self.cap.entry(
                self._stats, (pool, model), self._new_stats, "outcomes.stats", router_id
            )
            if stats is not None:
                _add(stats, o)
            vkey = (o.policy or NONE_KEY, o.policy_version or NONE_KEY, pool)
            vstats = self.cap.entry(
                self._versions, vkey, self._new_stats, "outcomes.versions", router_id
            )
            if vstats is not None:
                _add(vstats, o)
        self._total += len(batch)
        self._count(self._by_router, router_id, len(batch), "outcomes.by_router")
        for listener in self._listeners:
            try:
                listener(router_id, batch)
            except Exception:  # a faulty listener must not lose the router's report
                log.exception("outcome listener failed")
        return len(batch)

    @property
    def total(self) -> int:
        return self._total

    def for_router(self, router_id: str) -> int:
        return self._by_router.get(router_id, 0)

    def by_router(self) -> dict[str, int]:
        return dict(sorted(self._by_router.items()))

    def by_pool(self) -> dict[str, int]:
        return dict(sorted(self._by_pool.items()))

    def by_model(self) -> dict[str, int]:
        return dict(sorted(self._by_model.items()))

    def by_version(self) -> list[dict[str, object]]:
        """Per (policy, policy version, pool): share of traffic, p95, success, cost, hit rate."""
        total = sum(s.requests for s in self._versions.values()) or 1
        return [
            {
                "policy": policy,
                "policy_version": version,
                "pool": pool,
                "share": round(s.requests / total, 6),
                "cost_per_1k_usd": s.mean_cost_usd * 1000.0,
                "cache_hit_rate": round(s.cache_hits / s.requests, 6) if s.requests else 0.0,
                **s.as_dict(),
            }
            for (policy, version, pool), s in sorted(self._versions.items())
        ]

    def stats(self) -> dict[tuple[str, str], ModelStats]:
        """Per (pool, model) figures; the live objects, do not mutate."""
        return dict(sorted(self._stats.items()))

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary (for /debug/outcomes)."""
        return {
            "total": self._total,
            "by_router": self.by_router(),
            "by_pool": self.by_pool(),
            "by_model": self.by_model(),
            "by_pool_model": {f"{p}/{m}": s.as_dict() for (p, m), s in self.stats().items()},
            "by_policy_version_pool": self.by_version(),
            "dropped_series": self.dropped_series,
        }


def _add(stats: ModelStats, o: distribution_pb2.Outcome) -> None:
    stats.requests += 1
    stats.errors += 1 if o.error_class else 0
    stats.fallbacks += 1 if o.fallback_depth > 0 else 0
    stats.cache_hits += 1 if o.cache_hit else 0
    stats.cost_usd += o.cost_usd
    stats.prompt_tokens += o.prompt_tokens
    stats.completion_tokens += o.completion_tokens
    stats.latency_ms_sum += o.latency_ms
    stats.recent_latency_ms.append(o.latency_ms)
