"""Cache rules per intent family: similarity threshold, TTL and size bound.

The snapshot contract carries one ``CachePolicy`` per policy (a threshold,
a TTL, a size bound, the cacheable intents) and optional per-family
overrides (``cache.families``: threshold and TTL for, say, ``faq``, or for one
intent, ``faq.refunds``, whose entry wins over its family's). A family (or
intent) the policy names uses its own settings; for the others the router
derives them:

- a *repeatable* family (``faq``, ``docs``, ``policy``, ``help``, ``kb``,
  ``howto``) uses the policy's threshold: these questions recur with the
  same answer, which is what the cache is for;
- any other family the policy chose to cache is treated as long tail and
  needs at least :data:`LONG_TAIL_THRESHOLD`: an unusual question that looks
  like a cached one is more likely to need a different answer;
- every threshold is raised to at least the embedder's floor
  (``Embedder.min_threshold``: 0.85 for the built-in embedder, below which
  similar-looking questions with different meanings start to match on this
  project's paraphrase set; 0.95 for MiniLM).

A policy (or a family) may declare ``maxFalseHitRate`` instead of a
threshold: the threshold then comes from the embedder's calibration table
(:mod:`.bounds`); an explicit threshold at the same level still wins (the
compiler sends threshold 0 when only the bound is given). Each rule says
where its threshold came from (``source``), shown in the cache's stats.

Rules are computed once per (settings, intent) pair and memoized; a request
pays a dictionary lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from skyroute.router.cache.bounds import BoundTable, Derived, threshold_for
from skyroute.router.table import CacheSettings

REPEATABLE_FAMILIES = frozenset({"faq", "docs", "doc", "policy", "help", "kb", "howto"})
LONG_TAIL_THRESHOLD = 0.95
DEFAULT_FLOOR = 0.85
DEFAULT_THRESHOLD = 0.9  # the RoutingPolicy default, for a bound with no table to read


@dataclass(slots=True, frozen=True)
class CacheRule:
    """What the cache does for one intent: serve at or above ``threshold``, keep ``ttl_s``."""

    family: str
    threshold: float
    ttl_s: float
    max_entries: int
    source: str = "similarityThreshold"  # where ``threshold`` came from
    max_false_hit_rate: float | None = None  # the declared bound, if any


def family_of(intent: str) -> str:
    return intent.split(".", 1)[0]


def _floored(declared: float, floor: float) -> str:
    return f"; raised to the embedder's floor {floor}" if declared < floor else ""


def _from_bound(bound: float, table: BoundTable | None, floor: float, embedder: str) -> Derived:
    if table is None:
        return Derived(
            max(DEFAULT_THRESHOLD, floor),
            f"maxFalseHitRate {bound:g}: no calibration table for {embedder or 'this embedder'}:"
            f" default {DEFAULT_THRESHOLD}",
        )
    return threshold_for(table, bound, floor)


@lru_cache(maxsize=4096)
def rule_for(
    settings: CacheSettings,
    intent: str,
    floor: float = DEFAULT_FLOOR,
    table: BoundTable | None = None,
    embedder: str = "",
) -> CacheRule:
    """The rule for ``intent`` under a policy's cache settings (memoized).

    ``table`` is the embedder's calibration table (:func:`.bounds.load_table`),
    used when the policy declares a bound rather than a threshold.
    """
    family = family_of(intent)
    ttl_s = settings.ttl_s
    # The intent's own entry (faq.refunds) wins over its family's (faq).
    key = intent if any(f[0] == intent for f in settings.families) else family
    override = next((f for f in settings.families if f[0] == key), None)
    family_bound = next((b for f, b in settings.family_bounds if f == key), None)
    bound: float | None = None
    if override is not None and (override[1] > 0 or family_bound is None):
        threshold, ttl_s = max(override[1], floor), override[2]
        source = f"families.{key}.similarityThreshold" + _floored(override[1], floor)
    elif override is not None and family_bound is not None:
        bound, ttl_s = family_bound, override[2]
        derived = _from_bound(bound, table, floor, embedder)
        threshold, source = derived.threshold, f"families.{key}.{derived.source}"
    else:
        if settings.threshold > 0 or settings.max_false_hit_rate is None:
            declared = settings.threshold or DEFAULT_THRESHOLD
            threshold = max(declared, floor)
            source = "similarityThreshold" + _floored(declared, floor)
        else:
            bound = settings.max_false_hit_rate
            derived = _from_bound(bound, table, floor, embedder)
            threshold, source = derived.threshold, derived.source
        if family not in REPEATABLE_FAMILIES and threshold < LONG_TAIL_THRESHOLD:
            threshold = LONG_TAIL_THRESHOLD
            source += f"; raised to {LONG_TAIL_THRESHOLD} (long-tail family)"
    return CacheRule(
        family=family,
        threshold=min(threshold, 1.0),
        ttl_s=max(ttl_s, 1.0),
        max_entries=max(settings.max_entries, 1),
        source=source,
        max_false_hit_rate=bound,
    )
