"""Deterministic embeddings in the OpenAI and Gemini wire formats.

A vector is a function of (model, text, dimensions) only: a unit vector
drawn from a generator seeded by a hash of the three, so the same text
embeds the same way on every run and two models never agree (as real
models of different embedding spaces do not). The default size is
:data:`DEFAULT_DIMENSIONS`.

- OpenAI ``POST /openai/v1/embeddings``: ``input`` a string or a list of
  strings, ``dimensions``, ``encoding_format`` (``float`` or ``base64``),
  answered with ``data``/``usage``;
- Gemini ``POST /gemini/v1beta/models/{model}:embedContent`` (``content``,
  ``outputDimensionality``) and ``:batchEmbedContents`` (``requests``).

A malformed body is a :class:`~.wire.WireError` (the family's 400).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from skyroute.simulator.wire import WireError

DEFAULT_DIMENSIONS = 64
MAX_DIMENSIONS = 16_384  # the router's own bound, so the stand-in refuses nothing it lets by


@dataclass(slots=True)
class EmbedAsk:
    model: str
    texts: list[str]
    dimensions: int
    base64: bool = False


def vector(model: str, text: str, dimensions: int) -> list[float]:
    seed = hashlib.blake2b(f"{model}\x1f{dimensions}\x1f{text}".encode(), digest_size=8)
    v = np.random.default_rng(int.from_bytes(seed.digest(), "big")).standard_normal(dimensions)
    return [float(x) for x in (v / np.linalg.norm(v)).astype(np.float32)]


def _dimensions(raw: Any) -> int:
    if raw is None:
        return DEFAULT_DIMENSIONS
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_DIMENSIONS:
        raise WireError(f"dimensions must be an integer from 1 to {MAX_DIMENSIONS}")
    return raw


def _text(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise WireError(f"{where} must be a non-empty string")
    return raw


def parse_openai(body: Any) -> EmbedAsk:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise WireError("you must provide a model parameter")
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts:
        raise WireError("'input' must be a string or a non-empty array of strings")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise WireError("'encoding_format' must be 'float' or 'base64'")
    return EmbedAsk(
        body["model"],
        [_text(t, f"input[{i}]") for i, t in enumerate(texts)],
        _dimensions(body.get("dimensions")),
        fmt == "base64",
    )


def render_openai(ask: EmbedAsk, prompt_tokens: int) -> bytes:
    data = []
    for i, text in enumerate(ask.texts):
        v = vector(ask.model, text, ask.dimensions)
        emb: Any = base64.b64encode(np.asarray(v, "<f4").tobytes()).decode() if ask.base64 else v
        data.append({"object": "embedding", "index": i, "embedding": emb})
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return orjson.dumps({"object": "list", "data": data, "model": ask.model, "usage": usage})


def _gemini_one(model: str, req: Any, where: str) -> tuple[str, int]:
    if not isinstance(req, dict) or not isinstance(req.get("content"), dict):
        raise WireError(f"{where}.content is required")
    parts = req["content"].get("parts")
    if not isinstance(parts, list) or not parts:
        raise WireError(f"{where}.content.parts must be a non-empty list")
    text = "".join(_text(p.get("text") if isinstance(p, dict) else None, where) for p in parts)
    return text, _dimensions(req.get("outputDimensionality", req.get("output_dimensionality")))


def parse_gemini(model: str, body: Any, batch: bool) -> EmbedAsk:
    if not batch:
        text, dims = _gemini_one(model, body, "request")
        return EmbedAsk(model, [text], dims)
    reqs = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(reqs, list) or not reqs:
        raise WireError("requests must be a non-empty list")
    got = [_gemini_one(model, r, f"requests[{i}]") for i, r in enumerate(reqs)]
    if len({d for _, d in got}) != 1:
        raise WireError("every request of a batch must ask for the same outputDimensionality")
    return EmbedAsk(model, [t for t, _ in got], got[0][1])


def render_gemini(ask: EmbedAsk, batch: bool) -> bytes:
    vectors = [{"values": vector(ask.model, t, ask.dimensions)} for t in ask.texts]
    return orjson.dumps({"embeddings": vectors} if batch else {"embedding": vectors[0]})
