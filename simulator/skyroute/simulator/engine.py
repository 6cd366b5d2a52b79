"""The decision engine: per request, what the simulated model does and how slowly.

Everything random (latency, failures) is drawn here from one seeded
``random.Random``, so a run with a fixed ``seed`` and a fixed request order is
reproducible; everything that should look like "the model's answer" (the
completion length, the words) is a pure function of the model name and the
prompt instead, so that the same prompt gets the same answer from the same
model however often it is asked, which is what cache and fallback tests need
to tell who answered.

Per-model numbers are resolved once into a :class:`ModelRuntime` (profile,
the bursts that can hit that model, cumulative error weights) and cached by
model name; a request then costs a dictionary lookup, a few random draws and
a comparison per applicable burst. Statistics live apart from the runtimes so
that replacing the scenario at run time keeps the counters.
"""

from __future__ import annotations

import bisect
import math
import random
import time
import zlib
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from skyroute.simulator.scenario import ERROR_STATUS, Burst, Profile, Scenario

_STD_NORMAL = NormalDist()
_MAX_RUNTIMES = 4096


@dataclass(slots=True)
class ModelStats:
    requests: int = 0
    ok: int = 0
    streams: int = 0
    tool_calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "streams": self.streams,
            "tool_calls": self.tool_calls,
            "errors": dict(self.errors),
        }


class _Mix:
    """An error-kind mix ready for weighted choice by bisection."""

    __slots__ = ("cumulative", "kinds", "total")

    def __init__(self, mix: tuple[tuple[str, float], ...]) -> None:
        self.kinds = [k for k, _ in mix]
        acc = 0.0
        self.cumulative: list[float] = []
        for _, w in mix:
            acc += w
            self.cumulative.append(acc)
        self.total = acc

    def pick(self, u: float) -> str:
        i = bisect.bisect_right(self.cumulative, u * self.total)
        return self.kinds[min(i, len(self.kinds) - 1)]


class ModelRuntime:
    """A model's profile with everything derivable precomputed."""

    __slots__ = ("bursts", "mix", "model_hash", "name", "profile", "stats", "tok_mu", "tok_sigma")

    def __init__(
        self,
        name: str,
        profile: Profile,
        bursts: list[tuple[Burst, _Mix | None]],
        stats: ModelStats,
    ) -> None:
        self.name = name
        self.profile = profile
        self.bursts = bursts
        self.mix = _Mix(profile.errors)
        self.model_hash = zlib.crc32(name.encode())
        self.tok_mu = profile.completion_tokens.shape.mu
        self.tok_sigma = profile.completion_tokens.shape.sigma
        self.stats = stats


@dataclass(slots=True)
class Plan:
    """What to do with one request. Times are wall-clock seconds (already scaled)."""

    kind: str | None  # an error kind from scenario.ERROR_STATUS, or None for success
    delay_s: float  # time to the first token, or to the error response
    token_s: float  # time per output token
    completion_tokens: int
    truncated: bool  # completion cut by the request's max_tokens
    retry_after_s: float  # for rate_limited, already divided by time_scale


class Engine:
    """Holds the live scenario, the random generator, the burst clock and the stats."""

    def __init__(self, scenario: Scenario) -> None:
        self.stats: dict[str, ModelStats] = {}
        self.scenario = scenario
        self._runtimes: dict[str, ModelRuntime] = {}
        self.rng = random.Random(scenario.seed)
        self.t0 = time.monotonic()
        self.load(scenario)

    def load(self, scenario: Scenario) -> None:
        """Swap in a new scenario: new runtimes, reseeded rng, burst clock restarted."""
        self.scenario = scenario
        self._runtimes = {}
        self.rng = random.Random(scenario.seed)
        self.t0 = time.monotonic()
        self._scale = 1.0 / scenario.time_scale

    def reset(self) -> None:
        """Zero the stats and restart the burst clock and the random sequence."""
        self.stats.clear()
        self.load(self.scenario)

    def scenario_time(self) -> float:
        return (time.monotonic() - self.t0) * self.scenario.time_scale

    def runtime(self, model: str) -> ModelRuntime:
        rt = self._runtimes.get(model)
        if rt is None:
            if len(self._runtimes) >= _MAX_RUNTIMES:
                self._runtimes.clear()
            sc = self.scenario
            bursts = [
                (b, None if b.errors is None else _Mix(b.errors))
                for b in sc.bursts
                if b.applies_to(model)
            ]
            stats = self.stats.get(model)
            if stats is None:
                stats = self.stats[model] = ModelStats()
            rt = self._runtimes[model] = ModelRuntime(model, sc.profile_for(model), bursts, stats)
        return rt

    def completion_tokens(self, rt: ModelRuntime, prompt_hash: int) -> int:
        """The answer length for this prompt: a deterministic quantile of the distribution."""
        h = ((prompt_hash * 2654435761) ^ rt.model_hash) & 0xFFFFFFFF
        z = _STD_NORMAL.inv_cdf((h + 0.5) / 4294967296.0)
        dist = rt.profile.completion_tokens
        n = round(math.exp(rt.tok_mu + rt.tok_sigma * z))
        return min(max(n, dist.low), dist.high)

    def plan(
        self, rt: ModelRuntime, prompt_hash: int, prompt_tokens: int, max_tokens: int | None
    ) -> Plan:
        profile = rt.profile
        rng = self.rng
        error_rate = profile.error_rate
        mix = rt.mix
        multiplier = 1.0
        if rt.bursts:
            t = self.scenario_time()
            for burst, burst_mix in rt.bursts:
                if burst.active(t):
                    multiplier *= burst.latency_multiplier
                    if burst.error_rate is not None:
                        error_rate = burst.error_rate
                    if burst_mix is not None:
                        mix = burst_mix
        scale = self._scale * multiplier
        kind: str | None = None
        if prompt_tokens > profile.context_window:
            kind = "context_length"
        elif error_rate > 0.0 and rng.random() < error_rate:
            kind = mix.pick(rng.random())
        n = self.completion_tokens(rt, prompt_hash)
        truncated = False
        if max_tokens is not None and 0 < max_tokens < n:
            n, truncated = max_tokens, True
        if kind is not None and ERROR_STATUS[kind] not in (0, 200):
            dist = profile.error_latency_ms
            delay = rng.lognormvariate(dist.mu, dist.sigma) * 0.001 * self._scale
        else:
            dist = profile.ttft_ms
            delay = rng.lognormvariate(dist.mu, dist.sigma) * 0.001 * scale
        return Plan(
            kind=kind,
            delay_s=delay,
            token_s=scale / profile.tokens_per_s,
            completion_tokens=n,
            truncated=truncated,
            retry_after_s=profile.retry_after_s * self._scale,
        )

    def stats_json(self) -> dict[str, Any]:
        return {
            "scenario_time_s": round(self.scenario_time(), 3),
            "models": {name: s.as_json() for name, s in sorted(self.stats.items())},
        }
