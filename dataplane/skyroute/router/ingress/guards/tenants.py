"""Tenant rules as a router holds them, and the plan of limit checks for one request.

Built once per snapshot from its ``Tenant`` entries; per request
:func:`plan` turns the rules that apply (tenant, key, policy, model scopes)
into the :class:`~.limits.Check` list the store reserves atomically.

Hot path: which rules apply to a (key, policy, model) and every name they
store under are worked out once per tenant and remembered (:class:`_Plans`,
dropped with the snapshot), so a request only fills in its own costs: a
requests-per-minute check is one shared object, a tokens or concurrency check
one constructor call, a budget's period id is recomputed once a minute.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Literal

from skyroute.router.ingress.guards.limits import NANO_USD, Check, period_of_minute

Scope = Literal["tenant", "key", "policy", "model"]
MINUTE_MS = 60_000
# Smallest completion a clamped request is still worth sending with.
MIN_COMPLETION_TOKENS = 16


@dataclass(frozen=True, slots=True)
class RateLimit:
    scope: Scope = "tenant"
    # The policy or model name for those scopes; "" for tenant and key.
    match: str = ""
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    concurrent_requests: int = 0
    shadow: bool = False


@dataclass(frozen=True, slots=True)
class Budget:
    name: str
    usd: float
    period: Literal["day", "month", "total"] = "month"
    # reject: refuse once spent; route: send requests to ``pool`` once ``soft_share``
    # of the budget is used (and refuse once all of it is).
    action: Literal["reject", "route"] = "reject"
    pool: str = ""
    soft_share: float = 0.8
    shadow: bool = False


@dataclass(frozen=True, slots=True)
class TenantRules:
    name: str
    tier: str = ""
    # Request model names (RoutingPolicies) the tenant may use; "*" = any.
    policies: frozenset[str] = frozenset({"*"})
    # May set x-skyroute-tenant (sub-tenants) and x-skyroute-tier (a gateway tenant).
    delegate: bool = False
    rate_limits: tuple[RateLimit, ...] = ()
    budgets: tuple[Budget, ...] = ()
    # When Redis is down: True = this router's share of each limit, False = refuse.
    fail_open: bool = True
    service_accounts: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    # Compiled on first use and kept with these rules (a new snapshot, new rules).
    plans: _Plans = field(init=False, compare=False, repr=False, hash=False)
    # Budgets with action "route", by their check scope ("budget:<name>").
    route_budgets: dict[str, Budget] = field(init=False, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plans", _Plans(self))
        routes = {f"budget:{b.name}": b for b in self.budgets if b.action == "route" and b.pool}
        object.__setattr__(self, "route_budgets", routes)

    def may_use(self, policy: str) -> bool:
        return "*" in self.policies or policy in self.policies


@dataclass(frozen=True, slots=True)
class Estimate:
    """What the door knows before the call: the prompt and the completion allowance."""

    prompt_tokens: int
    completion_tokens: int
    # USD per million tokens of the chosen candidate.
    input_price: float = 0.0
    output_price: float = 0.0

    def cost_nano(self, completion: int | None = None) -> int:
        c = self.completion_tokens if completion is None else completion
        usd = self.prompt_tokens * self.input_price + c * self.output_price
        return math.ceil(usd * 1000)  # $/Mtok * tokens = micro-USD; * 1000 = nano-USD

    def affordable_completion(self, granted_nano: float) -> int:
        """Completion tokens a grant pays for (the clamp on upstream max_tokens)."""
        if self.output_price <= 0:
            return self.completion_tokens
        left = granted_nano / 1000 - self.prompt_tokens * self.input_price
        return max(0, min(self.completion_tokens, int(left / self.output_price)))


def _applies(rl: RateLimit, policy: str, model: str) -> bool:
    if rl.scope == "policy":
        return rl.match == policy
    if rl.scope == "model":
        return rl.match == model
    return True


# What a compiled entry becomes per request: the shared check itself, or a copy
# with this request's tokens, or with its hold time.
_SHARED, _TOKENS, _CONCURRENT = 0, 1, 2
_MAX_PLANS = 4096


@dataclass(slots=True)
class _BudgetSpec:
    budget: Budget
    scope: str
    limit: int


class _Plans:
    """One tenant's compiled rules: the rate checks per (key, policy, model), budgets."""

    __slots__ = ("_minute", "_periods", "_rates", "_rules", "budgets")

    def __init__(self, rules: TenantRules) -> None:
        self._rules = rules
        self._rates: dict[tuple[str, str, str], tuple[tuple[int, Check], ...]] = {}
        self.budgets = tuple(
            _BudgetSpec(b, f"budget:{b.name}", round(b.usd * NANO_USD)) for b in rules.budgets
        )
        self._minute = -1
        # Per budget, this minute's (storage key, period end in Unix seconds or 0).
        self._periods: tuple[tuple[str, float], ...] = ()

    def rates(self, key_id: str, policy: str, model: str) -> tuple[tuple[int, Check], ...]:
        k = (key_id, policy, model)
        got = self._rates.get(k)
        if got is None:
            if len(self._rates) >= _MAX_PLANS:
                self._rates.clear()
            got = self._rates[k] = self._compile(key_id, policy, model)
        return got

    def _compile(self, key_id: str, policy: str, model: str) -> tuple[tuple[int, Check], ...]:
        out: list[tuple[int, Check]] = []
        for i, rl in enumerate(self._rules.rate_limits):
            if not _applies(rl, policy, model):
                continue
            if rl.scope == "tenant":
                who = "tenant"
            elif rl.scope == "key":
                who = "key:" + key_id
            else:
                who = rl.scope + ":" + rl.match
            base = f"{i}:{who}"
            if rl.requests_per_minute:
                c = Check(
                    "rate", who, "requests", f"{base}:rpm", rl.requests_per_minute, 1, MINUTE_MS
                )
                c.shadow = rl.shadow
                out.append((_SHARED, c))
            if rl.tokens_per_minute:
                c = Check("rate", who, "tokens", f"{base}:tpm", rl.tokens_per_minute, 0, MINUTE_MS)
                c.shadow = rl.shadow
                out.append((_TOKENS, c))
            if rl.concurrent_requests:
                c = Check(
                    "concurrency", who, "concurrent", f"{base}:conc", rl.concurrent_requests, 1
                )
                c.shadow = rl.shadow
                out.append((_CONCURRENT, c))
        return tuple(out)

    def periods(self, ts: float) -> tuple[tuple[str, float], ...]:
        minute = int(ts // 60)
        if minute != self._minute:
            out = []
            for spec in self.budgets:
                pid, end = period_of_minute(spec.budget.period, minute)
                out.append((f"{spec.budget.name}:{pid}", end))
            self._periods, self._minute = tuple(out), minute
        return self._periods


def plan(
    rules: TenantRules,
    key_id: str,
    policy: str,
    model: str,
    est: Estimate,
    now: dt.datetime | float,
    hold_ms: int,
) -> list[Check]:
    """Every check a request of this tenant, key, policy and chosen model must pass.

    ``now``: a datetime or Unix seconds. The requests-per-minute checks in the
    list are shared between requests: a store must not change a check.
    """
    plans = rules.plans
    checks: list[Check] = []
    tokens = est.prompt_tokens + est.completion_tokens
    for how, c in plans.rates(key_id, policy, model):
        if how == _SHARED:
            checks.append(c)
        elif how == _TOKENS:
            checks.append(
                Check(
                    "rate", c.scope, "tokens", c.key, c.limit, tokens, MINUTE_MS, 0, 0, 0, c.shadow
                )
            )
        else:
            checks.append(
                Check(
                    "concurrency",
                    c.scope,
                    "concurrent",
                    c.key,
                    c.limit,
                    1,
                    MINUTE_MS,
                    hold_ms,
                    0,
                    0,
                    c.shadow,
                )
            )
    if not plans.budgets:
        return checks
    full = est.cost_nano()
    least = min(full, est.cost_nano(min(MIN_COMPLETION_TOKENS, est.completion_tokens)))
    ts = now.timestamp() if isinstance(now, dt.datetime) else float(now)
    for spec, (key, end) in zip(plans.budgets, plans.periods(ts), strict=True):
        b = spec.budget
        checks.append(
            Check(
                "budget",
                spec.scope,
                "usd",
                key,
                spec.limit,
                full,
                int((end - ts) * 1000) if end else 0,
                hold_ms,
                least,
                int(end - ts) + 7 * 86_400 if end else 0,
                b.shadow,
            )
        )
    return checks
