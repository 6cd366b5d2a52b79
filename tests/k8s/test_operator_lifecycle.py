"""The operator's life on a real API server: apply, serve, edit, delete, restart.

One stack per module (namespace, simulator, ``skyroute operator`` with its
webhook, a router), and the tests run in order on it like an operator's day:
the AcmeShop example goes live and a router serves its version; kubectl
shows it; a pool edit re-versions exactly the policies using it and routers
have it within 2 s; an API key referenced from a Secret reaches nothing but
a mount path; a deleted policy leaves the routers; a restart changes no
version and pushes nothing; and objects delete while the operator is down,
since no finalizer is ever set.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml

from harness import http_get, wait_until
from kcluster import Cluster
from opstack import Stack, chat

RP, MP = "routingpolicies", "modelpools"


@pytest.fixture(scope="module")
def stack(k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(k8s_cluster, tmp_path_factory.mktemp("lifecycle"), prefix="life")
    try:
        yield s
    finally:
        s.close()


def versions(stack: Stack) -> dict[str, str]:
    out = {}
    for kind in (RP, MP):
        items = stack.cluster.kubectl("get", kind, "-n", stack.ns, "-o", "yaml").stdout
        for item in yaml.safe_load(items)["items"]:
            out[f"{item['kind']}/{item['metadata']['name']}"] = item["status"]["version"]
    return out


def test_acmeshop_is_accepted_compiled_and_ready(stack: Stack) -> None:
    stack.apply_acmeshop()
    for name in ("acmeshop", "baseline"):
        stack.wait_condition(RP, name, "Ready")
        obj = stack.get(RP, name)
        status = obj["status"]
        assert status["observedGeneration"] == obj["metadata"]["generation"]
        assert status["version"] == stack.operator_status()["policies"][name]
        conds = {c["type"]: c for c in status["conditions"]}
        assert conds["Accepted"]["status"] == "True" and conds["Compiled"]["status"] == "True"
        assert conds["Compiled"]["message"] == (
            f"generation {obj['metadata']['generation']} compiled as {status['version']}"
        )
        assert all(c["lastTransitionTime"] and c["observedGeneration"] == 1 for c in conds.values())
        assert not obj["metadata"].get("finalizers")
    for name in ("cost", "balanced", "quality", "baseline"):
        stack.wait_condition(MP, name, "Ready")
    reasons = [e["reason"] for e in stack.events("acmeshop")]
    assert reasons.count("NewVersion") == 1, reasons


def test_a_router_serves_the_compiled_version(stack: Stack) -> None:
    url = stack.start_router("life-r1")
    synced = stack.wait_condition(RP, "acmeshop", "Synced")
    assert synced["message"].startswith("all 1 connected routers serve")
    status = stack.get(RP, "acmeshop")["status"]
    assert status["routers"] == {"synced": 1, "stale": 0}
    code, headers, body = chat(url, "auto", "Please compare the Business and Enterprise plans")
    assert code == 200, body
    assert headers["x-skyroute-policy"] == "acmeshop"
    assert headers["x-skyroute-policy-version"] == status["version"]
    assert headers["x-skyroute-snapshot-version"] == stack.operator_status()["version"]
    assert body["choices"][0]["message"]["content"]


def test_kubectl_get_shows_version_sync_count_and_readiness(stack: Stack) -> None:
    out = stack.cluster.kubectl("get", RP, "-n", stack.ns).stdout.splitlines()
    header = out[0].split()
    assert header[:11] == [
        "NAME",
        "DEFAULT",
        "DEFAULT-POOL",
        "VERSION",
        "SYNCED",
        "STABLE",
        "CANDIDATE",
        "WEIGHT",
        "PHASE",
        "READY",
        "AGE",
    ]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    version = stack.get(RP, "acmeshop")["status"]["version"]
    # No rollout configured: the version serves alone, nothing in flight.
    assert rows["acmeshop"][3:10] == [version, "1", version, "-", "0", "Stable", "True"]
    wide = stack.cluster.kubectl("get", MP, "-n", stack.ns, "-o", "wide").stdout.splitlines()
    assert "STALE" in wide[0].split()


def test_a_pool_edit_re_versions_its_policies_and_reaches_routers_within_2s(
    stack: Stack,
) -> None:
    before = versions(stack)
    snapshot_before = stack.operator_status()["version"]
    pool = stack.example("ModelPool", "cost")
    pool["spec"]["models"][0]["pricing"]["inputPerMTok"] = 0.4
    t0 = time.monotonic()
    stack.apply(yaml.safe_dump(pool))
    wait_until(
        lambda: stack.router_version(stack.routers[0][1]) not in ("", snapshot_before),
        timeout=2.0,
        interval=0.02,
        what="router on the new snapshot",
    )
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0
    stack.wait_condition(RP, "acmeshop", "Synced")
    policy = "RoutingPolicy/acmeshop"
    wait_until(
        lambda: versions(stack)[policy] != before[policy],
        timeout=5,
        what="acmeshop status re-versioned",
    )
    after = versions(stack)
    assert after["ModelPool/cost"] != before["ModelPool/cost"]
    assert after["RoutingPolicy/acmeshop"] != before["RoutingPolicy/acmeshop"]  # uses cost
    assert after["RoutingPolicy/baseline"] == before["RoutingPolicy/baseline"]  # does not
    messages = [e["message"] for e in stack.events("acmeshop") if e["reason"] == "NewVersion"]
    assert any("re-versioned" in m and after["RoutingPolicy/acmeshop"] in m for m in messages)
    print(f"pool edit to router: {elapsed * 1000:.0f} ms")


def test_a_secret_key_ref_reaches_routers_only_as_a_mount_path(stack: Stack) -> None:
    secret_value = "sk-test-never-leaves-the-secret-4711"
    stack.cluster.kubectl(
        "create",
        "secret",
        "generic",
        "provider-keys",
        "-n",
        stack.ns,
        f"--from-literal=gemini={secret_value}",
    )
    pool = stack.example("ModelPool", "cost")
    pool["spec"]["models"][0]["pricing"]["inputPerMTok"] = 0.4
    pool["spec"]["models"][0]["apiKey"] = {
        "secretKeyRef": {"name": "provider-keys", "key": "gemini"}
    }
    generation = stack.get(MP, "cost")["metadata"]["generation"]
    stack.apply(yaml.safe_dump(pool))
    wait_until(
        lambda: (
            stack.get(MP, "cost")["status"]["observedGeneration"] > generation
            and stack.condition(MP, "cost", "Compiled").get("status") == "True"
        ),
        timeout=10,
        what="pool with secretKeyRef compiled",
    )
    code, snapshot = http_get(f"http://{stack.admin}/debug/snapshot")
    assert code == 200
    assert b'"api_key_file": "/var/run/secrets/skyroute/provider-keys/gemini"' in snapshot
    seen = [
        snapshot.decode(),
        stack.operator.output(),
        stack.cluster.kubectl("get", "rp,mp", "-n", stack.ns, "-o", "yaml").stdout,
        stack.cluster.kubectl("get", "events", "-n", stack.ns, "-o", "yaml").stdout,
        http_get(stack.router_admins[0] + "/debug/status")[1].decode(),
    ]
    assert not [text[:80] for text in seen if secret_value in text]


def test_deleting_a_policy_removes_it_from_routers(stack: Stack) -> None:
    url = stack.routers[0][1]
    assert chat(url, "baseline", "hello")[0] == 200
    snapshot_before = stack.operator_status()["version"]
    stack.cluster.kubectl("delete", RP, "baseline", "-n", stack.ns, "--timeout=5s")
    wait_until(
        lambda: stack.router_version(url) not in ("", snapshot_before),
        timeout=2.0,
        interval=0.02,
        what="router without baseline",
    )
    code, _, body = chat(url, "baseline", "hello")
    assert code == 404, body
    assert "baseline" not in stack.operator_status()["policies"]


def test_a_restart_keeps_every_version_and_pushes_nothing(stack: Stack) -> None:
    url = stack.routers[0][1]
    wait_until(
        lambda: all(r["state"] == "SYNCED" for r in stack.operator_status()["routers"]),
        timeout=5,
        what="router synced before the restart",
    )
    before = versions(stack)
    snapshot = stack.operator_status()["version"]
    events_before = len(
        stack.cluster.kubectl("get", "events", "-n", stack.ns, "-o", "name").stdout.split()
    )
    resource_versions = {n: stack.get(RP, n)["metadata"]["resourceVersion"] for n in ["acmeshop"]}
    old = stack.operator
    stack.restart_operator()
    assert stack.router_version(url) == snapshot  # served throughout
    wait_until(
        lambda: [r["state"] for r in stack.operator_status()["routers"]] == ["SYNCED"],
        timeout=10,
        what=f"router reconnected\n{stack.operator.output()}",
    )
    time.sleep(1.5)  # the writer has compared every status by now (ticks every 0.2 s)
    assert stack.operator_status()["version"] == snapshot
    assert stack.pushes() == 0, stack.operator.output()
    assert stack.pushes(old) >= 1  # the count means something: the old process did push
    assert versions(stack) == before
    assert {n: stack.get(RP, n)["metadata"]["resourceVersion"] for n in ["acmeshop"]} == (
        resource_versions
    )
    events_after = len(
        stack.cluster.kubectl("get", "events", "-n", stack.ns, "-o", "name").stdout.split()
    )
    assert events_after == events_before


def test_objects_delete_while_the_operator_is_down(stack: Stack) -> None:
    url = stack.routers[0][1]
    snapshot = stack.operator_status()["version"]
    stack.operator.stop()
    t0 = time.monotonic()
    # The baseline pool is unreferenced since its policy went; no finalizer holds it.
    stack.cluster.kubectl("delete", MP, "baseline", "-n", stack.ns, "--timeout=5s")
    assert time.monotonic() - t0 < 5
    gone = stack.cluster.kubectl("get", MP, "baseline", "-n", stack.ns, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert stack.router_version(url) == snapshot  # last known good while the operator is away
    stack.operator = stack.start_operator()
    wait_until(
        lambda: stack.router_version(url) not in ("", snapshot),
        timeout=10,
        what="router on the snapshot without the deleted pool",
    )
    assert "baseline" not in [p["name"] for p in _snapshot_pools(stack)]


def _snapshot_pools(stack: Stack) -> list[dict[str, object]]:
    import json

    code, body = http_get(f"http://{stack.admin}/debug/snapshot")
    assert code == 200
    return json.loads(body)["pools"]  # type: ignore[no-any-return]
