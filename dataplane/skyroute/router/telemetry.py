"""Router metrics and traces through the OpenTelemetry SDK.

Why OpenTelemetry and not a Prometheus client directly: operators run
Prometheus, Grafana and OpenTelemetry Collectors side by side, and one
instrumentation API feeds all of them. The same instruments are read by a
Prometheus reader (served as ``GET /metrics`` on the router's HTTP port) and,
when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the per-signal
``..._METRICS_ENDPOINT`` / ``..._TRACES_ENDPOINT``) is set, pushed over
OTLP/HTTP with every other ``OTEL_*`` variable honoured by the SDK itself.

Names follow the OpenTelemetry GenAI semantic conventions where they apply:
each upstream attempt is a GenAI client operation
(``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage`` and, for
streams, ``gen_ai.client.operation.time_to_first_chunk``) labelled with
``gen_ai.provider.name`` (the conventions' well-known value: ``gcp.gemini``
for the Gemini API, ``gcp.vertex_ai`` for a Vertex AI endpoint, see
:func:`upstream`), ``gen_ai.request.model``, ``gen_ai.response.model`` (the
model that answered, on success), ``server.address``, ``server.port`` and
``error.type``. The
figures the product is judged by (mix, p95, success, cost, cache hit rate per
pool and policy version) are skyroute's own ``skyroute.router.*`` instruments.

The hot path stays cheap (measured: the SDK's synchronous ``add``/``record``
costs 10-20 µs each, validating and hashing the attribute dict every time,
and a request touches eight instruments): counters are summed in plain dicts
keyed by label tuples and exported through observable counters; histograms
are counted per label tuple in process (:mod:`.histograms`) and handed to
the process's readers at collection time; the attribute dicts are built once
per distinct label tuple. Counters that already exist as plain integers
elsewhere (ejections, retry-budget denials, shed requests, hedges) are read
by observable callbacks at collection time. A ``RouterMetrics`` given an
explicit meter (a test's, an embedder's own SDK pipeline) records its
histograms through that meter instead, in batches (:meth:`RouterMetrics.flush`).

No prompt or completion text is ever a metric attribute or a span attribute:
labels are policy, pool, model, intent, provider and error class only.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from skyroute.router.histograms import REGISTRY, LocalHistogram, PeriodicReader, PrometheusReader
from skyroute.router.providers import registry

Attrs = dict[str, Any]

# Bucket boundaries the GenAI semantic conventions recommend.
DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
# The router's own request latency: finer at the low end, where a cache hit lands.
REQUEST_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

_configured = False
_tracing = False


class Upstream(NamedTuple):
    """How the GenAI conventions name an upstream: provider name, server address and port."""

    provider: str
    address: str
    port: int


_UPSTREAMS: dict[tuple[str, str], Upstream] = {}
_UPSTREAMS_LIMIT = 1024


def upstream(family: str, endpoint: str) -> Upstream:
    """``gen_ai.provider.name``, ``server.address`` and ``server.port`` for an endpoint (memoised).

    The provider name is the family's, as its registry entry says (Gemini's
    depends on the host: ``gcp.vertex_ai`` on Vertex AI, ``gcp.gemini`` otherwise).
    """
    key = (family, endpoint)
    hit = _UPSTREAMS.get(key)
    if hit is not None:
        return hit
    try:
        parts = urlsplit(endpoint)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        host, port, parts = "", None, urlsplit("")
    if port is None:
        port = 443 if parts.scheme == "https" else 80 if parts.scheme == "http" else 0
    name = registry.provider_name(family, host)
    if len(_UPSTREAMS) >= _UPSTREAMS_LIMIT:
        _UPSTREAMS.clear()
    hit = _UPSTREAMS[key] = Upstream(name, host, port)
    return hit


def tracing_enabled() -> bool:
    """Whether :func:`configure` installed a tracer provider with an exporter."""
    return _tracing


def _otlp_wanted(signal: str) -> bool:
    env = os.environ
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


def views() -> list[View]:
    return [
        View(
            instrument_name="gen_ai.client.operation.*",
            aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS),
        ),
        View(
            instrument_name="gen_ai.client.token.usage",
            aggregation=ExplicitBucketHistogramAggregation(TOKEN_BUCKETS),
        ),
        View(
            instrument_name="skyroute.router.request.duration",
            aggregation=ExplicitBucketHistogramAggregation(REQUEST_BUCKETS),
        ),
    ]


def configure(service: str = "skyroute-router") -> None:
    """Install the process's meter (and, with an OTLP endpoint, tracer) provider. Idempotent.

    Only the process entry point calls this: tests and benchmarks that build an
    ``Engine`` in process keep the API's no-op providers.
    """
    global _configured, _tracing
    if _configured:
        return
    _configured = True
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    # The SDK's readers, each also exporting the histograms counted in process.
    readers: list[MetricReader] = [PrometheusReader()]
    if _otlp_wanted("METRICS"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicReader(OTLPMetricExporter()))
    metrics.set_meter_provider(
        MeterProvider(resource=resource, metric_readers=readers, views=views())
    )
    if _otlp_wanted("TRACES"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _tracing = True


def shutdown() -> None:
    """Flush pending OTLP exports (spans, last metric interval) before the process exits."""
    for provider in (metrics.get_meter_provider(), trace.get_tracer_provider()):
        stop = getattr(provider, "shutdown", None)
        if callable(stop):
            stop()


def prometheus_text() -> tuple[bytes, str]:
    """The Prometheus exposition of every instrument in this process, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def trace_parent(items: Iterable[tuple[str, str | bytes]]) -> Context | None:
    """The caller's W3C trace context from HTTP headers or gRPC metadata, if it sent one."""
    carrier: dict[str, str] = {}
    for key, value in items:
        k = key.lower()
        if k in ("traceparent", "tracestate") and isinstance(value, str):
            carrier[k] = value
    if "traceparent" not in carrier:
        return None
    return propagate.extract(carrier)


