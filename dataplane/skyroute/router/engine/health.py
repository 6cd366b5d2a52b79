"""Per-endpoint health: outlier ejection, Retry-After cool-downs, latency percentiles.

A model endpoint that keeps failing should stop receiving traffic before
every request pays a timeout to find out. Following Envoy's outlier
detection, ``consecutive_failures`` failures in a row eject an endpoint for
``base * n`` where ``n`` counts its ejections, so a flapping endpoint stays
out longer each time; at most a share of a pool is ejected at once and never
the whole pool, so an incident that hits every model cannot eject them all.
A 429 with ``Retry-After`` is honoured as a cool-down of that endpoint for
the time the provider asked for, without counting as an outlier failure.

Only failures that say something about the endpoint count: a client error,
a context-length or content-filter refusal is about the request.

Each endpoint also keeps its last latencies in a small ring, from which the
hedging delay (a percentile) is recomputed every few samples rather than per
request. The decision-engine issue replaces this with mergeable sketches.

Ejections are the router's own, immediate reaction; the state is visible in
``/debug/status`` and reported to the control plane with every outcome batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from skyroute.router.providers.types import CLIENT_ERROR, CONTENT_FILTER, CONTEXT_LENGTH
from skyroute.router.table import Candidate, ReliabilitySettings
from skyroute.v1 import distribution_pb2

_NOT_ENDPOINT_FAULTS = frozenset({CLIENT_ERROR, CONTENT_FILTER, CONTEXT_LENGTH})
_RING = 256
_MIN_SAMPLES = 20
_RECOMPUTE_EVERY = 16
_ALPHA = 0.05


@dataclass(slots=True)
class EndpointState:
    model: str
    endpoint: str
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0  # monotonic seconds
    cooldown_until: float = 0.0  # from Retry-After
    latencies: np.ndarray = field(default_factory=lambda: np.zeros(_RING))
    samples: int = 0
    percentiles: dict[float, float] = field(default_factory=dict)
    # Exponentially weighted failure rate (alpha 0.05: about the last 20 calls).
    failure_rate: float = 0.0
    calls: int = 0

    def available(self, now: float) -> bool:
        return self.ejected_until <= now and self.cooldown_until <= now


class EndpointHealth:
    def __init__(self) -> None:
        self._states: dict[tuple[str, str], EndpointState] = {}
        self.ejected_total = 0  # ejections since start (a metric counter)

    def _state(self, c: Candidate) -> EndpointState:
        key = (c.model, c.target.endpoint)
        s = self._states.get(key)
        if s is None:
            s = self._states[key] = EndpointState(c.model, c.target.endpoint)
        return s

    def available(self, c: Candidate, now: float) -> bool:
        s = self._states.get((c.model, c.target.endpoint))
        return s is None or s.available(now)

    def order(self, chain: tuple[Candidate, ...]) -> tuple[Candidate, ...]:
        """The chain with ejected or cooling endpoints moved to the end (last resort)."""
        if not self._states:
            return chain
        now = time.monotonic()
        up = [c for c in chain if self.available(c, now)]
        if len(up) == len(chain):
            return chain
        return (*up, *(c for c in chain if not self.available(c, now)))

    def success(self, c: Candidate, latency_s: float) -> None:
        s = self._state(c)
        s.consecutive_failures = 0
        s.failure_rate *= 1.0 - _ALPHA
        s.calls += 1
        if s.ejections and time.monotonic() > s.ejected_until + 60.0:
            s.ejections -= 1  # healthy for a while: the next ejection is shorter again
        s.latencies[s.samples % _RING] = latency_s
        s.samples += 1
        if s.samples % _RECOMPUTE_EVERY == 0:
            s.percentiles.clear()

    def failure(
        self,
        c: Candidate,
        error_class: str,
        retry_after_s: float | None,
        settings: ReliabilitySettings,
        pool: tuple[Candidate, ...],
    ) -> None:
        if error_class in _NOT_ENDPOINT_FAULTS:
            return
        now = time.monotonic()
        s = self._state(c)
        s.failure_rate = s.failure_rate * (1.0 - _ALPHA) + _ALPHA
        s.calls += 1
        if retry_after_s:
            s.cooldown_until = max(s.cooldown_until, now + min(retry_after_s, 300.0))
            return
        s.consecutive_failures += 1
        if s.consecutive_failures < settings.outlier_consecutive_failures or not s.available(now):
            return
        ejected = sum(1 for other in pool if not self.available(other, now))
        cap = min(max(1, int(len(pool) * settings.outlier_max_ejection_share)), len(pool) - 1)
        if settings.outlier_max_ejection_share <= 0 or ejected >= cap:
            return
        s.ejections += 1
        self.ejected_total += 1
        s.ejected_until = now + settings.outlier_base_ejection_s * s.ejections
        s.consecutive_failures = 0

    def percentile(self, c: Candidate, q: float) -> float | None:
        s = self._states.get((c.model, c.target.endpoint))
        if s is None or s.samples < _MIN_SAMPLES:
            return None
        value = s.percentiles.get(q)
        if value is None:
            n = min(s.samples, _RING)
            value = s.percentiles[q] = float(np.percentile(s.latencies[:n], q))
        return value

    def p95_s(self, c: Candidate) -> float | None:
        """This router's own p95 for the endpoint, else the fleet's prior, else unknown."""
        own = self.percentile(c, 95.0)
        if own is not None:
            return own
        return c.observed_p95_s or None

    def failures(self, c: Candidate) -> float:
        s = self._states.get((c.model, c.target.endpoint))
        if s is not None and s.calls >= _MIN_SAMPLES:
            return s.failure_rate
        return c.observed_failure_rate

    def report(self) -> list[distribution_pb2.EndpointHealth]:
        now = time.monotonic()
        wall = time.time()
        return [
            distribution_pb2.EndpointHealth(
                model=s.model,
                endpoint=s.endpoint,
                ejected=s.ejected_until > now,
                ejections=s.ejections,
                consecutive_failures=s.consecutive_failures,
                ejected_until_unix_ms=int((wall + max(0.0, s.ejected_until - now)) * 1000)
                if s.ejected_until > now
                else 0,
            )
            for s in self._states.values()
        ]

    def as_json(self) -> list[dict[str, object]]:
        return [
            {
                "model": e.model,
                "endpoint": e.endpoint,
                "ejected": e.ejected,
                "ejections": e.ejections,
                "consecutive_failures": e.consecutive_failures,
                "ejected_until_unix_ms": e.ejected_until_unix_ms,
            }
            for e in self.report()
        ]


class RetryBudget:
    """Envoy's retry budget: concurrent retries at most a share of active requests."""

    def __init__(self) -> None:
        self.active = 0
        self.retrying = 0
        self.denied = 0

    def allow(self, settings: ReliabilitySettings) -> bool:
        limit = max(
            settings.retry_budget_min_concurrency, settings.retry_budget_ratio * self.active
        )
        if self.retrying < limit:
            self.retrying += 1
            return True
        self.denied += 1
        return False

    def release(self) -> None:
        self.retrying -= 1
