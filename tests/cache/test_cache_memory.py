"""The in-process backend and its index: TTL, bounds, eviction order, meaning checks."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from cachekit import probe, result, rule, scope

from skyroute.router.cache import InProcessBackend, ResponseCache
from skyroute.router.cache.index import VectorIndex, hamming_radius
from skyroute.router.embed.text import analyze, compatible, signature


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def lookup(c: ResponseCache, text: str, **kw: object) -> str | None:
    hit = asyncio.run(c.lookup(probe(c, text, scope(**kw)), rule()))  # type: ignore[arg-type]
    return None if hit is None else hit.answer.content


def test_ttl_is_honoured_on_both_layers() -> None:
    clock = Clock()
    c = ResponseCache(InProcessBackend(clock=clock))
    c.store(probe(c, "How do I reset my password?"), rule(ttl_s=60), result("A"), "m")
    clock.now += 59
    assert lookup(c, "How do I reset my password?") == "A"
    assert lookup(c, "How can I reset my password?") == "A"
    clock.now += 2
    assert lookup(c, "How do I reset my password?") is None
    assert lookup(c, "How can I reset my password?") is None
    assert len(c) == 0


def test_entry_bound_evicts_least_recently_used_first() -> None:
    c = ResponseCache(InProcessBackend(max_entries=3))
    for q in (
        "What is your refund policy?",
        "Do you ship to Canada?",
        "How do I delete my account?",
    ):
        c.store(probe(c, q), rule(), result(q), "m")
    assert lookup(c, "What is your refund policy?") is not None  # now most recent
    c.store(probe(c, "Is there a free trial?"), rule(), result("t"), "m")
    assert len(c) == 3
    assert lookup(c, "Do you ship to Canada?") is None  # the least recently used went
    assert lookup(c, "What is your refund policy?") is not None


def test_policy_max_entries_bounds_a_partition_and_bytes_bound_all() -> None:
    c = ResponseCache(InProcessBackend())
    for i in range(5):
        c.store(
            probe(c, f"question number {i} about shipping"), rule(max_entries=2), result("x"), "m"
        )
    assert len(c) == 2
    small = ResponseCache(InProcessBackend(max_bytes=20_000))
    for i in range(50):
        small.store(
            probe(small, f"question {i}", scope(tenant=f"t{i}")), rule(), result("y" * 1000), "m"
        )
    stats = small.stats()
    assert stats["bytes"] <= 20_000 and stats["evictions"] > 0 and 0 < len(small) < 50


def test_replacing_an_entry_keeps_counts_right() -> None:
    c = ResponseCache(InProcessBackend())
    for _ in range(3):
        c.store(probe(c, "How do I reset my password?"), rule(), result("A"), "m")
    assert len(c) == 1 and c.stats()["partitions"] == 1


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "Can I switch from monthly to annual billing?",
            "Can I switch from annual to monthly billing?",
        ),
        ("What is included in the premium plan?", "What is not included in the premium plan?"),
        ("Do you ship to the UK?", "Do you ship from the UK?"),
        ("Can I get a refund after 30 days?", "Can I get a refund after 60 days?"),
        ("Can I cancel my order after it ships?", "Can I cancel my order before it ships?"),
        ("Where is my data stored?", "How long is my data stored?"),
    ],
)
def test_meaning_check_refuses_near_identical_opposites(a: str, b: str) -> None:
    assert not compatible(signature(analyze(a)), signature(analyze(b)))
    c = ResponseCache()
    c.store(probe(c, a), rule(threshold=0.85), result(a), "m")
    assert asyncio.run(c.lookup(probe(c, b), rule(threshold=0.85))) is None


def test_index_search_finds_the_best_compatible_match_among_many() -> None:
    rng = np.random.default_rng(7)
    dim = 64
    idx: VectorIndex[str] = VectorIndex(dim)
    sig = signature(analyze("how do i do it"))
    target = rng.standard_normal(dim).astype(np.float32)
    target /= np.linalg.norm(target)
    for i in range(5000):
        v = rng.standard_normal(dim).astype(np.float32)
        idx.add(f"k{i}", v / np.linalg.norm(v), sig, 1e12, f"p{i}")
    near = target + 0.02 * rng.standard_normal(dim).astype(np.float32)
    idx.add("near", near / np.linalg.norm(near), sig, 1e12, "near")
    found = idx.search(target, sig, 0.95, 0.0)
    assert found is not None and found[0] == "near" and found[1] >= 0.95
    idx.remove("near")
    assert idx.search(target, sig, 0.95, 0.0) is None
    assert len(idx) == 5000


def test_hamming_radius_shrinks_with_the_threshold() -> None:
    assert hamming_radius(1.0) == 0
    assert hamming_radius(0.95) < hamming_radius(0.9) < hamming_radius(0.8) < 64


def test_plurals_with_their_own_sense_are_not_stemmed_into_the_singular() -> None:
    # "securities" (financial instruments) is not "security"; plain plurals still fold.
    assert analyze("securities") != analyze("security")
    assert analyze("customs fees") != analyze("custom fees")
    assert analyze("orders") == analyze("order") and analyze("refunds") == analyze("refund")
