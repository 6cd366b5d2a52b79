"""Question embeddings, shared by every reader of a request's meaning.

The intent classifier (:mod:`skyroute.router.decide`), the semantic cache
(:mod:`skyroute.router.cache`) and any later learned signal read the same
vector: the request carries one :class:`Embeddings` (on its signals), so an
embedder runs at most once per request, on the first :data:`EMBED_CHARS`
characters of the lower-cased last user message.

- :mod:`.base`: the :class:`Embedder` interface, the text bound, the
  per-request :class:`Embeddings`;
- :mod:`.text`: question analysis (canonical tokens, the meaning signature);
- :mod:`.hashing`: the built-in embedder (hashed word, bigram and trigram
  features; no model, numpy only, tens of microseconds);
- :mod:`.minilm`: all-MiniLM-L6-v2 (the optional ``[embeddings]`` extra).

:func:`load_embedder` is the registry of names (``--cache-embedder``). An
embedder's name is part of every cache partition key, so vectors of
different embedders are never compared. This package imports nothing else of
the router: the routing table, the decision and the cache build on it.
"""

from __future__ import annotations

from collections.abc import Callable

from skyroute.router.embed.base import EMBED_CHARS, Embedder, Embeddings, Vector
from skyroute.router.embed.hashing import HashingEmbedder


def _minilm() -> Embedder:
    from skyroute.router.embed.minilm import MiniLMEmbedder

    return MiniLMEmbedder()


#: Embedder names (``--cache-embedder``) to their constructors; the first is the default.
EMBEDDERS: dict[str, Callable[[], Embedder]] = {
    "hashing": HashingEmbedder,
    "minilm": _minilm,
}


def load_embedder(name: str = "hashing") -> Embedder:
    """A new embedder by name ("" is the default); see :data:`EMBEDDERS`."""
    make = EMBEDDERS.get(name or next(iter(EMBEDDERS)))
    if make is None:
        raise ValueError(f"unknown cache embedder {name!r}: expected one of {sorted(EMBEDDERS)}")
    return make()


__all__ = [
    "EMBEDDERS",
    "EMBED_CHARS",
    "Embedder",
    "Embeddings",
    "HashingEmbedder",
    "Vector",
    "load_embedder",
]
