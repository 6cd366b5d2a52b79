"""Operations: a TTL (and threshold) per intent, evictions by reason and intent, expirations."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cachekit import probe, result, rule, scope

from skyroute.router.cache import InProcessBackend, ResponseCache, rule_for
from skyroute.router.table import CacheSettings

SETTINGS = CacheSettings(
    True,
    frozenset({"faq.refunds", "faq.account"}),
    0.9,
    3600.0,
    100,
    families=(("faq", 0.92, 300.0), ("faq.refunds", 0.95, 30.0)),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_intent_entry_wins_over_its_family_entry() -> None:
    refunds, account = rule_for(SETTINGS, "faq.refunds"), rule_for(SETTINGS, "faq.account")
    assert (refunds.threshold, refunds.ttl_s) == (0.95, 30.0)
    assert refunds.source == "families.faq.refunds.similarityThreshold"
    assert (account.threshold, account.ttl_s) == (0.92, 300.0)
    assert account.source == "families.faq.similarityThreshold"


def test_per_intent_ttls_expire_apart_and_are_counted_by_intent() -> None:
    clock = Clock()
    c = ResponseCache(InProcessBackend(clock=clock))
    q = "How do I reset my password?"
    for intent in ("faq.refunds", "faq.account"):
        sc = scope(intent=intent)
        c.store(probe(c, q, sc), c.rule(SETTINGS, intent), result(intent), "m")
    clock.now += 31

    async def ask(intent: str) -> str | None:
        hit = await c.lookup(probe(c, q, scope(intent=intent)), c.rule(SETTINGS, intent))
        return None if hit is None else hit.answer.content

    assert asyncio.run(ask("faq.refunds")) is None
    assert asyncio.run(ask("faq.account")) == "faq.account"
    stats = c.stats()
    assert stats["ttls_s"] == {"faq.account": 300.0, "faq.refunds": 30.0}
    assert stats["expirations_by_intent"] == {"faq.refunds": 1}
    assert stats["expirations"] == 1 and stats["evictions"] == 0


def test_evictions_are_counted_by_reason_and_intent() -> None:
    c = ResponseCache(InProcessBackend(max_entries=3))
    for i in range(5):  # one partition capped at 2 by its rule: 3 evicted
        c.store(probe(c, f"question {i} about shipping"), rule(max_entries=2), result("x"), "m")
    for i in range(3):  # three more partitions: the backend's 3-entry bound evicts
        sc = scope(tenant=f"t{i}", intent="faq.orders")
        c.store(probe(c, f"question {i}", sc), rule(intent="faq.orders"), result("y"), "m")
    stats = c.stats()
    assert stats["evictions_by_reason"] == {
        "partition_max_entries": 3,
        "max_entries": 2,
        "max_bytes": 0,
    }
    assert stats["evictions"] == 5
    assert stats["evictions_by_intent"] == {"faq.account": 5}  # the LRU partitions went
    small = ResponseCache(InProcessBackend(max_bytes=20_000))
    for i in range(30):
        small.store(probe(small, f"q {i}", scope(tenant=f"t{i}")), rule(), result("y" * 900), "m")
    by_reason = small.stats()["evictions_by_reason"]
    assert by_reason["max_bytes"] > 0 and by_reason["max_entries"] == 0


def test_policy_may_name_one_intent_in_families(tmp_path: Path) -> None:
    from skyroute.control.policy.compiler import compile_folder
    from skyroute.router.table import build_table

    (tmp_path / "p.yaml").write_text("""\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: pool}
spec:
  models:
    - {name: m, provider: openai, endpoint: "http://127.0.0.1:1/v1",
       pricing: {inputPerMTok: 1, outputPerMTok: 1}}
---
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: p}
spec:
  defaultPool: pool
  intents: [{name: faq.refunds, keywords: [refund]}, {name: faq.hours, keywords: [open]}]
  cache:
    enabled: true
    intents: ["faq.*"]
    families:
      faq: {ttlSeconds: 600}
      faq.refunds: {ttlSeconds: 60, maxFalseHitRate: 0.01}
""")
    table = build_table(compile_folder(tmp_path)).policy("p")
    assert table is not None
    cache = ResponseCache()
    refunds, hours = cache.rule(table.cache, "faq.refunds"), cache.rule(table.cache, "faq.hours")
    assert refunds.ttl_s == 60.0 and refunds.max_false_hit_rate == 0.01
    assert refunds.source.startswith("families.faq.refunds.maxFalseHitRate 0.01")
    assert (hours.ttl_s, hours.threshold) == (600.0, 0.9)
