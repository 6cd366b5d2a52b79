"""Key Secrets into Tenants (operator side): parsed by label and data, namespace-bound.

The World is the operator's real in-memory set; the bodies are what the API
server returns for ``skyroute keys create -n NS`` Secrets.
"""

from __future__ import annotations

import base64
from typing import Any

from skyroute.control.kube.keysecrets import KeySecrets, parse
from skyroute.control.kube.world import World

DIGEST = "sha256:" + "ab" * 32


def secret(ns: str, name: str, tenant: str | None, **data: str) -> dict[str, Any]:
    labels = {"skyroute.io/tenant": tenant} if tenant else {}
    return {
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def tenant(ns: str, name: str, keys: list[dict[str, str]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"policies": ["*"]}
    if keys:
        spec["keys"] = keys
    return {
        "apiVersion": "skyroute.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"namespace": ns, "name": name, "uid": f"u-{name}", "generation": 1},
        "spec": spec,
    }


def test_a_secret_is_a_key_or_says_why_not() -> None:
    ok = parse(secret("a", "skyroute-key-1", "web", id="0123456789ab", digest=DIGEST))
    assert not isinstance(ok, str) and ok.key.id == "0123456789ab" and ok.tenant == "web"
    assert parse(secret("a", "s", None, id="0123456789ab", digest=DIGEST)) == (
        "no skyroute.io/tenant label"
    )
    bad = parse(secret("a", "s", "web", id="nope", digest="sha256:zz"))
    assert bad == "invalid data (data.digest, data.id)"
    assert "sha256:zz" not in str(bad)
    broken = secret("a", "s", "web")
    broken["data"] = {"id": "!!not base64"}
    assert parse(broken) == "data.id is not base64 text"


def test_keys_join_their_tenant_in_their_namespace_only() -> None:
    world = World()
    world.observe(tenant("a", "web", [{"id": "aaaaaaaaaaaa", "digest": DIGEST}]))
    world.observe(tenant("b", "api"))
    assert world.reconcile()
    assert world.tenant_keys()[("Tenant", "a", "web")] == 1
    secrets = world.key_secrets
    assert secrets.upsert(secret("a", "k1", "web", id="0123456789ab", digest=DIGEST))
    # Same id as a spec key: skipped, never a duplicate that would make routers NACK.
    assert secrets.upsert(secret("a", "k2", "web", id="aaaaaaaaaaaa", digest=DIGEST))
    # A Secret in namespace b naming Tenant "web" of namespace a grants nothing.
    assert secrets.upsert(secret("b", "k3", "web", id="bbbbbbbbbbbb", digest=DIGEST))
    assert not secrets.upsert(secret("a", "k1", "web", id="0123456789ab", digest=DIGEST))
    world.keys_changed()
    assert world.reconcile()
    assert world.tenant_keys() == {("Tenant", "a", "web"): 2, ("Tenant", "b", "api"): 0}
    (web,) = [t for t in world.snapshot.tenants if t.name == "web"] if world.snapshot else []
    assert [k.id for k in web.keys] == ["aaaaaaaaaaaa", "0123456789ab"]
    # Deleted, or gone from a fresh list: the key leaves the next snapshot.
    assert secrets.remove("a", "k1")
    world.keys_changed()
    assert world.reconcile() and world.tenant_keys()[("Tenant", "a", "web")] == 1
    assert secrets.replace("a", [secret("a", "k9", "web", id="999999999999", digest=DIGEST)])
    assert not secrets.replace("a", [secret("a", "k9", "web", id="999999999999", digest=DIGEST)])
    assert secrets.keys(("a", "web"))[0].id == "999999999999"


def test_a_malformed_secret_drops_only_its_own_key() -> None:
    secrets = KeySecrets()
    secrets.upsert(secret("a", "k1", "web", id="0123456789ab", digest=DIGEST))
    assert secrets.upsert(secret("a", "k1", "web", id="0123456789ab", digest="sha256:x"))
    assert secrets.keys(("a", "web")) == [] and secrets.skipped[("a", "k1")].startswith("invalid")
