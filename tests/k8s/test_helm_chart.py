"""deploy/helm/skyroute: lints, renders what deploy/ renders, and the API server accepts it.

Helm is the real binary, built from its Go module into ~/.cache/skyroute like
the cluster's binaries (``hack/cluster/bins.sh``; ``make test`` builds it
first). Three things are pinned here:

* ``helm lint --strict`` passes with the default values, the ci/ values and
  every optional feature turned on;
* for the same settings the chart renders the same objects as the kustomize
  tree (defaults = deploy/base, ci/dev-values.yaml = overlays/dev,
  ci/prod-values.yaml = overlays/prod): every object compared in full, less
  Helm's own labels, so a change to deploy/ fails here until the chart has it;
* what it renders passes ``kubectl apply --dry-run=server`` (schema,
  defaulting, admission, PodSecurity ``restricted`` of a labelled namespace),
  Tenant objects included, and the optional parts (Redis, provider keys,
  webhook and link TLS modes) render what they promise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kcluster import CHART, REPO, Cluster, HelmError, helm

DEPLOY = REPO / "deploy"
NS = "skyroute-system"
# Labels only the chart sets (Helm's conventions); everything else must match kustomize.
HELM_LABELS = frozenset(
    {
        "app.kubernetes.io/instance",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/version",
        "helm.sh/chart",
    }
)
# kustomize source -> chart values files giving the same settings.
SAME_SETTINGS = {
    "base": (DEPLOY / "base", ()),
    "dev": (DEPLOY / "overlays" / "dev", (CHART / "ci" / "dev-values.yaml",)),
    "prod": (DEPLOY / "overlays" / "prod", (CHART / "ci" / "prod-values.yaml",)),
}
# Every optional part at once (each one's effect is checked below).
FEATURES: dict[str, Any] = {
    "redis": {"enabled": True, "responseCache": True},
    "providerKeys": {
        "create": True,
        "values": {"openai": "sk-test-not-a-key", "azure": "not-a-key-either"},
        "env": [
            {"name": "OPENAI_API_KEY", "key": "openai"},
            {"name": "AZURE_OPENAI_API_KEY", "key": "azure"},
        ],
    },
    "tenants": [
        {
            "name": "acme-web",
            "spec": {
                "tier": "standard",
                "policies": ["acmeshop"],
                "rateLimits": {"requestsPerMinute": 600},
            },
        }
    ],
    "router": {
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}},
        "extraArgs": ["--limits-local-share=0.5"],
        "networkPolicy": {
            "extraEgress": [
                {
                    "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
                    "ports": [{"protocol": "TCP", "port": 8000}],
                }
            ]
        },
    },
    "webhook": {"tls": {"mode": "secret", "caBundle": "Q0EK"}},
    "link": {"tls": {"mode": "secret", "secretName": "corp-link-tls"}},
}


def values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def template(*values: Path, ns: str = NS, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    args = ["template", "skyroute", str(CHART), "--namespace", ns, "--include-crds"]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def kustomize(cluster: Cluster, path: Path) -> list[dict[str, Any]]:
    out = cluster.kubectl("kustomize", str(path)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {key(d): d for d in docs}
    assert len(out) == len(docs), "two objects of one kind with one name"
    return out


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """The object less Helm's labels; a CRD by its name and spec (kustomize labels it)."""
    if doc["kind"] == "CustomResourceDefinition":
        return {"name": doc["metadata"]["name"], "spec": doc["spec"]}
    labels = {k: v for k, v in doc["metadata"].get("labels", {}).items() if k not in HELM_LABELS}
    metadata = {**doc["metadata"], "labels": labels}
    return {**doc, "metadata": metadata}


