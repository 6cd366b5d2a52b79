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

Keys are scoped by the caller's tenant and the policy, so two tenants using
the same key string never see each other's responses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from skyroute.router.logs import event

log = logging.getLogger("skyroute.router.idempotency")
_PENDING = b"\x00pending"


@dataclass(slots=True)
class Claim:
    """Either we own the key (``stored`` is None) or here is the earlier response."""

    key: str
    stored: dict[str, Any] | None = None


class IdempotencyStore(Protocol):
    async def claim(self, key: str, wait_s: float) -> Claim: ...
    async def complete(self, key: str, record: dict[str, Any], ttl_s: float) -> None: ...
    async def release(self, key: str) -> None: ...


class MemoryStore:
    """In-process store: futures for in-flight keys, records with expiry for done ones."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._inflight: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self._done: dict[str, tuple[float, dict[str, Any]]] = {}

    async def claim(self, key: str, wait_s: float) -> Claim:
        deadline = time.monotonic() + wait_s
        while True:
            done = self._done.get(key)
            if done is not None:
                if done[0] > time.monotonic():
                    return Claim(key, done[1])
                del self._done[key]
            fut = self._inflight.get(key)
            if fut is None:
                self._inflight[key] = asyncio.get_running_loop().create_future()
                return Claim(key)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"idempotency key {key!r} is still in flight")
            try:
                record = await asyncio.wait_for(asyncio.shield(fut), remaining)
            except TimeoutError:
                raise TimeoutError(f"idempotency key {key!r} is still in flight") from None
            if record is not None:
                return Claim(key, record)
            # The first request failed and released the key: try to claim it again.

    async def complete(self, key: str, record: dict[str, Any], ttl_s: float) -> None:
        if len(self._done) >= self.max_entries:
            now = time.monotonic()
            for k in [k for k, (exp, _) in self._done.items() if exp <= now] or list(self._done)[
                : self.max_entries // 10 or 1
            ]:
                del self._done[k]
        self._done[key] = (time.monotonic() + ttl_s, record)
        fut = self._inflight.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(record)

    async def release(self, key: str) -> None:
        fut = self._inflight.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(None)


class RedisStore:
    """Shared store for several routers; any Redis failure means 'no deduplication'."""

    def __init__(self, url: str, prefix: str = "skyroute:idem:") -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.prefix = prefix
        self.poll_s = 0.02

    async def claim(self, key: str, wait_s: float) -> Claim:
        k = self.prefix + key
        deadline = time.monotonic() + wait_s
        try:
            while True:
                # The pending marker expires on its own if its owner dies mid-request.
                if await self._redis.set(k, _PENDING, nx=True, px=int(wait_s * 1000) + 1000):
                    return Claim(key)
                value = await self._redis.get(k)
                if value is not None and value != _PENDING:
                    return Claim(key, orjson.loads(value))
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"idempotency key {key!r} is still in flight")
                await asyncio.sleep(self.poll_s)
        except TimeoutError:
            raise
        except Exception as e:  # Redis down: serve without deduplication
            event(log, "idempotency_unavailable", logging.WARNING, op="claim", error=repr(e))
            return Claim(key)

    async def complete(self, key: str, record: dict[str, Any], ttl_s: float) -> None:
        try:
            await self._redis.set(self.prefix + key, orjson.dumps(record), px=int(ttl_s * 1000))
        except Exception as e:
            event(log, "idempotency_unavailable", logging.WARNING, op="complete", error=repr(e))

    async def release(self, key: str) -> None:
        try:
            await self._redis.delete(self.prefix + key)
        except Exception as e:
            event(log, "idempotency_unavailable", logging.WARNING, op="release", error=repr(e))
