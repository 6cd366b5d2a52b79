"""deploy/ renders with kubectl's kustomize and the API server accepts every object.

``kubectl apply --dry-run=server`` runs the whole server-side path short of
storing (schema, defaulting, admission, RBAC escalation checks, PodSecurity
warnings), so a typo in a field name or an invalid value fails here, not in
someone's cluster. The structure checks pin what the issue asks of deploy/:
least-privilege RBAC, routers allowed to reach only the operator, DNS and
providers, an HPA and PDB, the webhook on failurePolicy Ignore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kcluster import REPO, Cluster

DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "prod")


def render(cluster: Cluster, overlay: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("kustomize", str(DEPLOY / "overlays" / overlay)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_deploy_installs_the_repository_crds_unchanged(k8s_cluster: Cluster) -> None:
    rendered = by_kind(render(k8s_cluster, "prod"), "CustomResourceDefinition")
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        got = rendered[crd["metadata"]["name"]]
        # kustomize adds the common labels; everything else must be the file as is.
        assert got["spec"] == crd["spec"], path
        assert crd["metadata"]["labels"].items() <= got["metadata"]["labels"].items()
    # kubectl apply -f crds/ must not trip over the kustomization that makes this work.
    assert not list((REPO / "crds").glob("kustomization.*"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_passes_server_side_dry_run(k8s_cluster: Cluster, overlay: str) -> None:
    docs = render(k8s_cluster, overlay)
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ValidatingWebhookConfiguration",
        ]
    )
    assert all(d["metadata"].get("namespace") in (None, "skyroute-system") for d in docs)
    # Namespaced objects need their namespace to exist for a server-side dry run.
    k8s_cluster.kubectl("create", "namespace", "skyroute-system", check=False)
    result = k8s_cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs)
    )
    lines = result.stdout.splitlines()
    assert len(lines) == len(docs) and all(line.endswith("(server dry run)") for line in lines)
    assert "would violate PodSecurity" not in result.stderr, result.stderr


def test_prod_is_highly_available_and_dev_is_small(k8s_cluster: Cluster) -> None:
    prod, dev = render(k8s_cluster, "prod"), render(k8s_cluster, "dev")
    p_deploy, d_deploy = by_kind(prod, "Deployment"), by_kind(dev, "Deployment")
    assert p_deploy["skyroute-operator"]["spec"]["replicas"] == 2
    pod_spec = p_deploy["skyroute-operator"]["spec"]["template"]["spec"]
    assert "podAntiAffinity" in pod_spec["affinity"]
    assert by_kind(prod, "HorizontalPodAutoscaler")["skyroute-router"]["spec"]["minReplicas"] == 3
    assert by_kind(prod, "PodDisruptionBudget")["skyroute-router"]["spec"]["minAvailable"] == 2
    assert d_deploy["skyroute-operator"]["spec"]["replicas"] == 1
    images = {
        c["image"] for d in p_deploy.values() for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"skyroute/operator:0.1.0", "skyroute/router:0.1.0"}


def test_rbac_is_least_privilege(k8s_cluster: Cluster) -> None:
    docs = render(k8s_cluster, "prod")
    rules = [
        r
        for kind in ("ClusterRole", "Role")
        for d in by_kind(docs, kind).values()
        for r in d["rules"]
    ]
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(
            rule["verbs"]
        ), rule
    secrets = [r for r in rules if "secrets" in r["resources"]]
    assert {v for r in secrets for v in r["verbs"]} == {"get", "create"}
    # The webhook's and the routers' link's certificates (issue 15), each by name.
    assert all(
        r.get("resourceNames") == ["skyroute-webhook-tls", "skyroute-control-tls"]
        for r in secrets
        if "get" in r["verbs"]
    )
    cluster_role = by_kind(docs, "ClusterRole")["skyroute-operator"]
    spec_writes = [r for r in cluster_role["rules"] if "routingpolicies" in r["resources"]]
    # "patch" only removes the one-shot rollout-action annotation once acted on (the
    # operator never sends a spec); no create or update of policies.
    assert all(set(r["verbs"]) <= {"get", "list", "watch", "patch"} for r in spec_writes)
    configmaps = [r for r in cluster_role["rules"] if "configmaps" in r["resources"]]
    assert {v for r in configmaps for v in r["verbs"]} == {"get", "list", "create", "update"}
    router = by_kind(docs, "Deployment")["skyroute-router"]["spec"]["template"]["spec"]
    assert router["automountServiceAccountToken"] is False


def test_routers_may_only_reach_the_operator_dns_and_providers(k8s_cluster: Cluster) -> None:
    policy = by_kind(render(k8s_cluster, "prod"), "NetworkPolicy")["skyroute-router"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    egress = policy["egress"]
    assert len(egress) == 3
    to_operator, dns, providers = egress
    assert (
        to_operator["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        == "operator"
    )
    assert to_operator["ports"] == [{"protocol": "TCP", "port": 7070}]
    assert {p["port"] for p in dns["ports"]} == {53}
    block = providers["to"][0]["ipBlock"]
    assert block["cidr"] == "0.0.0.0/0" and "10.0.0.0/8" in block["except"]
    assert providers["ports"] == [{"protocol": "TCP", "port": 443}]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_admin_ports_only_from_the_monitoring_namespace(k8s_cluster: Cluster, overlay: str) -> None:
    """Router 7082 and operator 7071 (metrics, status, promote/abort) are in no rule open
    to every source, and in one rule from the monitoring namespace; the API ports stay open."""
    policies = by_kind(render(k8s_cluster, overlay), "NetworkPolicy")
    for name, admin in (("skyroute-router", 7082), ("skyroute-operator", 7071)):
        rules = policies[name]["spec"]["ingress"]
        with_admin = [r for r in rules if admin in {p["port"] for p in r.get("ports", [])}]
        assert len(with_admin) == 1, (name, with_admin)
        sources = with_admin[0].get("from", [])
        assert sources == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ], (name, sources)
    router_api = policies["skyroute-router"]["spec"]["ingress"][0]
    assert {p["port"] for p in router_api["ports"]} == {7080, 7081}
    assert router_api["from"] == [{"namespaceSelector": {}}]


def test_webhook_fails_open_to_cel_and_matches_the_operator_paths(k8s_cluster: Cluster) -> None:
    config = by_kind(render(k8s_cluster, "dev"), "ValidatingWebhookConfiguration")["skyroute"]
    paths = {h["clientConfig"]["service"]["path"] for h in config["webhooks"]}
    assert paths == {"/validate-routingpolicies", "/validate-modelpools", "/validate-tenants"}
    assert {h["failurePolicy"] for h in config["webhooks"]} == {"Ignore"}
    assert {h["sideEffects"] for h in config["webhooks"]} == {"None"}
    operator = by_kind(render(k8s_cluster, "dev"), "Deployment")["skyroute-operator"]
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--webhook-config=skyroute" in args
    assert "--webhook-tls-secret=skyroute-webhook-tls" in args


def test_dockerfile_paths_exist() -> None:
    for name in ("operator", "router"):
        text = (DEPLOY / "docker" / f"{name}.Dockerfile").read_text()
        sources = [
            src
            for line in text.splitlines()
            if line.startswith("COPY ") and "--from" not in line
            for src in line.split()[1:-1]
        ]
        assert "pyproject.toml" in sources and "operator/skyroute" in sources
        for src in sources:
            assert Path(REPO / src).exists(), f"{name}.Dockerfile copies missing {src}"


def _flag(args: list[str], name: str) -> float:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    return float(value)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_are_grpc_health_and_the_drain_fits_the_grace(
    k8s_cluster: Cluster, overlay: str
) -> None:
    deploys = by_kind(render(k8s_cluster, overlay), "Deployment")
    for name, service in (
        ("skyroute-router", "skyroute.v1.Router"),
        ("skyroute-operator", "skyroute.v1.PolicyDistribution"),
    ):
        pod = deploys[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        ready, live = container["readinessProbe"], container["livenessProbe"]
        # A grpc: probe takes a number only; it must be the gRPC port, asking our service
        # (the operator's plaintext health port: its link is TLS, which kubelet probes
        # cannot speak; issue 15).
        probed = ports.get("grpc-health", ports["grpc"])
        assert ready["grpc"] == {"port": probed, "service": service}, name
        assert live != ready and "httpGet" in live, name
    router = deploys["skyroute-router"]["spec"]["template"]["spec"]
    (c,) = router["containers"]
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    total = float(pre_stop[1]) + _flag(c["args"], "drain-delay") + _flag(c["args"], "drain-grace")
    assert _flag(c["args"], "drain-grace") >= 30  # the CRD's default requestTimeoutMs, 30 s
    assert router["terminationGracePeriodSeconds"] > total
