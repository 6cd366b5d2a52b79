"""One embedding per request, shared by the intent classifier and the semantic cache."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from skyroute.router.cache import ResponseCache, Scope, rule_for
from skyroute.router.decide import decide, signals_from_messages
from skyroute.router.embed import (
    EMBED_CHARS,
    EMBEDDERS,
    Embeddings,
    HashingEmbedder,
    Vector,
    load_embedder,
)
from skyroute.router.embed.text import analyze
from skyroute.router.providers.types import ChatResult
from skyroute.router.table import CacheSettings, build_table
from skyroute.v1 import snapshot_pb2 as pb


class Counting(HashingEmbedder):
    """The built-in embedder, counting how often it runs (``embed`` goes through here)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def embed_tokens(self, tokens: list[str]) -> Vector:
        self.calls += 1
        return super().embed_tokens(tokens)


def table_with_examples() -> object:
    policy = pb.Policy(
        name="p",
        version="v",
        default_pool="pool",
        intent_min_similarity=0.3,
        intents=[
            pb.Intent(
                name="faq.refund",
                keywords=["refund policy"],
                examples=["how do I get my money back for a return"],
            )
        ],
        cache=pb.CachePolicy(enabled=True, intents=["faq.refund"]),
    )
    cand = pb.Candidate(model="m", provider="openai", endpoint="http://127.0.0.1:1/x")
    snap = pb.Snapshot(
        version="sha256:x",
        default_policy="p",
        policies=[policy],
        pools=[pb.Pool(name="pool", candidates=[cand])],
    )
    return build_table(snap).policy("p")


def test_classifier_and_cache_share_one_embedding() -> None:
    table = table_with_examples()
    counting = Counting()
    table.embedder = counting  # type: ignore[attr-defined]
    question = "How do I get my money back for a return I made?"
    messages = [{"role": "user", "content": question}]
    s = signals_from_messages(messages, False)
    d = decide(table, s)  # type: ignore[arg-type]
    assert d.intent_source == "embedding" and counting.calls == 1 and len(s.embeddings) == 1

    cache = ResponseCache(embedder=counting)
    scope = Scope("p", "t", "en", "", d.intent)
    probe = cache.probe(scope, messages, {}, [], s.embeddings)
    assert probe is not None
    vec = probe.vector()
    assert counting.calls == 1, "the cache embedded the question a second time"
    assert np.array_equal(vec, counting.embed(question.lower()))

    # Without the request's embeddings the cache embeds on its own (once).
    alone = cache.probe(scope, messages, {}, [])
    assert alone is not None
    calls = counting.calls
    alone.vector()
    alone.vector()
    assert counting.calls == calls + 1


def test_embeddings_are_keyed_by_embedder_and_text() -> None:
    e = Embeddings()
    a, b = HashingEmbedder(), HashingEmbedder(dim=256)
    va = e.get(a, "where is my parcel")
    assert e.get(a, "where is my parcel") is va
    assert e.get(b, "where is my parcel").shape == (256,)
    assert e.get(a, "where is my order") is not va
    # Only the first EMBED_CHARS characters are read.
    long = "x" * EMBED_CHARS
    assert e.get(a, long + " more words") is e.get(a, long)
    assert len(e) == 4


def test_long_questions_are_served_from_the_exact_layer_only() -> None:
    async def run() -> None:
        cache = ResponseCache()
        settings = CacheSettings(True, frozenset({"faq.x"}), 0.9, 600.0, 100)
        rule = rule_for(settings, "faq.x")
        scope = Scope("p", "t", "en", "", "faq.x")
        stem = "please tell me how returns work " * (EMBED_CHARS // 32 + 1)
        stored = cache.probe(scope, [{"role": "user", "content": stem + "for shoes"}], {}, [])
        assert stored is not None and not stored.vector().any()
        answer = ChatResult("shoes: 30 days", [], "stop", 10, 5)
        assert cache.store(stored, rule, answer, "m")
        same = cache.probe(scope, [{"role": "user", "content": stem + "for shoes"}], {}, [])
        other = cache.probe(scope, [{"role": "user", "content": stem + "for hats"}], {}, [])
        assert same is not None and other is not None
        hit = await cache.lookup(same, rule)
        assert hit is not None and hit.similarity == 1.0
        # The same first EMBED_CHARS characters, another question: never a semantic hit.
        assert await cache.lookup(other, rule) is None

    asyncio.run(run())


def test_the_packed_embedder_sums_every_feature() -> None:
    e = HashingEmbedder()
    v = e.embed("How do I reset my password?")
    assert v.dtype == np.float32 and abs(float(v @ v) - 1.0) < 1e-5
    # Repeated tokens count once; the order of a pair does not matter; empty text is zero.
    assert np.allclose(e.embed("free shipping"), e.embed("shipping free"))
    assert np.allclose(e.embed("shipping shipping free"), e.embed("shipping free"))
    assert not e.embed("").any() and not e.embed("?!").any()
    assert np.array_equal(
        e.embed_tokens(analyze("Reset my password")), e.embed("reset my password")
    )
    # Stable across instances (pods): same key, same vector.
    assert np.array_equal(
        HashingEmbedder().embed("where is my parcel"), e.embed("where is my parcel")
    )


def test_embedders_by_name() -> None:
    assert next(iter(EMBEDDERS)) == "hashing"
    assert load_embedder("").name == load_embedder("hashing").name == "hashing-512"
    with pytest.raises(ValueError, match="unknown cache embedder 'nope'"):
        load_embedder("nope")
