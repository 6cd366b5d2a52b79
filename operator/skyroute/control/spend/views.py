"""What the ledger shows: ``skyroute spend`` rows, status entries, budget left.

One place computes a tenant's spend for every reader: the admin API's
``GET /spend`` (what ``skyroute spend`` prints), ``ControlStatus.spend``
(``skyroute status``) and ``Tenant.status.spend`` (the operator). A budget's
period is the limiter's (``day`` from 00:00 UTC, ``month`` from the 1st at
00:00 UTC, ``total`` all time); "left" is the budget's ``usd`` minus what
the ledger counted in that period, never below zero. The ledger is the
record of what was charged; the routers' limiter (Redis or in process)
enforces the budget from its own counters, so the two agree except where
the limiter is documented to differ (a stream cut before the provider
reported usage is held at its estimate by the limiter and charged at the
reported cost here; a ``shadow`` budget is never enforced).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from skyroute.control.spend.ledger import NANO, Ledger, Row
from skyroute.v1 import distribution_pb2, snapshot_pb2


def period_start_ms(period: str, now_ms: int) -> int:
    """The start of the current UTC ``day`` or ``month`` (0 for ``total``)."""
    if period not in ("day", "month"):
        return 0
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        start = start.replace(day=1)
    return int(start.timestamp() * 1000)


def usd(nano: int) -> float:
    return nano / NANO


def budgets(
    ledger: Ledger, tenant: snapshot_pb2.Tenant | None, name: str, now_ms: int
) -> list[dict[str, object]]:
    """Each budget of ``tenant``: its period, limit, what was spent in it and what is left."""
    out: list[dict[str, object]] = []
    for b in tenant.budgets if tenant is not None else ():
        spent = ledger.total(name, period_start_ms(b.period, now_ms)).nano_usd
        out.append(
            {
                "name": b.name,
                "period": b.period,
                "usd": b.usd,
                "spent_usd": usd(spent),
                "left_usd": max(0.0, b.usd - usd(spent)),
                "shadow": b.shadow,
            }
        )
    return out


def tenant_spend(
    ledger: Ledger, name: str, tenant: snapshot_pb2.Tenant | None, now_ms: int
) -> distribution_pb2.TenantSpend:
    """The status line of one tenant: its first budget's period, or all time."""
    total = ledger.total(name)
    out = distribution_pb2.TenantSpend(
        tenant=name, total_usd=usd(total.nano_usd), requests=total.requests, period="total"
    )
    first = budgets(ledger, tenant, name, now_ms)[:1]
    if first:
        out.period = str(first[0]["period"])
        out.usd = float(first[0]["spent_usd"])  # type: ignore[arg-type]
        out.budget_left_usd = float(first[0]["left_usd"])  # type: ignore[arg-type]
    else:
        out.usd = out.total_usd
    return out


def tenant_status(
    ledger: Ledger, snapshot: snapshot_pb2.Snapshot | None, name: str, now_ms: int
) -> dict[str, object]:
    """``Tenant.status.spend`` (the CRD's names; USD rounded to micro-dollars)."""
    e = tenant_spend(ledger, name, tenants_by_name(snapshot).get(name), now_ms)
    out: dict[str, object] = {
        "usd": round(e.usd, 6),
        "period": e.period,
        "totalUsd": round(e.total_usd, 6),
        "requests": e.requests,
    }
    if e.HasField("budget_left_usd"):
        out["budgetLeftUsd"] = round(e.budget_left_usd, 6)
    return out


def tenants_by_name(snapshot: snapshot_pb2.Snapshot | None) -> dict[str, snapshot_pb2.Tenant]:
    return {t.name: t for t in snapshot.tenants} if snapshot is not None else {}


def status_entries(
    ledger: Ledger, snapshot: snapshot_pb2.Snapshot | None, now_ms: int
) -> list[distribution_pb2.TenantSpend]:
    """One entry per tenant the snapshot declares or the ledger has spend for."""
    declared = tenants_by_name(snapshot)
    names = sorted(set(declared) | set(ledger.tenants()))
    return [tenant_spend(ledger, n, declared.get(n), now_ms) for n in names]


def _row(tenant: str, key_id: str, model: str, row: Row) -> dict[str, object]:
    return {
        "tenant": tenant,
        "key_id": key_id,
        "model": model,
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cost_usd": usd(row.nano_usd),
        "cost_nano_usd": row.nano_usd,
    }


#: How ``GET /spend`` may group rows: what of (key id, model) each grouping keeps.
GROUPINGS = {"model": (False, True), "key": (True, False), "key,model": (True, True)}


def _grouped(rows: Iterable[tuple[tuple[str, str, str], Row]], by: str) -> list[dict[str, object]]:
    keep_key, keep_model = GROUPINGS[by]
    groups: dict[tuple[str, str, str], Row] = {}
    for (tenant, key_id, model), row in rows:
        key = (tenant, key_id if keep_key else "", model if keep_model else "")
        groups.setdefault(key, Row()).add(row)
    return [_row(*k, r) for k, r in sorted(groups.items())]


def query(
    ledger: Ledger,
    snapshot: snapshot_pb2.Snapshot | None,
    tenant: str,
    since_ms: int,
    now_ms: int,
    by: str = "model",
) -> dict[str, object]:
    """``GET /spend``: one tenant's sums per model (or key) from ``since_ms``'s hour on."""
    selected = ledger.select(tenant, since_ms)
    rows = _grouped(selected.items(), by)
    total = Row()
    for r in selected.values():
        total.add(r)
    start = since_ms - since_ms % 3_600_000 if since_ms > 0 else 0
    earliest = ledger.earliest_hour()
    return {
        "tenant": tenant,
        "by": by,
        "since_unix_ms": start,
        "now_unix_ms": now_ms,
        # Hours before this were folded into all-time totals (only since=0 counts them).
        "hourly_from_unix_ms": earliest,
        "rows": rows,
        "total": _row(tenant, "", "", total),
        "budgets": budgets(ledger, tenants_by_name(snapshot).get(tenant), tenant, now_ms),
        "charges": ledger.charges,
        "duplicates": ledger.duplicates,
    }