class _Counter:
    """A monotonic counter summed in a plain dict and handed to the SDK at collection time.

    The SDK's synchronous ``add`` validates and hashes the attribute dict on
    every call (about 15 µs with seven labels on a small machine); here a
    request costs one tuple and one dict update, and the attribute dicts are
    built once per label tuple when the reader collects.
    """

    __slots__ = ("attrs", "keys", "values")

    def __init__(
        self, meter: metrics.Meter, name: str, unit: str, description: str, *keys: str
    ) -> None:
        self.keys = keys
        self.values: dict[tuple[Any, ...], float] = {}
        self.attrs: dict[tuple[Any, ...], Attrs] = {}
        meter.create_observable_counter(name, [self._observe], unit, description)

    def add(self, key: tuple[Any, ...], amount: float = 1) -> None:
        values = self.values
        values[key] = values.get(key, 0) + amount

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for key, value in list(self.values.items()):  # a C-level copy: safe from a reader thread
            attrs = self.attrs.get(key)
            if attrs is None:
                attrs = self.attrs[key] = dict(zip(self.keys, key, strict=True))
            out.append(Observation(value, attrs))
        return out


class _Histogram:
    """A histogram whose recordings queue up and reach the SDK in batches, off the request."""

    __slots__ = ("attrs", "instrument", "keys", "pending")

    def __init__(
        self,
        meter: metrics.Meter,
        pending: deque[tuple[_Histogram, Any, float]] | None,
        name: str,
        unit: str,
        description: str,
        *keys: str,
    ) -> None:
        self.instrument = meter.create_histogram(name, unit, description)
        self.keys = keys
        self.pending = pending
        self.attrs: dict[tuple[Any, ...], Attrs] = {}

    def record(self, key: tuple[Any, ...], value: float) -> None:
        if self.pending is not None:  # None: no SDK configured, nothing would read it
            self.pending.append((self, key, value))

    def apply(self, key: tuple[Any, ...], value: float) -> None:
        attrs = self.attrs.get(key)
        if attrs is None:
            # An empty value is an absent attribute (error.type on a success, no server.port).
            attrs = self.attrs[key] = {
                k: v for k, v in zip(self.keys, key, strict=True) if v not in ("", 0)
            }
        self.instrument.record(value, attrs)


