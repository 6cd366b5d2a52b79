"""The identity-and-limits stage, door-neutral: what the inbound pipeline calls.

Three calls per request, whatever the door (HTTP, gRPC); the inbound
pipeline (``router/ingress/pipeline.py``) makes them:

1. :meth:`Door.identify` before the decision: the credential (Bearer,
   ``x-api-key`` or gRPC ``authorization``) becomes an :class:`Identity`
   (401 otherwise). Its ``tenant`` replaces the client's tenant signal, its
   ``tier`` the client's tier (unless the tenant may delegate).
   :meth:`Door.authorize` refuses a policy the tenant may not use (403), and
   :meth:`Door.pressure_pool` names the cheaper pool a budget under pressure
   routes to.
2. :meth:`Door.admit` once the candidate is chosen: every scope is checked and
   reserved in one atomic call (429 ``rate_limit_exceeded`` with
   ``Retry-After``, 429 ``insufficient_quota``); the answer carries OpenAI's
   ``x-ratelimit-*`` headers (sent before a stream starts) and, where a
   budget is nearly spent, the clamped ``max_tokens``.
3. :meth:`Door.settle_soon` after the call, from the usage the provider
   reported (a stream that died: the tokens received so far): in process at
   once, with Redis in the background, so the answer waits for one Redis round
   trip, not two. Idempotent (:meth:`Door.settle` is the awaitable form).

Closed by default: a router whose snapshot has no Tenant has nobody to
authenticate against, so it refuses every request (401, the message says to
declare a Tenant or start the router with ``--allow-anonymous``). Only with
``--allow-anonymous`` or ``--open-without-tenants`` is such a router open
(:meth:`Door.mode` ``open``): no credential asked, no limits, the tenant and
tier headers trusted, as before tenants existed; it says so at start, in
``/readyz`` and ``/debug/status``. Once there is a Tenant a credential is
required: ``--allow-anonymous`` still lets keyless callers in (anonymous, no
limits), ``--open-without-tenants`` does not.

Budget pressure is learnt from the reservations themselves: a tenant whose
``route`` budget has ``softShare`` used has its next requests decided with the
budget's pool, until a reservation shows it below the share again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field

from skyroute.router.ids import new_id
from skyroute.router.ingress.guards.errors import insufficient_quota, invalid_key, rate_limited
from skyroute.router.ingress.guards.from_snapshot import from_snapshot
from skyroute.router.ingress.guards.identity import ANONYMOUS, Authenticator, Identity, credential
from skyroute.router.ingress.guards.keys import KeyRing
from skyroute.router.ingress.guards.limits import Decision, ratelimit_headers
from skyroute.router.ingress.guards.limits_guard import Limiter, Reservation
from skyroute.router.ingress.guards.sa_tokens import ServiceAccountVerifier
from skyroute.router.ingress.guards.tenants import Estimate, TenantRules, plan
from skyroute.v1 import distribution_pb2, snapshot_pb2


@dataclass(slots=True)
class Admission:
    ident: Identity
    est: Estimate
    reservation: Reservation | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # The upstream completion allowance after a budget clamp (None: unchanged).
    max_tokens: int | None = None


#: Why a router with no Tenant refuses a caller (it names both ways out).
NO_TENANT = (
    "This router has no Tenant configured, so it admits no caller: declare a Tenant "
    "(kind: Tenant) with a key (`skyroute keys create --tenant NAME`), or start the "
    "router with --allow-anonymous for local experiments."
)
#: What a router says (start-up log, /readyz) when it serves every caller without a key.
OPEN_WARNING = (
    "OPEN: no Tenant and --allow-anonymous or --open-without-tenants: every caller is "
    "served without a key, its x-skyroute-tenant and tier headers trusted, no limits "
    "(local use only)"
)


class Door:
    def __init__(
        self,
        limiter: Limiter | None = None,
        sa: ServiceAccountVerifier | None = None,
        allow_anonymous: bool = False,
        open_without_tenants: bool = False,
    ) -> None:
        self.limiter = limiter or Limiter()
        self.sa = sa
        self.allow_anonymous = allow_anonymous
        # Open while there is no Tenant (implied by allow_anonymous); keys once there is one.
        self.open_without_tenants = open_without_tenants or allow_anonymous
        self.auth = Authenticator({}, KeyRing([]), sa, allow_anonymous)
        self._pressure: dict[str, str] = {}
        self.refused: dict[str, int] = {}
        # Shadow limits that would have refused: (tenant, scope, metric) -> requests.
        self.shadow_denied: dict[tuple[str, str, str], int] = {}
        # Redis settlements running after their answers were sent (settle_soon).
        self._settling: set[asyncio.Task[bool]] = set()

    def apply(self, snap: snapshot_pb2.Snapshot) -> None:
        """Rebuild tenants and keys from a new snapshot (one reference swap)."""
        self.use(*from_snapshot(snap))

    def use(self, tenants: dict[str, TenantRules], keys: KeyRing) -> None:
        """Serve these tenants and keys from now on (the router calls it per table)."""
        self.auth = Authenticator(tenants, keys, self.sa, self.allow_anonymous)

    def mode(self) -> str:
        """``closed`` (no Tenant: every caller refused), ``open`` (no Tenant,
        --allow-anonymous or --open-without-tenants: nobody asked for a key) or
        ``keys`` (a credential required, or optional with --allow-anonymous)."""
        if self.auth.tenants:
            return "keys"
        return "open" if self.open_without_tenants else "closed"

    def readiness(self) -> str:
        """The line /readyz adds about the door ("" when keys are required)."""
        m = self.mode()
        if m == "open":
            return OPEN_WARNING
        if m == "closed":
            return "CLOSED: " + NO_TENANT
        return "anonymous callers allowed (--allow-anonymous)" if self.allow_anonymous else ""

    def limits_state(self) -> str:
        """``memory``, ``redis``, or ``redis-down`` (its last call failed)."""
        if self.limiter.redis is None:
            return "memory"
        return "redis-down" if self.limiter.redis_down_since is not None else "redis"

    def fail_closed(self) -> list[str]:
        """Tenants that refuse (503) while Redis is down; the others fail open."""
        return sorted(n for n, t in self.auth.tenants.items() if not t.fail_open)

    def status(self) -> dict[str, object]:
        """For /debug/status and ``skyroute status``: how the door authenticates and limits."""
        mode = self.mode()
        closed = self.fail_closed()
        return {
            "anonymous_allowed": self.allow_anonymous,
            "open_without_tenants": self.open_without_tenants,
            "mode": mode,
            # Open: no Tenant and --allow-anonymous (no credential asked, no limits).
            "open": mode == "open",
            "warning": self.readiness(),
            "tenants": len(self.auth.tenants),
            "keys": len(self.auth.keys),
            "keys_revoked": self.auth.keys.revoked(),
            "service_accounts": self.sa is not None,
            "limits_backend": self.limiter.backend,
            "limits": self.limits_state(),
            "limits_redis_down_since": self.limiter.redis_down_since,
            "limits_local_share": self.limiter.local_share,
            "limits_redis_errors": self.limiter.redis_errors,
            "limits_settle_errors": self.limiter.settle_errors,
            # Each tenant's redisDown choice: these refuse while Redis is down.
            "tenants_fail_closed": closed[:100],
            "tenants_fail_open": len(self.auth.tenants) - len(closed),
            "refused": dict(self.refused),
            "shadow_denied": [
                {"tenant": t, "scope": sc, "metric": m, "requests": n}
                for (t, sc, m), n in sorted(self.shadow_denied.items())[:100]
            ],
        }

    def report(self) -> distribution_pb2.DoorStatus:
        """What the router tells the control plane with each snapshot answer (skyroute status)."""
        return distribution_pb2.DoorStatus(
            mode=self.mode(),
            anonymous_allowed=self.allow_anonymous,
            open_without_tenants=self.open_without_tenants,
            tenants=len(self.auth.tenants),
            keys=len(self.auth.keys),
            limits=self.limits_state(),
            tenants_fail_closed=len(self.fail_closed()),
            shadow_denied=sum(self.shadow_denied.values()),
        )

    async def identify(
        self,
        authorization: str | None,
        api_key: str | None = None,
        tenant_header: str = "",
        tier_header: str = "",
    ) -> Identity:
        if not self.auth.tenants:
            if self.open_without_tenants:
                # An open router (a flag) and no Tenant: every caller is served as before
                # this stage existed (its headers trusted, no limits).
                return Identity(tenant_header, "", "anonymous", "", tier_header, ANONYMOUS)
            # Secure by default: nobody to authenticate against, so nobody gets in.
            self._count("unauthenticated")
            raise invalid_key(NO_TENANT)
        try:
            return await self.auth.authenticate(
                credential(authorization, api_key), tenant_header, tier_header
            )
        except Exception:
            self._count("unauthenticated")
            raise

    def authorize(self, ident: Identity, policy: str) -> None:
        try:
            self.auth.authorize(ident, policy)
        except Exception:
            self._count("forbidden")
            raise

    def pressure_pool(self, ident: Identity) -> str | None:
        return self._pressure.get(ident.account) if ident.account else None

    def _count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    async def admit(
        self,
        ident: Identity,
        request_id: str,
        policy: str,
        model: str,
        est: Estimate,
        hold_ms: int,
        now: dt.datetime | None = None,
    ) -> Admission:
        adm = Admission(ident, est)
        if ident.anonymous:
            return adm
        when = now.timestamp() if now is not None else time.time()
        checks = plan(ident.rules, ident.key_id, policy, model, est, when, hold_ms)
        if not checks:
            return adm
        # The hold's own id: the request id is the client's (x-request-id), and two
        # requests of one tenant may carry the same one at once (a client's retry racing
        # its original, or the demo's two arms); their holds must not collide.
        res = await self.limiter.reserve(
            ident.account, f"{request_id}/{new_id()}", checks, hold_ms, ident.rules.fail_open
        )
        d = res.decision
        adm.headers = ratelimit_headers(d)
        self._learn_pressure(ident, d)
        if d.shadow_denied:  # counted and reported, never enforced
            for c in d.shadow_denied:
                k = (ident.account, c.scope, c.metric)
                self.shadow_denied[k] = self.shadow_denied.get(k, 0) + 1
        if not d.allowed and d.denied is not None:
            c = d.denied
            wait = d.retry_after_ms / 1000
            if c.kind == "budget":
                self._count("insufficient_quota")
                raise insufficient_quota(
                    f"Tenant {ident.account} has used its {c.scope.split(':', 1)[1]} budget "
                    f"for this period; it resets in {wait:.0f}s."
                    if wait
                    else f"Tenant {ident.account} has used its {c.scope.split(':', 1)[1]} budget.",
                    wait or None,
                )
            self._count("rate_limited")
            what = {"requests": "requests", "tokens": "tokens", "concurrent": "requests"}
            unit = "at once" if c.metric == "concurrent" else "per min"
            raise rate_limited(
                f"Rate limit reached for {ident.account} ({c.scope}) on {c.metric}: "
                f"limit {int(c.limit)} {unit}. Please try again in {wait:.3g}s.",
                wait,
                adm.headers,
                what[c.metric],
            )
        adm.reservation = res
        if ident.rules.budgets:
            for s in d.states:
                if s.check.kind == "budget" and s.granted < s.check.cost:
                    allowed = est.affordable_completion(s.granted)
                    adm.max_tokens = (
                        allowed if adm.max_tokens is None else min(adm.max_tokens, allowed)
                    )
        return adm

    def _learn_pressure(self, ident: Identity, d: Decision) -> None:
        by_name = ident.rules.route_budgets
        if not by_name:
            return
        pool = None
        for s in d.states:
            b = by_name.get(s.check.scope)
            if b is not None:
                used = 1.0 - s.remaining / max(s.check.limit, 1.0)
                if used >= b.soft_share:
                    pool = b.pool
                    break
        if pool is None:
            self._pressure.pop(ident.account, None)
        else:
            self._pressure[ident.account] = pool

    async def settle(
        self, adm: Admission, prompt_tokens: int, completion_tokens: int, cost_usd: float
    ) -> bool:
        """Settle from reported usage (tokens and USD at the snapshot's prices)."""
        if adm.reservation is None:
            return False
        return await self.limiter.settle(
            adm.reservation, prompt_tokens + completion_tokens, cost_usd * 1e9
        )

    def settle_soon(
        self, adm: Admission, prompt_tokens: int, completion_tokens: int, cost_usd: float
    ) -> None:
        """Settle without holding the answer back: an in-process reservation at once,
        a Redis one in a background task (the request waited for one round trip, the
        reservation; :meth:`settled` waits for these at shutdown)."""
        res = adm.reservation
        if res is None:
            return
        tokens, nano = prompt_tokens + completion_tokens, cost_usd * 1e9
        if self.limiter.in_process(res):
            self.limiter.settle_now(res, tokens, nano)
            return
        if not self.limiter.take(res):
            return
        task = asyncio.get_running_loop().create_task(self.limiter.settle_taken(res, tokens, nano))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def settled(self, timeout_s: float = 2.0) -> int:
        """Wait (at most ``timeout_s``) for background settlements; how many were left."""
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=timeout_s)
        return len(self._settling)
