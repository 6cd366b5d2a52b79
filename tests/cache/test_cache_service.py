"""ResponseCache as the engine uses it: exact and semantic hits, hard scopes, counters."""

from __future__ import annotations

import asyncio

from cachekit import probe, result, rule, scope

from skyroute.router.cache import EXACT, SEMANTIC, ResponseCache, request_params
from skyroute.router.providers.types import ChatRequest


def test_exact_and_paraphrase_hits_and_unrelated_miss() -> None:
    async def run() -> None:
        c = ResponseCache()
        c.store(probe(c, "How do I reset my password?"), rule(), result("A"), "flash")
        hit = await c.lookup(probe(c, "how do i reset my password"), rule())
        assert hit is not None and hit.layer == EXACT and hit.similarity == 1.0
        assert hit.answer.content == "A" and hit.answer.model == "flash"
        near = await c.lookup(probe(c, "How can I reset my password?"), rule())
        assert near is not None and near.layer == SEMANTIC and 0.9 <= near.similarity < 1.0
        assert await c.lookup(probe(c, "How do I reset my username?"), rule()) is None
        assert await c.lookup(probe(c, "my password reset email never arrived"), rule()) is None
        stats = c.stats()["intents"]["faq.account"]
        assert stats == {
            "lookups": 4,
            "exact_hits": 1,
            "semantic_hits": 1,
            "stores": 1,
            "hit_rate": 0.5,
            "flagged_false_hits": 0,
            "false_hit_estimate": 0.0,
            "false_hit_upper_95": 0.7301,  # one semantic hit, none flagged: says little
            "threshold": rule().threshold,
            "max_false_hit_rate": None,
        }
        assert c.stats()["thresholds"] == {"faq.account": rule().threshold}

    asyncio.run(run())


def test_request_params_cover_every_field_but_messages_and_tools() -> None:
    req = ChatRequest(
        messages=[{"role": "user", "content": "hi"}], tools=[], max_tokens=5, temperature=0.1
    )
    params = request_params(req)
    assert "messages" not in params and "tools" not in params
    assert params["max_tokens"] == 5 and params["temperature"] == 0.1


def test_other_scope_never_sees_the_entry() -> None:
    async def run() -> None:
        c = ResponseCache()
        c.store(
            probe(c, "What is your refund policy?", scope(tenant="a")),
            rule(),
            result("A's policy"),
            "m",
        )
        for other in (
            scope(tenant="b"),
            scope(locale="de"),
            scope(safety="strict"),
            scope(intent="faq.billing"),
            scope(policy="other"),
        ):
            assert await c.lookup(probe(c, "What is your refund policy?", other), rule()) is None
        assert (
            await c.lookup(probe(c, "What is your refund policy?", scope(tenant="a")), rule())
            is not None
        )

    asyncio.run(run())