class RouterMetrics:
    """The router's instruments, created once; the API's no-op ones unless configured.

    Per request the engine calls :meth:`request`, per attempt :meth:`attempt`
    (and :meth:`usage`, :meth:`first_chunk`): counters are summed locally and
    observed at collection; histograms are counted locally too once
    :func:`configure` ran. With an explicit meter, histogram values wait in a
    queue that :meth:`flush` empties into that meter's SDK at the start of
    every collection (a scrape sees everything recorded before it).
    """

    def __init__(
        self, meter: metrics.Meter | None = None, local_histograms: bool | None = None
    ) -> None:
        m = meter or metrics.get_meter("skyroute.router")
        self._meter = m
        self.pending: deque[tuple[_Histogram, Any, float]] = deque()
        # Histograms: counted here when configure() installed the readers that export
        # them; through an explicitly given meter's SDK otherwise; not at all without SDK.
        local = (_configured and meter is None) if local_histograms is None else local_histograms
        q = self.pending if meter is not None else None

        def histogram(
            name: str, unit: str, description: str, bounds: tuple[float, ...], *keys: str
        ) -> _Histogram | LocalHistogram:
            if local:
                return REGISTRY.add(LocalHistogram(name, unit, description, bounds, keys))
            return _Histogram(m, q, name, unit, description, *keys)

        pool = ("skyroute.policy", "skyroute.policy_version", "skyroute.pool")
        self.requests = _Counter(
            m,
            "skyroute.router.requests",
            "{request}",
            "Requests served, by policy, version, pool, intent, model, outcome and cache",
            *pool,
            "skyroute.intent",
            "gen_ai.response.model",
            "skyroute.outcome",
            "skyroute.cache",
        )
        self.cost = _Counter(
            m,
            "skyroute.router.cost_usd",
            "",
            "Upstream cost of served requests in US dollars",
            *pool,
        )
        self.cache_hits = _Counter(
            m, "skyroute.router.cache.hits", "{request}", "Requests answered from the cache", *pool
        )
        self.fallbacks = _Counter(
            m,
            "skyroute.router.fallbacks",
            "{request}",
            "Requests that needed more than one attempt",
            *pool,
        )
        self.attempts = _Counter(
            m,
            "skyroute.router.attempts",
            "{attempt}",
            "Upstream attempts by model and outcome",
            "skyroute.pool",
            "gen_ai.request.model",
            "gen_ai.provider.name",
            "skyroute.outcome",
        )
        self.request_duration = histogram(
            "skyroute.router.request.duration",
            "s",
            "Request latency seen by the client, cache hits included",
            REQUEST_BUCKETS,
            *pool,
            "skyroute.outcome",
        )
        op = (
            "gen_ai.operation.name",
            "gen_ai.provider.name",
            "gen_ai.request.model",
            "server.address",
            "server.port",
        )
        self.op_duration = histogram(
            "gen_ai.client.operation.duration",
            "s",
            "GenAI operation duration",
            DURATION_BUCKETS,
            *op,
            "gen_ai.response.model",
            "error.type",
        )
        self.tokens = histogram(
            "gen_ai.client.token.usage",
            "{token}",
            "Number of input and output tokens used",
            TOKEN_BUCKETS,
            *op,
            "gen_ai.response.model",
            "gen_ai.token.type",
        )
        self.ttfc = histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Time to receive the first chunk of a streamed answer",
            DURATION_BUCKETS,
            *op,
        )

        def flush_at_collection(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(self.flush())]

        m.create_observable_gauge(
            "skyroute.router.telemetry.flushed",
            [flush_at_collection],
            "{measurement}",
            "Histogram values handed to the SDK at the last collection",
        )

    def flush(self) -> int:
        """Hand queued histogram values to the SDK; returns how many."""
        pending, n = self.pending, 0
        while True:
            try:
                hist, key, value = pending.popleft()
            except IndexError:
                return n
            hist.apply(key, value)
            n += 1

    # -- per request ------------------------------------------------------------
    def request(
        self,
        policy: str,
        version: str,
        pool: str,
        intent: str,
        model: str,
        outcome: str,
        cache: str,
        seconds: float,
        cost_usd: float,
        attempts: int,
    ) -> None:
        self.requests.add((policy, version, pool, intent, model, outcome, cache))
        by_pool = (policy, version, pool)
        self.request_duration.record((policy, version, pool, outcome), seconds)
        if cost_usd:
            self.cost.add(by_pool, cost_usd)
        if cache == "hit":
            self.cache_hits.add(by_pool)
        if attempts > 1:
            self.fallbacks.add(by_pool)

    # -- per attempt (``endpoint``: the upstream's base URL, for server.address/port) ------
    def attempt(
        self,
        pool: str,
        model: str,
        provider: str,
        error_class: str,
        seconds: float,
        endpoint: str = "",
    ) -> None:
        up = upstream(provider, endpoint)
        self.attempts.add((pool, model, up.provider, error_class or "ok"))
        answered = "" if error_class else model
        self.op_duration.record(
            ("chat", up.provider, model, up.address, up.port, answered, error_class), seconds
        )

    def usage(
        self,
        model: str,
        provider: str,
        prompt_tokens: int,
        completion_tokens: int,
        endpoint: str = "",
    ) -> None:
        up = upstream(provider, endpoint)
        key = ("chat", up.provider, model, up.address, up.port, model)
        self.tokens.record((*key, "input"), prompt_tokens)
        self.tokens.record((*key, "output"), completion_tokens)

    def first_chunk(self, model: str, provider: str, seconds: float, endpoint: str = "") -> None:
        up = upstream(provider, endpoint)
        self.ttfc.record(("chat", up.provider, model, up.address, up.port), seconds)

    # -- read at collection time ---------------------------------------------------
    def observe(
        self, name: str, description: str, read: Callable[[], int | float], unit: str = "1"
    ) -> None:
        """A monotonic process counter kept elsewhere, exported as an OTel counter."""

        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(read())]

        self._meter.create_observable_counter(name, [callback], unit, description)

    def observe_counts(
        self,
        name: str,
        description: str,
        read: Callable[[], Iterable[tuple[int, Attrs]]],
        unit: str = "1",
    ) -> None:
        """Monotonic counters kept elsewhere, one per attribute set (an OTel counter)."""
        self._meter.create_observable_counter(name, [_labelled(read)], unit, description)

    def observe_gauge(
        self,
        name: str,
        description: str,
        read: Callable[[], Iterable[tuple[float, Attrs]]],
        unit: str = "1",
    ) -> None:
        self._meter.create_observable_gauge(name, [_labelled(read)], unit, description)


def _labelled(
    read: Callable[[], Iterable[tuple[float, Attrs]]],
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """An observable instrument's callback: one observation per (value, attributes)."""

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, a) for v, a in read()]

    return callback
