"""The built-in embedder: hashed word, bigram and character-trigram features.

It needs no model and no dependency beyond numpy, and gives the same vector
for the same text on every pod:

- the question goes through :func:`skyroute.router.embed.text.analyze`
  (canonical tokens: synonyms folded, light stemming, a few phrases);
- each content token adds a word feature (weight 1) and its character
  trigrams (a little weight, for typos); stop words add a small weight; each
  pair of neighbouring content tokens adds a bigram feature (word order:
  "from monthly to annual" is not "from annual to monthly");
- features are hashed with a keyed BLAKE2b (stable across processes, unlike
  Python's ``hash``) into a fixed number of signed buckets, and the vector is
  L2-normalized.

Cost: one dictionary look-up per distinct token and per neighbouring pair,
the rest in C. A token's (or pair's) buckets and weights are computed once
and kept packed as bytes of (bucket, weight) records; a request joins its
records (one copy) and numpy sums every bucket in one ``bincount``, in the
order of the features (the same sums as a Python loop would make). A token
never seen before pays its two word hashes; its trigrams come from a
trigram memo (a new word is mostly old trigrams).
"""

from __future__ import annotations

import hashlib
import math
from itertools import pairwise
from typing import TypeVar

import numpy as np

from skyroute.router.embed.base import Vector
from skyroute.router.embed.text import LIGHT, STOP, analyze

DEFAULT_DIM = 512
_WORD_WEIGHT = 1.0
_LIGHT_WEIGHT = 0.5
_STOP_WEIGHT = 0.15
_TRIGRAM_WEIGHT = 0.35  # spread over a word's trigrams (L2)
_BIGRAM_WEIGHT = 0.5
_MEMO_LIMIT = 50_000
# A word feature goes to two buckets at half weight each (L2): one hash collision
# between two different words then shares half a word, not a whole one.
_COPIES = 2
_SPLIT = 1.0 / _COPIES**0.5
# One feature: its bucket and signed weight, packed.
_RECORD = np.dtype([("bucket", "<i8"), ("weight", "<f8")])


K = TypeVar("K")


def _remember(memo: dict[K, bytes], key: K, features: list[tuple[int, float]]) -> bytes:
    """Pack ``features`` as records and keep them under ``key`` (the memo is bounded)."""
    packed = np.array(features, dtype=_RECORD).tobytes()
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = packed
    return packed


class HashingEmbedder:
    """Hashed word, bigram and character-trigram features; see the module docstring."""

    def __init__(self, dim: int = DEFAULT_DIM, key: bytes = b"skyroute-cache-v1") -> None:
        if dim < 16 or dim & (dim - 1):
            raise ValueError(f"HashingEmbedder dim must be a power of two >= 16, got {dim}")
        self._dim = dim
        self._key = key
        self._mask = dim - 1
        self._tokens: dict[str, bytes] = {}
        self._bigrams: dict[tuple[str, str], bytes] = {}
        self._grams: dict[str, tuple[int, float]] = {}

    @property
    def name(self) -> str:
        return f"hashing-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def min_threshold(self) -> float:
        return 0.85

    def _hash(self, feature: str) -> int:
        digest = hashlib.blake2b(feature.encode(), digest_size=8, key=self._key).digest()
        return int.from_bytes(digest, "little")

    def _bucket(self, feature: str) -> tuple[int, float]:
        h = self._hash(feature)
        return h & self._mask, (1.0 if (h >> 63) & 1 else -1.0)

    def _gram(self, gram: str) -> tuple[int, float]:
        hit = self._grams.get(gram)
        if hit is None:
            if len(self._grams) >= _MEMO_LIMIT:
                self._grams.clear()
            hit = self._grams[gram] = self._bucket("c:" + gram)
        return hit

    def _token(self, token: str) -> bytes:
        features: list[tuple[int, float]] = []
        if token in STOP:
            i, s = self._bucket("w:" + token)
            features.append((i, s * _STOP_WEIGHT))
        else:
            weight = (_LIGHT_WEIGHT if token in LIGHT else _WORD_WEIGHT) * _SPLIT
            for k in range(_COPIES):
                i, s = self._bucket(f"w{k}:" + token)
                features.append((i, s * weight))
            padded = f"<{token}>"
            grams = [padded[k : k + 3] for k in range(len(padded) - 2)]
            w = _TRIGRAM_WEIGHT / (len(grams) ** 0.5)
            for g in grams:
                i, s = self._gram(g)
                features.append((i, s * w))
        return _remember(self._tokens, token, features)

    def _bigram(self, pair: tuple[str, str]) -> bytes:
        key = f"b:{pair[0]} {pair[1]}"
        w = _BIGRAM_WEIGHT * _SPLIT
        features: list[tuple[int, float]] = []
        for feature in (key, "1" + key):
            i, s = self._bucket(feature)
            features.append((i, s * w))
        return _remember(self._bigrams, pair, features)

    def embed(self, text: str) -> Vector:
        return self.embed_tokens(analyze(text))

    def embed_tokens(self, tokens: list[str]) -> Vector:
        """The vector of already analyzed tokens (the probe analyzes once for both uses)."""
        memo, bigrams = self._tokens, self._bigrams
        distinct = list(dict.fromkeys(tokens))  # first occurrences, in order
        parts = [memo.get(t) or self._token(t) for t in distinct]
        # Neighbouring content tokens (stop words skipped), unordered: "is shipping
        # free" / "free shipping"; direction words ("from monthly to annual") are
        # checked by the cache's meaning signature instead.
        content = [t for t in distinct if t not in STOP]
        for a, b in pairwise(content):
            pair = (a, b) if a <= b else (b, a)
            parts.append(bigrams.get(pair) or self._bigram(pair))
        if not parts:
            return np.zeros(self._dim, dtype=np.float32)
        records = np.frombuffer(b"".join(parts), dtype=_RECORD)
        acc = np.bincount(records["bucket"], weights=records["weight"], minlength=self._dim)
        norm = math.sqrt(float(acc @ acc))
        if norm == 0.0:
            return np.zeros(self._dim, dtype=np.float32)
        return (acc / norm).astype(np.float32)
