"""Idempotency keys with Stripe's semantics: a client's retry never runs an action twice.

A request carrying an ``Idempotency-Key`` (HTTP header or gRPC field) claims
the key before it calls any model, together with a fingerprint of its body.
Then:

- a repeat while the first still runs waits for it (up to the request
  timeout), then gets 409;
- a repeat after it ended gets the stored result, without an upstream call:
  the answer, or, when the first failed after an attempt that may have
  reached the upstream (a timeout, a cut stream: it may have produced a tool
  call), the stored failure; the client must use a new key to try again;
- only a first request that certainly never reached an upstream (refused
  before any call, or every attempt failed with an answer from the provider,
  such as a 5xx) releases its key, so a retry runs it again
  (``wire.settlement`` decides, for both doors);
- a repeat with a different body is refused (422 naming the key).

Two stores share one interface: in-process (the default; one router) and
Redis (``--redis URL``; several routers), where a key is claimed with
``SET NX PX`` and waiters poll for the stored result. When Redis cannot be
reached the claim says so (``Claim.unavailable``): the doors then refuse a
request that offers a non-idempotent tool (fail closed) unless the policy
sets ``reliability.idempotencyUnavailable: failOpen``, and serve the others
without deduplication.

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


def _marker(token: str, fingerprint: str) -> bytes:
    """A pending claim's value: the owner's token, and the body's fingerprint if any."""
    marker = _PENDING + b":" + token.encode()
    return marker + b":" + fingerprint.encode() if fingerprint else marker


def _with_fp(record: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    return {**record, _FP: fingerprint} if fingerprint else record


def _split_fp(stored: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(the record as it was completed, the fingerprint it was claimed with)."""
    if _FP not in stored:
        return stored, ""
    rest = dict(stored)
    return rest, str(rest.pop(_FP))


@dataclass(slots=True)
class Claim:
    """Either we own the key (``stored`` is None, ``token`` is ours) or here is the earlier
    response.

    ``fingerprint``: the body the key was claimed with (kept with the result).
    ``mismatch``: the key was used with another request body (nothing is owned).
    ``unavailable``: the store could not be reached (nothing is deduplicated).
    """

    key: str
    stored: dict[str, Any] | None = None
    token: str = ""
    fingerprint: str = ""
    mismatch: bool = False
    unavailable: bool = False


_FP = "_fingerprint"


def _other_body(first: str, fingerprint: str) -> bool:
    return bool(first and fingerprint and first != fingerprint)


class IdempotencyStore(Protocol):
    async def claim(self, key: str, wait_s: float, fingerprint: str = "") -> Claim: ...
    async def complete(self, claim: Claim, record: dict[str, Any], ttl_s: float) -> None: ...
    async def release(self, claim: Claim) -> None: ...


class MemoryStore:
    """In-process store: futures for in-flight keys, records with expiry for done ones."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        # key -> (owner token, waiters, body fingerprint)
        self._inflight: dict[str, tuple[str, asyncio.Future[dict[str, Any] | None], str]] = {}
        self._done: dict[str, tuple[float, dict[str, Any]]] = {}
        self.lost = 0

    async def claim(self, key: str, wait_s: float, fingerprint: str = "") -> Claim:
        deadline = time.monotonic() + wait_s
        while True:
            done = self._done.get(key)
            if done is not None:
                if done[0] > time.monotonic():
                    stored, first = _split_fp(done[1])
                    if _other_body(first, fingerprint):
                        return Claim(key, mismatch=True)
                    return Claim(key, stored)
                del self._done[key]
            held = self._inflight.get(key)
            if held is None:
                token = secrets.token_hex(8)
                fut = asyncio.get_running_loop().create_future()
                self._inflight[key] = (token, fut, fingerprint)
                return Claim(key, token=token, fingerprint=fingerprint)
            if _other_body(held[2], fingerprint):
                return Claim(key, mismatch=True)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"idempotency key {key!r} is still in flight")
            try:
                record = await asyncio.wait_for(asyncio.shield(held[1]), remaining)
            except TimeoutError:
                raise TimeoutError(f"idempotency key {key!r} is still in flight") from None
            if record is not None:
                return Claim(key, record)
            # The first request never reached an upstream and released the key: claim again.

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
        self._done[claim.key] = (time.monotonic() + ttl_s, _with_fp(record, claim.fingerprint))
        if not fut.done():
            fut.set_result(record)

    async def release(self, claim: Claim) -> None:
        fut = self._take(claim)
        if fut is not None and not fut.done():
            fut.set_result(None)


class RedisStore:
    """Shared store for several routers; a Redis failure is reported as ``unavailable``."""

    def __init__(self, url: str, prefix: str = "skyroute:idem:") -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._complete = self._redis.register_script(_COMPLETE)
        self._release = self._redis.register_script(_RELEASE)
        self.prefix = prefix
        self.poll_s = 0.02
        # Completions and releases refused because the claim had expired and moved on.
        self.lost = 0

    async def claim(self, key: str, wait_s: float, fingerprint: str = "") -> Claim:
        k = self.prefix + key
        token = secrets.token_hex(8)
        marker = _marker(token, fingerprint)
        deadline = time.monotonic() + wait_s
        try:
            while True:
                # The pending marker expires on its own if its owner dies mid-request.
                if await self._redis.set(k, marker, nx=True, px=int(wait_s * 1000) + 1000):
                    return Claim(key, token=token, fingerprint=fingerprint)
                value = await self._redis.get(k)
                if isinstance(value, bytes) and value.startswith(_PENDING):
                    parts = value.split(b":")
                    first = parts[2].decode() if len(parts) > 2 else ""
                    if _other_body(first, fingerprint):
                        return Claim(key, mismatch=True)
                elif isinstance(value, bytes):
                    stored, first = _split_fp(orjson.loads(value))
                    if _other_body(first, fingerprint):
                        return Claim(key, mismatch=True)
                    return Claim(key, stored)
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"idempotency key {key!r} is still in flight")
                await asyncio.sleep(self.poll_s)
        except TimeoutError:
            raise
        except Exception as e:  # Redis down: the doors decide (fail closed for side effects)
            event(log, "idempotency_unavailable", logging.WARNING, op="claim", error=repr(e))
            return Claim(key, unavailable=True)

    async def complete(self, claim: Claim, record: dict[str, Any], ttl_s: float) -> None:
        """Store the answer (or failure), only if the pending marker is still ours."""
        body = orjson.dumps(_with_fp(record, claim.fingerprint))
        await self._owned("complete", self._complete, claim, body, int(ttl_s * 1000))

    async def release(self, claim: Claim) -> None:
        """Free the key for a retry, only if the pending marker is still ours."""
        await self._owned("release", self._release, claim)

    async def _owned(self, op: str, script: Any, claim: Claim, *args: bytes | int) -> None:
        if not claim.token:  # claimed while Redis was down: nothing of ours is there
            return
        marker = _marker(claim.token, claim.fingerprint)
        try:
            done = await script(keys=[self.prefix + claim.key], args=[marker, *args])
        except Exception as e:
            event(log, "idempotency_unavailable", logging.WARNING, op=op, error=repr(e))
            return
        if not done:
            self.lost += 1
            event(log, "idempotency_claim_lost", logging.WARNING, op=op, key=claim.key)
