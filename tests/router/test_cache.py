"""The first response cache: partitions are hard, thresholds hold."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from skyroute.router.cache import ResponseCache
from skyroute.router.providers.types import ChatResult


def result(text: str) -> ChatResult:
    return ChatResult(text, [], "stop", 10, 5)


PART = ("p", "tenant-a", "en", "faq.password", "ctx")


def test_exact_and_similar_hits_and_unrelated_miss() -> None:
    c = ResponseCache()
    c.store(PART, "How do I reset my password?", result("A"), "flash", 60)
    hit = c.lookup(PART, "how do i reset my password", 0.9)
    assert hit is not None and hit[1] == 1.0 and hit[0].result.content == "A"
    near = c.lookup(PART, "How can I reset my passwords please", 0.9)
    assert near is not None and near[1] >= 0.9
    assert c.lookup(PART, "my password reset email never arrived", 0.9) is None


def test_ttl_expiry_and_lru_bound() -> None:
    c = ResponseCache(max_entries=2)
    c.store(PART, "one question", result("1"), "m", 0.0)
    assert c.lookup(PART, "one question", 0.9) is None  # expired at once
    c.store(PART, "alpha", result("a"), "m", 60)
    c.store(PART, "beta", result("b"), "m", 60)
    c.store(PART, "gamma", result("g"), "m", 60)
    assert len(c) == 2
    assert c.lookup(PART, "alpha", 0.9) is None


words = st.sampled_from(["reset", "password", "refund", "order", "price", "plan", "ship"])
parts = st.tuples(st.sampled_from(["p"]), st.sampled_from(["t1", "t2"]),
                  st.sampled_from(["en", "de"]), st.sampled_from(["faq.a", "faq.b"]),
                  st.sampled_from(["c1", "c2"]))


@given(st.lists(st.tuples(parts, st.lists(words, min_size=1, max_size=4)), max_size=20),
       parts, st.lists(words, min_size=1, max_size=4))
def test_a_lookup_never_sees_another_partition(entries, part, query) -> None:  # type: ignore[no-untyped-def]
    c = ResponseCache()
    for p, ws in entries:
        c.store(p, " ".join(ws), result(repr(p)), "m", 60)
    hit = c.lookup(part, " ".join(query), 0.5)
    if hit is not None:
        assert hit[0].result.content == repr(part)