def differences(got: Any, want: Any, path: str = "") -> list[str]:
    """Where two rendered objects differ, as field paths (what to mirror where)."""
    if isinstance(got, dict) and isinstance(want, dict):
        return [
            d
            for k in sorted(got.keys() | want.keys(), key=str)
            for d in differences(got.get(k), want.get(k), f"{path}.{k}")
        ]
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        return [
            d
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            for d in differences(g, w, f"{path}[{i}]")
        ]
    return [] if got == want else [f"{path}: chart {got!r} != kustomize {want!r}"]


def only(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return by_key(docs)[(kind, name)]


def container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (c,) = only(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    return c


def dry_run(cluster: Cluster, docs: list[dict[str, Any]], ns: str) -> None:
    """CRDs for real (as helm installs crds/ first), the rest with a server-side dry run."""
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    assert crds, "the chart installs the CRDs"
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
    names = [f"crd/{d['metadata']['name']}" for d in crds]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", *names)
    # A namespace enforcing PodSecurity restricted, so violations are reported.
    if cluster.kubectl("get", "namespace", ns, check=False).returncode != 0:
        cluster.kubectl("create", "namespace", ns)
    cluster.kubectl(
        "label", "--overwrite", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted"
    )
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(rest))
    lines = result.stdout.splitlines()
    assert len(lines) == len(rest), result.stdout
    assert all(line.endswith("(server dry run)") for line in lines), result.stdout
    assert "PodSecurity" not in result.stderr, result.stderr


def test_chart_lints_strict_with_every_values_file(tmp_path: Path) -> None:
    every = [files for _, files in SAME_SETTINGS.values()] + [(values_file(tmp_path, FEATURES),)]
    for values in every:
        args = ["lint", "--strict", str(CHART)]
        for path in values:
            args += ["-f", str(path)]
        out = helm(*args).stdout
        assert "1 chart(s) linted, 0 chart(s) failed" in out, out


@pytest.mark.parametrize("setting", sorted(SAME_SETTINGS))
def test_chart_renders_what_kustomize_renders(k8s_cluster: Cluster, setting: str) -> None:
    source, values = SAME_SETTINGS[setting]
    expected = by_key(kustomize(k8s_cluster, source))
    # kustomize's tree makes the namespace; `helm install` cannot (see values.yaml).
    got = by_key(template(*values, sets=("namespace.create=true",)))
    assert sorted(got) == sorted(expected)
    diffs = [
        f"{k[0]}/{k[1]}{d}"
        for k, want in expected.items()
        for d in differences(comparable(got[k]), comparable(want))
    ]
    assert not diffs, "\n".join(diffs)
    # Every chart object carries Helm's labels on top of kustomize's.
    for k, doc in got.items():
        if k[0] != "CustomResourceDefinition":
            assert doc["metadata"]["labels"].keys() >= HELM_LABELS, k
    # Without namespace.create, the same objects less the Namespace.
    plain = by_key(template(*values))
    assert sorted(plain) == sorted(k for k in got if k[0] != "Namespace")


def test_crds_are_the_repository_files() -> None:
    docs = template()
    crds = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}
    files = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    assert {f["metadata"]["name"] for f in files} == set(crds)
    for f in files:
        assert crds[f["metadata"]["name"]] == f


@pytest.mark.parametrize("setting", ["default", "dev", "prod", "features"])
def test_rendered_chart_passes_server_side_dry_run(
    k8s_cluster: Cluster, tmp_path: Path, setting: str
) -> None:
    ns = "skyroute-helm"
    values = {
        "default": [],
        "dev": [CHART / "ci" / "dev-values.yaml"],
        "prod": [CHART / "ci" / "prod-values.yaml"],
        "features": [values_file(tmp_path, FEATURES)],
    }[setting]
    docs = template(*values, ns=ns)
    assert all(d["metadata"].get("namespace") in (None, ns) for d in docs)
    dry_run(k8s_cluster, docs, ns)


