"""Control-plane metrics through the OpenTelemetry SDK.

Why: the distribution side of the system fails quietly. A router that
stopped ACKing keeps serving its last snapshot, a push that takes seconds to
be applied delays every policy change, and a fleet split across versions
looks healthy request by request. These instruments make that visible in
the same Prometheus/Grafana/Collector pipeline as the routers' request
metrics: snapshot pushes and the time from push to ACK (or NACK), routers
per acknowledged version and sync state, and outcomes received from routers.

The same instruments are exposed as ``GET /metrics`` on the admin port
(Prometheus text) and pushed over OTLP/HTTP when the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._METRICS_ENDPOINT``) is set; every
other ``OTEL_*`` variable is honoured by the SDK. Only the process entry
point configures the SDK: control planes built in process (tests) record
into the API's no-op meter.

The control plane shares no code with the router (the packages never import
each other), so this module repeats the router's few lines of SDK set-up.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

PUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_configured = False


class SpendRow(Protocol):
    """A ledger row as the spend counters read it (``spend.ledger.Row``)."""

    requests: int
    nano_usd: int


def configure(service: str = "skyroute-control") -> None:
    """Install the process's meter provider (Prometheus reader, OTLP if configured)."""
    global _configured
    if _configured:
        return
    _configured = True
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    env = os.environ
    readers: list[MetricReader] = [PrometheusMetricReader()]
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", service)})
    views = [
        View(
            instrument_name="skyroute.control.push.duration",
            aggregation=ExplicitBucketHistogramAggregation(PUSH_BUCKETS),
        )
    ]
    metrics.set_meter_provider(
        MeterProvider(resource=resource, metric_readers=readers, views=views)
    )


def shutdown() -> None:
    stop = getattr(metrics.get_meter_provider(), "shutdown", None)
    if callable(stop):
        stop()


def prometheus_text() -> tuple[bytes, str]:
    """The Prometheus exposition of this process's instruments, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class ControlMetrics:
    """The distribution service's instruments, created once."""

    def __init__(self, meter: metrics.Meter | None = None) -> None:
        m = meter or metrics.get_meter("skyroute.control")
        self._meter = m
        self.pushes = m.create_counter(
            "skyroute.control.pushes", "{push}", "Snapshots pushed to routers, by version"
        )
        self.push_duration = m.create_histogram(
            "skyroute.control.push.duration",
            "s",
            "Time from a snapshot push to the router's ACK or NACK",
        )
        self.outcomes = m.create_counter(
            "skyroute.control.outcomes.received",
            "{outcome}",
            "Request outcomes received from routers",
        )
        self._versions: dict[str, dict[str, str]] = {}
        self._answers: dict[tuple[str, str], dict[str, str]] = {}

    def _version(self, version: str) -> dict[str, str]:
        attrs = self._versions.get(version)
        if attrs is None:
            attrs = self._versions[version] = {"skyroute.snapshot_version": version}
        return attrs

    def pushed(self, version: str) -> None:
        self.pushes.add(1, self._version(version))

    def answered(self, version: str, answer: str, seconds: float) -> None:
        key = (version, answer)
        attrs = self._answers.get(key)
        if attrs is None:
            attrs = self._answers[key] = {
                "skyroute.snapshot_version": version,
                "skyroute.answer": answer,
            }
        self.push_duration.record(seconds, attrs)

    def received(self, n: int) -> None:
        if n:
            self.outcomes.add(n)

    def observe_routers(
        self, states: Callable[[], Iterable[tuple[str, str]]], current: Callable[[], str]
    ) -> None:
        """Routers per (acknowledged version, sync state), and the serving version's info."""

        def routers(options: CallbackOptions) -> Iterable[Observation]:
            counts = Counter(states())
            return [
                Observation(n, {"skyroute.snapshot_version": v, "skyroute.state": s})
                for (v, s), n in counts.items()
            ]

        def serving(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(1, {"skyroute.snapshot_version": current()})]

        self._meter.create_observable_gauge(
            "skyroute.control.routers",
            [routers],
            "{router}",
            "Routers known to the control plane, by acknowledged version and sync state",
        )
        self._meter.create_observable_gauge(
            "skyroute.control.snapshot",
            [serving],
            "1",
            "1, labelled with the snapshot version the control plane serves",
        )

    def observe_rejected(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """What the control plane refused or dropped, by reason: the ``rejected`` of
        ``skyroute status`` (unauthenticated, identity_mismatch, not_subscribed,
        unknown_model, bad_sketch, series:<table>, ...), read at each collection."""

        def rejected(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(n, {"skyroute.reason": r}) for r, n in sorted(counts().items())]

        self._meter.create_observable_counter(
            "skyroute.control.rejected",
            [rejected],
            "{report}",
            "Streams, reports and report parts refused or dropped, by reason",
        )

    def observe_drift(self, alerts: Callable[[], Iterable[tuple[str, str]]]) -> None:
        """1 per model and kind ("latency" or "cost") whose drift alert is raised now."""

        def drifting(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(1, {"gen_ai.request.model": model, "skyroute.drift": kind})
                for model, kind in alerts()
            ]

        self._meter.create_observable_gauge(
            "skyroute.control.drift",
            [drifting],
            "1",
            "Raised drift alerts: a model's p95 or cost per request above its baseline x ratio",
        )

    def observe_spend(self, rows: Callable[[], Mapping[tuple[str, str, str], SpendRow]]) -> None:
        """The spend ledger's all-time USD and requests per tenant and model (monotonic:
        the ledger is persisted, so the counters continue across restarts)."""

        def by_model() -> dict[tuple[str, str], tuple[int, int]]:
            out: dict[tuple[str, str], tuple[int, int]] = {}
            for (tenant, _key, model), r in rows().items():
                n, nano = out.get((tenant, model), (0, 0))
                out[(tenant, model)] = (n + r.requests, nano + r.nano_usd)
            return out

        def attrs(tenant: str, model: str) -> dict[str, str]:
            return {"skyroute.tenant": tenant, "gen_ai.request.model": model}

        def cost(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v[1] / 1e9, attrs(*k)) for k, v in by_model().items()]

        def requests(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v[0], attrs(*k)) for k, v in by_model().items()]

        self._meter.create_observable_counter(
            "skyroute.control.spend", [cost], "USD", "Spend in the ledger, per tenant and model"
        )
        self._meter.create_observable_counter(
            "skyroute.control.spend.requests",
            [requests],
            "{request}",
            "Charged requests in the ledger, per tenant and model",
        )


class RolloutMetrics:
    """Rollout transitions (a counter) and each policy's canary weight (a gauge)."""

    def __init__(self, meter: metrics.Meter | None = None) -> None:
        self._meter = m = meter or metrics.get_meter("skyroute.control")
        self.transitions = m.create_counter(
            "skyroute.control.rollout.transitions",
            "{transition}",
            "Rollout steps by policy and reason (RolloutStarted, StepAdvanced, AnalysisFailed, "
            "Holding, Promoted, RolledBack, ...)",
        )

    def transition(self, policy: str, reason: str) -> None:
        self.transitions.add(1, {"skyroute.policy": policy, "skyroute.reason": reason})

    def observe(self, weights: Callable[[], Iterable[tuple[str, str, float]]]) -> None:
        """(policy, phase, candidate weight in percent) per policy, read at each collection."""

        def weight(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(w, {"skyroute.policy": p, "skyroute.rollout_phase": phase})
                for p, phase, w in weights()
            ]

        self._meter.create_observable_gauge(
            "skyroute.control.rollout.weight",
            [weight],
            "%",
            "Percent of a policy's traffic its candidate serves, with the rollout phase",
        )
