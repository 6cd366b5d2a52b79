"""The operator runs as deploy/'s ServiceAccount with exactly deploy/'s RBAC.

The dev overlay is applied for real (no kubelet runs here, so its
Deployments never start Pods), then ``skyroute operator`` runs on this
machine with a token of the ``skyroute-operator`` ServiceAccount, the way
it runs in the cluster: leader Lease in skyroute-system, its webhook
certificate kept in the Secret it creates there, the CA written into the
``skyroute`` ValidatingWebhookConfiguration, and the leader label on "its"
Pod (a Pending Pod object standing in for it). If any RBAC rule were
missing, one of those steps or a status write would fail; ``kubectl auth
can-i`` then checks what it must not be allowed to do.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import Proc, free_port
from kcluster import REPO, Cluster
from opstack import acmeshop_yaml, ensure_crds, up

NS = "skyroute-system"
SA = f"system:serviceaccount:{NS}:skyroute-operator"
POD = "skyroute-operator-rbac-test"


def sa_kubeconfig(cluster: Cluster, path: Path) -> Path:
    token = cluster.kubectl(
        "create", "token", "skyroute-operator", "-n", NS, "--duration=1h"
    ).stdout.strip()
    return token_kubeconfig(cluster, token, path)


def token_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    """A kubeconfig for this cluster whose user is ``token``."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "operator"}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def pending_pod(name: str, account: str, container: str) -> dict[str, Any]:
    """A Pod object running as ``account`` in skyroute-system (no kubelet: it stays Pending)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "serviceAccountName": account,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": container,
                    "image": f"skyroute/{container}:dev",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def installed(k8s_cluster: Cluster) -> Iterator[Cluster]:
    ensure_crds(k8s_cluster)
    rendered = k8s_cluster.kubectl("kustomize", str(REPO / "deploy" / "overlays" / "dev")).stdout
    k8s_cluster.kubectl("apply", "-f", "-", stdin=rendered)
    pod = pending_pod(POD, "skyroute-operator", "operator")
    k8s_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    try:
        yield k8s_cluster
    finally:
        # A cluster-wide webhook pointing at a Service with no endpoints must not outlive us.
        k8s_cluster.kubectl(
            "delete",
            "validatingwebhookconfiguration",
            "skyroute",
            "skyroute-rbac-test",
            "--ignore-not-found",
            check=False,
        )


def can_i(cluster: Cluster, *args: str) -> bool:
    out = cluster.kubectl("auth", "can-i", *args, f"--as={SA}", check=False)
    return out.stdout.strip() == "yes"


def test_the_operator_works_with_only_its_own_rbac(installed: Cluster, tmp_path: Path) -> None:
    cluster = installed
    ns = f"rbac-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    sim = f"http://127.0.0.1:{free_port()}"  # never called: only compiled, not served
    admin, webhook = f"127.0.0.1:{free_port()}", free_port()
    kubeconfig = sa_kubeconfig(cluster, tmp_path / "sa-kubeconfig")
    op = Proc(
        "operator-rbac",
        [
            "operator",
            "--namespace",
            ns,
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--admin",
            admin,
            "--webhook",
            f"127.0.0.1:{webhook}",
            "--webhook-tls-secret",
            "skyroute-webhook-tls",
            "--webhook-config",
            "skyroute",
            "--webhook-hostname",
            "127.0.0.1",
            "--status-settle",
            "0.2",
            "--status-interval",
            "0.2",
            "--lease-duration",
            "3",
            "--insecure",  # the link's TLS and tokens: test_operator_link_auth.py
        ],
        env={"KUBECONFIG": str(kubeconfig), "POD_NAME": POD, "POD_NAMESPACE": NS},
    )
    try:
        up(op, f"http://{admin}/healthz", 30)
        cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=acmeshop_yaml(sim))
        cluster.kubectl(
            "wait",
            "-n",
            ns,
            "--for=condition=Ready",
            "--timeout=20s",
            "routingpolicy/acmeshop",
            "routingpolicy/baseline",
        )
        events = json.loads(cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout)
        assert {e["reason"] for e in events["items"]} == {"NewVersion"}
        holder = cluster.kubectl(
            "get", "lease", "skyroute-operator", "-n", NS, "-o", "jsonpath={.spec.holderIdentity}"
        ).stdout
        assert holder == POD
        labels = json.loads(cluster.kubectl("get", "pod", POD, "-n", NS, "-o", "json").stdout)[
            "metadata"
        ]["labels"]
        assert labels.get("skyroute.io/leader") == "true"
        secret = json.loads(
            cluster.kubectl("get", "secret", "skyroute-webhook-tls", "-n", NS, "-o", "json").stdout
        )
        assert secret["type"] == "kubernetes.io/tls"
        config = json.loads(
            cluster.kubectl(
                "get", "validatingwebhookconfiguration", "skyroute", "-o", "json"
            ).stdout
        )
        assert {h["clientConfig"]["caBundle"] for h in config["webhooks"]} == {
            secret["data"]["ca.crt"]
        }
        # The self-managed certificate really serves: a test webhook with that CA refuses
        # a bad pattern through the operator running as its ServiceAccount.
        test_hook = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "skyroute-rbac-test"},
            "webhooks": [
                {
                    "name": "routingpolicies.skyroute.io",
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{webhook}/validate-routingpolicies",
                        "caBundle": base64.b64encode(
                            base64.b64decode(secret["data"]["ca.crt"])
                        ).decode(),
                    },
                    "rules": [
                        {
                            "apiGroups": ["skyroute.io"],
                            "apiVersions": ["v1alpha1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["routingpolicies"],
                        }
                    ],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 5,
                }
            ],
        }
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(test_hook))
        bad = next(
            d
            for d in yaml.safe_load_all(acmeshop_yaml(sim))
            if d and d["metadata"]["name"] == "baseline" and d["kind"] == "RoutingPolicy"
        )
        bad["spec"]["intents"] = [{"name": "x", "patterns": ["*oops"]}]
        result = cluster.kubectl(
            "apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(bad), check=False
        )
        assert result.returncode != 0
        assert "spec.intents[0].patterns[0]: invalid regular expression" in result.stderr
        assert "event=status_write_failed" not in op.output()
        # A 403 shows as "Forbidden" or a status field ("(403)", "status=403"); a bare
        # "403" can be part of a content hash or a timestamp's milliseconds (".403Z").
        assert "Forbidden" not in op.output(), op.output()
        assert not re.search(r"(?<![\w.:])403(?![\w.])", op.output()), op.output()
    finally:
        op.stop()
        cluster.kubectl(
            "delete",
            "validatingwebhookconfiguration",
            "skyroute-rbac-test",
            "--ignore-not-found",
            check=False,
        )


def test_what_the_operator_may_not_do(installed: Cluster) -> None:
    cluster = installed
    allowed = [
        ("list", "routingpolicies", "--all-namespaces"),
        ("patch", "routingpolicies", "--subresource=status", "-n", "any"),
        ("create", "events", "-n", "any"),
        ("update", "leases/skyroute-operator", "-n", NS),
        ("get", "secrets/skyroute-webhook-tls", "-n", NS),
    ]
    denied = [
        ("list", "secrets", "-n", NS),
        ("get", "secrets/skyroute-provider-keys", "-n", NS),
        ("get", "secrets", "-n", "default"),
        ("update", "routingpolicies", "-n", "any"),
        ("delete", "modelpools", "-n", "any"),
        ("update", "leases/other", "-n", NS),
        ("update", "validatingwebhookconfigurations/other"),
        ("create", "validatingwebhookconfigurations"),
        ("list", "pods", "-n", NS),
        ("patch", "pods", "-n", "default"),
    ]
    assert [a for a in allowed if not can_i(cluster, *a)] == []
    assert [d for d in denied if can_i(cluster, *d)] == []
    router = cluster.kubectl(
        "auth",
        "can-i",
        "list",
        "routingpolicies",
        "--all-namespaces",
        f"--as=system:serviceaccount:{NS}:skyroute-router",
        check=False,
    )
    assert router.stdout.strip() == "no"
