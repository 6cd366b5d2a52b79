"""The I/O half of every adapter: one POST, deadlines, and error classification.

``complete`` is a POST under one overall deadline (aiohttp's ``total``
timeout, which covers connecting, sending and reading the answer). ``stream`` has two
deadlines, because the router's failover promise depends on them: until the
first token (text or the start of a tool call, not merely the HTTP headers
or a ``message_start``) the first-token deadline applies and a miss is
``FIRST_TOKEN_TIMEOUT``, which the router may fail over from; after it, the
overall deadline applies and a break, or a stall past that deadline, is
``STREAM_CUT`` (never the retryable ``TIMEOUT``), which it must not paper
over, since the client has already received part of an answer.

Deadlines are absolute loop times checked with ``asyncio.timeout_at`` around
each socket read, never around a ``yield``: a timeout scope spanning a yield
would fire inside the consumer's code. Bytes are read with ``readany`` and
cut into payloads by the family's framing (:class:`~.sse.SSEDecoder` for the
families but Bedrock, AWS's binary event stream for it), so a burst of events costs one
await. A family whose auth scheme signs each request gets its signer awaited with the
final headers, under the attempt's deadline (it may have to fetch fresh credentials).

The W3C trace context current at the call (the router's attempt span) goes
upstream as ``traceparent``/``tracestate`` headers, so a provider or gateway
that traces joins the caller's trace; with no valid span the prepared headers
are sent as they are, without a copy.

``embed`` is one embeddings POST (the family's :class:`~.embeddings.EmbeddingWire`
says where and in which format), under ``complete``'s deadline and error rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
from opentelemetry import propagate, trace

from skyroute.router.providers.common import Adapter, Prepared
from skyroute.router.providers.embeddings import EmbeddingWire, EmbedRequest, EmbedResult
from skyroute.router.providers.errors import classify_exception, classify_status
from skyroute.router.providers.types import (
    BAD_RESPONSE,
    FIRST_TOKEN_TIMEOUT,
    STREAM_CUT,
    ChatRequest,
    ChatResult,
    ProviderError,
    StreamEvent,
)


async def _outgoing(
    prep: Prepared, url: str, headers: dict[str, str], body: bytes, deadline: float | None = None
) -> dict[str, str]:
    """The headers to send: trace context, then the family's signature if it signs.

    A signer may wait for credentials (fetched off the loop); ``deadline`` bounds that wait.
    """
    out = traced(headers)
    if prep.sign is None:
        return out
    if deadline is None:
        return await prep.sign(url, out, body)
    async with asyncio.timeout_at(deadline):
        return await prep.sign(url, out, body)


def traced(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus the current trace context, or ``headers`` itself when there is none."""
    if not trace.get_current_span().get_span_context().is_valid:
        return headers
    out = dict(headers)
    propagate.inject(out)
    return out


def _encode(adapter: Adapter, req: ChatRequest, model: str, stream: bool) -> bytes:
    """The request body; a refusal here is the router's own word, which the client may read."""
    try:
        return adapter.encode(req, model, stream)
    except ProviderError as e:
        e.public = True
        raise


async def complete(
    session: aiohttp.ClientSession,
    adapter: Adapter,
    prep: Prepared,
    req: ChatRequest,
    timeout_s: float,
) -> ChatResult:
    body = _encode(adapter, req, prep.model, False)
    family = adapter.family
    # aiohttp's own total timeout (connect, send, read): the same deadline as an
    # asyncio.timeout scope around the call, with less work per request (measured).
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        sent = await _outgoing(prep, prep.url, prep.headers, body, deadline)
        async with session.post(prep.url, data=body, headers=sent, timeout=timeout) as resp:
            status = resp.status
            raw = await resp.read()
            headers = resp.headers
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise classify_exception(family, exc, False, prep.api_key) from None
    if status != 200:
        raise classify_status(family, status, raw, headers, prep.api_key, prep.invalid_as_500)
    return adapter.decode(raw)


