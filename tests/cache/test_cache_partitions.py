"""Property: no lookup ever returns an entry of another tenant, locale or safety class.

Hypothesis draws a cache filled with questions from a small vocabulary
(so the same and near-same questions exist in many partitions, which is
what makes leaks possible) under random scopes and system prompts, then
looks questions up under random scopes. Every stored answer names the
scope it was stored under; a hit must name the probe's own scope. Each
example also checks the positive side (the probe's own entry is found), so
the property cannot pass by never hitting. Run against the in-process
backend and against a real redis-server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from cachekit import probe, result, rule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyroute.router.cache import ResponseCache, Scope
from skyroute.router.cache.redis_backend import RedisBackend

from redis_server import RedisProcess, start_redis

QUESTIONS = [
    "How do I reset my password?",
    "How can I reset my password?",
    "how do i reset my password",
    "What is your refund policy?",
    "What's your refund policy?",
    "How do I cancel my order?",
    "How can I cancel my order?",
    "Do you ship to Canada?",
    "Can you ship to Canada?",
]
SYSTEMS = ["You are a support agent.", "You are a support agent for minors."]

scopes = st.builds(
    Scope,
    policy=st.just("support"),
    tenant=st.sampled_from(["acme", "globex", "initech"]),
    locale=st.sampled_from(["en", "de", "en-GB"]),
    safety_class=st.sampled_from(["standard", "strict", ""]),
    intent=st.sampled_from(["faq.account", "faq.orders"]),
)
entries = st.lists(
    st.tuples(scopes, st.sampled_from(SYSTEMS), st.sampled_from(QUESTIONS)), min_size=1, max_size=25
)
queries = st.lists(
    st.tuples(scopes, st.sampled_from(SYSTEMS), st.sampled_from(QUESTIONS)), min_size=1, max_size=10
)


def tag(sc: Scope, system: str) -> str:
    return f"{sc.tenant}|{sc.locale}|{sc.safety_class}|{sc.intent}|{system}"


async def check(
    cache: ResponseCache, stored: list[tuple[Scope, str, str]], asked: list[tuple[Scope, str, str]]
) -> None:
    r = rule()
    for sc, system, q in stored:
        cache.store(probe(cache, q, sc, system=system), r, result(tag(sc, system)), "m")
    await cache.backend.drain()
    for sc, system, q in asked + stored:
        hit = await cache.lookup(probe(cache, q, sc, system=system), r)
        if hit is not None:
            assert hit.answer.content == tag(sc, system), (sc, system, q, hit)
    # Positive side: every stored question is found again under its own scope.
    for sc, system, q in stored:
        hit = await cache.lookup(probe(cache, q, sc, system=system), r)
        assert hit is not None and hit.answer.content == tag(sc, system)


@settings(max_examples=200, deadline=None)
@given(entries, queries)
def test_in_process_lookup_never_crosses_scope(stored, asked) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(check(ResponseCache(), stored, asked))


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisProcess]:
    server = start_redis()
    yield server
    server.stop()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries, queries)
def test_redis_lookup_never_crosses_scope(shared_redis, stored, asked) -> None:  # type: ignore[no-untyped-def]
    async def run() -> None:
        # A fresh prefix per example: an empty cache without flushing the server.
        backend = RedisBackend(shared_redis.url, prefix=f"t{uuid.uuid4().hex}:", timeout_s=1.0)
        try:
            await check(ResponseCache(backend), stored, asked)
        finally:
            await backend.close()

    asyncio.run(run())


def test_who_asks_is_not_part_of_the_key_what_shapes_the_answer_is() -> None:
    from skyroute.router.cache.keys import request_params
    from skyroute.router.providers.types import ChatRequest

    msgs = [{"role": "user", "content": "how do I reset my password?"}]
    a = request_params(ChatRequest(msgs, options={"user": "u1", "seed": 7}))
    b = request_params(ChatRequest(msgs, options={"user": "u2", "seed": 7}))
    c = request_params(ChatRequest(msgs, options={"user": "u1", "seed": 8}))
    assert a == b and a != c
