"""The in-process backend: every partition a :class:`VectorIndex` in this router's memory.

The default for a single router, and the fastest: an exact hit is two
dictionary lookups, a semantic one a SimHash scan plus a few dot products.

Memory is bounded twice, by entries and by bytes (vector plus answer text),
across all partitions. Partitions are kept in least-recently-used order and
so are the entries inside each: when a bound is exceeded, the oldest entry
of the least recently used partition goes first, which approximates a
global LRU at O(1) per eviction. A partition also never holds more than its
policy's ``max_entries``. Expired entries are dropped when read, and swept
from a partition every :data:`_SWEEP_EVERY` stores into it.

Stats count evictions by reason (:data:`EVICTION_REASONS`: the partition's
own ``max_entries``, the backend's entry bound, its byte bound) and by intent,
and expirations (on read or by the sweep) by intent, so an operator can tell
a cache that is too small from one whose TTLs are too short.

Nothing here awaits, so a lookup completes within the calling task.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skyroute.router.cache.backend import EXACT, SEMANTIC, Answer, CacheHit, entry_id
from skyroute.router.cache.index import VectorIndex
from skyroute.router.cache.invalidate import Selector
from skyroute.router.cache.keys import Probe
from skyroute.router.cache.rules import CacheRule

_SWEEP_EVERY = 256
#: Why an entry was evicted before its TTL.
PARTITION_CAP, ENTRIES_BOUND, BYTES_BOUND = "partition_max_entries", "max_entries", "max_bytes"
EVICTION_REASONS = (PARTITION_CAP, ENTRIES_BOUND, BYTES_BOUND)


@dataclass(slots=True)
class _Partition:
    label: str
    index: VectorIndex[Answer]
    intent: str
    stores: int = 0
    expired_seen: int = 0  # index.expired already counted


def _by_intent(counts: Counter[tuple[str, str]]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for (intent, _), n in counts.items():
        out[intent] += n
    return dict(sorted(out.items()))


class InProcessBackend:
    """Bounded, LRU-evicting, TTL-honouring in-memory cache (see the module docstring)."""

    def __init__(
        self,
        max_entries: int = 100_000,
        max_bytes: int = 512 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError(
                f"InProcessBackend bounds must be positive, got "
                f"max_entries={max_entries} max_bytes={max_bytes}"
            )
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._parts: OrderedDict[str, _Partition] = OrderedDict()
        self._entries = 0
        self._bytes = 0
        self.evictions = 0
        self.expirations = 0
        self._evicted: Counter[tuple[str, str]] = Counter()  # (intent, reason)
        self._expired: Counter[str] = Counter()  # by intent

    @property
    def kind(self) -> str:
        return "memory"

    def __len__(self) -> int:
        return self._entries

    async def lookup(self, probe: Probe, rule: CacheRule) -> CacheHit | None:
        return self.lookup_now(probe, rule)

    def lookup_now(self, probe: Probe, rule: CacheRule) -> CacheHit | None:
        """The synchronous lookup (benchmarks call it directly)."""
        part = self._parts.get(probe.partition)
        if part is None or part.label != probe.label:
            return None
        self._parts.move_to_end(probe.partition)
        now = self._clock()
        entries, size = len(part.index), part.index.bytes
        try:
            answer = part.index.get(probe.text_key, now)
            if answer is not None:
                return CacheHit(answer, 1.0, EXACT, entry_id(probe.partition, probe.text_key))
            found = part.index.search(probe.vector(), probe.signature, rule.threshold, now)
        finally:
            self._settle(probe.partition, part, entries, size)
        if found is None or found[2] is None:
            return None
        return CacheHit(found[2], found[1], SEMANTIC, entry_id(probe.partition, found[0]))

    async def invalidate(self, selector: Selector) -> int:
        return self.invalidate_now(selector)

    def invalidate_now(self, selector: Selector) -> int:
        """Remove every entry ``selector`` names; how many."""
        if selector.partition is not None:
            part = self._parts.get(selector.partition)
            targets = [(selector.partition, part)] if part is not None else []
        else:
            targets = list(self._parts.items())
        removed = 0
        for key, part in targets:
            if not selector.matches_label(part.label):
                continue
            entries, size = len(part.index), part.index.bytes
            for k, answer in part.index.items():
                if selector.key is not None and k != selector.key:
                    continue
                if selector.policy_version is not None and (
                    answer is None or answer.policy_version != selector.policy_version
                ):
                    continue
                part.index.remove(k)
                removed += 1
            self._settle(key, part, entries, size)
        return removed

    def store(self, probe: Probe, rule: CacheRule, answer: Answer) -> None:
        part = self._parts.get(probe.partition)
        if part is None:
            part = _Partition(probe.label, VectorIndex(probe.embedder.dim), probe.scope.intent)
            self._parts[probe.partition] = part
        elif part.label != probe.label:
            return  # a hash collision: never mix partitions
        self._parts.move_to_end(probe.partition)
        now = self._clock()
        entries, size = len(part.index), part.index.bytes
        part.stores += 1
        if part.stores % _SWEEP_EVERY == 0:
            part.index.expire(now)
        part.index.add(
            probe.text_key,
            probe.vector(),
            probe.signature,
            now + rule.ttl_s,
            answer,
            answer.size() + part.index.dim * 2,
        )
        while len(part.index) > rule.max_entries:
            self._evict_oldest(part, PARTITION_CAP)
        self._settle(probe.partition, part, entries, size)
        while self._entries > self.max_entries or self._bytes > self.max_bytes:
            reason = ENTRIES_BOUND if self._entries > self.max_entries else BYTES_BOUND
            key, victim = next(iter(self._parts.items()))
            entries, size = len(victim.index), victim.index.bytes
            self._evict_oldest(victim, reason)
            self._settle(key, victim, entries, size)

    def _evict_oldest(self, part: _Partition, reason: str) -> None:
        oldest = part.index.oldest()
        if oldest is not None:
            part.index.remove(oldest)
            self.evictions += 1
            self._evicted[(part.intent, reason)] += 1

    def _settle(self, key: str, part: _Partition, entries: int, size: int) -> None:
        """Fold a partition's change since (entries, size) into the totals."""
        self._entries += len(part.index) - entries
        self._bytes += part.index.bytes - size
        expired = part.index.expired - part.expired_seen
        if expired:
            part.expired_seen = part.index.expired
            self.expirations += expired
            self._expired[part.intent] += expired
        if len(part.index) == 0:
            self._parts.pop(key, None)

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.kind,
            "entries": self._entries,
            "bytes": self._bytes,
            "partitions": len(self._parts),
            "evictions": self.evictions,
            "evictions_by_reason": {
                r: sum(n for (_, why), n in self._evicted.items() if why == r)
                for r in EVICTION_REASONS
            },
            "evictions_by_intent": _by_intent(self._evicted),
            "expirations": self.expirations,
            "expirations_by_intent": dict(sorted(self._expired.items())),
        }

    async def drain(self) -> None:
        return None

    async def close(self) -> None:
        self._parts.clear()
        self._entries = self._bytes = 0
