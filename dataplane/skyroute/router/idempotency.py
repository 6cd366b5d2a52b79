"""Idempotency keys: a client's retry never produces a second tool action.

A request carrying an ``Idempotency-Key`` (HTTP header or gRPC field) claims
the key before it calls any model. While the first request is in flight a
repeated key waits for it; once it completed, the repeat gets the stored
response without an upstream call. A request that failed releases its key,
so a client retry after a failure is tried again (a failure never produced a
tool call worth protecting: requests that could have, are not retried inside
the router either, see ``engine``).

Two stores share one interface: in-process (the default; one router) and
Redis (``--redis URL``; several routers), where a key is claimed with
``SET NX PX`` and waiters poll for the stored result. A Redis failure
degrades to no deduplication for that request, never to an error.

Every claim carries an owner token, and completing or releasing a key is a
compare-and-set on it (one Lua script each, atomic in Redis): only the owner
of the pending marker may replace it with the answer or delete it. The
marker expires on its own (after the request deadline and a second) so a
router that died does not hold the key forever; if a stalled owner comes
back after that and another router has claimed the key meanwhile, its
late completion or release changes nothing (``lost`` counts them) instead
of overwriting the new owner's answer or freeing the key for a third
execution.

Keys are scoped by the caller's tenant and the policy, so two tenants using
the same key string never see each other's responses.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from skyroute.router.logs import event

log = logging.getLogger("skyroute.router.idempotency")
_PENDING = b"\x00pending"

# KEYS[1] the key; ARGV[1] our pending marker, ARGV[2] the record, ARGV[3] its TTL (ms).
_COMPLETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
# KEYS[1] the key; ARGV[1] our pending marker.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


@dataclass(slots=True)
class Claim:
    """Either we own the key (``stored`` is None, ``token`` is ours) or here is the earlier
    response."""

    key: str
    stored: dict[str, Any] | None = None
    token: str = ""


class IdempotencyStore(Protocol):
    async def claim(self, key: str, wait_s: float) -> Claim: ...
    async def complete(self, claim: Claim, record: dict[str, Any], ttl_s: float) -> None: ...
    async def release(self, claim: Claim) -> None: ...


class MemoryStore:
    """In-process store: futures for in-flight keys, records with expiry for done ones."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._inflight: dict[str, tuple[str, asyncio.Future[dict[str, Any] | None]]] = {}
        self._done: dict[str, tuple[float, dict[str, Any]]] = {}
        self.lost = 0

    async def claim(self, key: str, wait_s: float) -> Claim:
        deadline = time.monotonic() + wait_s
        while True:
            done = self._done.get(key)
            if done is not None:
                if done[0] > time.monotonic():
                    return Claim(key, done[1])
                del self._done[key]
            held = self._inflight.get(key)
            if held is None:
                token = secrets.token_hex(8)
                self._inflight[key] = (token, asyncio.get_running_loop().create_future())
                return Claim(key, token=token)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"idempotency key {key!r} is still in flight")
            try:
                record = await asyncio.wait_for(asyncio.shield(held[1]), remaining)
            except TimeoutError:
                raise TimeoutError(f"idempotency key {key!r} is still in flight") from None
            if record is not None:
                return Claim(key, record)
            # The first request failed and released the key: try to claim it again.

    def _take(self, claim: Claim) -> asyncio.Future[dict[str, Any] | None] | None:
        """The key's waiters if ``claim`` still owns it (and it is no longer in flight)."""
        held = self._inflight.get(claim.key)
        if held is None or held[0] != claim.token:
            self.lost += 1
            return None
        del self._inflight[claim.key]
        return held[1]

    async def complete(self, claim: Claim, record: dict[str, Any], ttl_s: float) -> None:
        fut = self._take(claim)
        if fut is None:
            return
        if len(self._done) >= self.max_entries:
            now = time.monotonic()
            for k in [k for k, (exp, _) in self._done.items() if exp <= now] or list(self._done)[
                : self.max_entries // 10 or 1
            ]:
                del self._done[k]
        self._done[claim.key] = (time.monotonic() + ttl_s, record)
        if not fut.done():
            fut.set_result(record)

    async def release(self, claim: Claim) -> None:
        fut = self._take(claim)
        if fut is not None and not fut.done():
            fut.set_result(None)


class RedisStore:
    """Shared store for several routers; any Redis failure means 'no deduplication'."""

    def __init__(self, url: str, prefix: str = "skyroute:idem:") -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._complete = self._redis.register_script(_COMPLETE)
        self._release = self._redis.register_script(_RELEASE)
        self.prefix = prefix
        self.poll_s = 0.02
        # Completions and releases refused because the claim had expired and moved on.
        self.lost = 0

    async def claim(self, key: str, wait_s: float) -> Claim:
        k = self.prefix + key
        token = secrets.token_hex(8)
        marker = _PENDING + b":" + token.encode()
        deadline = time.monotonic() + wait_s
        try:
            while True:
                # The pending marker expires on its own if its owner dies mid-request.
                if await self._redis.set(k, marker, nx=True, px=int(wait_s * 1000) + 1000):
                    return Claim(key, token=token)
                value = await self._redis.get(k)
                if isinstance(value, bytes) and not value.startswith(_PENDING):
                    return Claim(key, orjson.loads(value))
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"idempotency key {key!r} is still in flight")
                await asyncio.sleep(self.poll_s)
        except TimeoutError:
            raise
        except Exception as e:  # Redis down: serve without deduplication
            event(log, "idempotency_unavailable", logging.WARNING, op="claim", error=repr(e))
            return Claim(key)

    async def complete(self, claim: Claim, record: dict[str, Any], ttl_s: float) -> None:
        """Store the answer, only if the pending marker is still ours."""
        await self._owned(
            "complete", self._complete, claim, orjson.dumps(record), int(ttl_s * 1000)
        )

    async def release(self, claim: Claim) -> None:
        """Free the key for a retry, only if the pending marker is still ours."""
        await self._owned("release", self._release, claim)

    async def _owned(self, op: str, script: Any, claim: Claim, *args: bytes | int) -> None:
        if not claim.token:  # claimed while Redis was down: nothing of ours is there
            return
        marker = _PENDING + b":" + claim.token.encode()
        try:
            done = await script(keys=[self.prefix + claim.key], args=[marker, *args])
        except Exception as e:
            event(log, "idempotency_unavailable", logging.WARNING, op=op, error=repr(e))
            return
        if not done:
            self.lost += 1
            event(log, "idempotency_claim_lost", logging.WARNING, op=op, key=claim.key)
