"""Tenant.status.spend on the real kube-apiserver: the leader's ledger, in status, kept.

A real operator (with its Lease) and a real router: a Tenant with a daily
budget and a key from ``skyroute keys create -n NS``; requests through the
official ``openai`` SDK with that key. The operator writes ``status.spend``
(USD this period, budget left, all-time total and requests) equal to the
costs the responses reported, keeps the ledger in the ConfigMap
``skyroute-spend-ledger`` (fenced leader write), and a restarted operator
continues it: status unchanged, the next request adds exactly its cost.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from harness import keys_cli, wait_until
from kcluster import Cluster
from opstack import Stack, acmeshop_stack

pytestmark = pytest.mark.timeout(300)

TENANT = """\
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata:
  name: acme-spend
spec:
  policies: [acmeshop]
  budgets:
    - {name: daily, usd: 20, period: day}
"""


@pytest.fixture(scope="module")
def stack(k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with acmeshop_stack(k8s_cluster, tmp_path_factory.mktemp("spend"), "sp") as s:
        yield s


def _key(stack: Stack) -> str:
    return keys_cli(
        *("create", "--tenant", "acme-spend", "-n", stack.ns),
        *("--kubeconfig", str(stack.cluster.kubeconfig)),
    )


def _ask(url: str, key: str, text: str) -> float:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="acmeshop", messages=[{"role": "user", "content": text}]
    )
    raw.parse()
    return float(raw.headers["x-skyroute-cost-usd"])


def _spend(stack: Stack) -> dict[str, Any]:
    return stack.get("tenants", "acme-spend").get("status", {}).get("spend") or {}


def _ledger(stack: Stack) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{stack.admin}/spend?tenant=acme-spend", timeout=5) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def test_the_operator_writes_spend_into_tenant_status_and_keeps_it(stack: Stack) -> None:
    url = stack.routers[0][1]
    stack.apply(TENANT)
    stack.wait_condition("tenants", "acme-spend", "Ready")
    key = _key(stack)
    wait_until(
        lambda: stack.get("tenants", "acme-spend")["status"].get("keys") == 1,
        timeout=15,
        what="the key counted",
    )

    def accepted() -> bool:
        try:
            _ask(url, key, "is the key live yet?")
        except openai.AuthenticationError:
            return False
        return True

    wait_until(accepted, timeout=15, what="the key accepted by the router")
    # The probe above was a charge too: count from what the ledger says now.
    wait_until(lambda: _ledger(stack)["total"]["requests"] >= 1, what="the probe counted")
    start = _ledger(stack)["total"]
    costs = [_ask(url, key, f"question number {i} about an order") for i in range(4)]
    assert all(c > 0 for c in costs)
    n = start["requests"] + len(costs)
    expected = start["cost_usd"] + sum(costs)
    wait_until(
        lambda: _spend(stack).get("requests") == n,
        timeout=30,
        what=f"status.spend counts {n} requests: {_spend(stack)}",
    )
    spend = _spend(stack)
    assert spend["period"] == "day"
    assert abs(spend["usd"] - expected) < 1e-5 and abs(spend["totalUsd"] - expected) < 1e-5
    assert abs(spend["budgetLeftUsd"] - (20 - expected)) < 1e-5
    # Printer columns read it: kubectl get tn shows the spend and the budget left.
    row = stack.cluster.kubectl("get", "tenants", "acme-spend", "-n", stack.ns).stdout
    assert "SPEND" in row.upper() and f"{spend['budgetLeftUsd']}"[:4] in row

    # The leader saved the ledger into its ConfigMap ...
    wait_until(
        lambda: (
            stack.cluster.kubectl(
                "get", "configmap", "skyroute-spend-ledger", "-n", stack.ns, check=False
            ).returncode
            == 0
        ),
        timeout=15,
        what="the ledger ConfigMap",
    )
    # ... so a restarted operator continues it, not a fresh one.
    stack.restart_operator()
    wait_until(
        lambda: _ledger(stack)["total"]["requests"] == n,
        timeout=30,
        what="the restarted operator restored the ledger",
    )

    c = _ask(url, key, "one more after the restart")  # the router serves on its own
    wait_until(
        lambda: _ledger(stack)["total"]["requests"] == n + 1,
        timeout=30,
        what="the request after the restart counted",
    )
    assert abs(_ledger(stack)["total"]["cost_usd"] - (expected + c)) < 1e-6
    wait_until(
        lambda: _spend(stack).get("requests") == n + 1,
        timeout=30,
        what=f"status.spend after the restart: {_spend(stack)}",
    )
