"""The limiter a router uses: Redis when configured, in-process otherwise, and the outage rule.

While Redis answers, every router shares its counters. When a call to Redis
fails, each tenant's declared choice applies for that request:

- fail-open: the request is checked against this router's in-process store
  with every limit scaled to ``local_share`` (the router's share of the fleet,
  ``--limits-local-share``, e.g. 0.5 for two routers), so the fleet as a whole
  stays near the limit;
- fail-closed: the request is refused (503 ``limits_unavailable``).

A reservation remembers the store that made it and settles there. A failed
settlement is counted and logged; its holds expire with their TTL. The door
settles an in-process reservation at once and a Redis one in the background
(:meth:`~.door.Door.settle_soon`), so a request waits for one Redis round trip
(the reservation), not two.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

from skyroute.router.ingress.guards.errors import limits_unavailable
from skyroute.router.ingress.guards.limits import Check, Decision, DuplicateReservation, LimitStore
from skyroute.router.ingress.guards.limits_memory import MemoryLimitStore
from skyroute.router.logs import event

log = logging.getLogger("skyroute.router.guards.limits")


@dataclass(slots=True)
class Reservation:
    tenant: str
    rid: str
    checks: list[Check]
    decision: Decision
    store: LimitStore
    settled: bool = False

    def actuals(self, tokens: float, usd_nano: float) -> list[float]:
        """Per check, what the request really used (requests stay 1; holds are released)."""
        out: list[float] = []
        for c in self.checks:
            if c.metric == "tokens":
                out.append(float(tokens))
            elif c.metric == "usd":
                out.append(float(round(usd_nano)))
            elif c.metric == "requests":
                out.append(c.cost)
            else:
                out.append(0.0)
        return out


class Limiter:
    def __init__(self, redis: LimitStore | None = None, local_share: float = 1.0) -> None:
        self.memory = MemoryLimitStore()
        self.redis = redis
        self.local_share = local_share
        self.redis_errors = 0
        self.settle_errors = 0
        self.redis_down_since: float | None = None

    @property
    def backend(self) -> str:
        return "redis" if self.redis is not None else "memory"

    async def reserve(
        self, tenant: str, rid: str, checks: list[Check], record_ms: int, fail_open: bool
    ) -> Reservation:
        if self.redis is None:  # synchronous: no coroutine per request
            mem = self.memory
            d = mem.reserve_now(tenant, rid, checks, record_ms, mem.now_ms())
            return Reservation(tenant, rid, checks, d, mem)
        try:
            d = await self.redis.reserve(tenant, rid, checks, record_ms)
            self.redis_down_since = None
            return Reservation(tenant, rid, checks, d, self.redis)
        except DuplicateReservation:
            raise
        except Exception as e:
            self.redis_errors += 1
            if self.redis_down_since is None:
                self.redis_down_since = time.time()
                event(log, "limits_redis_unavailable", logging.WARNING, error=repr(e))
        if not fail_open:
            raise limits_unavailable("Rate limits are unavailable; this tenant fails closed.")
        local = [dataclasses.replace(c, limit=c.limit * self.local_share) for c in checks]
        d = self.memory.reserve_now(tenant, rid, local, record_ms, self.memory.now_ms())
        d.store = "memory-failopen"
        return Reservation(tenant, rid, local, d, self.memory)

    def in_process(self, res: Reservation) -> bool:
        """Whether the in-process store made ``res`` (it settles synchronously)."""
        return res.store is self.memory

    def settle_now(self, res: Reservation, tokens: float, usd_nano: float) -> bool:
        """Settle an in-process reservation synchronously; True if this call did it."""
        if res.settled or res.store is not self.memory:
            return False
        res.settled = True
        mem = self.memory
        try:
            actual = res.actuals(tokens, usd_nano)
            return mem.settle_now(res.tenant, res.rid, res.checks, actual, mem.now_ms())
        except Exception as e:
            self._settle_failed(res, e)
            return False

    @staticmethod
    def take(res: Reservation) -> bool:
        """Mark ``res`` as being settled; False if it already was (settle once)."""
        if res.settled:
            return False
        res.settled = True
        return True

    async def settle(self, res: Reservation, tokens: float, usd_nano: float) -> bool:
        """Settle once from reported usage; True if this call did it."""
        if res.store is self.memory:
            return self.settle_now(res, tokens, usd_nano)
        if not self.take(res):
            return False
        return await self.settle_taken(res, tokens, usd_nano)

    async def settle_taken(self, res: Reservation, tokens: float, usd_nano: float) -> bool:
        """Settle a reservation already :meth:`take`-n in its store (Redis)."""
        try:
            actual = res.actuals(tokens, usd_nano)
            return await res.store.settle(res.tenant, res.rid, res.checks, actual)
        except Exception as e:
            self._settle_failed(res, e)
            return False

    def _settle_failed(self, res: Reservation, e: Exception) -> None:
        self.settle_errors += 1
        event(log, "limits_settle_failed", logging.WARNING, tenant=res.tenant, error=repr(e))
