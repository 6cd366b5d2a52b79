"""Idempotency claims are owned: only the owner of a pending marker completes or frees it.

Against a real redis-server, with one ``RedisStore`` per router (each its
own connection pool, as in separate router processes): router A claims a
key and stalls past its pending marker's expiry; router B claims the key and
executes. A's late completion and its release must change nothing, a third
router must wait for B (not execute), and every later request must get B's
answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from skyroute.router.idempotency import Claim, MemoryStore, RedisStore

from redis_server import RedisProcess, start_redis

KEY = "policy/tenant/order-42"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisProcess]:
    s = start_redis()
    try:
        yield s
    finally:
        s.stop()


def test_an_expired_claim_cannot_clobber_the_new_owner(server: RedisProcess) -> None:
    direct = redis.Redis.from_url(server.url)
    direct.flushall()

    async def scenario() -> None:
        a, b, c = RedisStore(server.url), RedisStore(server.url), RedisStore(server.url)
        executions: list[str] = []
        # Router A claims with the shortest deadline: its marker lives 1 s (deadline + 1 s).
        claim_a = await a.claim(KEY, wait_s=0.0)
        assert claim_a.stored is None and claim_a.token
        executions.append("a")
        # A stalls (a frozen process, a long GC); its marker expires on its own.
        while direct.exists(a.prefix + KEY):
            await asyncio.sleep(0.05)
        claim_b = await b.claim(KEY, wait_s=5.0)
        assert claim_b.stored is None and claim_b.token != claim_a.token
        executions.append("b")
        # A comes back: its answer and its release are refused, B's claim stands.
        await a.complete(claim_a, {"answer": "from a"}, ttl_s=60)
        await a.release(claim_a)
        assert a.lost == 2
        assert direct.get(a.prefix + KEY) == b"\x00pending:" + claim_b.token.encode()
        # A third router sees the key in flight (B's), so it waits instead of executing.
        with pytest.raises(TimeoutError):
            await c.claim(KEY, wait_s=0.3)
        waiting = asyncio.create_task(c.claim(KEY, wait_s=5.0))
        await b.complete(claim_b, {"answer": "from b"}, ttl_s=60)
        assert b.lost == 0
        replay = await waiting
        assert replay.stored == {"answer": "from b"}
        # Every later request, through any router, gets B's answer; A's is nowhere.
        for store in (a, b, c):
            assert (await store.claim(KEY, wait_s=1.0)).stored == {"answer": "from b"}
        # B's late release (say a retry path) cannot delete the stored answer either.
        await b.release(claim_b)
        assert (await c.claim(KEY, wait_s=1.0)).stored == {"answer": "from b"}
        assert executions == ["a", "b"]

    asyncio.run(scenario())


def test_memory_store_refuses_a_stranger() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        mine = await store.claim(KEY, wait_s=1.0)
        await store.complete(Claim(KEY, token="someone-else"), {"answer": "forged"}, 60)
        await store.release(Claim(KEY, token="someone-else"))
        assert store.lost == 2
        await store.complete(mine, {"answer": "mine"}, 60)
        assert (await store.claim(KEY, wait_s=1.0)).stored == {"answer": "mine"}

    asyncio.run(scenario())
