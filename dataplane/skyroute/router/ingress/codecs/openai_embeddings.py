"""OpenAI Embeddings: ``POST /v1/embeddings``.

The official ``openai`` SDK's ``client.embeddings.create`` works unchanged:
``model`` names a RoutingPolicy (or ``auto``) whose pool holds embedding
models (a ModelPool model with ``embeddingSpace``); ``input`` is a string or
a list of strings; ``dimensions`` asks for shorter vectors; the answer is a
``list`` of ``embedding`` objects in input order, each vector as floats or,
with ``encoding_format: base64``, as little-endian float32 bytes in base64
(which the SDK asks for by default and decodes), with ``usage``. The
decision, limits and facts (``x-skyroute-*`` headers) are the Chat door's;
fallback stays within the first model's embedding space. Errors are in the
OpenAI shape: 400s naming the part for a malformed body, token-array input
(not supported), an empty string, too many or too long inputs.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

from skyroute.router.ingress.codecs.fields import json_object, policy, positive_int, string
from skyroute.router.ingress.codecs.openai_chat import HttpIn, HttpReply, OpenAIChat, http_context
from skyroute.router.ingress.types import Answer, Inbound, Prepared, Rejection, invalid
from skyroute.router.providers.embeddings import EmbedRequest
from skyroute.router.providers.types import ChatRequest

#: At most this many inputs in one request (OpenAI's limit).
MAX_INPUTS = 2048
#: At most this many characters in one input (about 8k tokens, OpenAI's per-input limit).
MAX_INPUT_CHARS = 32_768
#: At most this many dimensions asked for.
MAX_DIMENSIONS = 16_384
ENCODINGS = ("float", "base64")


def inputs(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise invalid("input: a string or a non-empty list of strings", "input")
    if len(raw) > MAX_INPUTS:
        raise invalid(f"input: at most {MAX_INPUTS} inputs in one request", "input")
    for i, text in enumerate(raw):
        where = f"input[{i}]"
        if isinstance(text, int | list) and not isinstance(text, bool):
            raise invalid(f"{where}: token arrays are not supported; send text", where)
        string(text, where)
        if not text:
            raise invalid(f"{where}: must not be empty", where)
        if len(text) > MAX_INPUT_CHARS:
            raise invalid(f"{where}: at most {MAX_INPUT_CHARS} characters", where)
    return tuple(raw)


def _encoding(raw: Any) -> str:
    if raw is None:
        return "float"
    if raw not in ENCODINGS:
        raise invalid("encoding_format: one of " + ", ".join(ENCODINGS), "encoding_format")
    return str(raw)


def _vector(values: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return values
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


class OpenAIEmbeddings:
    """The Embeddings codec (``POST /v1/embeddings``); never streams."""

    __slots__ = ()

    def decode(self, wire: HttpIn) -> Inbound:
        data = json_object(wire.body)
        if "input" not in data:
            raise invalid("input: required", "input")
        texts = inputs(data["input"])
        dimensions = positive_int(data.get("dimensions"), "dimensions")
        if dimensions is not None and dimensions > MAX_DIMENSIONS:
            raise invalid(f"dimensions: at most {MAX_DIMENSIONS}", "dimensions")
        user = data.get("user")
        hdr = wire.headers
        # The texts as user turns: the signals (size, locale, intent) see what is embedded.
        chat = ChatRequest(messages=[{"role": "user", "content": t} for t in texts])
        context = {**http_context(hdr), "idempotency_key": ""}  # no side effects to guard
        return Inbound(
            policy=policy(data),
            chat=chat,
            user=string(user, "user") if user is not None else hdr.get("x-skyroute-user", ""),
            session=hdr.get("x-skyroute-session", ""),
            embed=EmbedRequest(texts, dimensions, encoding=_encoding(data.get("encoding_format"))),
            **context,
        )

    def answer(self, answer: Answer) -> HttpReply:
        served = answer.served
        embed = answer.prepared.inbound.embed
        result = served.result if served is not None else None
        encoding = embed.encoding if embed is not None else "float"
        vectors = result.vectors if result is not None else []
        tokens = answer.rec["prompt_tokens"]
        body = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _vector(v, encoding)}
                for i, v in enumerate(vectors)
            ],
            "model": answer.rec["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return HttpReply(200, answer.facts, orjson.dumps(body))

    def reject(self, rejection: Rejection) -> HttpReply:
        return OpenAIChat().reject(rejection)

    def explained(self, prepared: Prepared) -> HttpReply:
        return OpenAIChat().explained(prepared)

    def stream(self, prepared: Prepared) -> Any:
        """Never called: an Embeddings request does not stream (the Chat framing, typed)."""
        return OpenAIChat().stream(prepared)
