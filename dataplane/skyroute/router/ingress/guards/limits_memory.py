"""In-process limit store: one router, the same semantics as the Redis script.

Used alone when the router has no Redis, and as the fail-open fallback of a
tenant while Redis is down (then every limit is scaled to this router's
share first, see :mod:`.limits_guard`). All of a request's checks are
evaluated and applied in one synchronous function: the event loop cannot
interleave another request between check and reserve.

Hot path: counters live per tenant (one dict lookup per request, then the
checks' own precompiled names: no per-request key strings), and expired
holds are swept only once the earliest of them is due, not on every call.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from skyroute.router.ingress.guards.limits import Check, Decision, DuplicateReservation, ScopeState

_FOREVER = math.inf


@dataclass(slots=True)
class _Holds:
    """Live holds by request id (expiry ms, amount), swept once the earliest is due."""

    live: dict[str, tuple[float, int]] = field(default_factory=dict)
    amount: int = 0
    next_expiry: float = _FOREVER

    def sweep(self, now: float) -> None:
        if now < self.next_expiry:
            return
        nxt = _FOREVER
        for rid, (exp, amt) in list(self.live.items()):
            if exp <= now:  # an orphaned hold refunds itself
                del self.live[rid]
                self.amount -= amt
            elif exp < nxt:
                nxt = exp
        self.next_expiry = nxt

    def add(self, rid: str, expiry: float, amt: int) -> None:
        self.live[rid] = (expiry, amt)
        self.amount += amt
        if expiry < self.next_expiry:
            self.next_expiry = expiry

    def release(self, rid: str) -> None:
        hold = self.live.pop(rid, None)
        if hold is not None:
            self.amount -= hold[1]


@dataclass(slots=True)
class _Budget:
    spent: int = 0
    holds: _Holds = field(default_factory=_Holds)
    expires_ms: float = 0.0


@dataclass(slots=True)
class _Tenant:
    """One tenant's counters, by the checks' storage names."""

    tat: dict[str, float] = field(default_factory=dict)
    conc: dict[str, _Holds] = field(default_factory=dict)
    budget: dict[str, _Budget] = field(default_factory=dict)
    # rid -> (expiry ms, granted per check index)
    records: dict[str, tuple[float, list[float]]] = field(default_factory=dict)
    settled: dict[str, float] = field(default_factory=dict)

    def budget_of(self, key: str, now: float) -> _Budget:
        b = self.budget.get(key)
        if b is None or (b.expires_ms and b.expires_ms <= now):
            b = self.budget[key] = _Budget()
        b.holds.sweep(now)
        return b

    def gc(self, now: float, max_records: int) -> None:
        if len(self.records) > max_records:
            self.records = {k: v for k, v in self.records.items() if v[0] > now}
        if len(self.settled) > max_records:
            self.settled = {k: v for k, v in self.settled.items() if v > now}


class MemoryLimitStore:
    name = "memory"

    def __init__(self, max_records: int = 200_000) -> None:
        self._tenants: dict[str, _Tenant] = {}
        self.max_records = max_records

    @staticmethod
    def now_ms() -> float:
        return time.time() * 1000.0

    def _tenant(self, tenant: str) -> _Tenant:
        t = self._tenants.get(tenant)
        if t is None:
            t = self._tenants[tenant] = _Tenant()
        return t

    async def reserve(self, tenant: str, rid: str, checks: list[Check], record_ms: int) -> Decision:
        return self.reserve_now(tenant, rid, checks, record_ms, self.now_ms())

    def reserve_now(
        self, tenant: str, rid: str, checks: list[Check], record_ms: int, now: float
    ) -> Decision:
        t = self._tenant(tenant)
        rec = t.records.get(rid)
        if rec is not None and rec[0] > now:
            raise DuplicateReservation(rid)
        t.gc(now, self.max_records)
        states: list[ScopeState] = []
        new_tat: list[float] = []
        denied: Check | None = None
        retry = 0.0
        shadow_denied: list[Check] = []
        for c in checks:
            ok, remaining, reset, granted, wait, tat2 = True, 0.0, 0.0, c.cost, 0.0, 0.0
            kind = c.kind
            if kind == "rate":
                window = c.window_ms
                per = window / c.limit
                tat = t.tat.get(c.key, 0.0)
                if tat < now:
                    tat = now
                tat2 = tat + c.cost * per
                if tat2 - now > window:
                    ok = False
                    wait = window if c.cost * per > window else tat2 - now - window
                    remaining = math.floor((window - (tat - now)) / per)
                    reset = tat - now
                else:
                    remaining = math.floor((window - (tat2 - now)) / per)
                    reset = tat2 - now
            elif kind == "concurrency":
                live = t.conc.get(c.key)
                if live is None:
                    live = t.conc[c.key] = _Holds()
                live.sweep(now)
                n = len(live.live)
                if n + 1 > c.limit:
                    ok = False
                    wait = live.next_expiry - now if n else 1000.0
                    remaining = 0
                else:
                    remaining = c.limit - n - 1
            else:
                b = t.budget_of(c.key, now)
                left = c.limit - b.spent - b.holds.amount
                reset = c.window_ms
                if left >= c.cost:
                    granted = c.cost
                elif c.cost_min > 0 and left >= c.cost_min:
                    granted = math.floor(left)
                else:
                    ok = False
                    wait = c.window_ms
                remaining = max(0.0, left - granted) if ok else max(0.0, left)
            if not ok:
                granted = 0.0 if not c.shadow else c.cost
                if c.shadow:
                    shadow_denied.append(c)
                elif denied is None:
                    denied, retry = c, wait
            states.append(ScopeState(c, ok, remaining, reset, granted))
            new_tat.append(tat2)
        if denied is not None:
            return Decision(False, states, denied, retry, shadow_denied, self.name)
        for c, s, tat2 in zip(checks, states, new_tat, strict=True):
            kind = c.kind
            if kind == "rate":
                t.tat[c.key] = tat2
            elif kind == "concurrency":
                t.conc[c.key].add(rid, now + c.hold_ms, 0)
            else:
                b = t.budget[c.key]
                b.holds.add(rid, now + c.hold_ms, int(s.granted))
                if c.expire_s:
                    b.expires_ms = now + c.expire_s * 1000.0
        t.records[rid] = (now + record_ms, [s.granted for s in states])
        return Decision(True, states, None, 0.0, shadow_denied, self.name)

    async def settle(self, tenant: str, rid: str, checks: list[Check], actual: list[float]) -> bool:
        return self.settle_now(tenant, rid, checks, actual, self.now_ms())

    def settle_now(
        self, tenant: str, rid: str, checks: list[Check], actual: list[float], now: float
    ) -> bool:
        t = self._tenant(tenant)
        if rid in t.settled:
            return False
        t.settled[rid] = now + 86_400_000
        rec = t.records.pop(rid, None)
        reserved = rec[1] if rec is not None and rec[0] > now else None
        for i, c in enumerate(checks):
            kind = c.kind
            if kind == "rate":
                tat = t.tat.get(c.key)
                if reserved is not None and tat is not None:
                    tat += (actual[i] - reserved[i]) * c.window_ms / c.limit
                    t.tat[c.key] = tat if tat > now else now
            elif kind == "concurrency":
                live = t.conc.get(c.key)
                if live is not None:
                    live.release(rid)
            else:
                b = t.budget_of(c.key, now)
                b.holds.release(rid)
                b.spent += int(actual[i])
        return True

    def spent(self, tenant: str, key: str) -> tuple[int, int]:
        """(spent, held) of a budget counter, for status and tests."""
        t = self._tenants.get(tenant)
        b = t.budget.get(key) if t is not None else None
        return (b.spent, b.holds.amount) if b is not None else (0, 0)