def test_optional_parts_render_what_they_promise(tmp_path: Path) -> None:
    docs = template(values_file(tmp_path, FEATURES))
    objects = by_key(docs)
    # Redis: one pod, reachable only from routers, named in the routers' flags.
    assert ("Deployment", "skyroute-redis") in objects and ("Service", "skyroute-redis") in objects
    url = f"redis://skyroute-redis.{NS}.svc:6379/0"
    args = container(docs, "skyroute-router")["args"]
    assert f"--redis={url}" in args and f"--cache-redis={url}" in args
    assert args[-1] == "--limits-local-share=0.5"
    redis_np = only(docs, "NetworkPolicy", "skyroute-redis")["spec"]
    (ingress,) = redis_np["ingress"]
    assert (
        ingress["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "router"
    )
    assert "egress" not in redis_np and redis_np["policyTypes"] == ["Ingress", "Egress"]
    router_egress = only(docs, "NetworkPolicy", "skyroute-router")["spec"]["egress"]
    assert router_egress[3]["ports"] == [{"protocol": "TCP", "port": 6379}]
    assert router_egress[4]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    # Provider keys: the Secret, env from it, the file mount of the same Secret.
    secret = only(docs, "Secret", "skyroute-provider-keys")
    assert secret["stringData"] == {"openai": "sk-test-not-a-key", "azure": "not-a-key-either"}
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in container(docs, "skyroute-router")["env"]
    }
    assert env["AZURE_OPENAI_API_KEY"] == {
        "name": "skyroute-provider-keys",
        "key": "azure",
        "optional": True,
    }
    assert only(docs, "ServiceAccount", "skyroute-router")["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"
    }
    # Tenants, in the release namespace.
    tenant = only(docs, "Tenant", "acme-web")
    assert tenant["metadata"]["namespace"] == NS and tenant["spec"]["tier"] == "standard"
    # Webhook and link TLS from given Secrets: mounted, the webhook's CA in the
    # configuration, the link's ca.crt published for routers, and the operator loses
    # every Secret and webhook-configuration permission (it makes neither certificate).
    op = container(docs, "skyroute-operator")
    link_dir = "/var/run/secrets/skyroute/link-tls"
    assert [a for a in op["args"] if a.startswith("--link-")] == [
        f"--link-cert={link_dir}/tls.crt",
        f"--link-key={link_dir}/tls.key",
        f"--link-ca={link_dir}/ca.crt",
        # The name a follower checks when it forwards outcomes to the leader: kept
        # with a certificate the operator did not make (it was dropped once).
        f"--link-hostname=skyroute-operator.{NS}.svc",
        f"--link-hostname=skyroute-operator.{NS}.svc.cluster.local",
        "--link-ca-configmap=skyroute-control-ca",
        "--link-token-file=/var/run/secrets/tokens/skyroute-control/token",
    ]
    volumes = only(docs, "Deployment", "skyroute-operator")["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "link-tls",
        "secret": {"secretName": "corp-link-tls", "defaultMode": 0o400},
    } in (volumes)
    assert {"name": "link-tls", "mountPath": link_dir, "readOnly": True} in op["volumeMounts"]
    assert "--webhook-cert=/var/run/secrets/skyroute/webhook-tls/tls.crt" in op["args"]
    assert not [a for a in op["args"] if a.startswith(("--webhook-tls-secret", "--webhook-config"))]
    config = only(docs, "ValidatingWebhookConfiguration", "skyroute")
    assert {h["clientConfig"]["caBundle"] for h in config["webhooks"]} == {"Q0EK"}
    rules = (
        only(docs, "Role", "skyroute-operator")["rules"]
        + only(docs, "ClusterRole", "skyroute-operator")["rules"]
    )
    assert not [r for r in rules if "secrets" in r["resources"]]
    assert not [r for r in rules if "validatingwebhookconfigurations" in r["resources"]]


def overlay(tmp_path: Path, *components: str) -> Path:
    """A kustomization of deploy/base plus deploy/components/<name> (what a user writes)."""
    root = tmp_path / "overlay"
    root.mkdir()
    rel = Path(os.path.relpath(DEPLOY, root))
    text = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [str(rel / "base")],
        "components": [str(rel / "components" / c) for c in components],
    }
    (root / "kustomization.yaml").write_text(yaml.safe_dump(text))
    return root


