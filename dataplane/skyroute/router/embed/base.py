"""The embedder interface, the text bound, and one request's embeddings.

An embedder turns question text into an L2-normalized float32 vector,
deterministically (the same vector for the same text on every pod, since a
vector one pod stored in Redis is compared with a query another pod
embedded). Every reader of a request's meaning (the intent classifier, the
semantic cache, later learned signals) embeds the same text: the last user
message, lower-cased, cut to its first :data:`EMBED_CHARS` characters (the
ask is in its first words; pasted context after it adds noise and time), and
through :class:`Embeddings` each embedder runs at most once per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]

#: How much of the question any embedder reads.
EMBED_CHARS = 400


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


class Embeddings:
    """One request's question vectors, each computed on first use and then shared.

    Keyed by embedder name and text, so a reader that embeds other text (or
    with another embedder) gets its own vector, never a wrong one.
    """

    __slots__ = ("_vectors",)

    def __init__(self) -> None:
        self._vectors: dict[tuple[str, str], Vector] = {}

    def __len__(self) -> int:
        return len(self._vectors)

    def get(
        self, embedder: Embedder, text: str, make: Callable[[], Vector] | None = None
    ) -> Vector:
        """The vector of ``text[:EMBED_CHARS]``; ``make`` computes it on a miss (same text)."""
        text = text[:EMBED_CHARS]
        key = (embedder.name, text)
        vec = self._vectors.get(key)
        if vec is None:
            vec = self._vectors[key] = make() if make is not None else embedder.embed(text)
        return vec
