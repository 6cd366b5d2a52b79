"""Snapshot ``tenants`` to what the door uses: tenant rules and the key ring.

Built once per applied snapshot (never per request), so a new or revoked key
takes effect with the snapshot push that carries it.
"""

from __future__ import annotations

from typing import Literal, cast

from skyroute.router.ingress.guards.keys import KeyRecord, KeyRing
from skyroute.router.ingress.guards.tenants import Budget, RateLimit, Scope, TenantRules
from skyroute.v1 import snapshot_pb2


def tenant_rules(t: snapshot_pb2.Tenant) -> TenantRules:
    return TenantRules(
        name=t.name,
        tier=t.tier,
        policies=frozenset(t.policies),
        delegate=t.delegate,
        rate_limits=tuple(
            RateLimit(
                scope=cast(Scope, r.scope),
                match=r.match,
                requests_per_minute=r.requests_per_minute,
                tokens_per_minute=r.tokens_per_minute,
                concurrent_requests=r.concurrent_requests,
                shadow=r.shadow,
            )
            for r in t.rate_limits
            if r.scope in ("tenant", "key", "policy", "model")
        ),
        budgets=tuple(
            Budget(
                name=b.name,
                usd=b.usd,
                period=cast(Literal["day", "month", "total"], b.period),
                action=cast(Literal["reject", "route"], b.action),
                pool=b.pool,
                soft_share=b.soft_share,
                shadow=b.shadow,
            )
            for b in t.budgets
            if b.period in ("day", "month", "total") and b.usd > 0
        ),
        fail_open=t.fail_open,
        service_accounts=frozenset((s.namespace, s.name) for s in t.service_accounts),
    )


def from_snapshot(snap: snapshot_pb2.Snapshot) -> tuple[dict[str, TenantRules], KeyRing]:
    tenants = {t.name: tenant_rules(t) for t in snap.tenants}
    records = [
        KeyRecord(k.id, k.digest, t.name, float(k.expires_unix), k.revoked)
        for t in snap.tenants
        for k in t.keys
    ]
    return tenants, KeyRing(records)
