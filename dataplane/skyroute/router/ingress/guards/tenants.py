"""Tenant rules as a router holds them, and the plan of limit checks for one request.

Built once per snapshot from its ``Tenant`` entries; per request
:func:`plan` turns the rules that apply (tenant, key, policy, model scopes)
into the :class:`~.limits.Check` list the store reserves atomically.
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


def plan(
    rules: TenantRules,
    key_id: str,
    policy: str,
    model: str,
    est: Estimate,
    now: dt.datetime,
    hold_ms: int,
) -> list[Check]:
    """Every check a request of this tenant, key, policy and chosen model must pass."""
    checks: list[Check] = []
    tokens = est.prompt_tokens + est.completion_tokens
    for i, rl in enumerate(rules.rate_limits):
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
            checks.append(
                Check(
                    "rate",
                    who,
                    "requests",
                    f"{base}:rpm",
                    rl.requests_per_minute,
                    1,
                    MINUTE_MS,
                    shadow=rl.shadow,
                )
            )
        if rl.tokens_per_minute:
            checks.append(
                Check(
                    "rate",
                    who,
                    "tokens",
                    f"{base}:tpm",
                    rl.tokens_per_minute,
                    tokens,
                    MINUTE_MS,
                    shadow=rl.shadow,
                )
            )
        if rl.concurrent_requests:
            checks.append(
                Check(
                    "concurrency",
                    who,
                    "concurrent",
                    f"{base}:conc",
                    rl.concurrent_requests,
                    1,
                    hold_ms=hold_ms,
                    shadow=rl.shadow,
                )
            )
    if not rules.budgets:
        return checks
    full = est.cost_nano()
    least = min(full, est.cost_nano(min(MIN_COMPLETION_TOKENS, est.completion_tokens)))
    ts = now.timestamp()
    for b in rules.budgets:
        pid, end = period_of_minute(b.period, int(ts // 60))
        reset_ms = int((end - ts) * 1000) if end else 0
        expire_s = int(end - ts) + 7 * 86_400 if end else 0
        checks.append(
            Check(
                "budget",
                f"budget:{b.name}",
                "usd",
                f"{b.name}:{pid}",
                round(b.usd * NANO_USD),
                full,
                reset_ms,
                hold_ms,
                least,
                expire_s,
                b.shadow,
            )
        )
    return checks
