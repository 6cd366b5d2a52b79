"""Invalidation by entry, intent, tenant and policy version, in both backends.

The same scenario runs on the in-process backend and on two "pods" sharing a
real redis-server: what an invalidation names is gone for every pod (the one
that invalidated and the other, which never heard of it), what it does not
name is still served, and the cache's stats count it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from cachekit import probe, result, rule, scope

from skyroute.router.cache import InProcessBackend, ResponseCache
from skyroute.router.cache.backend import InvalidationFailed
from skyroute.router.cache.invalidate import Selector, SelectorError
from skyroute.router.cache.redis_backend import RedisBackend

from redis_server import RedisProcess

Q_ACCOUNT = "How do I reset my password?"
Q_REFUND = "What is your refund policy?"


async def fill(c: ResponseCache) -> None:
    """Answers for two tenants, two intents and two policy versions."""
    for tenant in ("acme", "globex"):
        for intent, q in (("faq.account", Q_ACCOUNT), ("faq.refunds", Q_REFUND)):
            sc = scope(tenant=tenant, intent=intent)
            version = "v2" if intent == "faq.refunds" and tenant == "globex" else "v1"
            stored = c.store(
                probe(c, q, sc), rule(intent=intent), result(f"{tenant}/{intent}"), "m", version
            )
            assert stored
    await c.backend.drain()


async def served(c: ResponseCache) -> set[str]:
    """What each (tenant, intent) is served now, by its exact question and a paraphrase."""
    out: set[str] = set()
    for tenant in ("acme", "globex"):
        for intent, q in (
            ("faq.account", Q_ACCOUNT),
            ("faq.account", "How can I reset my password?"),
            ("faq.refunds", Q_REFUND),
            ("faq.refunds", "What's your refund policy?"),
        ):
            hit = await c.lookup(
                probe(c, q, scope(tenant=tenant, intent=intent)), rule(intent=intent)
            )
            if hit is not None:
                out.add(hit.answer.content)
    return out


ALL = {"acme/faq.account", "acme/faq.refunds", "globex/faq.account", "globex/faq.refunds"}


Pods = Callable[[], Awaitable[tuple[ResponseCache, ResponseCache]]]


@pytest.fixture(params=["memory", "redis"])
def pods(request: pytest.FixtureRequest) -> Pods:
    """(the pod that invalidates, another pod); the same cache twice in process."""

    async def make() -> tuple[ResponseCache, ResponseCache]:
        if request.param == "memory":
            c = ResponseCache(InProcessBackend())
            return c, c
        url = request.getfixturevalue("redis_server").url
        a = ResponseCache(RedisBackend(url, timeout_s=0.5, prefix=f"t{id(request)}:"))
        b = ResponseCache(RedisBackend(url, timeout_s=0.5, prefix=f"t{id(request)}:"))
        return a, b

    return make


@pytest.mark.parametrize(
    ("selector", "left"),
    [
        (Selector(tenant="acme"), {"globex/faq.account", "globex/faq.refunds"}),
        (Selector(intent="faq.refunds"), {"acme/faq.account", "globex/faq.account"}),
        (Selector(policy_version="v2"), ALL - {"globex/faq.refunds"}),
        (Selector(tenant="globex", policy_version="v1"), ALL - {"globex/faq.account"}),
        (Selector(tenant="acme", intent="faq.account"), ALL - {"acme/faq.account"}),
        (Selector(tenant="nobody"), ALL),
    ],
)
def test_an_invalidation_removes_what_it_names_for_every_pod(
    pods: Pods, selector: Selector, left: set[str]
) -> None:
    async def run() -> None:
        a, b = await pods()
        await fill(a)
        assert await served(b) == ALL
        removed = await a.invalidate(selector)
        assert removed == len(ALL - left)
        assert await served(b) == left
        assert await served(a) == left
        stats = a.stats()["invalidations"]
        assert stats["entries_removed"] == removed
        assert stats["requests_by_selector"] == {k: 1 for k in selector.as_dict()}
        await a.close()
        if b is not a:
            await b.close()

    asyncio.run(run())


def test_an_entry_is_invalidated_by_the_id_its_hit_carried(pods: Pods) -> None:
    async def run() -> None:
        a, b = await pods()
        await fill(a)
        sc = scope(tenant="acme", intent="faq.account")
        hit = await b.lookup(probe(b, "How can I reset my password?", sc), rule())
        assert hit is not None and hit.entry
        assert await a.invalidate(Selector.parse({"entry": hit.entry})) == 1
        assert await b.lookup(probe(b, Q_ACCOUNT, sc), rule()) is None
        assert await b.lookup(probe(b, "How can I reset my password?", sc), rule()) is None
        assert await served(b) == ALL - {"acme/faq.account"}
        # Gone is gone: a second time removes nothing.
        assert await a.invalidate(Selector.parse({"entry": hit.entry})) == 0
        # A new answer for the same question is cached again afterwards.
        a.store(probe(a, Q_ACCOUNT, sc), rule(), result("fresh"), "m", "v3")
        await a.backend.drain()
        hit = await b.lookup(probe(b, Q_ACCOUNT, sc), rule())
        assert hit is not None and hit.answer.content == "fresh"
        await a.close()
        if b is not a:
            await b.close()

    asyncio.run(run())


def test_redis_down_is_a_failed_invalidation_not_a_silent_one(
    redis_server: RedisProcess,
) -> None:
    async def run() -> None:
        c = ResponseCache(RedisBackend(redis_server.url, timeout_s=0.2, store_timeout_s=0.3))
        redis_server.kill()
        with pytest.raises(InvalidationFailed):
            await c.invalidate(Selector(intent="faq.account"))
        assert c.stats()["invalidations"]["failures"] == 1
        await c.close()

    try:
        asyncio.run(run())
    finally:
        redis_server.start()


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ([], "JSON object"),
        ({}, "name what to invalidate"),
        ({"intents": "faq"}, "unknown field 'intents'"),
        ({"intent": 3}, "'intent' must be a non-empty string"),
        ({"tenant": ""}, "'tenant' must be a non-empty string"),
        ({"tenant": "x" * 300}, "at most 256"),
        ({"entry": "abc"}, "entry id"),
        ({"intent": "a\x1fb"}, "control character"),
    ],
)
def test_a_bad_selector_is_refused_naming_the_field(body: object, why: str) -> None:
    with pytest.raises(SelectorError, match=why):
        Selector.parse(body)


def test_a_version_invalidation_spares_an_answer_a_later_version_stored_again(
    pods: Pods,
) -> None:
    async def run() -> None:
        a, b = await pods()
        sc = scope(tenant="acme", intent="faq.account")
        a.store(probe(a, Q_ACCOUNT, sc), rule(), result("old"), "m", "v1")
        await a.backend.drain()
        a.store(probe(a, Q_ACCOUNT, sc), rule(), result("new"), "m", "v2")
        await a.backend.drain()
        assert await a.invalidate(Selector(policy_version="v1")) == 0
        hit = await b.lookup(probe(b, Q_ACCOUNT, sc), rule())
        assert hit is not None and hit.answer.content == "new"
        assert await a.invalidate(Selector(policy_version="v2")) == 1
        assert await b.lookup(probe(b, Q_ACCOUNT, sc), rule()) is None
        await a.close()
        if b is not a:
            await b.close()

    asyncio.run(run())


def test_an_entry_invalidated_as_wrong_counts_its_semantic_hits_as_false_hits(
    pods: Pods,
) -> None:
    async def run() -> None:
        a, _ = await pods()
        await fill(a)
        sc = scope(tenant="acme", intent="faq.account")
        entry = ""
        for q in ("How can I reset my password?", "How could I reset my password?", Q_ACCOUNT):
            hit = await a.lookup(probe(a, q, sc), rule())
            assert hit is not None
            entry = hit.entry
        before = a.stats()["intents"]["faq.account"]
        assert before["semantic_hits"] == 2 and before["exact_hits"] == 1
        assert before["false_hit_estimate"] == 0.0 and before["threshold"] == 0.9
        assert await a.invalidate(Selector.parse({"entry": entry, "wrong": True})) == 1
        after = a.stats()["intents"]["faq.account"]
        assert after["flagged_false_hits"] == 2  # the exact repeat is not the matcher's fault
        assert after["false_hit_estimate"] == 1.0 and after["false_hit_upper_95"] == 1.0
        assert a.stats()["invalidations"]["requests_by_selector"] == {"entry": 1, "wrong": 1}
        # The other intent's estimate is untouched; flagging the gone entry again adds nothing.
        assert await a.invalidate(Selector.parse({"entry": entry, "wrong": True})) == 0
        assert a.stats()["intents"]["faq.account"]["flagged_false_hits"] == 2
        await a.close()

    asyncio.run(run())


def test_wrong_goes_with_an_entry_alone() -> None:
    with pytest.raises(SelectorError, match="'wrong' goes with 'entry' alone"):
        Selector.parse({"intent": "faq", "wrong": True})
    with pytest.raises(SelectorError, match="'wrong' must be true or false"):
        Selector.parse({"entry": "a" * 32 + "." + "b" * 32, "wrong": "yes"})