async def stream(
    session: aiohttp.ClientSession,
    adapter: Adapter,
    prep: Prepared,
    req: ChatRequest,
    first_token_timeout_s: float,
    timeout_s: float,
    inter_token_timeout_s: float | None = None,
) -> AsyncIterator[StreamEvent]:
    body = _encode(adapter, req, prep.model, True)
    family = adapter.family
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + timeout_s
    first_deadline = min(start + first_token_timeout_s, end)
    try:
        async with asyncio.timeout_at(first_deadline):
            headers = await _outgoing(prep, prep.stream_url, prep.stream_headers, body)
            resp = await session.post(prep.stream_url, data=body, headers=headers)
    except TimeoutError:
        raise _no_first_token(family, first_token_timeout_s) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise classify_exception(family, exc, False, prep.api_key) from None
    try:
        if resp.status != 200:
            try:
                async with asyncio.timeout_at(first_deadline):
                    raw = await resp.read()
            except (aiohttp.ClientError, TimeoutError, OSError):
                raw = b""
            raise classify_status(
                family, resp.status, raw, resp.headers, prep.api_key, prep.invalid_as_500
            )
        asm = adapter.assembler()
        decoder = prep.framing()
        content = resp.content
        started = False
        gap = inter_token_timeout_s or timeout_s
        while True:
            # After the first token each read gets the inter-token gap, bounded by the end.
            deadline = min(end, loop.time() + gap) if started else first_deadline
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await content.readany()
            except TimeoutError:
                if started:  # tokens are out: never retryable, so a cut, not a TIMEOUT
                    why = (
                        f"no token for {gap:g}s"
                        if deadline < end
                        else f"not finished within {timeout_s:g}s"
                    )
                    raise ProviderError(STREAM_CUT, f"{family}: stream stalled: {why}") from None
                raise _no_first_token(family, first_token_timeout_s) from None
            if not chunk:
                payloads = decoder.close()
                for data in payloads:
                    for event in asm.feed(data):
                        yield event
                for event in asm.at_eof():
                    yield event
                return
            for data in decoder.feed(chunk):
                try:
                    events = asm.feed(data)
                except ProviderError as exc:
                    raise _after_start(exc, asm.started or started) from None
                for event in events:
                    yield event
                if asm.done:
                    for event in asm.at_eof():
                        yield event
                    return
            started = started or asm.started
    except ProviderError:
        resp.close()
        raise
    except (aiohttp.ClientError, OSError) as exc:
        resp.close()
        raise classify_exception(family, exc, started, prep.api_key) from None
    finally:
        resp.release()


async def embed(
    session: aiohttp.ClientSession,
    family: str,
    wire: EmbeddingWire,
    prep: Prepared,
    req: EmbedRequest,
    timeout_s: float,
) -> EmbedResult:
    """One embeddings POST under one overall deadline, errors classified as ``complete``'s."""
    body = wire.encode(req, prep.model)
    url = wire.url(prep)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        sent = await _outgoing(prep, url, prep.headers, body, deadline)
        async with session.post(
            url, data=body, headers=sent, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            status, raw, headers = resp.status, await resp.read(), resp.headers
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise classify_exception(family, exc, False, prep.api_key) from None
    if status != 200:
        raise classify_status(family, status, raw, headers, prep.api_key)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProviderError(BAD_RESPONSE, f"{family}: embeddings answer is not JSON") from None
    return wire.decode(parsed, req)


def _no_first_token(family: str, limit: float) -> ProviderError:
    return ProviderError(FIRST_TOKEN_TIMEOUT, f"{family}: no first token within {limit:g}s")


def _after_start(exc: ProviderError, started: bool) -> ProviderError:
    """A failure reported inside a stream: once tokens are out it can only be a cut."""
    if started and exc.error_class != STREAM_CUT:
        return ProviderError(
            STREAM_CUT, f"stream failed after it started: {exc.message}", status=exc.status
        )
    return exc
