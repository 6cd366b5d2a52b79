"""Embeddings upstream: each family's wire format, and the one POST that carries it.

A family that serves embeddings declares an :class:`EmbeddingWire` in its
registry entry (:mod:`.registry`); a family without one (Anthropic has no
embeddings API) never receives an embeddings request. The wire says where
the request goes (derived from the family's per-target chat URL), encodes an
:class:`EmbedRequest` and decodes the answer into an :class:`EmbedResult`:

- OpenAI: ``POST {endpoint}/embeddings`` with ``input`` (a list of strings),
  ``dimensions``, and ``encoding_format: float`` (the door encodes base64
  itself, so every family answers it the same way);
- Gemini: ``POST {endpoint}/models/{model}:batchEmbedContents`` (one
  request per input, ``outputDimensionality``); Gemini reports no token
  usage here, so the router's estimate stands in.

:func:`embed` is the I/O, in :mod:`.transport`'s manner: one deadline over
connect, send and read, errors classified by the family's rules, and an
answer that is not what the family promised is a ``BAD_RESPONSE`` error (never
vectors of the wrong count or size reaching a client).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from skyroute.router.providers.common import Prepared
from skyroute.router.providers.types import BAD_RESPONSE, ProviderError


@dataclass(slots=True, frozen=True)
class EmbedRequest:
    """Texts to embed, in order, and the vector size asked for (None: the model's own)."""

    inputs: tuple[str, ...]
    dimensions: int | None = None
    prompt_tokens: int = 0  # the router's estimate, for families that report no usage
    # How the door answers the vectors ("float" or "base64"); upstreams always send floats.
    encoding: str = "float"


@dataclass(slots=True)
class EmbedResult:
    vectors: list[list[float]]
    prompt_tokens: int


class EmbeddingWire(Protocol):
    def url(self, prep: Prepared) -> str: ...

    def encode(self, req: EmbedRequest, model: str) -> bytes: ...

    def decode(self, raw: Any, req: EmbedRequest) -> EmbedResult: ...


def _malformed(family: str, why: str) -> ProviderError:
    return ProviderError(BAD_RESPONSE, f"{family}: embeddings answer {why}")


def _floats(values: Any, family: str) -> list[float]:
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise _malformed(family, "has a vector that is not a list of numbers")
    return [float(v) for v in values]


def _checked(vectors: list[list[float]], req: EmbedRequest, family: str) -> list[list[float]]:
    if len(vectors) != len(req.inputs):
        raise _malformed(family, f"has {len(vectors)} vectors for {len(req.inputs)} inputs")
    if req.dimensions is not None and any(len(v) != req.dimensions for v in vectors):
        raise _malformed(family, f"has vectors not of the {req.dimensions} dimensions asked")
    return vectors


class OpenAIEmbeddings:
    def url(self, prep: Prepared) -> str:
        return prep.url.removesuffix("/chat/completions") + "/embeddings"

    def encode(self, req: EmbedRequest, model: str) -> bytes:
        body: dict[str, Any] = {"model": model, "input": list(req.inputs)}
        body["encoding_format"] = "float"
        if req.dimensions is not None:
            body["dimensions"] = req.dimensions
        return orjson.dumps(body)

    def decode(self, raw: Any, req: EmbedRequest) -> EmbedResult:
        data = raw.get("data") if isinstance(raw, dict) else None
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise _malformed("openai", "has no 'data' list")
        ordered = sorted(data, key=lambda d: d.get("index", 0))
        vectors = [_floats(d.get("embedding"), "openai") for d in ordered]
        usage = raw.get("usage") if isinstance(raw.get("usage"), dict) else {}
        tokens = usage.get("prompt_tokens")
        return EmbedResult(
            _checked(vectors, req, "openai"),
            tokens if isinstance(tokens, int) and tokens >= 0 else req.prompt_tokens,
        )


class GeminiEmbeddings:
    def url(self, prep: Prepared) -> str:
        return prep.url.removesuffix(":generateContent") + ":batchEmbedContents"

    def encode(self, req: EmbedRequest, model: str) -> bytes:
        one: dict[str, Any] = {"model": "models/" + model}
        if req.dimensions is not None:
            one["outputDimensionality"] = req.dimensions
        requests = [{**one, "content": {"parts": [{"text": t}]}} for t in req.inputs]
        return orjson.dumps({"requests": requests})

    def decode(self, raw: Any, req: EmbedRequest) -> EmbedResult:
        got = raw.get("embeddings") if isinstance(raw, dict) else None
        if not isinstance(got, list) or not all(isinstance(e, dict) for e in got):
            raise _malformed("gemini", "has no 'embeddings' list")
        vectors = [_floats(e.get("values"), "gemini") for e in got]
        return EmbedResult(_checked(vectors, req, "gemini"), req.prompt_tokens)
