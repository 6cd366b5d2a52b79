"""Per-(model, intent) observations for one report window, as mergeable sketches.

The control plane learns each model's fleet-wide p95 latency, failure rate
and completion length from what every router saw. A p95 cannot be averaged:
the p95 of two routers' p95s is not the fleet's p95. So each router keeps a
DDSketch (DataDog's relative-error quantile sketch, accuracy 1%) of its
successful attempts' latencies per (model, intent), and ships the sketch
itself. Sketches built with the same mapping merge by adding bin counts,
which is exact: the merged sketch is the one a single router would have
built from all the traffic, and its quantiles are within 1% of the truth.

Counts are windowed deltas. ``drain`` hands over everything observed since
the previous drain and starts a new window, so the control plane only ever
adds what arrives (and decays it by age); nothing is counted twice when a
report is retried, and a router restart loses at most one window.

What is counted is attempts, not requests: a request that fell back from
model A to model B is one failure for A and one success for B, which is what
each model's failure rate should say. A hedged attempt that lost the race is
neither. Client errors and refusals (the request's fault, not the model's)
count as attempts but not as failures, as in endpoint health. Cache hits
never reach a model and are not counted.

``observe`` is on the request path: one dict lookup per attempt, a sketch
insert (a logarithm) per success, no allocation once a key exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ddsketch import DDSketch
from ddsketch.pb.proto import DDSketchProto

from skyroute.router.engine.records import CANCELLED, Served
from skyroute.router.providers.types import CLIENT_ERROR, CONTENT_FILTER, CONTEXT_LENGTH
from skyroute.v1 import distribution_pb2

RELATIVE_ACCURACY = 0.01
_NOT_MODEL_FAULTS = frozenset({CLIENT_ERROR, CONTENT_FILTER, CONTEXT_LENGTH, CANCELLED})


@dataclass(slots=True)
class _Window:
    requests: int = 0
    failures: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: DDSketch = field(default_factory=lambda: DDSketch(RELATIVE_ACCURACY))


def _encode(sketch: DDSketch) -> bytes:
    proto = DDSketchProto.to_proto(sketch)  # type: ignore[no-untyped-call]
    return bytes(proto.SerializeToString())


class WindowStats:
    """This router's per-(model, intent) figures since the last report."""

    def __init__(self) -> None:
        self._window: dict[tuple[str, str], _Window] = {}
        self.observed = 0  # attempts observed since start (for /debug/status)

    def _entry(self, model: str, intent: str) -> _Window:
        key = (model, intent)
        w = self._window.get(key)
        if w is None:
            w = self._window[key] = _Window()
        return w

    def observe(self, served: Served) -> None:
        """Count every attempt of a finished request against its model."""
        if served.cache_hit:
            return
        intent = served.decision.intent
        for a in served.attempts:
            if a.error_class == CANCELLED:
                continue
            w = self._entry(a.model, intent)
            w.requests += 1
            self.observed += 1
            if not a.error_class:
                w.latency_ms.add(max(a.duration_ms, 0.001))
            elif a.error_class not in _NOT_MODEL_FAULTS:
                w.failures += 1
        r = served.result
        if served.error is None and r is not None and served.candidate is not None:
            w = self._entry(served.candidate.model, intent)
            w.completion_tokens += r.completion_tokens
            w.cost_usd += served.cost_usd

    def drain(self) -> list[distribution_pb2.ModelStats]:
        """The window so far as contract messages; a new window starts empty."""
        window, self._window = self._window, {}
        return [
            distribution_pb2.ModelStats(
                model=model,
                intent=intent,
                requests=w.requests,
                failures=w.failures,
                completion_tokens=w.completion_tokens,
                cost_usd=w.cost_usd,
                latency_sketch=_encode(w.latency_ms) if w.latency_ms.count else b"",
            )
            for (model, intent), w in sorted(window.items())
        ]
