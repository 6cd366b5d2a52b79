"""The stored-response backends and the chain bound, on their own.

:class:`MemoryResponses` in process and :class:`RedisResponses` against a
real redis-server: entries are scoped by tenant, expire after the TTL
(a tiny one, polled), are bounded in size (and, in process, in count and
bytes, oldest out first); Redis being down is a failed write and an
:class:`StoreUnavailable` read. The pipeline stage refuses a chain longer
than :data:`MAX_DEPTH` and ids that are not response ids.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import orjson
import pytest

from skyroute.router.ingress import stored
from skyroute.router.ingress.guards.identity import ANONYMOUS, Identity
from skyroute.router.ingress.types import Inbound, Kept, Rejection
from skyroute.router.providers.types import ChatRequest
from skyroute.router.response_store import (
    MAX_ENTRY_BYTES,
    MAX_TTL_S,
    MemoryResponses,
    RedisResponses,
    ResponseStore,
    StoreUnavailable,
    checked_ttl,
)

from redis_server import RedisProcess, start_redis


@pytest.fixture(scope="module")
def server() -> Iterator[RedisProcess]:
    s = start_redis()
    try:
        yield s
    finally:
        s.stop()


async def _expires(store: ResponseStore) -> None:
    assert await store.put("shop", "resp_a", b"one")
    assert await store.get("shop", "resp_a") == b"one"
    assert await store.get("other", "resp_a") is None  # another tenant: no such entry
    assert not await store.delete("other", "resp_a")
    assert await store.get("shop", "resp_a") == b"one"
    deadline = time.monotonic() + 10
    while await store.get("shop", "resp_a") is not None:
        assert time.monotonic() < deadline, "the entry never expired"
        await asyncio.sleep(0.02)
    assert await store.put("shop", "resp_b", b"two")
    assert await store.delete("shop", "resp_b")
    assert await store.get("shop", "resp_b") is None
    assert not await store.put("shop", "resp_c", b"x" * (MAX_ENTRY_BYTES + 1))
    assert store.stats()["too_big"] == 1 and store.stats()["deleted"] == 1


def test_memory_entries_are_scoped_expire_and_are_bounded() -> None:
    asyncio.run(_expires(MemoryResponses(ttl_s=0.2)))

    async def bounded() -> None:
        store = MemoryResponses(max_entries=3, max_bytes=10)
        for i in range(4):
            assert await store.put("t", f"resp_{i}", b"abc")
        assert await store.get("t", "resp_0") is None  # the oldest went first
        assert [await store.get("t", f"resp_{i}") for i in (1, 2, 3)] == [b"abc"] * 3
        assert await store.put("t", "resp_big", b"0123456789")  # bytes: all others go
        assert store.stats()["entries"] == 1 and store.stats()["bytes"] == 10
        assert store.evicted == 4

    asyncio.run(bounded())


def test_redis_entries_are_scoped_expire_and_fail_cleanly(server: RedisProcess) -> None:
    asyncio.run(_expires(RedisResponses(server.url, ttl_s=0.2)))

    async def shared_then_down() -> None:
        one, two = RedisResponses(server.url), RedisResponses(server.url)
        assert await one.put("shop", "resp_z", b"kept")
        assert await two.get("shop", "resp_z") == b"kept"
        server.kill()
        try:
            assert not await one.put("shop", "resp_y", b"lost")
            with pytest.raises(StoreUnavailable):
                await two.get("shop", "resp_z")
            with pytest.raises(StoreUnavailable):
                await two.delete("shop", "resp_z")
            assert two.stats()["unavailable"] == 2
        finally:
            server.start()

    asyncio.run(shared_then_down())


def test_the_ttl_is_bounded() -> None:
    assert checked_ttl(MAX_TTL_S) == MAX_TTL_S
    for bad in (0.0, -1.0, MAX_TTL_S + 1):
        with pytest.raises(ValueError):
            checked_ttl(bad)


def _entry(depth: int) -> bytes:
    answer = {"content": "hello", "tool_calls": [], "model": "m"}
    return orjson.dumps(
        {"depth": depth, "messages": [{"role": "user", "content": "hi"}], "answer": answer}
    )


def test_a_chain_is_bounded_and_ids_are_checked() -> None:
    ident = Identity("shop", "shop", "key:1", "1", "standard", ANONYMOUS)

    async def scenario() -> None:
        store = MemoryResponses()
        await store.put("shop", "resp_ok", _entry(stored.MAX_DEPTH - 1))
        await store.put("shop", "resp_full", _entry(stored.MAX_DEPTH))
        sys = {"role": "system", "content": "rules"}
        inbound = Inbound(
            "auto",
            ChatRequest(messages=[sys, {"role": "user", "content": "next"}]),
            kept=Kept("resp_new", 0, previous="resp_ok", lead=1),
        )
        await stored.resume(store, ident, inbound)
        assert inbound.kept is not None and inbound.kept.depth == stored.MAX_DEPTH
        assert [m["content"] for m in inbound.chat.messages] == ["rules", "hi", "hello", "next"]
        inbound.kept.previous = "resp_full"
        with pytest.raises(Rejection) as too_long:
            await stored.resume(store, ident, inbound)
        assert too_long.value.param == "previous_response_id"
        assert too_long.value.code == "conversation_too_long"

    asyncio.run(scenario())
    for bad in ("resp_", "msg_1", "resp_a b", "resp_" + "x" * 101):
        with pytest.raises(Rejection) as r:
            stored.checked_id(bad, "previous_response_id")
        assert r.value.status == 400
