"""Histograms counted in process export exactly what the SDK's own aggregation would.

The same values go through two ``RouterMetrics``: one recording through the
SDK's synchronous histograms (explicit-bucket views), one counting locally
and exporting through the router's Prometheus reader at collection time.
Every histogram sample of the two expositions (buckets, count, sum, labels)
must be equal.
"""

from __future__ import annotations

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from skyroute.router.histograms import PrometheusReader
from skyroute.router.telemetry import RouterMetrics, views

HISTOGRAMS = ("gen_ai_client_", "skyroute_router_request_duration")


def _record(rm: RouterMetrics) -> None:
    for i in range(200):
        s = 0.0004 * i  # 0 to 80 ms: across the request and operation buckets, edges included
        rm.request("p", "v1", "fast" if i % 3 else "smart", "faq", "m", "ok", "miss", s, 0.0, 1)
        err = "server_error" if i % 7 == 0 else ""
        rm.attempt("fast", "m", "gemini", err, s * 10, "https://x-aiplatform.googleapis.com/v1")
        rm.attempt("fast", "n", "openai", "", 0.32, "http://127.0.0.1:8790/openai/v1")
        rm.usage("m", "anthropic", 4**i % 100_000, i, "http://127.0.0.1:9/anthropic")
        rm.first_chunk("m", "openai", 0.16, "http://127.0.0.1:8790/openai/v1")


def _histogram_samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {
        (s.name, tuple(sorted(s.labels.items())), round(s.value, 9))
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith(HISTOGRAMS)
    }


def test_local_histograms_export_what_the_sdk_would() -> None:
    sdk_registry, local_registry = CollectorRegistry(), CollectorRegistry()
    sdk = MeterProvider(
        metric_readers=[PrometheusMetricReader(registry=sdk_registry)], views=views()
    )
    local = MeterProvider(metric_readers=[PrometheusReader(registry=local_registry)])
    try:
        by_sdk = RouterMetrics(sdk.get_meter("skyroute.router"), local_histograms=False)
        by_local = RouterMetrics(local.get_meter("skyroute.router"), local_histograms=True)
        _record(by_sdk)
        _record(by_local)
        by_sdk.flush()
        assert by_local.flush() == 0  # nothing queued: counted as recorded
        want = _histogram_samples(generate_latest(sdk_registry).decode())
        got = _histogram_samples(generate_latest(local_registry).decode())
    finally:
        sdk.shutdown()
        local.shutdown()
    names = {name for name, _, _ in want}
    assert {n.rsplit("_", 1)[0] for n in names} >= {
        "gen_ai_client_operation_duration_seconds",
        "gen_ai_client_token_usage",
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "skyroute_router_request_duration_seconds",
    }
    providers = {dict(labels).get("gen_ai_provider_name") for _, labels, _ in want}
    assert {"gcp.vertex_ai", "openai", "anthropic"} <= providers
    assert got == want
