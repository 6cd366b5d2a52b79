"""Partition keys and probes: the hard walls between cached answers.

An answer may only ever be served to a request that would have produced it:
same policy, same tenant, same locale, same safety class, same intent, and
the same everything-but-the-question (system prompt, earlier turns, model
parameters, tool set). All of that goes into the partition key, which is
the first thing every backend looks up; entries of another partition are
not filtered out after a search, they are never searched.

Determinism matters as much as completeness: one gateway's users reported
identical requests missing because its hash depended on dictionary order.
Here the context is serialized canonically (orjson with sorted keys,
whitespace runs in message text folded, numbers as floats, tools sorted by
name, ``None`` parameters dropped) and hashed with BLAKE2b, so the key is
the same on every pod and every run. Request parameters are taken from
every field of :class:`ChatRequest` except the messages and tools, so a
parameter added there later (``top_p``, ``seed``) joins the key by itself.

A backend stores the partition's readable ``label`` next to each answer and
compares it on every read: a hash collision, or a bug anywhere in key
handling, then shows up as a miss, never as another tenant's answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from skyroute.router.cache.guard import message_text
from skyroute.router.cache.invalidate import SEP
from skyroute.router.embed import EMBED_CHARS, Embedder, Embeddings, HashingEmbedder, Vector
from skyroute.router.embed.text import Signature, analyze, exact_text, signature
from skyroute.router.providers.types import ChatRequest

_SPACE = re.compile(r"\s+")


@dataclass(slots=True, frozen=True)
class Scope:
    """Who is asking, as far as sharing answers goes; every field is a hard wall."""

    policy: str
    tenant: str
    locale: str
    safety_class: str
    intent: str


#: Options that name who asks or how the call is billed, never what is answered: kept
#: out of the cache key (a per-user ``user`` id would give every user a cache of one).
_NOT_SHAPING = frozenset({"user", "metadata", "store", "service_tier"})


def request_params(req: ChatRequest) -> dict[str, Any]:
    """Every request field that shapes the answer, besides messages and tools."""
    out = {
        f.name: getattr(req, f.name)
        for f in dataclasses.fields(req)
        if f.name not in ("messages", "tools")
    }
    options = out.get("options")
    if isinstance(options, dict) and _NOT_SHAPING.intersection(options):
        out["options"] = {k: v for k, v in options.items() if k not in _NOT_SHAPING}
    return out


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _SPACE.sub(" ", value.strip())
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return repr(value)


def _tool_name(tool: Any) -> str:
    if isinstance(tool, dict):
        fn = tool.get("function")
        if isinstance(fn, dict):
            return str(fn.get("name", ""))
        return str(tool.get("name", ""))
    return ""


def context_digest(messages: list[dict[str, Any]], params: dict[str, Any], tools: list[Any]) -> str:
    """Canonical hash of everything except the last message (the question)."""
    context = {
        "messages": [
            {
                "role": str(m.get("role", "")),
                "content": _canonical(message_text(m.get("content"))),
                "name": str(m.get("name", "")),
            }
            for m in messages[:-1]
        ],
        "params": _canonical({k: v for k, v in params.items() if v is not None}),
        "tools": _canonical(sorted(tools, key=_tool_name)),
    }
    blob = orjson.dumps(context, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


@dataclass(slots=True)
class Probe:
    """One request's view of the cache: its partition, its question, lazily its vector."""

    scope: Scope
    label: str  # readable, complete partition identity, stored with answers
    partition: str  # hash of the label: what backends key on
    question: str  # the last user message as sent
    exact: str  # exact_text(question)
    text_key: str  # hash of `exact`: the exact layer's key inside the partition
    tokens: list[str]  # analyze(question)
    signature: Signature
    embedder: Embedder
    # The request's embeddings, shared with the intent classifier (one per embedder).
    shared: Embeddings = field(default_factory=Embeddings, repr=False)
    _vector: Vector | None = field(default=None, repr=False)

    def vector(self) -> Vector:
        """The question's embedding, computed on first use (exact hits never pay for it).

        It is the vector of the lower-cased question that the intent classifier
        reads too, so a request embeds once. A question longer than
        :data:`~skyroute.router.embed.EMBED_CHARS` gets the zero vector: its
        meaning is not all in the embedded part, so it is served from the exact
        layer only, and never matches (or is matched by) another question.
        """
        if self._vector is None:
            if len(self.question) > EMBED_CHARS:
                self._vector = np.zeros(self.embedder.dim, dtype=np.float32)
            else:
                e = self.embedder
                make = (
                    (lambda: e.embed_tokens(self.tokens))
                    if isinstance(e, HashingEmbedder)
                    else None
                )
                self._vector = self.shared.get(e, self.question.lower(), make)
        return self._vector


def make_probe(
    scope: Scope,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    tools: list[Any],
    embedder: Embedder,
    shared: Embeddings | None = None,
) -> Probe:
    question = message_text(messages[-1].get("content"))
    label = SEP.join(
        (
            "v1",
            scope.policy,
            scope.tenant,
            scope.locale,
            scope.safety_class,
            scope.intent,
            context_digest(messages, params, tools),
            embedder.name,
        )
    )
    exact = exact_text(question)
    # A question past EMBED_CHARS is served from the exact layer only (see Probe.vector):
    # its words are not analysed, so a 10 MB prompt costs one pass, not a tokenisation.
    tokens = analyze(question) if len(question) <= EMBED_CHARS else []
    return Probe(
        scope=scope,
        label=label,
        partition=hashlib.blake2b(label.encode(), digest_size=16).hexdigest(),
        question=question,
        exact=exact,
        text_key=hashlib.blake2b(exact.encode(), digest_size=16).hexdigest(),
        tokens=tokens,
        signature=signature(tokens),
        embedder=embedder,
        shared=shared if shared is not None else Embeddings(),
    )
