"""Cache rules per intent family: similarity threshold, TTL and size bound.

The snapshot contract carries one ``CachePolicy`` per policy (a threshold,
a TTL, a size bound, the cacheable intents) and optional per-family
overrides (``cache.families``: threshold and TTL for, say, ``faq``). A family
the policy names uses its own settings; for the others the router derives
them:

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

Rules are computed once per (settings, intent) pair and memoized; a request
pays a dictionary lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from skyroute.router.table import CacheSettings

REPEATABLE_FAMILIES = frozenset({"faq", "docs", "doc", "policy", "help", "kb", "howto"})
LONG_TAIL_THRESHOLD = 0.95
DEFAULT_FLOOR = 0.85


@dataclass(slots=True, frozen=True)
class CacheRule:
    """What the cache does for one intent: serve at or above ``threshold``, keep ``ttl_s``."""

    family: str
    threshold: float
    ttl_s: float
    max_entries: int


def family_of(intent: str) -> str:
    return intent.split(".", 1)[0]


@lru_cache(maxsize=4096)
def rule_for(settings: CacheSettings, intent: str, floor: float = DEFAULT_FLOOR) -> CacheRule:
    """The rule for ``intent`` under a policy's cache settings (memoized)."""
    family = family_of(intent)
    ttl_s = settings.ttl_s
    override = next((f for f in settings.families if f[0] == family), None)
    if override is not None:
        threshold, ttl_s = max(override[1], floor), override[2]
    else:
        threshold = max(settings.threshold, floor)
        if family not in REPEATABLE_FAMILIES:
            threshold = max(threshold, LONG_TAIL_THRESHOLD)
    return CacheRule(
        family=family,
        threshold=min(threshold, 1.0),
        ttl_s=max(ttl_s, 1.0),
        max_entries=max(settings.max_entries, 1),
    )
