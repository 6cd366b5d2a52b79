"""In-process limit store: one router, the same semantics as the Redis script.

Used alone when the router has no Redis, and as the fail-open fallback of a
tenant while Redis is down (then every limit is scaled to this router's
share first, see :mod:`.limits_guard`). All of a request's checks are
evaluated and applied in one synchronous function: the event loop cannot
interleave another request between check and reserve.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from skyroute.router.ingress.guards.limits import Check, Decision, DuplicateReservation, ScopeState


@dataclass(slots=True)
class _Budget:
    spent: int = 0
    held: int = 0
    holds: dict[str, tuple[float, int]] = field(default_factory=dict)  # rid -> (expiry ms, amt)
    expires_ms: float = 0.0


class MemoryLimitStore:
    name = "memory"

    def __init__(self, max_records: int = 200_000) -> None:
        self._tat: dict[str, float] = {}
        self._conc: dict[str, dict[str, float]] = {}
        self._budget: dict[str, _Budget] = {}
        # rid -> (expiry ms, granted per check index)
        self._records: dict[str, tuple[float, list[float]]] = {}
        self._settled: dict[str, float] = {}
        self.max_records = max_records

    @staticmethod
    def now_ms() -> float:
        return time.time() * 1000.0

    def _gc(self, now: float) -> None:
        if len(self._records) > self.max_records:
            self._records = {k: v for k, v in self._records.items() if v[0] > now}
        if len(self._settled) > self.max_records:
            self._settled = {k: v for k, v in self._settled.items() if v > now}

    def _budget_of(self, key: str, now: float) -> _Budget:
        b = self._budget.get(key)
        if b is None or (b.expires_ms and b.expires_ms <= now):
            b = self._budget[key] = _Budget()
        for rid, (exp, amt) in list(b.holds.items()):
            if exp <= now:  # an orphaned hold refunds itself
                del b.holds[rid]
                b.held -= amt
        return b

    async def reserve(self, tenant: str, rid: str, checks: list[Check], record_ms: int) -> Decision:
        return self.reserve_now(tenant, rid, checks, record_ms, self.now_ms())

    def reserve_now(
        self, tenant: str, rid: str, checks: list[Check], record_ms: int, now: float
    ) -> Decision:
        rkey = f"{tenant}\x00{rid}"
        rec = self._records.get(rkey)
        if rec is not None and rec[0] > now:
            raise DuplicateReservation(rid)
        self._gc(now)
        states: list[ScopeState] = []
        new_tat: list[float] = []
        denied: Check | None = None
        retry = 0.0
        shadow_denied: list[Check] = []
        for c in checks:
            k = f"{tenant}\x00{c.key}"
            ok, remaining, reset, granted, wait, tat2 = True, 0.0, 0.0, c.cost, 0.0, 0.0
            if c.kind == "rate":
                t = c.window_ms / c.limit
                tat = max(self._tat.get(k, 0.0), now)
                tat2 = tat + c.cost * t
                if tat2 - now > c.window_ms:
                    ok = False
                    wait = c.window_ms if c.cost * t > c.window_ms else tat2 - now - c.window_ms
                    remaining = math.floor((c.window_ms - (tat - now)) / t)
                    reset = tat - now
                else:
                    remaining = math.floor((c.window_ms - (tat2 - now)) / t)
                    reset = tat2 - now
            elif c.kind == "concurrency":
                live = self._conc.setdefault(k, {})
                for r, exp in list(live.items()):
                    if exp <= now:
                        del live[r]
                if len(live) + 1 > c.limit:
                    ok = False
                    wait = min(live.values()) - now if live else 1000.0
                    remaining = 0
                else:
                    remaining = c.limit - len(live) - 1
            else:
                b = self._budget_of(k, now)
                left = c.limit - b.spent - b.held
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
            k = f"{tenant}\x00{c.key}"
            if c.kind == "rate":
                self._tat[k] = tat2
            elif c.kind == "concurrency":
                self._conc[k][rid] = now + c.hold_ms
            else:
                b = self._budget[k]
                amt = int(s.granted)
                b.held += amt
                b.holds[rid] = (now + c.hold_ms, amt)
                if c.expire_s:
                    b.expires_ms = now + c.expire_s * 1000.0
        self._records[rkey] = (now + record_ms, [s.granted for s in states])
        return Decision(True, states, None, 0.0, shadow_denied, self.name)

    async def settle(self, tenant: str, rid: str, checks: list[Check], actual: list[float]) -> bool:
        return self.settle_now(tenant, rid, checks, actual, self.now_ms())

    def settle_now(
        self, tenant: str, rid: str, checks: list[Check], actual: list[float], now: float
    ) -> bool:
        rkey = f"{tenant}\x00{rid}"
        if rkey in self._settled:
            return False
        self._settled[rkey] = now + 86_400_000
        rec = self._records.pop(rkey, None)
        reserved = rec[1] if rec is not None and rec[0] > now else None
        for i, (c, used) in enumerate(zip(checks, actual, strict=True)):
            k = f"{tenant}\x00{c.key}"
            if c.kind == "rate":
                if reserved is not None and k in self._tat:
                    t = c.window_ms / c.limit
                    self._tat[k] = max(self._tat[k] + (used - reserved[i]) * t, now)
            elif c.kind == "concurrency":
                self._conc.get(k, {}).pop(rid, None)
            else:
                b = self._budget_of(k, now)
                hold = b.holds.pop(rid, None)
                if hold is not None:
                    b.held -= hold[1]
                b.spent += int(used)
        return True

    def spent(self, tenant: str, key: str) -> tuple[int, int]:
        """(spent, held) of a budget counter, for status and tests."""
        b = self._budget.get(f"{tenant}\x00{key}")
        return (b.spent, b.held) if b is not None else (0, 0)
