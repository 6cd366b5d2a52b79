"""Who is calling: keys to tenants, delegation, anonymous mode, policy access, plans."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from skyroute.router.ingress.guards.errors import GuardError
from skyroute.router.ingress.guards.identity import Authenticator, Identity, credential
from skyroute.router.ingress.guards.keys import KeyRecord, KeyRing, generate
from skyroute.router.ingress.guards.tenants import Budget, Estimate, RateLimit, TenantRules, plan

ACME = TenantRules("acme", tier="free", policies=frozenset({"support"}))
GATEWAY = TenantRules("gw", tier="standard", delegate=True)


def _auth(allow_anonymous: bool = False) -> tuple[Authenticator, str, str]:
    a, g = generate(), generate()
    ring = KeyRing([KeyRecord(a.key_id, a.digest, "acme"), KeyRecord(g.key_id, g.digest, "gw")])
    return Authenticator({"acme": ACME, "gw": GATEWAY}, ring, None, allow_anonymous), a.key, g.key


def _ident(auth: Authenticator, cred: str | None, tenant: str = "", tier: str = "") -> Identity:
    return asyncio.run(auth.authenticate(cred, tenant, tier))


def test_credentials_from_every_header_shape() -> None:
    assert credential("Bearer sk-sr-x", None) == "sk-sr-x"
    assert credential("bearer   tok ", None) == "tok"
    assert credential(None, "sk-sr-y") == "sk-sr-y"
    assert credential("Basic abc", None) is None
    assert credential(None, None) is None


def test_the_key_decides_the_tenant_not_the_headers() -> None:
    auth, acme_key, _ = _auth()
    ident = _ident(auth, acme_key, tenant="gw", tier="premium")
    assert (ident.tenant, ident.account, ident.tier) == ("acme", "acme", "free")
    assert ident.principal.startswith("key:") and ident.key_id in ident.principal


def test_a_gateway_delegates_sub_tenants_under_its_own_name() -> None:
    auth, _, gw_key = _auth()
    ident = _ident(auth, gw_key, tenant="acme", tier="premium")
    assert (ident.tenant, ident.account, ident.tier) == ("gw/acme", "gw", "premium")
    assert _ident(auth, gw_key).tenant == "gw"
    with pytest.raises(GuardError) as exc:
        _ident(auth, gw_key, tenant="../{x}")
    assert exc.value.status == 403


def test_missing_credentials_need_allow_anonymous() -> None:
    auth, _, _ = _auth()
    with pytest.raises(GuardError) as exc:
        _ident(auth, None)
    assert exc.value.status == 401 and exc.value.code == "invalid_api_key"
    with pytest.raises(GuardError):
        _ident(auth, "not-a-key")
    anon, acme_key, _ = _auth(allow_anonymous=True)
    ident = _ident(anon, None, tenant="t1", tier="x")
    assert ident.anonymous and ident.tenant == "t1"
    # A credential is verified even in anonymous mode.
    assert _ident(anon, acme_key).account == "acme"
    with pytest.raises(GuardError):
        _ident(anon, generate().key)


def test_policy_access_is_403_for_other_policies() -> None:
    auth, acme_key, gw_key = _auth()
    ident = _ident(auth, acme_key)
    auth.authorize(ident, "support")
    with pytest.raises(GuardError) as exc:
        auth.authorize(ident, "premium-chat")
    assert exc.value.status == 403 and exc.value.param == "model"
    auth.authorize(_ident(auth, gw_key), "anything")


def test_plan_covers_every_scope_in_one_list() -> None:
    rules = TenantRules(
        "acme",
        rate_limits=(
            RateLimit(
                "tenant", requests_per_minute=60, tokens_per_minute=10_000, concurrent_requests=4
            ),
            RateLimit("key", requests_per_minute=30),
            RateLimit("model", "gpt-4o", tokens_per_minute=5_000),
            RateLimit("model", "other", tokens_per_minute=1),
            RateLimit("policy", "support", requests_per_minute=10, shadow=True),
        ),
        budgets=(Budget("monthly", 25.0, "month"),),
    )
    est = Estimate(100, 200, input_price=2.5, output_price=10.0)
    now = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
    checks = plan(rules, "abc123abc123", "support", "gpt-4o", est, now, 30_000)
    scopes = [(c.scope, c.metric) for c in checks]
    assert scopes == [
        ("tenant", "requests"),
        ("tenant", "tokens"),
        ("tenant", "concurrent"),
        ("key:abc123abc123", "requests"),
        ("model:gpt-4o", "tokens"),
        ("policy:support", "requests"),
        ("budget:monthly", "usd"),
    ]
    assert checks[1].cost == 300 and checks[5].shadow
    b = checks[-1]
    assert b.key == "monthly:2026-12" and b.limit == 25 * 10**9
    # 100 * 2.5 + 200 * 10 = 2250 micro-USD
    assert b.cost == 2_250_000 and b.cost_min == (250 + 160) * 1000
    assert b.window_ms == 28 * 86_400_000 + 15 * 3_600_000
    assert est.affordable_completion(1_250_000) == 100
