"""The limits engine's vocabulary: checks, decisions, reservations, headers.

Every request makes one plan: a list of :class:`Check`, one per scope and
metric that applies to it (key, tenant, policy or model; requests, tokens,
concurrent requests, USD). A store checks and reserves all of them in one
atomic step (:mod:`.limits_redis`: one Lua script call; :mod:`.limits_memory`:
one synchronous function), so no two requests can both take the last unit of
any scope. After the call the request settles from the provider's reported
usage; settlement is idempotent (keyed by the request id) and a reservation
that is never settled expires with its hold TTL and refunds itself.

Algorithms (the README's "Tenants, keys, limits and spend" states them):

- Rate limits (requests or tokens per window) are GCRA: each scope keeps a
  theoretical arrival time ``tat``; a cost ``n`` takes ``n * window / limit``
  of it; a request fits while ``tat - now <= window``. Bursts up to the full
  limit are allowed, the sustained rate is exactly ``limit`` per window and
  there is no window edge where twice the limit passes. ``reset`` is the time
  until the scope is back to its full limit. Clocks are Redis' own (``TIME``),
  so several routers agree.
- Concurrency is a set of request ids with expiry: the hold TTL bounds how
  long a crashed router's request counts.
- Budgets are per UTC period (``day``: midnight UTC, ``month``: the 1st at
  00:00 UTC, ``total``: never resets) in nano-USD: ``spent`` (settled) plus
  ``held`` (live reservations) must stay within the limit. A reservation can
  be clamped (``cost_min``): when less than the estimate is left but at least
  ``cost_min``, the rest is granted and the caller shortens ``max_tokens``.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Literal, Protocol

Kind = Literal["rate", "concurrency", "budget"]
Metric = Literal["requests", "tokens", "concurrent", "usd"]
NANO_USD = 1_000_000_000


# Plain (not frozen) slotted dataclasses: a frozen __init__ costs a setattr call per
# field, and a request builds several of these.
@dataclass(slots=True, eq=False)
class Check:
    kind: Kind
    # Who it limits, as shown in errors and status: "tenant", "key:ab12cd34ef56", "model:x".
    scope: str
    metric: Metric
    # Storage name within the tenant (unique per scope, metric and period).
    key: str
    # rate: units per window; concurrency: requests at once; budget: nano-USD.
    limit: float
    # Units this request reserves (1 request, estimated tokens, estimated nano-USD).
    cost: float
    # rate: the window; budget: time until the period ends (the reset).
    window_ms: int = 60_000
    # concurrency, budget: how long a reservation holds before it refunds itself.
    hold_ms: int = 0
    # budget: smallest grant accepted when less than ``cost`` is left (0 = all or nothing).
    cost_min: float = 0
    # budget: lifetime of the period's counters (0 = forever: a total budget).
    expire_s: int = 0
    # Shadow: counted and reported, never refused.
    shadow: bool = False


@dataclass(slots=True)
class ScopeState:
    check: Check
    ok: bool
    remaining: float
    reset_ms: float
    granted: float


@dataclass(slots=True)
class Decision:
    allowed: bool
    states: list[ScopeState]
    denied: Check | None = None
    retry_after_ms: float = 0.0
    # Shadow checks that would have refused (counted, reported, not enforced).
    shadow_denied: list[Check] = field(default_factory=list)
    # Which store answered: "redis", "memory", or "memory-failopen" during a Redis outage.
    store: str = "memory"

    def granted(self, check: Check) -> float:
        for s in self.states:
            if s.check is check:
                return s.granted
        return 0.0


class DuplicateReservation(Exception):
    """A request id reserved twice (a bug in the caller: ids are unique per request)."""


class LimitStore(Protocol):
    name: str

    async def reserve(
        self, tenant: str, rid: str, checks: list[Check], record_ms: int
    ) -> Decision: ...

    async def settle(
        self, tenant: str, rid: str, checks: list[Check], actual: list[float]
    ) -> bool: ...


@functools.lru_cache(maxsize=64)
def period_of_minute(period: str, epoch_minute: int) -> tuple[str, float]:
    """(period id, period end in Unix seconds, 0 = never) for a minute: cached, per request."""
    pid, end = period_bounds(period, dt.datetime.fromtimestamp(epoch_minute * 60, dt.UTC))
    return pid, end.timestamp() if end is not None else 0.0


def period_bounds(period: str, now: dt.datetime) -> tuple[str, dt.datetime | None]:
    """The id of the UTC period containing ``now`` and when it ends (None: never)."""
    now = now.astimezone(dt.UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start + dt.timedelta(days=1)
    if period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = (start + dt.timedelta(days=32)).replace(day=1)
        return start.strftime("%Y-%m"), nxt
    if period == "total":
        return "total", None
    raise ValueError(f"unknown budget period {period!r}")


def go_duration(ms: float) -> str:
    """A duration as OpenAI's headers write it (Go's format): ``20ms``, ``1s``, ``6m0s``."""
    n = max(0, round(ms))
    if n == 0:
        return "0s"
    if n < 1000:
        return f"{n}ms"
    h, rem = divmod(n, 3_600_000)
    m, rem = divmod(rem, 60_000)
    sec = f"{rem / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if h:
        return f"{h}h{m}m{sec}"
    if m:
        return f"{m}m{sec}"
    return sec


def ratelimit_headers(decision: Decision) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers from the tightest requests and tokens scopes.

    Tightest: the smallest share of its limit left; on a tie, the longer reset.
    Shadow limits are left out (they refuse nothing, so a client must not back
    off for them). One pass over the decision's states, no intermediate lists.
    """
    req: ScopeState | None = None
    tok: ScopeState | None = None
    req_share = tok_share = 0.0
    for s in decision.states:
        c = s.check
        if c.kind != "rate" or c.shadow:
            continue
        share = s.remaining / (c.limit if c.limit > 1 else 1)
        if c.metric == "requests":
            if (
                req is None
                or share < req_share
                or (share == req_share and s.reset_ms > req.reset_ms)
            ):
                req, req_share = s, share
        elif tok is None or share < tok_share or (share == tok_share and s.reset_ms > tok.reset_ms):
            tok, tok_share = s, share
    out: dict[str, str] = {}
    if req is not None:
        out["x-ratelimit-limit-requests"] = str(int(req.check.limit))
        out["x-ratelimit-remaining-requests"] = str(int(req.remaining) if req.remaining > 0 else 0)
        out["x-ratelimit-reset-requests"] = go_duration(req.reset_ms)
    if tok is not None:
        out["x-ratelimit-limit-tokens"] = str(int(tok.check.limit))
        out["x-ratelimit-remaining-tokens"] = str(int(tok.remaining) if tok.remaining > 0 else 0)
        out["x-ratelimit-reset-tokens"] = go_duration(tok.reset_ms)
    return out
