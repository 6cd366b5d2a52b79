"""Provider adapters: one call surface for every upstream family of the registry.

The router calls :func:`complete` or :func:`stream` with a
:class:`~.types.Target` (provider family, endpoint, model, key) and a
:class:`~.types.ChatRequest` in the OpenAI shape, and gets back a
:class:`~.types.ChatResult` or :data:`~.types.StreamEvent` values in the
OpenAI vocabulary, or a :class:`~.types.ProviderError` whose
``error_class`` is all its fallback logic needs. Each family module
translates; :mod:`.transport` does the I/O and the deadlines the same way
for all of them.

Endpoints, as the official SDKs' base URLs (the simulator serves all three):

- ``openai``:    ``http://HOST:PORT/openai/v1``     (+ ``/chat/completions``)
- ``anthropic``: ``http://HOST:PORT/anthropic``     (+ ``/v1/messages``)
- ``gemini``:    ``http://HOST:PORT/gemini/v1beta`` (+ ``/models/{model}:generateContent``)
- ``azure-openai``: ``http://HOST:PORT/azure``
  (+ ``/openai/deployments/{deployment}/chat/completions?api-version=V``)
- ``bedrock``:   ``http://HOST:PORT/bedrock``       (+ ``/model/{modelId}/converse``)
- ``vertex-gemini`` and ``vertex-anthropic``: ``http://HOST:PORT/vertex``
  (+ ``/v1/projects/P/locations/L/publishers/{google,anthropic}/models/M:METHOD``)
- ``openai-compatible``: ``http://HOST:PORT/selfhosted/v1`` (+ ``/chat/completions``;
  a real server's base URL, e.g. vLLM's ``http://HOST:8000/v1``)

:func:`embed` is one embeddings attempt (:mod:`.embeddings`), for the
families whose registry entry declares an embeddings wire.

Each family is declared once, in :mod:`.registry` (adapter, auth scheme,
framing, capabilities, quirks). Per-target constants (URLs, header dicts
with the key) are built once and
memoised by the target's identity fields, so the per-request work is the
body translation and one ``orjson.dumps``. Keys live only in those header
dicts, never in messages or logs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from skyroute.router.providers import transport, turns
from skyroute.router.providers.common import Adapter, Prepared
from skyroute.router.providers.embeddings import EmbedRequest, EmbedResult
from skyroute.router.providers.registry import FAMILIES
from skyroute.router.providers.types import (
    CLIENT_ERROR,
    ChatRequest,
    ChatResult,
    ProviderError,
    StreamEvent,
    Target,
)

ADAPTERS: dict[str, Adapter] = {name: f.adapter for name, f in FAMILIES.items()}
_PreparedKey = tuple[
    str, str, str, str | None, str | None, str, str | None, str | None, frozenset[str]
]
_PREPARED: dict[_PreparedKey, tuple[Adapter, Prepared]] = {}
_PREPARED_LIMIT = 1024


def prepared(target: Target) -> tuple[Adapter, Prepared]:
    """The adapter and per-target constants for ``target`` (memoised)."""
    key = (
        target.provider,
        target.endpoint,
        target.model,
        target.api_key,
        target.api_version,
        target.auth,
        target.region,
        target.project,
        target.quirks,
    )
    hit = _PREPARED.get(key)
    if hit is None:
        family = FAMILIES.get(target.provider)
        if family is None:
            raise ProviderError(
                CLIENT_ERROR,
                f"target provider {target.provider!r} is not one of {', '.join(FAMILIES)}",
            )
        if len(_PREPARED) >= _PREPARED_LIMIT:
            _PREPARED.clear()
        adapter = family.adapter_for(target)
        hit = _PREPARED[key] = (adapter, family.prepare(target, adapter))
    return hit


async def complete(
    session: aiohttp.ClientSession, target: Target, req: ChatRequest, timeout_s: float
) -> ChatResult:
    """One non-streamed attempt at ``target``; raises ProviderError."""
    adapter, prep = prepared(target)
    return await transport.complete(session, adapter, prep, req, timeout_s)


def stream(
    session: aiohttp.ClientSession,
    target: Target,
    req: ChatRequest,
    first_token_timeout_s: float,
    timeout_s: float,
    inter_token_timeout_s: float | None = None,
) -> AsyncIterator[StreamEvent]:
    """One streamed attempt at ``target``: TextDelta / ToolCallEvent values, then StreamEnd.

    Raises ProviderError from the iteration: FIRST_TOKEN_TIMEOUT (or the
    HTTP error's class) before the first token, STREAM_CUT after it (a break,
    an in-stream error, a missing terminal event, a silence longer than
    inter_token_timeout_s, or a stall past timeout_s).
    """
    try:
        adapter, prep = prepared(target)
    except ProviderError as exc:
        return _raising(exc)
    if prep.one_at_a_time:  # its server cuts a running stream when another request comes
        return turns.one_at_a_time(
            target.endpoint,
            adapter.family,
            first_token_timeout_s,
            timeout_s,
            lambda first, total: transport.stream(
                session, adapter, prep, req, first, total, inter_token_timeout_s
            ),
        )
    return transport.stream(
        session, adapter, prep, req, first_token_timeout_s, timeout_s, inter_token_timeout_s
    )


def embeds(provider: str) -> bool:
    """Whether ``provider``'s family has an embeddings API."""
    family = FAMILIES.get(provider)
    return family is not None and family.embeddings is not None


async def embed(
    session: aiohttp.ClientSession, target: Target, req: EmbedRequest, timeout_s: float
) -> EmbedResult:
    """One embeddings attempt at ``target``; raises ProviderError (CLIENT_ERROR without one)."""
    family = FAMILIES.get(target.provider)
    wire = family.embeddings if family is not None else None
    if wire is None:
        raise ProviderError(CLIENT_ERROR, f"the {target.provider} family serves no embeddings")
    _, prep = prepared(target)
    return await transport.embed(session, target.provider, wire, prep, req, timeout_s)


async def _raising(exc: ProviderError) -> AsyncIterator[StreamEvent]:
    raise exc
    yield  # pragma: no cover - makes this an async generator


__all__ = ["ADAPTERS", "complete", "embed", "embeds", "prepared", "stream"]
