"""Fleet state for one model: summed router windows that decay with age.

Routers ship, per (model, intent) and report window, counts and a DDSketch
(DataDog's relative-error quantile sketch) of successful attempt latencies.
``DecayedStats`` adds those windows up. Sketch bins with the same mapping
are added key by key, which is exact: the merged bins are the bins one
sketch over all the routers' traffic would hold, so the fleet p95 is within
the sketch's 1% relative accuracy of the true p95, where a p95 of p95s
would not be. A sketch with another mapping is re-keyed through its bins'
representative values (a little extra error, never a refusal).

Everything decays by ``0.5 ** (age / half_life_s)``: counts, sums and bins
alike, so ratios (failure rate, mean tokens) and quantiles are those of a
recency-weighted window whose memory the policy sets. Decay is applied
lazily, when something is added or read, and costs one pass over the bins
(a few hundred for latencies from a millisecond to minutes).

A sketch is checked whole before anything is added (:func:`read_sketch`):
its size, bin count, bin keys and counts are bounded (``limits.py``) and a
foreign mapping must re-key to finite values, so one malformed sketch is
refused with ``BadSketch`` and never leaves a bin that later overflows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ddsketch.mapping import LogarithmicMapping
from ddsketch.pb import ddsketch_pb2

from skyroute.control.limits import MAX_SKETCH_BINS, MAX_SKETCH_BYTES, MAX_SKETCH_KEY
from skyroute.v1 import distribution_pb2

RELATIVE_ACCURACY = 0.01  # the routers' DDSketch(0.01)
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_NO_INTERPOLATION = 0  # ddsketch IndexMapping.NONE: the plain logarithmic mapping


@dataclass(slots=True)
class Figures:
    """What the fleet says about one model now (None: not enough samples)."""

    requests: float
    failure_rate: float | None
    p95_ms: float | None
    completion_tokens: float | None
    cost_per_request: float | None


@dataclass(slots=True)
class DecayedStats:
    """Summed ModelStats windows whose weight halves every half-life."""

    t: float
    requests: float = 0.0
    failures: float = 0.0
    completion_tokens: float = 0.0
    cost_usd: float = 0.0
    zero: float = 0.0
    bins: dict[int, float] = field(default_factory=dict)

    @property
    def latency_samples(self) -> float:
        return self.zero + sum(self.bins.values())

    def decay(self, now: float, half_life_s: float) -> None:
        dt = now - self.t
        if dt <= 0:
            return
        self.t = now
        f = 0.5 ** (dt / half_life_s)
        self.requests *= f
        self.failures *= f
        self.completion_tokens *= f
        self.cost_usd *= f
        self.zero *= f
        self.bins = {k: c * f for k, c in self.bins.items() if c * f > 1e-9}

    def add(self, s: distribution_pb2.ModelStats) -> None:
        """Add one window; ``BadSketch`` (and nothing added) if its sketch is malformed."""
        zero, bins = read_sketch(s.latency_sketch) if s.latency_sketch else (0.0, {})
        self.requests += s.requests
        self.failures += s.failures
        self.completion_tokens += s.completion_tokens
        self.cost_usd += s.cost_usd
        self.zero += zero
        for k, count in bins.items():
            self.bins[k] = self.bins.get(k, 0.0) + count

    def quantile(self, q: float) -> float | None:
        """ddsketch's lower-rank quantile over the decayed bins."""
        total = self.latency_samples
        if total <= 0:
            return None
        rank = q * (total - 1)
        running = self.zero
        if running > rank:
            return 0.0
        for key in sorted(self.bins):
            running += self.bins[key]
            if running > rank:
                return float(_MAPPING.value(key))
        return float(_MAPPING.value(max(self.bins)))

    def figures(self, min_samples: float) -> Figures:
        ok = self.requests - self.failures
        return Figures(
            requests=self.requests,
            failure_rate=self.failures / self.requests if self.requests >= min_samples else None,
            p95_ms=self.quantile(0.95) if self.latency_samples >= min_samples else None,
            completion_tokens=self.completion_tokens / ok if ok >= min_samples else None,
            cost_per_request=self.cost_usd / ok if ok >= min_samples else None,
        )


class BadSketch(ValueError):
    """A latency sketch refused whole; the message says what is wrong with it."""


def read_sketch(data: bytes) -> tuple[float, dict[int, float]]:
    """(zero count, bins keyed in our mapping) of a serialized DDSketch, or ``BadSketch``."""
    if len(data) > MAX_SKETCH_BYTES:
        raise BadSketch(f"sketch of {len(data)} bytes, over {MAX_SKETCH_BYTES}")
    pb: Any = ddsketch_pb2.DDSketch()
    try:
        pb.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError, or anything a fuzzed input raises
        raise BadSketch(f"not a DDSketch: {exc}") from None
    m = pb.mapping
    same = (
        m.interpolation == _NO_INTERPOLATION
        and math.isclose(m.gamma, _MAPPING.gamma, rel_tol=1e-12)
        and m.indexOffset == _MAPPING._offset
    )
    try:
        other = None if same else _mapping_of(m)
    except Exception as exc:
        raise BadSketch(f"unusable mapping: {exc}") from None
    negative, positive = _bins(pb.negativeValues), _bins(pb.positiveValues)
    if len(negative) + len(positive) > MAX_SKETCH_BINS:
        raise BadSketch(f"{len(negative) + len(positive)} bins, over {MAX_SKETCH_BINS}")
    counts = [pb.zeroCount, *negative.values(), *positive.values()]
    if not all(math.isfinite(c) and c >= 0 for c in counts):
        raise BadSketch("a bin count is negative or not finite")
    bins: dict[int, float] = {}
    for key, count in positive.items():
        if abs(key) > MAX_SKETCH_KEY:
            raise BadSketch(f"bin key {key} outside +-{MAX_SKETCH_KEY}")
        k = key
        if other is not None:
            try:
                value = float(other.value(key))
                k = (
                    _MAPPING.key(value)
                    if math.isfinite(value) and value > 0
                    else MAX_SKETCH_KEY + 1
                )
            except (OverflowError, ValueError, ZeroDivisionError):
                k = MAX_SKETCH_KEY + 1
            if abs(k) > MAX_SKETCH_KEY:
                raise BadSketch(f"bin key {key} maps outside +-{MAX_SKETCH_KEY}")
        bins[k] = bins.get(k, 0.0) + count
    zero = pb.zeroCount + sum(negative.values())  # no negative latency
    return float(zero), bins


def _mapping_of(m: Any) -> LogarithmicMapping:
    from ddsketch.pb.proto import KeyMappingProto

    return KeyMappingProto.from_proto(m)  # type: ignore[no-untyped-call, no-any-return]


def _bins(store: Any) -> dict[int, float]:
    """Bin counts of a DDSketch ``Store`` message (sparse map and contiguous run)."""
    out: dict[int, float] = dict(store.binCounts)
    if len(store.contiguousBinCounts) > MAX_SKETCH_BINS:
        raise BadSketch(f"{len(store.contiguousBinCounts)} contiguous bins, over {MAX_SKETCH_BINS}")
    for i, c in enumerate(store.contiguousBinCounts):
        if c:
            k = store.contiguousBinIndexOffset + i
            out[k] = out.get(k, 0.0) + c
    return out
