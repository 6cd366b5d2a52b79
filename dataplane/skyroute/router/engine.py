"""Serving a decided request: cache, attempts along the chain, outcome.

One engine per router process. It owns the rules every request follows
after the decision:

- A cacheable decision looks in the cache first; a hit costs nothing and is
  answered without an upstream call.
- Attempts walk the decision's chain in order, at most ``max_attempts`` in
  all, inside one request deadline that bounds every attempt's timeout. A
  retryable failure (timeout, connect error, 429, 5xx, ...) moves on to the
  next candidate; a client error (a 400 the next model would also refuse)
  stops at once.
- Streaming: nothing is emitted before the first upstream event, so a failure
  before it falls back silently; after it, a failure becomes an explicit
  :class:`StreamFailed` event and never a clean end.
- Every request ends in one ``Outcome`` handed to the reporter.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
from skyroute.router import providers
from skyroute.router.cache import Partition, ResponseCache, context_hash
from skyroute.router.decide import Decision, Signals
from skyroute.router.providers.types import (
    TIMEOUT,
    ChatRequest,
    ChatResult,
    ProviderError,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallEvent,
)
from skyroute.router.table import Candidate
from skyroute.v1 import distribution_pb2

NO_CANDIDATE = "no_candidate"


@dataclass(slots=True)
class AttemptRecord:
    model: str
    provider: str
    error_class: str  # "" on success
    status: int
    duration_ms: float


@dataclass(slots=True)
class RequestContext:
    request_id: str = ""
    no_cache: bool = False
    stream: bool = False
    started: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class Served:
    """How a request ended (unary, or the summary of a stream)."""

    decision: Decision
    result: ChatResult | None = None
    candidate: Candidate | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    cost_usd: float = 0.0
    cache_hit: bool = False
    cache_similarity: float = 0.0
    error: ProviderError | None = None
    cached_model: str = ""

    @property
    def model(self) -> str:
        return self.candidate.model if self.candidate else self.cached_model


@dataclass(slots=True)
class StreamStarted:
    """Emitted once, right before the first content event: headers can go out now."""

    served: Served


@dataclass(slots=True)
class StreamDone:
    """Last on success: the served request, complete with usage, cost and attempts."""

    served: Served


@dataclass(slots=True)
class StreamFailed:
    served: Served


StreamItem = StreamStarted | TextDelta | ToolCallEvent | StreamDone | StreamFailed


class Engine:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        report: Callable[[distribution_pb2.Outcome], None],
    ) -> None:
        self.session = session
        self.report = report
        self.cache = ResponseCache()

    # -- cache -----------------------------------------------------------------
    def _partition(self, d: Decision, s: Signals, req: ChatRequest) -> Partition:
        params = (req.max_tokens, req.temperature)
        return (d.policy.name, s.tenant, s.locale, d.intent, context_hash(req.messages, params))

    def _cached(self, d: Decision, s: Signals, req: ChatRequest, ctx: RequestContext,
                part: Partition | None) -> Served | None:
        if part is None:
            return None
        hit = self.cache.lookup(part, s.text, d.policy.cache.threshold)
        if hit is None:
            return None
        entry, sim = hit
        return Served(d, result=entry.result, cache_hit=True, cache_similarity=sim,
                      cached_model=entry.model)

    def _store(self, d: Decision, s: Signals, part: Partition | None, served: Served) -> None:
        if part is None or served.result is None or served.candidate is None:
            return
        if served.result.tool_calls or served.result.finish_reason != "stop":
            return
        self.cache.max_entries = d.policy.cache.max_entries
        self.cache.store(part, s.text, served.result, served.candidate.model, d.policy.cache.ttl_s)

    # -- unary -----------------------------------------------------------------
    async def complete(
        self, d: Decision, s: Signals, req: ChatRequest, ctx: RequestContext
    ) -> Served:
        part = self._partition(d, s, req) if d.cacheable and not ctx.no_cache else None
        served = self._cached(d, s, req, ctx, part)
        if served is None:
            served = await self._attempts(d, req, ctx)
            self._store(d, s, part, served)
        self._outcome(served, s, ctx)
        return served

    async def _attempts(self, d: Decision, req: ChatRequest, ctx: RequestContext) -> Served:
        served = Served(d)
        policy = d.policy
        deadline = ctx.started + policy.request_timeout_s
        for cand in d.chain[: policy.max_attempts]:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                served.error = ProviderError(TIMEOUT, "request deadline exceeded")
                break
            t0 = time.perf_counter()
            try:
                result = await providers.complete(
                    self.session, cand.target, req, min(cand.timeout_s, remaining)
                )
            except ProviderError as e:
                served.attempts.append(AttemptRecord(
                    cand.model, cand.provider, e.error_class, e.status,
                    (time.perf_counter() - t0) * 1000.0))
                served.error = e
                if not e.retryable:
                    break
                continue
            served.attempts.append(AttemptRecord(
                cand.model, cand.provider, "", 200, (time.perf_counter() - t0) * 1000.0))
            served.result, served.candidate, served.error = result, cand, None
            served.cost_usd = cand.cost(result.prompt_tokens, result.completion_tokens)
            return served
        if not d.chain:
            served.error = ProviderError(NO_CANDIDATE, f"no candidate in pool {d.pool!r} "
                                         "can serve this request (tools or context window)")
        return served

    # -- streaming -------------------------------------------------------------
    async def stream(
        self, d: Decision, s: Signals, req: ChatRequest, ctx: RequestContext
    ) -> AsyncIterator[StreamItem]:
        part = self._partition(d, s, req) if d.cacheable and not ctx.no_cache else None
        cached = self._cached(d, s, req, ctx, part)
        if cached is not None and cached.result is not None:
            yield StreamStarted(cached)
            yield TextDelta(cached.result.content)
            self._outcome(cached, s, ctx)
            yield StreamDone(cached)
            return
        served = Served(d)
        policy = d.policy
        deadline = ctx.started + policy.request_timeout_s
        for cand in d.chain[: policy.max_attempts]:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                served.error = ProviderError(TIMEOUT, "request deadline exceeded")
                break
            t0 = time.perf_counter()
            # An async generator in fact; typed as such so it can be closed early.
            events = cast(AsyncGenerator[StreamEvent, None], providers.stream(
                self.session, cand.target, req,
                min(policy.first_token_timeout_s, remaining), remaining))
            try:
                first = await anext(events)
            except (ProviderError, StopAsyncIteration) as exc:
                err = exc if isinstance(exc, ProviderError) else ProviderError(
                    "stream_cut", "stream ended before its first event")
                served.attempts.append(AttemptRecord(
                    cand.model, cand.provider, err.error_class, err.status,
                    (time.perf_counter() - t0) * 1000.0))
                served.error = err
                await events.aclose()
                if not err.retryable:
                    break
                continue
            # Committed to this candidate: from here on a failure is visible.
            served.candidate, served.error = cand, None
            yield StreamStarted(served)
            text: list[str] = []
            calls: list[dict[str, Any]] = []
            item: StreamEvent = first
            try:
                while True:
                    if isinstance(item, StreamEnd):
                        served.result = ChatResult("".join(text), calls, item.finish_reason,
                                                   item.prompt_tokens, item.completion_tokens)
                        served.cost_usd = cand.cost(item.prompt_tokens, item.completion_tokens)
                        break
                    if isinstance(item, TextDelta):
                        text.append(item.text)
                    else:
                        calls.append(item.call)
                    yield item
                    item = await anext(events)
            except (ProviderError, StopAsyncIteration) as exc:
                err = exc if isinstance(exc, ProviderError) else ProviderError(
                    "stream_cut", "upstream stream ended without its final event")
                served.error = err
                served.attempts.append(AttemptRecord(
                    cand.model, cand.provider, err.error_class, err.status,
                    (time.perf_counter() - t0) * 1000.0))
                self._outcome(served, s, ctx)
                yield StreamFailed(served)
                return
            finally:
                await events.aclose()
            served.attempts.append(AttemptRecord(
                cand.model, cand.provider, "", 200, (time.perf_counter() - t0) * 1000.0))
            self._store(d, s, part, served)
            self._outcome(served, s, ctx)
            yield StreamDone(served)
            return
        if not d.chain:
            served.error = ProviderError(NO_CANDIDATE, f"no candidate in pool {d.pool!r} "
                                         "can serve this request (tools or context window)")
        self._outcome(served, s, ctx)
        yield StreamFailed(served)

    # -- outcome ---------------------------------------------------------------
    def _outcome(self, served: Served, s: Signals, ctx: RequestContext) -> None:
        d = served.decision
        r = served.result
        attempts = len(served.attempts)
        ok = served.error is None
        self.report(distribution_pb2.Outcome(
            request_id=ctx.request_id or uuid.uuid4().hex,
            policy=d.policy.name,
            snapshot_version=d.policy.snapshot_version,
            policy_version=d.policy.version,
            pool=d.pool,
            model=served.model,
            intent=d.intent,
            latency_ms=(time.perf_counter() - ctx.started) * 1000.0,
            prompt_tokens=r.prompt_tokens if r else 0,
            completion_tokens=r.completion_tokens if r else 0,
            cost_usd=served.cost_usd,
            error_class="" if ok else (served.error.error_class if served.error else ""),
            fallback_depth=max(0, attempts - 1) if ok else attempts,
            cache_hit=served.cache_hit,
            attempts=attempts,
            stream=ctx.stream,
            unix_ms=int(time.time() * 1000),
        ))
