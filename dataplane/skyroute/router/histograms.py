"""Histograms counted in process per label set, handed to the exporters at collection time.

Why not the SDK's synchronous ``Histogram.record``: it cleans, validates and
hashes the attribute dict of every value (measured: about 10 µs per value
with six labels on a small machine, four values per request, more than the
rest of the telemetry together). Here a value costs a dict lookup by label
tuple, a ``bisect`` and a few additions; the attribute dicts are built once
per label set, when a reader collects.

Export: the router's two readers (Prometheus, and OTLP when configured) are
the SDK's own, subclassed only at ``_receive_metrics``, the hook every
``MetricReader`` implements: the SDK's collected ``MetricsData`` gains one
scope of cumulative ``Histogram`` points, the same data model the SDK's
explicit-bucket aggregation produces (bucket ``i`` counts values in
``(bounds[i-1], bounds[i]]``), so the Prometheus text and the OTLP payload
are what they would have been.

A reader thread may collect while the event loop records: the per-label
state is copied with C-level operations (``list(...)``) before it is read, so
a collection sees each label set's figures as of one moment, give or take the
value being recorded.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

SCOPE = InstrumentationScope("skyroute.router")


class LocalHistogram:
    """One histogram instrument: per label tuple, [bucket counts..., count, sum, min, max]."""

    __slots__ = ("attrs", "bounds", "data", "description", "keys", "name", "unit")

    def __init__(
        self,
        name: str,
        unit: str,
        description: str,
        bounds: tuple[float, ...],
        keys: tuple[str, ...],
    ) -> None:
        self.name, self.unit, self.description = name, unit, description
        self.bounds = bounds
        self.keys = keys
        self.data: dict[tuple[Any, ...], list[float]] = {}
        self.attrs: dict[tuple[Any, ...], dict[str, Any]] = {}

    def record(self, key: tuple[Any, ...], value: float) -> None:
        row = self.data.get(key)
        if row is None:
            n = len(self.bounds) + 1
            row = self.data[key] = [0.0] * n + [0.0, 0.0, value, value]
            # row[:n] buckets, then count, sum, min, max
        n = len(self.bounds) + 1
        row[bisect_left(self.bounds, value)] += 1
        row[n] += 1
        row[n + 1] += value
        if value < row[n + 2]:
            row[n + 2] = value
        if value > row[n + 3]:
            row[n + 3] = value

    def metric(self, start_ns: int, now_ns: int) -> Metric | None:
        n = len(self.bounds) + 1
        points = []
        for key, row in list(self.data.items()):
            row = list(row)
            attrs = self.attrs.get(key)
            if attrs is None:
                # An empty value is an absent attribute (error.type on a success, no port).
                attrs = self.attrs[key] = {
                    k: v for k, v in zip(self.keys, key, strict=True) if v not in ("", 0)
                }
            points.append(
                HistogramDataPoint(
                    attributes=attrs,
                    start_time_unix_nano=start_ns,
                    time_unix_nano=now_ns,
                    count=int(row[n]),
                    sum=row[n + 1],
                    bucket_counts=[int(c) for c in row[:n]],
                    explicit_bounds=self.bounds,
                    min=row[n + 2],
                    max=row[n + 3],
                )
            )
        if not points:
            return None
        return Metric(
            self.name,
            self.description,
            self.unit,
            Histogram(points, AggregationTemporality.CUMULATIVE),
        )


class Registry:
    """The process's local histograms, by name (a second registration replaces the first)."""

    def __init__(self) -> None:
        self.histograms: dict[str, LocalHistogram] = {}
        self.start_ns = time.time_ns()

    def add(self, h: LocalHistogram) -> LocalHistogram:
        self.histograms[h.name] = h
        return h

    def extend(self, data: MetricsData | None) -> MetricsData | None:
        """``data`` with one more scope: every local histogram that has values."""
        now = time.time_ns()
        local = [m for h in list(self.histograms.values()) if (m := h.metric(self.start_ns, now))]
        if not local:
            return data
        scope = ScopeMetrics(SCOPE, local, "")
        if data is None or not data.resource_metrics:
            return data  # no resource to attach to: the SDK had nothing configured
        first, *rest = data.resource_metrics
        merged = ResourceMetrics(first.resource, [*first.scope_metrics, scope], first.schema_url)
        return MetricsData([merged, *rest])


REGISTRY = Registry()


class PrometheusReader(PrometheusMetricReader):
    """The SDK's Prometheus reader, plus the local histograms."""

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        extended = REGISTRY.extend(metrics_data)
        super()._receive_metrics(extended, timeout_millis, **kwargs)  # type: ignore[arg-type]


class PeriodicReader(PeriodicExportingMetricReader):
    """The SDK's periodic (OTLP) reader, plus the local histograms."""

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 60_000, **kwargs: Any
    ) -> None:
        extended = REGISTRY.extend(metrics_data)
        super()._receive_metrics(extended, timeout_millis, **kwargs)  # type: ignore[arg-type]
