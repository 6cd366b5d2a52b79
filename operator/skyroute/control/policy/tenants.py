"""Tenant objects compiled into the snapshot's ``tenants`` (identity and limits at the door).

Rate limits become one ``TenantRateLimit`` per scope (the tenant, each key,
each named policy or model); budgets keep their period, action and soft
share; keys are carried by public id and digest only (``expiresAt`` becomes
Unix seconds). The order is the declared order, so the same Tenant always
compiles to the same bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from skyroute.control.policy.model import RateLimitValues, TenantResource
from skyroute.v1 import snapshot_pb2


def _rate(scope: str, match: str, v: RateLimitValues) -> snapshot_pb2.TenantRateLimit | None:
    if not (v.requests_per_minute or v.tokens_per_minute or v.concurrent_requests):
        return None
    return snapshot_pb2.TenantRateLimit(
        scope=scope,
        match=match,
        requests_per_minute=v.requests_per_minute,
        tokens_per_minute=v.tokens_per_minute,
        concurrent_requests=v.concurrent_requests,
        shadow=v.shadow,
    )


def expires_unix(expires_at: str | None) -> int:
    if not expires_at:
        return 0
    return int(
        dt.datetime.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
    )


def compile_tenant(obj: TenantResource) -> snapshot_pb2.Tenant:
    spec = obj.spec
    out = snapshot_pb2.Tenant(
        name=obj.metadata.name,
        namespace=obj.metadata.namespace,
        tier=spec.tier or "",
        policies=list(spec.policies),
        delegate=spec.delegate,
        fail_open=spec.redis_down == "failOpen",
    )
    rl = spec.rate_limits
    if rl is not None:
        rates = [_rate("tenant", "", rl)]
        if rl.per_key is not None:
            rates.append(_rate("key", "", rl.per_key))
        rates += [_rate("policy", n.name, n) for n in rl.per_policy]
        rates += [_rate("model", n.name, n) for n in rl.per_model]
        out.rate_limits.extend(r for r in rates if r is not None)
    for b in spec.budgets:
        out.budgets.append(
            snapshot_pb2.TenantBudget(
                name=b.name,
                usd=b.usd,
                period=b.period,
                action=b.action,
                pool=b.pool or "",
                soft_share=b.soft_share,
                shadow=b.shadow,
            )
        )
    for sa in spec.service_accounts:
        out.service_accounts.append(
            snapshot_pb2.ServiceAccountRef(namespace=sa.namespace, name=sa.name)
        )
    for k in spec.keys:
        out.keys.append(
            snapshot_pb2.ApiKey(
                id=k.id, digest=k.digest, expires_unix=expires_unix(k.expires_at), revoked=k.revoked
            )
        )
    return out


def compile_tenants(objs: Iterable[TenantResource]) -> list[snapshot_pb2.Tenant]:
    return [compile_tenant(o) for o in sorted(objs, key=lambda o: o.metadata.name)]
