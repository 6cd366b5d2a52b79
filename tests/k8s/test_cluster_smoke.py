"""Smoke tests: the CRDs and the AcmeShop example against a real API server.

These pin down what only kube-apiserver can tell us: that crds/ is accepted
as structural v1 CRDs (a schema mistake shows up here as an apply error or a
CRD that never becomes Established), that the shipped example objects pass
the server-side schema and CEL rules, that a bad object is refused with a
message naming the offending field (what `kubectl apply` users will read),
and that `kubectl get` shows the printer columns the CRDs declare. Expected
names and columns are read from the YAML files themselves, so the tests
follow the CRDs rather than restating them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kcluster import REPO, Cluster

CRDS = REPO / "crds"
ACME = REPO / "examples" / "acmeshop"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _crd_docs() -> list[dict[str, Any]]:
    return [d for p in sorted(CRDS.glob("*.yaml")) for d in _docs(p)]


@pytest.fixture(scope="module")
def crds(k8s_cluster: Cluster) -> list[str]:
    """Applies crds/ and waits until every CRD is Established; returns their names."""
    k8s_cluster.kubectl("apply", "-f", str(CRDS))
    names = [d["metadata"]["name"] for d in _crd_docs()]
    k8s_cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=30s", *[f"crd/{n}" for n in names]
    )
    return names


@pytest.fixture(scope="module")
def ns(k8s_cluster: Cluster) -> Iterator[str]:
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    k8s_cluster.kubectl("create", "namespace", name)
    yield name
    k8s_cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def acmeshop(k8s_cluster: Cluster, crds: list[str], ns: str) -> str:
    """The AcmeShop folder applied into ``ns``, as the README tells a platform team to."""
    k8s_cluster.kubectl("apply", "-n", ns, "-f", str(ACME) + "/")
    return ns


def test_crds_become_established(k8s_cluster: Cluster, crds: list[str]) -> None:
    assert crds, "crds/ holds no CustomResourceDefinition"
    for name in crds:
        status = k8s_cluster.kubectl(
            "get",
            "crd",
            name,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Established")].status}',
        ).stdout
        assert status == "True", f"{name} Established={status!r}"
    resources = k8s_cluster.kubectl("api-resources", "--api-group=skyroute.io", "-o", "name").stdout
    assert set(resources.split()) == set(crds)


def _subset(given: Any, stored: Any, where: str) -> None:
    """Asserts everything ``given`` says is in ``stored`` (the server may add defaults)."""
    if isinstance(given, dict):
        assert isinstance(stored, dict), f"{where}: {stored!r} is not an object"
        for key, value in given.items():
            assert key in stored, f"{where}.{key}: dropped by the server"
            _subset(value, stored[key], f"{where}.{key}")
    elif isinstance(given, list):
        assert isinstance(stored, list) and len(stored) == len(given), f"{where}: {stored!r}"
        for i, (g, s) in enumerate(zip(given, stored, strict=True)):
            _subset(g, s, f"{where}[{i}]")
    else:
        assert given == stored, f"{where}: file has {given!r}, server has {stored!r}"


def test_acmeshop_example_applies(k8s_cluster: Cluster, acmeshop: str) -> None:
    files = ((ACME / "pools.yaml", "modelpools"), (ACME / "policy.yaml", "routingpolicies"))
    for path, resource in files:
        expected = {d["metadata"]["name"]: d["spec"] for d in _docs(path)}
        listed = k8s_cluster.kubectl("get", resource, "-n", acmeshop, "-o", "json").stdout
        stored = {item["metadata"]["name"]: item["spec"] for item in json.loads(listed)["items"]}
        assert set(stored) == set(expected), f"{resource}: server has {sorted(stored)}"
        for name, spec in expected.items():
            _subset(spec, stored[name], f"{resource}/{name}: spec")


def _pool(**model_overrides: Any) -> str:
    model = {
        "name": "m1",
        "provider": "openai",
        "endpoint": "http://127.0.0.1:8790/openai/v1",
        "pricing": {"inputPerMTok": 1.0, "outputPerMTok": 2.0},
        **model_overrides,
    }
    doc = {
        "apiVersion": "skyroute.io/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": "bad-pool"},
        "spec": {"models": [model]},
    }
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("overrides", "field", "detail"),
    [
        ({"provider": "mistral"}, "spec.models[0].provider", 'Unsupported value: "mistral"'),
        (
            {"pricing": {"inputPerMTok": -1, "outputPerMTok": 2}},
            "spec.models[0].pricing.inputPerMTok",
            "greater than or equal to 0",
        ),
        (
            {"contextWindow": 1000, "maxOutputTokens": 4000},
            "spec.models[0].maxOutputTokens",
            "maxOutputTokens must not exceed contextWindow",
        ),
        (
            {"auth": "entra"},
            "spec.models[0].auth",
            "auth must be a method of the provider: api-key (azure-openai",
        ),
    ],
    ids=["enum", "minimum", "cel-rule", "cel-auth-map"],
)
def test_schema_violation_is_rejected_naming_the_field(
    k8s_cluster: Cluster,
    crds: list[str],
    ns: str,
    overrides: dict[str, Any],
    field: str,
    detail: str,
) -> None:
    proc = k8s_cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=_pool(**overrides), check=False)
    assert proc.returncode != 0, f"invalid ModelPool was accepted: {proc.stdout}"
    assert "is invalid" in proc.stderr, proc.stderr
    assert field in proc.stderr and detail in proc.stderr, proc.stderr
    absent = k8s_cluster.kubectl("get", "modelpool", "bad-pool", "-n", ns, check=False)
    assert absent.returncode != 0 and "NotFound" in absent.stderr


def _printer_columns(kind: str) -> list[dict[str, Any]]:
    crd = next(d for d in _crd_docs() if d["spec"]["names"]["kind"] == kind)
    version = next(v for v in crd["spec"]["versions"] if v.get("served"))
    return list(version.get("additionalPrinterColumns", []))


def _table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """Parses kubectl's column output by header positions (empty cells stay empty)."""
    lines = text.splitlines()
    header = lines[0]
    names = header.split()
    starts, pos = [], 0
    for name in names:
        pos = header.index(name, pos)
        starts.append(pos)
        pos += len(name)
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    rows = [
        {n: line[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)}
        for line in lines[1:]
    ]
    return names, rows


def test_get_rp_prints_printer_columns(k8s_cluster: Cluster, acmeshop: str) -> None:
    columns = _printer_columns("RoutingPolicy")
    normal = ["NAME"] + [c["name"].upper() for c in columns if c.get("priority", 0) == 0]
    wide = ["NAME"] + [c["name"].upper() for c in columns]
    assert "DEFAULT-POOL" in normal, f"RoutingPolicy printer columns: {normal}"

    header, rows = _table(k8s_cluster.kubectl("get", "rp", "-n", acmeshop).stdout)
    assert header == normal
    policies = {d["metadata"]["name"]: d["spec"] for d in _docs(ACME / "policy.yaml")}
    assert {r["NAME"] for r in rows} == set(policies)
    for row in rows:
        spec = policies[row["NAME"]]
        assert row["DEFAULT-POOL"] == spec["defaultPool"], row
        if "DEFAULT" in row:  # schema default: false when the file leaves it out
            assert row["DEFAULT"] == str(spec.get("default", False)).lower(), row

    header, _ = _table(k8s_cluster.kubectl("get", "rp", "-n", acmeshop, "-o", "wide").stdout)
    assert header == wide
