"""Tenant objects: validation across objects and compilation into the snapshot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from skyroute.control.policy.compiler import compile_folder
from skyroute.control.policy.errors import PolicyError

ROOT = Path(__file__).resolve().parents[2]
ACMESHOP = ROOT / "examples" / "acmeshop"
TENANTS = ROOT / "examples" / "tenants" / "acmeshop.yaml"
KEY = {"id": "0123456789ab", "digest": "sha256:" + "ab" * 32}


def _folder(tmp_path: Path, *tenants: dict[str, object]) -> Path:
    for f in ("pools.yaml", "policy.yaml"):
        shutil.copy(ACMESHOP / f, tmp_path / f)
    docs = [
        {"apiVersion": "skyroute.io/v1alpha1", "kind": "Tenant", "metadata": {"name": n}, "spec": s}
        for n, s in (t.popitem() for t in tenants)
    ]
    (tmp_path / "tenants.yaml").write_text(yaml.safe_dump_all(docs))
    return tmp_path


def _problems(folder: Path) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        compile_folder(folder)
    return [f"{p.path}: {p.message}" for p in exc.value.problems]


def test_the_example_tenants_compile_into_the_snapshot(tmp_path: Path) -> None:
    shutil.copytree(ACMESHOP, tmp_path / "f")
    shutil.copy(TENANTS, tmp_path / "f" / "tenants.yaml")
    snap = compile_folder(tmp_path / "f")
    assert [t.name for t in snap.tenants] == ["acme-web", "partner-gateway"]
    web, gw = snap.tenants
    assert list(web.policies) == ["acmeshop", "baseline"] and web.tier == "standard"
    assert [(r.scope, r.requests_per_minute) for r in web.rate_limits] == [
        ("tenant", 6000),
        ("key", 6000),
    ]
    b = web.budgets[0]
    assert (b.name, b.usd, b.period, b.action, b.pool, b.soft_share) == (
        "monthly",
        5000.0,
        "month",
        "route",
        "cost",
        0.9,
    )
    assert web.fail_open and not web.delegate
    assert gw.delegate and not gw.fail_open and list(gw.policies) == ["*"]


def test_keys_and_service_accounts_compile(tmp_path: Path) -> None:
    spec = {
        "policies": ["acmeshop"],
        "keys": [
            {**KEY, "expiresAt": "2027-01-01T00:00:00Z"},
            {**KEY, "id": "fedcba987654", "revoked": True},
        ],
        "serviceAccounts": [{"namespace": "shop", "name": "checkout"}],
        "rateLimits": {
            "perModel": [{"name": "gpt-4o-mini", "tokensPerMinute": 5000, "shadow": True}]
        },
    }
    snap = compile_folder(_folder(tmp_path, {"t1": spec}))
    [t] = snap.tenants
    assert [(k.id, k.expires_unix, k.revoked) for k in t.keys] == [
        ("0123456789ab", 1798761600, False),
        ("fedcba987654", 0, True),
    ]
    assert [(s.namespace, s.name) for s in t.service_accounts] == [("shop", "checkout")]
    [r] = t.rate_limits
    assert (r.scope, r.match, r.tokens_per_minute, r.shadow) == ("model", "gpt-4o-mini", 5000, True)
    # Nothing but the digest of a key is in the snapshot.
    assert KEY["digest"] in str(snap) and "sk-sr-" not in str(snap)


def test_references_and_uniqueness_are_checked(tmp_path: Path) -> None:
    a = {
        "policies": ["acmeshop", "nope"],
        "keys": [KEY],
        "budgets": [
            {"name": "m", "usd": 10.0, "action": "route"},
            {"name": "m", "usd": 10.0, "pool": "missing"},
        ],
        "serviceAccounts": [{"namespace": "shop", "name": "checkout"}],
    }
    b = {
        "policies": ["*"],
        "keys": [KEY],
        "serviceAccounts": [{"namespace": "shop", "name": "checkout"}],
    }
    found = _problems(_folder(tmp_path, {"a": a}, {"b": b}))
    assert any(f.startswith('spec.policies[1]: RoutingPolicy "nope" not found') for f in found)
    assert 'spec.budgets[0].pool: action "route" needs a pool' in found
    assert any(f.startswith('spec.budgets[1].pool: pool "missing" not found') for f in found)
    assert 'spec.budgets[1].name: duplicate budget "m"' in found
    assert 'spec.keys[0].id: key id "0123456789ab" is also used by default/a' in found
    assert (
        "spec.serviceAccounts[0]: ServiceAccount shop/checkout is already bound to default/a"
        in found
    )


def test_a_tenant_is_as_strict_as_the_crd(tmp_path: Path) -> None:
    bad = {"policies": [], "keys": [{"id": "XYZ", "digest": "md5:1"}], "tier": "", "extra": 1}
    found = _problems(_folder(tmp_path, {"t": bad}))
    for path in (
        "spec.policies",
        "spec.keys[0].id",
        "spec.keys[0].digest",
        "spec.tier",
        "spec.extra",
    ):
        assert any(f.startswith(path + ":") for f in found), (path, found)
