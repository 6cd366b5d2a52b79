"""Merging the workers' Prometheus expositions: one family header, every sample labelled."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from skyroute.router.worker_metrics import merge

A = """\
# HELP skyroute_router_requests_total Requests served
# TYPE skyroute_router_requests_total counter
skyroute_router_requests_total{skyroute_pool="fast"} 3.0
# HELP target_info Target metadata
# TYPE target_info gauge
target_info{service_name="skyroute-router"} 1.0
# HELP up_seconds A family without labels
# TYPE up_seconds gauge
up_seconds 7.0
"""
B = """\
# HELP skyroute_router_requests_total Requests served
# TYPE skyroute_router_requests_total counter
skyroute_router_requests_total{skyroute_pool="fast"} 2.0
skyroute_router_requests_total{skyroute_pool="smart"} 1.0
# HELP up_seconds A family without labels
# TYPE up_seconds gauge
up_seconds 9.0
"""


def test_merged_exposition_parses_with_one_series_per_worker() -> None:
    text = merge([("0", A), ("1", B)])
    assert text.count("# TYPE skyroute_router_requests_total counter") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (s.labels["skyroute_worker"], s.labels["skyroute_pool"]): s.value
        for s in families["skyroute_router_requests"].samples
    }
    assert requests == {("0", "fast"): 3.0, ("1", "fast"): 2.0, ("1", "smart"): 1.0}
    up = {s.labels["skyroute_worker"]: s.value for s in families["up_seconds"].samples}
    assert up == {"0": 7.0, "1": 9.0}
    assert families["target_info"].type == "gauge"
