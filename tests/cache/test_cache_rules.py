"""Per-family cache rules: policy overrides win; otherwise long tail is strict."""

from __future__ import annotations

from skyroute.router.cache.rules import LONG_TAIL_THRESHOLD, rule_for
from skyroute.router.table import CacheSettings

BASE = dict(
    enabled=True,
    intents=frozenset({"faq.a", "docs.b", "orders.c"}),
    threshold=0.9,
    ttl_s=3600.0,
    max_entries=100,
)


def test_policy_family_override_sets_threshold_and_ttl() -> None:
    s = CacheSettings(**BASE, families=(("faq", 0.97, 60.0), ("orders", 0.88, 120.0)))  # type: ignore[arg-type]
    faq = rule_for(s, "faq.a")
    assert (faq.threshold, faq.ttl_s) == (0.97, 60.0)
    # An override may relax the long-tail default, but never below the embedder's floor.
    orders = rule_for(s, "orders.c", 0.85)
    assert (orders.threshold, orders.ttl_s) == (0.88, 120.0)
    assert rule_for(s, "orders.c", 0.95).threshold == 0.95


def test_without_override_repeatable_uses_policy_and_long_tail_is_strict() -> None:
    s = CacheSettings(**BASE)  # type: ignore[arg-type]
    assert rule_for(s, "docs.b").threshold == 0.9
    assert rule_for(s, "orders.c").threshold == LONG_TAIL_THRESHOLD
    assert rule_for(s, "orders.c").ttl_s == 3600.0


def test_compiled_policy_carries_families(tmp_path) -> None:  # type: ignore[no-untyped-def]
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
  intents: [{name: faq.a, keywords: [a]}]
  cache:
    enabled: true
    intents: ["faq.*"]
    families: {faq: {similarityThreshold: 0.95, ttlSeconds: 30}}
""")
    table = build_table(compile_folder(tmp_path)).policy("p")
    assert table is not None
    assert table.cache.families == (("faq", 0.95, 30.0),)
    assert rule_for(table.cache, "faq.a").ttl_s == 30.0
