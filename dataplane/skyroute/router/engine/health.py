"""Per-endpoint health: outlier ejection with half-open probes, decayed estimates, budgets.

A model endpoint that keeps failing should stop receiving traffic before
every request pays a timeout to find out. Following Envoy's outlier
detection, ``consecutive_failures`` failures in a row eject an endpoint for
``base * n`` where ``n`` counts its ejections, so a flapping endpoint stays
out longer each time; at most a share of a pool is ejected at once and never
the whole pool, so an incident that hits every model cannot eject them all.
A 429 with ``Retry-After`` is honoured as a cool-down of that endpoint for
the time the provider asked for, without counting as an outlier failure.

An ejected endpoint is **half-open**: once per probe interval (a tenth of the
base ejection time, at most one second) one real request tries it in its
usual place in the chain, and the first success brings it back at once; a
failed probe falls back like any failure, so callers see no error for it.
Recovery then takes seconds, not the rest of the ejection.

Only failures that say something about the endpoint count: a client error,
a context-length or content-filter refusal is about the request.

Estimates decay with **time**, not only with calls: the failure rate is an
exponentially weighted average whose weight halves every
``FAILURE_HALF_LIFE_S`` seconds without calls, and latency percentiles
(p95 for scoring, the median for admission) and first-token percentiles (the
hedging delay) are taken over the samples of the last ``LATENCY_WINDOW_S``
seconds only. A model that was demoted during an
outage therefore stops being judged by it while it gets no traffic.

Every time here comes from one clock (``clock``, monotonic seconds): tests
run a recovery at ten times real speed by passing a faster one.

A model with several endpoints keeps all of this per endpoint too (each is
ejected, probed and timed on its own); scoring reads the model's figures
over all its endpoints together (``p95_s``, ``failures``), as for a model
with one endpoint.

Retry budgets are kept **per provider endpoint** (Envoy's per-cluster
budget): a retry to an endpoint this request already tried takes a token
from that endpoint's budget; a first attempt on another endpoint is a
fallback, counted separately and never refused by another endpoint's
exhaustion.

Ejections are the router's own, immediate reaction; the state is visible in
``/debug/status`` and reported to the control plane with every outcome batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from skyroute.router.providers.types import CLIENT_ERROR, CONTENT_FILTER, CONTEXT_LENGTH
from skyroute.router.table import Candidate, ReliabilitySettings
from skyroute.v1 import distribution_pb2

_NOT_ENDPOINT_FAULTS = frozenset({CLIENT_ERROR, CONTENT_FILTER, CONTEXT_LENGTH})
_RING = 256
_MIN_SAMPLES = 20
_RECOMPUTE_EVERY = 16
_RECOMPUTE_AFTER_S = 1.0
_ALPHA = 0.05
FAILURE_HALF_LIFE_S = 10.0
_LN2 = math.log(2.0)
LATENCY_WINDOW_S = 60.0
_MAX_PROBE_EVERY_S = 1.0
Clock = Callable[[], float]


@dataclass(slots=True)
class Window:
    """The last ``_RING`` samples of one quantity (seconds), their times, cached percentiles.

    Percentiles cover the samples of the last LATENCY_WINDOW_S seconds only, and are
    recomputed every ``_RECOMPUTE_EVERY`` samples or ``_RECOMPUTE_AFTER_S`` seconds.
    """

    values: np.ndarray = field(default_factory=lambda: np.zeros(_RING))
    times: np.ndarray = field(default_factory=lambda: np.full(_RING, -np.inf))
    samples: int = 0
    percentiles: dict[float, float] = field(default_factory=dict)
    computed_at: float = 0.0

    def add(self, now: float, value: float) -> None:
        self.values[self.samples % _RING] = value
        self.times[self.samples % _RING] = now
        self.samples += 1
        if self.samples % _RECOMPUTE_EVERY == 0:
            self.percentiles.clear()

    def percentile(self, now: float, q: float) -> float | None:
        if self.samples < _MIN_SAMPLES:
            return None
        if now - self.computed_at > _RECOMPUTE_AFTER_S:
            self.percentiles.clear()
        value = self.percentiles.get(q)
        if value is None:
            n = min(self.samples, _RING)
            recent = self.values[:n][self.times[:n] >= now - LATENCY_WINDOW_S]
            value = float(np.percentile(recent, q)) if len(recent) >= _MIN_SAMPLES else -1.0
            self.percentiles[q] = value
            self.computed_at = now
        return value if value >= 0 else None


@dataclass(slots=True)
class EndpointState:
    model: str
    endpoint: str
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0  # clock seconds
    cooldown_until: float = 0.0  # from Retry-After
    next_probe: float = 0.0  # while ejected: when the next half-open probe may go
    probe_every: float = _MAX_PROBE_EVERY_S
    latency: Window = field(default_factory=Window)  # whole answers
    first_token: Window = field(default_factory=Window)  # time to the first event
    # Exponentially weighted failure rate (alpha 0.05: about the last 20 calls), as of
    # ``rate_at``; it halves every FAILURE_HALF_LIFE_S seconds without calls.
    failure_rate: float = 0.0
    rate_at: float = 0.0
    calls: int = 0

    def available(self, now: float) -> bool:
        return self.ejected_until <= now and self.cooldown_until <= now

    def rate(self, now: float) -> float:
        elapsed = max(0.0, now - self.rate_at)
        return self.failure_rate * math.exp(-_LN2 * elapsed / FAILURE_HALF_LIFE_S)

    def observe(self, now: float, failed: bool) -> None:
        self.failure_rate = self.rate(now) * (1.0 - _ALPHA) + (_ALPHA if failed else 0.0)
        self.rate_at = now
        self.calls += 1


class EndpointHealth:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._states: dict[tuple[str, str], EndpointState] = {}
        # Models with several endpoints: latency and failures over all of them (scoring's).
        self._models: dict[tuple[str, str], EndpointState] = {}
        self.clock = clock
        self.ejected_total = 0  # ejections since start (a metric counter)
        self.probes_total = 0  # half-open probes sent
        self.returned_total = 0  # ejected endpoints brought back by a probe

    def _model_state(self, c: Candidate) -> EndpointState | None:
        """A model with several endpoints: its figures over all of them (None: one endpoint)."""
        group = c.site.group if c.site is not None else ""
        if not group:
            return None
        key = (c.model, group)
        s = self._models.get(key)
        if s is None:
            s = self._models[key] = EndpointState(c.model, group)
        return s

    def _scoring_state(self, c: Candidate) -> EndpointState | None:
        """Where scoring reads a model's figures: its endpoints together, or its one endpoint."""
        if c.endpoints is not None:
            return self._models.get((c.model, c.endpoints.group))
        return self._states.get((c.model, c.endpoint_key))

    def _state(self, c: Candidate) -> EndpointState:
        key = (c.model, c.endpoint_key)
        s = self._states.get(key)
        if s is None:
            s = self._states[key] = EndpointState(c.model, c.endpoint_key)
        return s

    def available(self, c: Candidate, now: float) -> bool:
        s = self._states.get((c.model, c.endpoint_key))
        return s is None or s.available(now)

    def order(
        self, chain: tuple[Candidate, ...], notes: list[str] | None = None
    ) -> tuple[Candidate, ...]:
        """The chain with ejected or cooling endpoints moved to the end (last resort).

        An ejected endpoint whose probe is due keeps its place for this one
        request (the half-open trickle); a Retry-After cool-down is always honoured.
        ``notes`` (the request's) gets a line per endpoint moved or probed.
        """
        if not self._states:
            return chain
        now = self.clock()
        up: list[Candidate] = []
        down: list[Candidate] = []
        for c in chain:
            s = self._states.get((c.model, c.endpoint_key))
            if s is None or s.available(now):
                up.append(c)
            elif s.cooldown_until <= now and s.next_probe <= now:
                s.next_probe = now + s.probe_every
                self.probes_total += 1
                up.append(c)
                if notes is not None:
                    notes.append(f"{c.label}: half-open probe of an ejected endpoint")
            else:
                down.append(c)
                if notes is not None:
                    why = "cooling down (Retry-After)" if s.cooldown_until > now else "ejected"
                    notes.append(f"{c.label}: {why}, moved last")
        if not down:
            return chain
        return (*up, *down)

    def success(self, c: Candidate, latency_s: float) -> None:
        now = self.clock()
        s = self._state(c)
        s.consecutive_failures = 0
        s.observe(now, False)
        if s.ejected_until > now:
            s.ejected_until = now  # a half-open probe answered: back at once
            self.returned_total += 1
        elif s.ejections and now > s.ejected_until + 60.0:
            s.ejections -= 1  # healthy for a while: the next ejection is shorter again
        s.latency.add(now, latency_s)
        whole = self._model_state(c)
        if whole is not None:
            whole.observe(now, False)
            whole.latency.add(now, latency_s)

    def first_token(self, c: Candidate, seconds: float) -> None:
        """An attempt's first event arrived ``seconds`` after it started."""
        self._state(c).first_token.add(self.clock(), seconds)

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
        now = self.clock()
        s = self._state(c)
        s.observe(now, True)
        whole = self._model_state(c)
        if whole is not None:
            whole.observe(now, True)
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
        s.probe_every = min(_MAX_PROBE_EVERY_S, settings.outlier_base_ejection_s / 10.0)
        s.next_probe = now + s.probe_every
        s.consecutive_failures = 0

    def percentile(self, c: Candidate, q: float) -> float | None:
        """Latency percentile over the last LATENCY_WINDOW_S seconds (None: too few samples)."""
        s = self._states.get((c.model, c.endpoint_key))
        return None if s is None else s.latency.percentile(self.clock(), q)

    def first_token_percentile(self, c: Candidate, q: float) -> float | None:
        """Time-to-first-event percentile over the last LATENCY_WINDOW_S seconds (or None)."""
        s = self._states.get((c.model, c.endpoint_key))
        return None if s is None else s.first_token.percentile(self.clock(), q)

    def p95_s(self, c: Candidate) -> float | None:
        """This router's own p95 for the endpoint, else the fleet's prior, else unknown."""
        s = self._scoring_state(c)
        own = None if s is None else s.latency.percentile(self.clock(), 95.0)
        if own is not None:
            return own
        return c.observed_p95_s or None

    def failures(self, c: Candidate) -> float:
        s = self._scoring_state(c)
        if s is not None and s.calls >= _MIN_SAMPLES:
            return s.rate(self.clock())
        return c.observed_failure_rate

    def report(self) -> list[distribution_pb2.EndpointHealth]:
        now = self.clock()
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
    """Envoy's retry budget, one per provider endpoint.

    Concurrent retries to an endpoint at most ``ratio`` of the router's active
    requests, but always ``min_concurrency``. ``active`` counts requests
    (the engine keeps it); retries and denials are per endpoint, and their
    sums are what ``/debug/status`` and the metrics show.
    """

    def __init__(self) -> None:
        self.active = 0
        self._retrying: dict[str, int] = {}
        self._denied: dict[str, int] = {}
        self.fallbacks = 0  # first attempts on another endpoint: not retries

    @property
    def retrying(self) -> int:
        return sum(self._retrying.values())

    @property
    def denied(self) -> int:
        return sum(self._denied.values())

    def allow(self, endpoint: str, settings: ReliabilitySettings) -> bool:
        limit = max(
            settings.retry_budget_min_concurrency, settings.retry_budget_ratio * self.active
        )
        held = self._retrying.get(endpoint, 0)
        if held < limit:
            self._retrying[endpoint] = held + 1
            return True
        self._denied[endpoint] = self._denied.get(endpoint, 0) + 1
        return False

    def release(self, endpoint: str) -> None:
        self._retrying[endpoint] -= 1

    def by_endpoint(self) -> dict[str, dict[str, int]]:
        keys = sorted(set(self._retrying) | set(self._denied))
        return {
            k: {"retrying": self._retrying.get(k, 0), "denied": self._denied.get(k, 0)}
            for k in keys
        }
