"""The cache as the engine sees it: refuse, probe, look up, store, count.

:class:`ResponseCache` strings the parts together in the order that keeps
the cache safe before it makes it fast:

1. :meth:`ResponseCache.probe` refuses requests that must not touch the
   cache (tools, tool traffic, personal data, odd shapes; see
   :mod:`~skyroute.router.cache.guard`) and otherwise builds the probe: the
   hard partition key and the question's exact key and meaning signature
   (:mod:`~skyroute.router.cache.keys`).
2. :meth:`ResponseCache.lookup` asks the backend, exact layer first, then
   the semantic layer at the intent family's threshold
   (:mod:`~skyroute.router.cache.rules`). Any exception becomes a miss.
3. :meth:`ResponseCache.store` keeps only complete, tool-free answers
   without personal data, and never raises.

It also keeps the counters an operator needs to judge the cache per intent
(lookups, exact and semantic hits, refusals by reason), exposed by
:meth:`ResponseCache.stats`; every served request's ``Outcome`` already
carries ``cache_hit`` and ``intent``, so the control plane computes hit
rates per intent from outcomes too.

:func:`from_settings` builds the cache a router process runs with: the
in-process backend by default, Redis when a URL is given (``--cache-redis``
or ``SKYROUTE_CACHE_REDIS``).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from skyroute.router.cache.backend import EXACT, Answer, CacheBackend, CacheHit
from skyroute.router.cache.bounds import load_table, upper_rate
from skyroute.router.cache.guard import answer_refusal, request_refusal
from skyroute.router.cache.invalidate import Selector
from skyroute.router.cache.keys import Probe, Scope, make_probe
from skyroute.router.cache.memory import InProcessBackend
from skyroute.router.cache.rules import CacheRule, rule_for
from skyroute.router.embed import Embedder, Embeddings, load_embedder
from skyroute.router.providers.types import ChatResult
from skyroute.router.table import CacheSettings

log = logging.getLogger("skyroute.router.cache")

#: Entries whose semantic hits are remembered for ``wrong`` invalidations.
MAX_TRACKED_ENTRIES = 50_000


@dataclass(slots=True)
class IntentCounters:
    lookups: int = 0
    exact_hits: int = 0
    semantic_hits: int = 0
    stores: int = 0
    # Semantic hits served by entries later invalidated as wrong (``wrong: true``).
    flagged_false_hits: int = 0

    @property
    def hit_rate(self) -> float:
        return (self.exact_hits + self.semantic_hits) / self.lookups if self.lookups else 0.0


@dataclass(slots=True)
class _Counters:
    per_intent: dict[str, IntentCounters] = field(default_factory=dict)
    refusals: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    # The similarity threshold each intent was last looked up at (its rule's, floored).
    thresholds: dict[str, float] = field(default_factory=dict)
    # Where each of those came from (similarityThreshold, or a maxFalseHitRate and the table).
    sources: dict[str, str] = field(default_factory=dict)
    bounds: dict[str, float | None] = field(default_factory=dict)  # declared maxFalseHitRate
    ttls: dict[str, float] = field(default_factory=dict)  # each intent's entry lifetime (s)
    # Invalidations: requests by what they named, entries they removed, failures.
    invalidations: Counter[str] = field(default_factory=Counter)
    invalidated: int = 0
    invalidation_failures: int = 0
    # Entry id -> (intent, semantic hits it served here): what a ``wrong`` invalidation
    # turns into false hits. Bounded, least recently hit first out.
    served: OrderedDict[str, tuple[str, int]] = field(default_factory=OrderedDict)

    def intent(self, name: str) -> IntentCounters:
        c = self.per_intent.get(name)
        if c is None:
            c = self.per_intent[name] = IntentCounters()
        return c


class ResponseCache:
    """Safe semantic response cache over a pluggable backend and embedder."""

    def __init__(
        self, backend: CacheBackend | None = None, embedder: Embedder | None = None
    ) -> None:
        self.backend: CacheBackend = backend if backend is not None else InProcessBackend()
        self.embedder: Embedder = embedder if embedder is not None else load_embedder()
        self._counters = _Counters()
        # The embedder's calibration table: turns a policy's maxFalseHitRate into a threshold.
        self.bound_table = load_table(self.embedder.name)

    def __len__(self) -> int:
        return len(self.backend)

    def rule(self, settings: CacheSettings, intent: str) -> CacheRule:
        """The rule for ``intent`` under a policy's settings, floored for this embedder."""
        return rule_for(
            settings, intent, self.embedder.min_threshold, self.bound_table, self.embedder.name
        )

    def probe(
        self,
        scope: Scope,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        tools: list[Any],
        embeddings: Embeddings | None = None,
    ) -> Probe | None:
        """The request's probe, or None (counted by reason) if it must not use the cache.

        ``embeddings`` are the request's (its signals'): the question's vector is
        then the one the intent classifier already computed, if it did.
        """
        reason = request_refusal(messages, tools, params.get("tool_choice"))
        if reason is not None:
            self._counters.refusals[reason.split(":", 1)[0]] += 1
            return None
        return make_probe(scope, messages, params, tools, self.embedder, embeddings)

    async def lookup(self, probe: Probe, rule: CacheRule) -> CacheHit | None:
        """A hit from the probe's own partition, or None; never raises."""
        counters = self._counters.intent(probe.scope.intent)
        counters.lookups += 1
        self._counters.thresholds[probe.scope.intent] = rule.threshold
        self._counters.sources[probe.scope.intent] = rule.source
        self._counters.bounds[probe.scope.intent] = rule.max_false_hit_rate
        self._counters.ttls[probe.scope.intent] = rule.ttl_s
        try:
            hit = await self.backend.lookup(probe, rule)
        except Exception:
            self._counters.errors += 1
            log.exception("cache lookup failed; serving as a miss")
            return None
        if hit is not None:
            if hit.layer == EXACT:
                counters.exact_hits += 1
            else:
                counters.semantic_hits += 1
                self._served(hit.entry, probe.scope.intent)
        return hit

    def _served(self, entry: str, intent: str) -> None:
        served = self._counters.served
        _, n = served.pop(entry, (intent, 0))
        served[entry] = (intent, n + 1)
        while len(served) > MAX_TRACKED_ENTRIES:
            served.popitem(last=False)

    def store(
        self,
        probe: Probe,
        rule: CacheRule,
        result: ChatResult,
        model: str,
        policy_version: str = "",
    ) -> bool:
        """Keep ``result`` for the probe's question if it may be replayed; never raises."""
        reason = answer_refusal(
            result.content, result.tool_calls, result.finish_reason, result.thinking
        )
        if reason is not None:
            self._counters.refusals[reason.split(":", 1)[0]] += 1
            return False
        answer = Answer(
            result.content,
            result.finish_reason,
            result.prompt_tokens,
            result.completion_tokens,
            model,
            probe.question,
            policy_version,
            tuple(result.thinking),
            tuple(result.tool_calls),
        )
        try:
            self.backend.store(probe, rule, answer)
        except Exception:
            self._counters.errors += 1
            log.exception("cache store failed; answer not cached")
            return False
        self._counters.intent(probe.scope.intent).stores += 1
        return True

    def describe(self, settings: CacheSettings, intent: str) -> str:
        """The intent's threshold, where it came from and its observed false hits (Explain)."""
        r = self.rule(settings, intent)
        bound = f", bound {r.max_false_hit_rate:g}" if r.max_false_hit_rate is not None else ""
        text = f"threshold {r.threshold:.2f} ({r.source}{bound}), TTL {r.ttl_s:g} s"
        c = self._counters.per_intent.get(intent)
        if c is None or not c.semantic_hits:
            return text + ", no semantic hits served yet"
        estimate = c.flagged_false_hits / c.semantic_hits
        upper = upper_rate(c.flagged_false_hits, c.semantic_hits)
        return (
            f"{text}, observed false hits {c.flagged_false_hits} of {c.semantic_hits} "
            f"semantic hits ({estimate:.1%}, at most {upper:.1%} at 95%)"
        )

    async def invalidate(self, selector: Selector) -> int:
        """Remove the entries ``selector`` names; how many. A shared backend that cannot
        be reached raises :class:`~skyroute.router.cache.backend.InvalidationFailed`."""
        c = self._counters
        try:
            removed = await self.backend.invalidate(selector)
        except Exception:
            c.invalidation_failures += 1
            raise
        for kind in selector.as_dict():
            c.invalidations[kind] += 1
        c.invalidated += removed
        if selector.wrong and selector.entry is not None:
            c.invalidations["wrong"] += 1
            intent, n = c.served.pop(selector.entry, ("", 0))
            if n:
                c.intent(intent).flagged_false_hits += n
        return removed

    def stats(self) -> dict[str, Any]:
        """Counters, threshold in use (and its source) per intent, refusals, backend figures."""
        c = self._counters
        return {
            "embedder": self.embedder.name,
            "intents": {
                name: {
                    "lookups": i.lookups,
                    "exact_hits": i.exact_hits,
                    "semantic_hits": i.semantic_hits,
                    "stores": i.stores,
                    "hit_rate": round(i.hit_rate, 4),
                    # Observed: semantic hits later flagged wrong, of the semantic hits served.
                    "flagged_false_hits": i.flagged_false_hits,
                    "false_hit_estimate": (
                        round(i.flagged_false_hits / i.semantic_hits, 4)
                        if i.semantic_hits
                        else None
                    ),
                    "false_hit_upper_95": (
                        round(upper_rate(i.flagged_false_hits, i.semantic_hits), 4)
                        if i.semantic_hits
                        else None
                    ),
                    "threshold": c.thresholds.get(name),
                    "max_false_hit_rate": c.bounds.get(name),
                }
                for name, i in sorted(c.per_intent.items())
            },
            "thresholds": dict(sorted(c.thresholds.items())),
            "threshold_sources": dict(sorted(c.sources.items())),
            "ttls_s": dict(sorted(c.ttls.items())),
            "refusals": dict(c.refusals),
            "internal_errors": c.errors,
            "invalidations": {
                "requests_by_selector": dict(sorted(c.invalidations.items())),
                "entries_removed": c.invalidated,
                "failures": c.invalidation_failures,
            },
            **self.backend.stats(),
        }

    async def close(self) -> None:
        await self.backend.close()


def from_settings(redis_url: str | None = None, embedder: str = "hashing") -> ResponseCache:
    """The cache a router runs with: Redis-backed if ``redis_url``, else in-process."""
    backend: CacheBackend
    if redis_url:
        from skyroute.router.cache.redis_backend import RedisBackend

        backend = RedisBackend(redis_url)
    else:
        backend = InProcessBackend()
    return ResponseCache(backend, load_embedder(embedder))
