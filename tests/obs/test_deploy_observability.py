"""deploy/observability: the alert rules and the dashboard parse and name real metrics.

promtool is not available here, so the rules file is checked for the
structure Prometheus requires, balanced PromQL, and above all that every
metric and label name in every expression is one the router and the control
plane really expose: the instruments are recorded once in process through
the same OpenTelemetry Prometheus reader the processes use, and the names
are read back from the exposition text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from skyroute.control.telemetry import ControlMetrics, RolloutMetrics
from skyroute.router.server import observe_process
from skyroute.router.telemetry import RouterMetrics, views

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
IDENT = re.compile(r"\b(?:skyroute|gen_ai)_[a-z0-9_]+\b")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\{([^}]*)\}")
DURATION = re.compile(r"^\d+[smhdw]$")


@pytest.fixture(scope="module")
def exposed() -> Iterator[tuple[set[str], set[str]]]:
    """(metric sample names, label names) of every skyroute instrument, recorded once."""
    reader = PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=views())
    try:
        rm = RouterMetrics(provider.get_meter("skyroute.router"))
        rm.request("p", "v1", "fast", "faq", "m", "ok", "hit", 0.01, 0.001, 2)
        rm.attempt("fast", "m", "openai", "server_error", 0.2)
        rm.usage("m", "openai", 10, 20)
        rm.first_chunk("m", "openai", 0.1)
        rm.flush()
        engine = SimpleNamespace(
            metrics=rm,
            health=SimpleNamespace(ejected_total=1),
            budget=SimpleNamespace(denied=1),
            hedges=0,
        )
        state = SimpleNamespace(
            engine=engine, shed=1, inflight=0, table=SimpleNamespace(version="s1")
        )
        observe_process(
            cast(Any, state),
            cast(Any, SimpleNamespace(connected=True)),
            cast(Any, SimpleNamespace(dropped=0)),
        )
        cm = ControlMetrics(provider.get_meter("skyroute.control"))
        cm.pushed("s1")
        cm.answered("s1", "ack", 0.01)
        cm.received(3)
        cm.observe_routers(lambda: [("s1", "SYNCED")], lambda: "s1")
        ro = RolloutMetrics(provider.get_meter("skyroute.control"))
        ro.transition("p", "RolledBack")
        ro.observe(lambda: [("p", "Progressing", 5.0)])
        text = generate_latest(REGISTRY).decode()
    finally:
        provider.shutdown()  # also takes the reader's collector out of REGISTRY
    names: set[str] = set()
    labels = {"le", "instance", "job"}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            names.add(s.name)
            labels.update(s.labels)
    yield names, labels


def _check_expr(expr: str, where: str, exposed: tuple[set[str], set[str]]) -> None:
    names, labels = exposed
    assert expr.count("(") == expr.count(")"), f"{where}: unbalanced parentheses"
    assert expr.count("{") == expr.count("}"), f"{where}: unbalanced braces"
    used_labels: set[str] = set()
    for group in GROUPING.findall(expr):
        used_labels.update(x.strip() for x in group.split(",") if x.strip())
    for block in MATCHERS.findall(expr):
        used_labels.update(m.group(1) for m in re.finditer(r"(\w+)\s*(?:=~|!~|!=|=)", block))
    bare = GROUPING.sub("", MATCHERS.sub("{}", re.sub(r'"[^"]*"', '""', expr)))
    metrics = set(IDENT.findall(bare))
    assert metrics, f"{where}: no skyroute metric in {expr!r}"
    unknown = metrics - names
    assert not unknown, f"{where}: metrics not exposed by skyroute: {sorted(unknown)}"
    missing = used_labels - labels
    assert not missing, f"{where}: labels not exposed by skyroute: {sorted(missing)}"


def test_alert_rules_are_well_formed_and_name_exposed_metrics(
    exposed: tuple[set[str], set[str]],
) -> None:
    doc = yaml.safe_load((DEPLOY / "alerts.yaml").read_text())
    assert isinstance(doc, dict) and set(doc) == {"groups"}
    alerts: list[str] = []
    for g in doc["groups"]:
        assert isinstance(g["name"], str) and g["rules"], g
        for rule in g["rules"]:
            where = f"group {g['name']}, alert {rule.get('alert')!r}"
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, where
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]), where
            assert DURATION.match(str(rule.get("for", "0s"))), f"{where}: bad 'for'"
            assert rule["labels"]["severity"] in {"page", "ticket"}, where
            assert rule["annotations"]["summary"], where
            _check_expr(rule["expr"], where, exposed)
            alerts.append(rule["alert"])
    assert len(alerts) == len(set(alerts)), "duplicate alert names"
    for needed in (
        "SkyrouteLatencyDrift",
        "SkyrouteCostDrift",
        "SkyrouteErrorBudgetBurnFast",
        "SkyrouteRouterStale",
        "SkyrouteRouterDisconnected",
        "SkyrouteCanaryRolledBack",
    ):
        assert needed in alerts


def test_dashboard_panels_query_exposed_metrics(exposed: tuple[set[str], set[str]]) -> None:
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "pool", "version"} <= variables
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for figure in ("mix", "p95", "success", "cost per 1k", "cache hit rate"):
        assert figure in titles, f"dashboard lacks {figure!r}"
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        for t in p["targets"]:
            expr = t["expr"]
            for var in re.findall(r"\$(\w+)", expr):
                assert var in variables or var.startswith("__"), f"{p['title']}: ${var}"
            _check_expr(expr, f"panel {p['title']!r}", exposed)