def compare(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> list[str]:
    g, w = by_key(got), by_key(want)
    assert sorted(g) == sorted(w)
    return [f"{k[0]}/{k[1]}{d}" for k in w for d in differences(comparable(g[k]), comparable(w[k]))]


def test_tenant_keys_component_is_operator_key_namespaces(
    k8s_cluster: Cluster, tmp_path: Path
) -> None:
    """Key Secrets readable in the named namespaces only, the same in both trees."""
    want = kustomize(k8s_cluster, overlay(tmp_path, "tenant-keys"))
    got = template(sets=("namespace.create=true", "operator.keyNamespaces={skyroute-tenants}"))
    assert not compare(got, want), "\n".join(compare(got, want))
    objects = by_key(got)
    (rule,) = objects[("ClusterRole", "skyroute-operator-keys")]["rules"]
    assert rule == {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}
    binding = objects[("RoleBinding", "skyroute-operator-keys")]
    assert binding["metadata"]["namespace"] == "skyroute-tenants"
    assert binding["roleRef"]["kind"] == "ClusterRole"
    assert "--key-namespaces=skyroute-tenants" in container(got, "skyroute-operator")["args"]
    # No ClusterRoleBinding to it: never every namespace's Secrets.
    assert not [
        d
        for d in got
        if d["kind"] == "ClusterRoleBinding" and d["roleRef"]["name"].endswith("keys")
    ]
    # By default the operator reads no Secret beyond its webhook certificate.
    default = by_key(template())
    assert ("ClusterRole", "skyroute-operator-keys") not in default
    assert not [
        a for a in container(template(), "skyroute-operator")["args"] if "key-namespaces" in a
    ]


def test_router_sa_tokens_component_is_router_service_account_tokens(
    k8s_cluster: Cluster, tmp_path: Path
) -> None:
    """What ServiceAccount verification needs, the same in both trees, off by default."""
    want = kustomize(k8s_cluster, overlay(tmp_path, "router-sa-tokens"))
    got = template(sets=("namespace.create=true", "router.serviceAccountTokens.enabled=true"))
    assert not compare(got, want), "\n".join(compare(got, want))
    pod = only(got, "Deployment", "skyroute-router")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False  # only the projected volume below
    (vol,) = [v for v in pod["volumes"] if v["name"] == "kube-api-access"]
    token = vol["projected"]["sources"][0]["serviceAccountToken"]
    assert token == {"path": "token", "expirationSeconds": 3600}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["kube-api-access"]["readOnly"] is True
    objects = by_key(got)
    (rule,) = objects[("ClusterRole", "skyroute-router-tokenreview")]["rules"]
    assert rule == {
        "apiGroups": ["authentication.k8s.io"],
        "resources": ["tokenreviews"],
        "verbs": ["create"],
    }
    discovery = objects[("ClusterRoleBinding", "skyroute-router-issuer-discovery")]
    assert discovery["roleRef"]["name"] == "system:service-account-issuer-discovery"
    default = by_key(template())
    assert not [k for k in default if k[1].startswith("skyroute-router-")]
    plain_pod = default[("Deployment", "skyroute-router")]["spec"]["template"]["spec"]
    assert "kube-api-access" not in {v["name"] for v in plain_pod["volumes"]}


@pytest.mark.parametrize("setting", sorted(SAME_SETTINGS))
def test_the_hpa_alone_sets_the_router_count(k8s_cluster: Cluster, setting: str) -> None:
    """Both trees leave ``replicas`` out next to the HPA (an apply would reset its count)."""
    source, values = SAME_SETTINGS[setting]
    for docs in (kustomize(k8s_cluster, source), template(*values)):
        objects = by_key(docs)
        hpa = objects[("HorizontalPodAutoscaler", "skyroute-router")]["spec"]
        assert hpa["scaleTargetRef"]["name"] == "skyroute-router"
        assert "replicas" not in objects[("Deployment", "skyroute-router")]["spec"]
        assert "replicas" in objects[("Deployment", "skyroute-operator")]["spec"]
    # Without the HPA the chart sets the count itself.
    fixed = by_key(
        template(*values, sets=("router.autoscaling.enabled=false", "router.replicas=4"))
    )
    assert ("HorizontalPodAutoscaler", "skyroute-router") not in fixed
    assert fixed[("Deployment", "skyroute-router")]["spec"]["replicas"] == 4


def test_external_redis_and_cert_manager(tmp_path: Path) -> None:
    docs = template(
        values_file(
            tmp_path,
            {
                "redis": {"url": "rediss://redis.example.internal:6380/2"},
                "webhook": {"tls": {"mode": "certManager"}},
                "link": {"tls": {"mode": "certManager"}},
            },
        )
    )
    objects = by_key(docs)
    # The link's certificate too: for the operator Service's names, into the Secret it mounts.
    link = objects[("Certificate", "skyroute-control")]["spec"]
    assert link["secretName"] == "skyroute-control-tls"
    assert link["dnsNames"] == [
        f"skyroute-operator.{NS}.svc",
        f"skyroute-operator.{NS}.svc.cluster.local",
    ]
    assert link["issuerRef"] == {"name": "skyroute-control", "kind": "Issuer"}
    assert objects[("Issuer", "skyroute-control")]["spec"] == {"selfSigned": {}}
    op_args = container(docs, "skyroute-operator")["args"]
    assert "--link-cert=/var/run/secrets/skyroute/link-tls/tls.crt" in op_args
    # The forwarder's server name is one of the names cert-manager's certificate carries.
    assert [a.split("=", 1)[1] for a in op_args if a.startswith("--link-hostname=")] == (
        link["dnsNames"]
    )
    assert not [k for k in objects if k[1] == "skyroute-redis"]
    assert (
        "--redis=rediss://redis.example.internal:6380/2"
        in container(docs, "skyroute-router")["args"]
    )
    config = objects[("ValidatingWebhookConfiguration", "skyroute")]
    assert config["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"{NS}/skyroute-webhook"
    }
    cert = objects[("Certificate", "skyroute-webhook")]["spec"]
    assert cert["secretName"] == "skyroute-webhook-tls"
    assert cert["dnsNames"] == [
        f"skyroute-webhook.{NS}.svc",
        f"skyroute-webhook.{NS}.svc.cluster.local",
    ]
    assert cert["issuerRef"] == {"name": "skyroute-webhook", "kind": "Issuer"}
    assert objects[("Issuer", "skyroute-webhook")]["spec"] == {"selfSigned": {}}
    # A named issuer replaces the self-signed one.
    named = by_key(
        template(
            sets=(
                "webhook.tls.mode=certManager",
                "webhook.tls.certManager.issuerRef.name=corp-ca",
                "webhook.tls.certManager.issuerRef.kind=ClusterIssuer",
            )
        )
    )
    assert ("Issuer", "skyroute-webhook") not in named
    assert named[("Certificate", "skyroute-webhook")]["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
    }


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("routers.replicas=3",), "routers"),  # a typo'd key is refused, not ignored
        (("router.replicas=-1",), "router.replicas"),
        (("webhook.tls.mode=magic",), "webhook.tls.mode"),
        (("link.tls.mode=plaintext",), "link.tls.mode"),
        (("redis.url=http://redis:6379",), "redis.url"),
        (("providerKeys.env[0].name=not an env name",), "providerKeys.env"),
        (("webhook.tls.mode=secret",), "webhook.tls.caBundle"),
        (("providerKeys.create=true",), "providerKeys.values"),
    ],
)
def test_bad_values_fail_naming_the_field(sets: tuple[str, ...], message: str) -> None:
    with pytest.raises(HelmError, match=message.replace(".", r"[./]")):
        template(sets=sets)
