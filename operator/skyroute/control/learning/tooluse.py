"""Observed tool use per intent: the learning loop's estimate of ``toolUse``.

A policy declares, per intent, how likely a request is to need a tool
(``intents[].toolUse``); the router uses it to keep tool-bound intents out of
the semantic cache even when a request arrives without tools (an answer that
should have been an action must not be replayed as text). The declared value
is a guess. Outcomes tell what happened: for requests of an intent that
offered tools, how often the answer called one. This module keeps that rate
per (policy, intent), decayed by the policy's half-life like every other
fleet figure, and gives it to the learner once an intent has
``min_samples`` (decayed) requests with tools; the learner writes it into
the served snapshot's ``Intent.tool_use_probability`` for adaptive policies.

Requests without tools say nothing (they cannot call one), and cache hits
say nothing either (no model answered). The estimate only replaces the
declared value; a policy whose adaptation is off keeps what it declares.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from skyroute.control.limits import SeriesCap
from skyroute.v1 import distribution_pb2


@dataclass(slots=True)
class _Rate:
    t: float
    offered: float = 0.0
    called: float = 0.0

    def decay(self, now: float, half_life_s: float) -> None:
        dt = now - self.t
        if dt > 0:
            f = 0.5 ** (dt / half_life_s)
            self.offered *= f
            self.called *= f
            self.t = now


class ToolUseObserver:
    """Decayed (offered tools, called a tool) counts per (policy, intent)."""

    def __init__(
        self,
        half_life_s: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
        cap: SeriesCap | None = None,
    ) -> None:
        self.half_life_s = half_life_s
        self.clock = clock
        self.rates: dict[tuple[str, str], _Rate] = {}
        self.cap = cap or SeriesCap()

    def record(self, router_id: str, outcomes: Sequence[distribution_pb2.Outcome]) -> None:
        """The outcome aggregator's listener."""
        now, half = self.clock(), self.half_life_s()
        for o in outcomes:
            if not o.has_tools or o.cache_hit or o.error_class or not o.intent:
                continue
            rate = self.cap.entry(
                self.rates,
                (o.policy, o.intent),
                lambda: _Rate(now),
                "learning.tool_use",
                router_id,
            )
            if rate is None:
                continue
            rate.decay(now, half)
            rate.offered += 1.0
            rate.called += 1.0 if o.tool_called else 0.0

    def learned(self, min_samples: float) -> dict[tuple[str, str], float]:
        """(policy, intent) -> observed tool-call rate, for those with enough samples."""
        now, half = self.clock(), self.half_life_s()
        out = {}
        for key, rate in self.rates.items():
            rate.decay(now, half)
            if rate.offered >= min_samples:
                out[key] = round(rate.called / rate.offered, 3)
        return out
