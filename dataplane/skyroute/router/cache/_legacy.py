"""A first in-process response cache: exact match, then simple similarity.

Safety comes before hit rate, so the partition is part of the key and never
a filter applied afterwards: policy, tenant, locale, intent and a hash of
everything besides the last user message that shapes the answer (system
prompt, earlier turns, sampling parameters). A lookup can only see entries of
its own partition.

Within a partition the exact layer matches the normalized question (case,
spacing and punctuation folded). The similarity layer compares content-word
sets (stop words dropped, plurals folded) by cosine and serves a hit only at
or above the policy's threshold. Only decisions the policy marked cacheable
(a cache-enabled intent, no tools) reach this module at all.

The semantic-cache issue replaces the similarity layer with embeddings and
adds a shared Redis backend; this module's interface (lookup, store) is the
seam for that.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from skyroute.router.providers.types import ChatResult

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    [
        "a", "an", "the", "i", "me", "my", "we", "our", "you", "your", "it", "its", "is", "are",
        "was", "were", "be", "been", "am", "do", "does", "did", "can", "could", "would", "should",
        "will", "shall", "may", "might", "must", "to", "of", "in", "on", "for", "with", "at",
        "by", "from", "about", "as", "into", "how", "what", "when", "where", "which", "who",
        "why", "there", "this", "that", "these", "those", "and", "or", "but", "if", "so", "not",
        "no", "please", "hi", "hello", "hey", "thanks", "thank", "just", "get", "got", "have",
        "has", "had", "any", "some",
    ]
)


def content_words(text: str) -> frozenset[str]:
    words = set()
    for w in _WORD.findall(text.lower()):
        if w in _STOP:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        words.add(w)
    return frozenset(words)


def normalize(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def context_hash(messages: list[dict[str, Any]], params: tuple[Any, ...]) -> str:
    """Hash of everything but the last user message, canonically serialized."""
    h = hashlib.blake2b(digest_size=12)
    h.update(repr(params).encode())
    for m in messages[:-1]:
        h.update(str(m.get("role")).encode())
        h.update(b"\0")
        h.update(str(m.get("content")).encode())
        h.update(b"\1")
    return h.hexdigest()


@dataclass(slots=True)
class Entry:
    question: frozenset[str]
    result: ChatResult
    model: str
    expires: float


@dataclass(slots=True)
class _Partition:
    exact: dict[str, Entry] = field(default_factory=dict)


Partition = tuple[str, str, str, str, str]  # policy, tenant, locale, intent, context hash


class ResponseCache:
    """Bounded LRU over all partitions; TTL per entry."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._parts: dict[Partition, _Partition] = {}
        self._lru: OrderedDict[tuple[Partition, str], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lru)

    def lookup(
        self, part: Partition, text: str, threshold: float, now: float | None = None
    ) -> tuple[Entry, float] | None:
        p = self._parts.get(part)
        if p is None:
            return None
        now = time.monotonic() if now is None else now
        key = normalize(text)
        e = p.exact.get(key)
        if e is not None and e.expires > now:
            self._lru.move_to_end((part, key))
            return e, 1.0
        words = content_words(text)
        if not words:
            return None
        best: Entry | None = None
        best_sim = 0.0
        n = len(words)
        for cand in p.exact.values():
            if cand.expires <= now:
                continue
            common = len(words & cand.question)
            if not common:
                continue
            sim = common / math.sqrt(n * len(cand.question))
            if sim > best_sim:
                best, best_sim = cand, sim
        if best is not None and best_sim >= threshold:
            return best, best_sim
        return None

    def store(
        self, part: Partition, text: str, result: ChatResult, model: str, ttl_s: float
    ) -> None:
        key = normalize(text)
        p = self._parts.setdefault(part, _Partition())
        p.exact[key] = Entry(content_words(text), result, model, time.monotonic() + ttl_s)
        self._lru[(part, key)] = None
        self._lru.move_to_end((part, key))
        while len(self._lru) > self.max_entries:
            (old_part, old_key), _ = self._lru.popitem(last=False)
            op = self._parts.get(old_part)
            if op is not None:
                op.exact.pop(old_key, None)
                if not op.exact:
                    del self._parts[old_part]
