"""The Redis backend against a real redis-server: sharing, TTL, walls, and failing soft."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import redis.asyncio as aioredis
from cachekit import probe, result, rule, scope

from skyroute.router.cache import EXACT, SEMANTIC, ResponseCache
from skyroute.router.cache.redis_backend import RedisBackend

from redis_server import RedisProcess


def pod(url: str, **kw: object) -> ResponseCache:
    return ResponseCache(RedisBackend(url, timeout_s=0.5, **kw))  # type: ignore[arg-type]


def test_two_pods_share_entries_both_ways(redis_server: RedisProcess) -> None:
    async def run() -> None:
        a, b = pod(redis_server.url), pod(redis_server.url)
        a.store(probe(a, "How do I reset my password?"), rule(), result("A"), "m1")
        await a.backend.drain()
        hit = await b.lookup(probe(b, "How do I reset my password?"), rule())
        assert hit is not None and hit.layer == EXACT and hit.answer.content == "A"
        hit = await b.lookup(probe(b, "How can I reset my password?"), rule())
        assert hit is not None and hit.layer == SEMANTIC and hit.answer.model == "m1"
        assert len(b) == 1  # mirrored from the partition's log
        b.store(probe(b, "What is your refund policy?"), rule(), result("R"), "m2")
        await b.backend.drain()
        hit = await a.lookup(probe(a, "What's your refund policy?"), rule())
        assert hit is not None and hit.answer.content == "R"
        # Walls hold across pods too.
        assert (
            await b.lookup(probe(b, "How do I reset my password?", scope(tenant="x")), rule())
            is None
        )
        assert await b.lookup(probe(b, "How do I reset my username?"), rule()) is None
        await a.close()
        await b.close()

    asyncio.run(run())


def test_ttl_expires_in_redis_and_in_mirrors(redis_server: RedisProcess) -> None:
    async def run() -> None:
        a, b = pod(redis_server.url), pod(redis_server.url)
        a.store(probe(a, "Do you ship to Canada?"), rule(ttl_s=1), result("yes"), "m")
        await a.backend.drain()
        assert await b.lookup(probe(b, "Can you ship to Canada?"), rule()) is not None
        await asyncio.sleep(1.2)
        assert await b.lookup(probe(b, "Do you ship to Canada?"), rule()) is None
        assert await b.lookup(probe(b, "Can you ship to Canada?"), rule()) is None
        await a.close()
        await b.close()

    asyncio.run(run())


def test_a_forged_or_colliding_entry_is_never_served(redis_server: RedisProcess) -> None:
    async def run() -> None:
        c = pod(redis_server.url)
        p = probe(c, "What is your refund policy?")
        backend = c.backend
        assert isinstance(backend, RedisBackend)
        raw = aioredis.Redis.from_url(redis_server.url)
        forged = (
            b'{"l":"v1\\u001fother-tenant","c":"secret","f":"stop","pt":1,"ct":1,"m":"m","q":"q"}'
        )
        await raw.set(f"{backend.prefix}{p.partition}:e:{p.text_key}", forged)
        await raw.xadd(f"{backend.prefix}{p.partition}:log", {"k": "junk", "v": b"\x00"})
        assert await c.lookup(p, rule()) is None
        assert await c.lookup(probe(c, "What's your refund policy?"), rule()) is None
        await raw.aclose()
        await c.close()

    asyncio.run(run())


def test_outage_and_hang_are_fast_misses_then_recovery(redis_server: RedisProcess) -> None:
    async def run() -> None:
        c = ResponseCache(RedisBackend(redis_server.url, timeout_s=0.05))
        backend = c.backend
        assert isinstance(backend, RedisBackend)
        c.store(probe(c, "How do I delete my account?"), rule(), result("D"), "m")
        await backend.drain()
        assert await c.lookup(probe(c, "How do I delete my account?"), rule()) is not None

        # A hung server (stopped process: connections open, no answers).
        assert redis_server.p is not None
        os.kill(redis_server.p.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            assert await c.lookup(probe(c, "How do I delete my account?"), rule()) is None
            assert time.monotonic() - t0 < 0.5
            t0 = time.monotonic()
            for _ in range(100):  # marked down: no calls at all for the back-off
                assert await c.lookup(probe(c, "How do I delete my account?"), rule()) is None
                c.store(probe(c, "Is there a free trial?"), rule(), result("T"), "m")
            assert time.monotonic() - t0 < 0.5
            s = c.stats()
            assert s["errors"] >= 1 and s["skipped_while_down"] >= 100 and s["down"]
            assert s["dropped_writes"] >= 100
        finally:
            os.kill(redis_server.p.pid, signal.SIGCONT)

        # Killed outright: still misses, still fast.
        redis_server.kill()
        await asyncio.sleep(0.6)  # past the first back-off
        t0 = time.monotonic()
        assert await c.lookup(probe(c, "How do I delete my account?"), rule()) is None
        assert time.monotonic() - t0 < 0.5

        # Back: the cache works again once the back-off has passed.
        redis_server.start()
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            c.store(probe(c, "Is there a free trial?"), rule(), result("T"), "m")
            await backend.drain()
            if await c.lookup(probe(c, "Is there a free trial?"), rule()) is not None:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"no recovery: {c.stats()}")
        assert not c.stats()["down"]
        await c.close()

    asyncio.run(run())


def test_mirrors_are_bounded(redis_server: RedisProcess) -> None:
    async def run() -> None:
        writer = pod(redis_server.url)
        reader = pod(redis_server.url, mirror_max_entries=20)
        for i in range(60):
            sc = scope(tenant=f"t{i % 3}")
            writer.store(
                probe(writer, f"question {i} about the shipping options", sc),
                rule(),
                result("x"),
                "m",
            )
        await writer.backend.drain()
        for t in range(3):
            sc = scope(tenant=f"t{t}")
            await reader.lookup(probe(reader, "what are the shipping options", sc), rule())
        assert 0 < len(reader) <= 20
        await writer.close()
        await reader.close()

    asyncio.run(run())
