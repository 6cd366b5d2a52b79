"""Tenants and key Secrets on the real kube-apiserver, through the operator to a router.

A real operator (watching the stack's namespace, reading its key Secrets), a
real router connected to it: a Tenant applied with kubectl compiles into the
snapshot and its status says so; a key made by ``skyroute keys create -n NS``
(a labelled Secret holding id and digest) is accepted by the router and every
other key is refused; a bad Tenant is refused at admission naming the field,
and, with the webhook away, refused by the operator naming object and field
while the previous generation keeps serving; a revoked key is refused after
the next push.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from harness import wait_until
from kcluster import REPO, Cluster
from opstack import Stack, acmeshop_stack

TENANT = """\
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata:
  name: {name}
spec:
  tier: standard
  policies: [acmeshop]
  rateLimits:
    requestsPerMinute: 600
{extra}"""


@pytest.fixture(scope="module")
def stack(k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with acmeshop_stack(k8s_cluster, tmp_path_factory.mktemp("tenants"), "tn") as s:
        yield s


def keys(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [
            *(sys.executable, "-m", "skyroute.cli.main", "keys", *args),
            *("-n", stack.ns, "--kubeconfig", str(stack.cluster.kubeconfig)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 or not check, r.stderr
    return r


def call(url: str, key: str | None) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"model": "acmeshop", "messages": [{"role": "user", "content": "hi"}]})
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(
        url + "/v1/chat/completions", data=body.encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_tenant_and_key_secret_reach_the_router(stack: Stack) -> None:
    url = stack.routers[0][1]
    assert call(url, None)[0] == 200  # no Tenant yet: the router is open, as before
    stack.apply(TENANT.format(name="acme-web", extra=""))
    ready = stack.wait_condition("tenants", "acme-web", "Ready")
    assert ready["reason"] == "Ready"
    status = stack.get("tenants", "acme-web")["status"]
    assert status["keys"] == 0 and status["redisDown"] == "failOpen" and status["version"]
    # kubectl get tn -o wide shows each Tenant's choice for a Redis outage.
    wide = stack.cluster.kubectl("get", "tenants", "acme-web", "-n", stack.ns, "-o", "wide").stdout
    header, row = wide.splitlines()[:2]
    assert "REDIS-DOWN" in header and "failOpen" in row.split()
    wait_until(lambda: call(url, None)[0] == 401, timeout=10, what="keys required")

    made = keys(stack, "create", "--tenant", "acme-web")
    key = made.stdout.strip().splitlines()[-1]
    key_id, secret = key.split("-")[2], key.split("-")[3]
    wait_until(
        lambda: stack.get("tenants", "acme-web")["status"].get("keys") == 1,
        timeout=15,
        what="the key Secret counted in the Tenant's status",
    )
    stack.wait_condition("tenants", "acme-web", "Ready")
    wait_until(lambda: call(url, key)[0] == 200, timeout=10, what="the key accepted")
    code, err = call(url, key[:-1] + ("0" if key[-1] != "0" else "1"))
    assert code == 401 and err["error"]["code"] == "invalid_api_key"
    assert call(url, "sk-sr-000000000000-" + "a" * 43)[0] == 401
    assert call(url, None)[0] == 401

    # A Secret for this Tenant that is not a key is skipped, and nothing else changes.
    stack.cluster.kubectl(
        "create", "secret", "generic", "skyroute-key-broken", "-n", stack.ns,
        "--from-literal=id=nope", "--from-literal=digest=sha256:zz",
    )  # fmt: skip
    stack.cluster.kubectl(
        "label", "secret", "skyroute-key-broken", "-n", stack.ns, "skyroute.io/tenant=acme-web"
    )
    wait_until(
        lambda: "skyroute-key-broken" in stack.operator.output(),
        timeout=10,
        what="the malformed Secret named in the log",
    )
    assert call(url, key)[0] == 200
    assert stack.get("tenants", "acme-web")["status"]["keys"] == 1

    # A bad Tenant: refused at admission naming the field ...
    bad = TENANT.format(
        name="acme-web", extra="  budgets:\n    - {name: b, usd: 5, action: route}\n"
    )
    refused = stack.apply(bad, check=False)
    assert refused.returncode != 0
    assert "spec.budgets[0].pool" in refused.stderr and "needs a pool" in refused.stderr
    # ... and with the webhook away, refused by the operator; generation 1 keeps serving.
    stack.cluster.kubectl("delete", "validatingwebhookconfiguration", stack.webhook_config)
    stack.apply(bad)
    compiled = stack.wait_condition("tenants", "acme-web", "Compiled", status="False")
    assert compiled["reason"] == "Rejected"
    assert "spec.budgets[0].pool" in compiled["message"]
    assert "routers keep serving generation 1" in compiled["message"]
    assert call(url, key)[0] == 200

    # Revoked (the Secret deleted): refused after the next push.
    keys(stack, "revoke", "--tenant", "acme-web", key_id)
    wait_until(lambda: call(url, key)[0] == 401, timeout=10, what="the revoked key refused")
    # The key itself never reached the operator, its status, or the router's output.
    for text in (stack.operator.output(), json.dumps(stack.get("tenants", "acme-web"))):
        assert secret not in text
    assert secret not in stack.routers[0][0].output()
