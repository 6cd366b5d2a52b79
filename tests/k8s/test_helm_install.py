"""The chart's release lifecycle on a real API server: install, upgrade, rollback, uninstall.

``test_helm_chart.py`` renders the chart and dry-runs it; this runs Helm
itself against kube-apiserver, which is what a user does: CRDs from the
chart's crds/ go in before the templates (so Tenant objects of the same
release are accepted), every object is owned by the release, an upgrade
changes the live objects and a rollback restores them, and an uninstall
removes the release's objects but keeps the CRDs (and so everyone's
RoutingPolicies, ModelPools and Tenants). No kubelet runs, so nothing
starts; the objects are what is checked.

It gets a cluster of its own (same hack/cluster scripts as the session's):
the chart's names are fixed and cluster-wide (ClusterRole, webhook
configuration), and the session cluster already holds deploy/'s install.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kcluster import CHART, Cluster, cluster_env, cluster_script, helm

NS = "skyroute-system"
RELEASE = "skyroute"
TENANT = {
    "name": "acme-web",
    "spec": {
        "tier": "standard",
        "policies": ["acmeshop"],
        "rateLimits": {"requestsPerMinute": 600},
    },
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state_dir = tmp_path_factory.mktemp("helm-cluster")
    t0 = time.monotonic()
    up = cluster_script("up.sh", state_dir=state_dir)
    if up.returncode != 0:
        cluster_script("down.sh", state_dir=state_dir)
        pytest.fail(f"hack/cluster/up.sh failed ({up.returncode}):\n{up.stderr}")
    kubeconfig = Path(up.stdout.strip().splitlines()[-1])
    try:
        yield Cluster(kubeconfig, Path(cluster_env("KUBECTL")), time.monotonic() - t0)
    finally:
        down = cluster_script("down.sh", state_dir=state_dir)
        assert down.returncode == 0, down.stderr


def run(cluster: Cluster, *args: str) -> str:
    """helm against ``cluster``; API-server warnings (PodSecurity) must not appear."""
    proc = helm(*args, kubeconfig=cluster.kubeconfig)
    assert "PodSecurity" not in proc.stderr, proc.stderr
    return proc.stdout


def get(cluster: Cluster, *args: str) -> dict[str, Any]:
    out = cluster.kubectl("get", *args, "-o", "json").stdout
    return dict(json.loads(out))


def exists(cluster: Cluster, *args: str) -> bool:
    return cluster.kubectl("get", *args, check=False).returncode == 0


def router_args(cluster: Cluster) -> list[str]:
    deploy = get(cluster, "deployment", "skyroute-router", "-n", NS)
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return list(container["args"])


def test_install_upgrade_rollback_uninstall(cluster: Cluster, tmp_path: Path) -> None:
    cluster.kubectl("create", "namespace", NS)
    cluster.kubectl("label", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    values = tmp_path / "values.yaml"
    values.write_text(json.dumps({"tenants": [TENANT]}))

    # Install: CRDs first (from crds/), then the templates, Tenant included.
    run(
        cluster,
        "install",
        RELEASE,
        str(CHART),
        "-n",
        NS,
        "-f",
        str(CHART / "ci" / "dev-values.yaml"),
        "-f",
        str(values),
    )
    status = json.loads(run(cluster, "status", RELEASE, "-n", NS, "-o", "json"))
    assert status["info"]["status"] == "deployed" and status["version"] == 1
    for crd in ("routingpolicies", "modelpools", "tenants"):
        got = get(cluster, "crd", f"{crd}.skyroute.io")
        established = [c for c in got["status"]["conditions"] if c["type"] == "Established"]
        assert established and established[0]["status"] == "True", crd
    tenant = get(cluster, "tenant", "acme-web", "-n", NS)
    assert tenant["spec"]["rateLimits"]["requestsPerMinute"] == 600
    router = get(cluster, "deployment", "skyroute-router", "-n", NS)
    assert router["spec"]["replicas"] == 1
    assert router["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    role = get(cluster, "role", "skyroute-operator", "-n", NS)
    assert [r for r in role["rules"] if "secrets" in r["resources"]]
    assert not exists(cluster, "deployment", "skyroute-redis", "-n", NS)

    # Upgrade: more routers, the chart's Redis, webhook TLS from a Secret of ours.
    run(
        cluster,
        "upgrade", RELEASE, str(CHART), "-n", NS, "--reuse-values",
        "--set", "router.autoscaling.enabled=false",
        "--set", "router.replicas=3",
        "--set", "redis.enabled=true",
        "--set", "webhook.tls.mode=secret",
        "--set", "webhook.tls.caBundle=Q0EK",
    )  # fmt: skip
    assert get(cluster, "deployment", "skyroute-router", "-n", NS)["spec"]["replicas"] == 3
    assert f"--redis=redis://skyroute-redis.{NS}.svc:6379/0" in router_args(cluster)
    assert exists(cluster, "deployment", "skyroute-redis", "-n", NS)
    assert exists(cluster, "networkpolicy", "skyroute-redis", "-n", NS)
    role = get(cluster, "role", "skyroute-operator", "-n", NS)
    # Only the routers' link certificate Secret is left (the operator always keeps it).
    assert [r.get("resourceNames") for r in role["rules"] if "get" in r["verbs"]
            and "secrets" in r["resources"]] == [["skyroute-control-tls"]]  # fmt: skip
    webhook = get(cluster, "validatingwebhookconfiguration", "skyroute")
    assert {h["clientConfig"]["caBundle"] for h in webhook["webhooks"]} == {"Q0EK"}

    # Rollback to the install: Redis gone again, one router, the Secret rules back.
    run(cluster, "rollback", RELEASE, "1", "-n", NS)
    assert get(cluster, "deployment", "skyroute-router", "-n", NS)["spec"]["replicas"] == 1
    assert not [a for a in router_args(cluster) if a.startswith("--redis")]
    assert not exists(cluster, "deployment", "skyroute-redis", "-n", NS)
    role = get(cluster, "role", "skyroute-operator", "-n", NS)
    assert [r for r in role["rules"] if "secrets" in r["resources"]]

    # Uninstall: the release's objects go, the CRDs stay (Helm never deletes crds/).
    run(cluster, "uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "60s")
    for kind, name in (
        ("deployment", "skyroute-router"),
        ("deployment", "skyroute-operator"),
        ("tenant", "acme-web"),
    ):
        assert not exists(cluster, kind, name, "-n", NS), (kind, name)
    assert not exists(cluster, "clusterrole", "skyroute-operator")
    assert not exists(cluster, "validatingwebhookconfiguration", "skyroute")
    assert exists(cluster, "crd", "tenants.skyroute.io")
    assert json.loads(run(cluster, "list", "-n", NS, "-o", "json")) == []
