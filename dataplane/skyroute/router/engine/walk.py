"""Serving a decided request: cache, attempts along the chain, outcome.

One engine per router process. It owns the rules every request follows
after the decision:

- A cacheable decision looks in the cache first; a hit costs nothing and is
  answered without an upstream call.
- Attempts walk the decision's chain in order (ejected or cooling endpoints
  last), at most ``max_attempts`` in all, inside one request deadline that
  bounds every attempt's timeout: the router is the one owner of retries
  (adapters never retry). A retryable failure (timeout, connect error, 429,
  5xx, ...) moves on to the next candidate if the router-wide retry budget
  allows; a client error (a 400 the next model would also refuse) stops at
  once; a context-length refusal skips to a candidate with a larger window; a
  content-filter refusal falls back only if the policy says so.
- Requests offering a tool the policy marks non-idempotent get a stricter
  cap and are never sent again after a failure that may have let the
  upstream act (a timeout, a cut stream).
- Hedging (policy opt-in, idempotent tool-free requests only): when the first
  attempt is slower than the endpoint's observed percentile, a second
  candidate starts; the first success wins and the other is cancelled. A
  stream is raced up to its first event only (:mod:`.stream_hedge`).
- Streaming: nothing is emitted before the first upstream event, so a failure
  before it falls back silently; after it, a failure becomes an explicit
  :class:`StreamFailed` event and never a clean end.
- Every request ends in one ``Outcome`` handed to the reporter, and in the
  OpenTelemetry instruments of :mod:`.telemetry`: a request span (continuing
  the caller's W3C trace context) with a child span per cache lookup and per
  attempt; the attempt's context is current while the provider is called, so
  the transport passes ``traceparent`` upstream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
from opentelemetry import context as otel_context
from opentelemetry.trace import Span

from skyroute.router import providers
from skyroute.router.cache import Probe, ResponseCache, Scope, request_params
from skyroute.router.decide import Decision, Signals
from skyroute.router.engine.health import EndpointHealth, RetryBudget
from skyroute.router.engine.stats import WindowStats
from skyroute.router.engine.stream_hedge import first_of_two
from skyroute.router.ids import new_id
from skyroute.router.providers.types import (
    BAD_RESPONSE,
    CONTENT_FILTER,
    CONTEXT_LENGTH,
    FIRST_TOKEN_TIMEOUT,
    STREAM_CUT,
    TIMEOUT,
    ChatRequest,
    ChatResult,
    ProviderError,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallEvent,
)
from skyroute.router.spans import NO_SPAN, Spans, enter, leave
from skyroute.router.table import Candidate, ReliabilitySettings
from skyroute.router.telemetry import RouterMetrics
from skyroute.v1 import distribution_pb2

NO_CANDIDATE = "no_candidate"
CANCELLED = "cancelled"  # a hedged attempt that lost the race
# Failures after which an upstream may already have acted on the request.
_AMBIGUOUS = frozenset({TIMEOUT, FIRST_TOKEN_TIMEOUT, STREAM_CUT, BAD_RESPONSE})


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
    # The caller's trace context (W3C traceparent from HTTP headers or gRPC metadata).
    trace_parent: otel_context.Context | None = None
    span: Span = NO_SPAN


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
    # Why the attempts stopped early, when not obvious from the last error.
    notes: list[str] = field(default_factory=list)

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
        cache: ResponseCache | None = None,
        stats: WindowStats | None = None,
    ) -> None:
        self.session = session
        self.report = report
        self.cache = cache if cache is not None else ResponseCache()
        # Per-(model, intent) sketches for the learning loop, drained by the reporter.
        self.stats = stats if stats is not None else WindowStats()
        self.health = EndpointHealth()
        self.budget = RetryBudget()
        self.hedges = 0
        self.metrics = RouterMetrics()
        self.spans = Spans()

    def _request_span(self, d: Decision, req: ChatRequest, ctx: RequestContext) -> Span:
        ctx.span = self.spans.request(
            ctx.trace_parent,
            {
                "gen_ai.operation.name": "chat",
                "skyroute.policy": d.policy.name,
                "skyroute.policy_version": d.policy.version,
                "skyroute.pool": d.pool,
                "skyroute.intent": d.intent,
                "skyroute.stream": ctx.stream,
            },
            req.messages,
        )
        return ctx.span

    def _attempt_end(self, span: Span, cand: Candidate, served: Served, rec: AttemptRecord) -> None:
        served.attempts.append(rec)
        self.metrics.attempt(
            served.decision.pool,
            cand.model,
            cand.provider,
            rec.error_class,
            rec.duration_ms / 1000.0,
            cand.target.endpoint,
        )
        self.spans.end_attempt(span, cand.model, rec.error_class)

    # -- cache -----------------------------------------------------------------
    def _partition(self, d: Decision, s: Signals, req: ChatRequest) -> Probe | None:
        # None when the request must not use the cache (tools, personal data, ...).
        scope = Scope(d.policy.cache_scope, s.tenant, s.locale, s.safety_class, d.intent)
        return self.cache.probe(scope, req.messages, request_params(req), req.tools)

    async def _cached(
        self, d: Decision, s: Signals, req: ChatRequest, ctx: RequestContext, part: Probe | None
    ) -> Served | None:
        if part is None:
            return None
        span = self.spans.child("cache lookup", ctx.span, {"skyroute.pool": d.pool})
        hit = None
        try:
            hit = await self.cache.lookup(part, self.cache.rule(d.policy.cache, d.intent))
        finally:
            span.set_attribute("skyroute.cache", "miss" if hit is None else "hit")
            span.end()
        if hit is None:
            return None
        return Served(
            d,
            result=hit.answer.result(),
            cache_hit=True,
            cache_similarity=hit.similarity,
            cached_model=hit.answer.model,
        )

    def _store(self, d: Decision, s: Signals, part: Probe | None, served: Served) -> None:
        if part is None or served.result is None or served.candidate is None:
            return
        self.cache.store(
            part, self.cache.rule(d.policy.cache, d.intent), served.result, served.candidate.model
        )

    # -- attempt policy ----------------------------------------------------------
    def _side_effects(self, d: Decision, req: ChatRequest) -> bool:
        """Does the request offer a tool the policy marks non-idempotent?"""
        marked = d.policy.reliability.non_idempotent_tools
        if not marked or not req.tools:
            return False
        return any((t.get("function") or {}).get("name") in marked for t in req.tools)

    @staticmethod
    def _may_continue(e: ProviderError, side_effects: bool, rel: ReliabilitySettings) -> bool:
        if e.error_class == CONTENT_FILTER:
            return rel.content_filter_fallback
        if not e.retryable:
            return False
        # After a timeout the upstream may still have produced a tool call: a side-effecting
        # request is never sent again (the caller decides, with its Idempotency-Key).
        return not (side_effects and e.error_class in _AMBIGUOUS)

    def _admit_attempt(self, served: Served, deadline: float, retry: bool) -> float | None:
        """Seconds left for the next attempt, or None to stop (deadline or retry budget).

        A retry takes a token from the router's retry budget; the caller releases it.
        """
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            served.error = ProviderError(TIMEOUT, "request deadline exceeded")
            return None
        if retry and not self.budget.allow(served.decision.policy.reliability):
            served.notes.append("retry budget exhausted")
            return None
        return remaining

    def _cap(self, d: Decision, side_effects: bool) -> int:
        p = d.policy
        if side_effects:
            return min(p.max_attempts, p.reliability.non_idempotent_max_attempts)
        return p.max_attempts

    # -- unary -----------------------------------------------------------------
    async def complete(
        self, d: Decision, s: Signals, req: ChatRequest, ctx: RequestContext
    ) -> Served:
        span = self._request_span(d, req, ctx)
        token = enter(span)
        try:
            part = self._partition(d, s, req) if d.cacheable and not ctx.no_cache else None
            served = await self._cached(d, s, req, ctx, part)
            if served is None:
                self.budget.active += 1
                try:
                    served = await self._attempts(d, req, ctx)
                finally:
                    self.budget.active -= 1
                self._store(d, s, part, served)
            self._outcome(served, s, ctx)
        except BaseException:
            span.end()  # cancelled before its outcome: the span still ends
            raise
        finally:
            leave(token)
        return served

    async def _one(
        self,
        cand: Candidate,
        req: ChatRequest,
        timeout_s: float,
        served: Served,
        pool: tuple[Candidate, ...],
    ) -> ChatResult:
        """One upstream call, recorded in the attempt trail and in endpoint health."""
        rel = served.decision.policy.reliability
        span = self.spans.attempt(
            cand.model, cand.provider, served.decision.pool, endpoint=cand.target.endpoint
        )
        token = enter(span)
        t0 = time.perf_counter()
        try:
            result = await providers.complete(self.session, cand.target, req, timeout_s)
        except ProviderError as e:
            self._attempt_end(
                span,
                cand,
                served,
                AttemptRecord(
                    cand.model,
                    cand.provider,
                    e.error_class,
                    e.status,
                    (time.perf_counter() - t0) * 1e3,
                ),
            )
            self.health.failure(cand, e.error_class, e.retry_after_s, rel, pool)
            raise
        except asyncio.CancelledError:  # a hedge that lost the race
            self._attempt_end(
                span,
                cand,
                served,
                AttemptRecord(
                    cand.model, cand.provider, CANCELLED, 0, (time.perf_counter() - t0) * 1e3
                ),
            )
            raise
        finally:
            leave(token)
        elapsed = time.perf_counter() - t0
        self._attempt_end(
            span, cand, served, AttemptRecord(cand.model, cand.provider, "", 200, elapsed * 1e3)
        )
        self.metrics.usage(
            cand.model,
            cand.provider,
            result.prompt_tokens,
            result.completion_tokens,
            cand.target.endpoint,
        )
        self.health.success(cand, elapsed)
        return result

    async def _hedged(
        self,
        first: Candidate,
        second: Candidate,
        delay_s: float,
        req: ChatRequest,
        timeout_s: float,
        served: Served,
        pool: tuple[Candidate, ...],
    ) -> tuple[ChatResult, Candidate, bool]:
        """Start ``second`` if ``first`` is still running after ``delay_s``; first win counts.

        Returns (result, candidate that answered, whether the hedge was launched);
        raises the last ProviderError when every launched attempt failed.
        """
        rel = served.decision.policy.reliability
        a = asyncio.create_task(self._one(first, req, timeout_s, served, pool))
        started, _ = await asyncio.wait({a}, timeout=delay_s)
        if started or not self.budget.allow(rel):
            return await a, first, False
        self.hedges += 1
        b = asyncio.create_task(
            self._one(second, req, max(0.001, timeout_s - delay_s), served, pool)
        )
        owner = {a: first, b: second}
        pending: set[asyncio.Task[ChatResult]] = {a, b}
        error: ProviderError | None = None
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        return task.result(), owner[task], True
                    if not isinstance(exc, ProviderError):
                        raise exc
                    error = exc
            assert error is not None
            raise error
        finally:
            self.budget.release()
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    def _hedge_delay(
        self, d: Decision, cand: Candidate, req: ChatRequest, side_effects: bool
    ) -> float | None:
        rel = d.policy.reliability
        if not rel.hedge_enabled or side_effects or req.tools:
            return None
        return rel.hedge_after_s or self.health.percentile(cand, rel.hedge_percentile)

    async def _attempts(self, d: Decision, req: ChatRequest, ctx: RequestContext) -> Served:
        served = Served(d)
        policy = d.policy
        rel = policy.reliability
        deadline = ctx.started + policy.request_timeout_s
        side_effects = self._side_effects(d, req)
        cap = self._cap(d, side_effects)
        chain = self.health.order(d.chain)
        min_window = 0
        i = 0
        while i < len(chain) and len(served.attempts) < cap:
            cand = chain[i]
            i += 1
            if min_window and cand.context_window and cand.context_window <= min_window:
                continue  # a context-length refusal: only a larger window can help
            retry = bool(served.attempts)
            remaining = self._admit_attempt(served, deadline, retry)
            if remaining is None:
                break
            timeout = min(cand.timeout_s, remaining)
            try:
                delay = None if retry else self._hedge_delay(d, cand, req, side_effects)
                nxt = chain[i] if i < len(chain) else None
                if delay is not None and nxt is not None and len(served.attempts) + 1 < cap:
                    result, used, launched = await self._hedged(
                        cand, nxt, delay, req, timeout, served, d.chain
                    )
                    i += int(launched)
                else:
                    result, used = await self._one(cand, req, timeout, served, d.chain), cand
            except ProviderError as e:
                served.error = e
                if not self._may_continue(e, side_effects, rel):
                    break
                if e.error_class == CONTEXT_LENGTH:
                    min_window = max(min_window, cand.context_window or 1)
                continue
            finally:
                if retry:
                    self.budget.release()
            served.result, served.candidate, served.error = result, used, None
            served.cost_usd = used.cost(result.prompt_tokens, result.completion_tokens)
            return served
        if not d.chain:
            served.error = ProviderError(
                NO_CANDIDATE,
                f"no candidate in pool {d.pool!r} can serve this request (tools or context window)",
            )
        return served

    # -- streaming -------------------------------------------------------------
    async def stream(
        self, d: Decision, s: Signals, req: ChatRequest, ctx: RequestContext
    ) -> AsyncIterator[StreamItem]:
        self._request_span(d, req, ctx)  # ended by _outcome, which every stream reaches
        part = self._partition(d, s, req) if d.cacheable and not ctx.no_cache else None
        cached = await self._cached(d, s, req, ctx, part)
        if cached is not None and cached.result is not None:
            yield StreamStarted(cached)
            yield TextDelta(cached.result.content)
            self._outcome(cached, s, ctx)
            yield StreamDone(cached)
            return
        self.budget.active += 1
        try:
            async for item in self._stream_attempts(d, s, req, ctx, part):
                yield item
        finally:
            self.budget.active -= 1

    async def _stream_attempts(
        self,
        d: Decision,
        s: Signals,
        req: ChatRequest,
        ctx: RequestContext,
        part: Probe | None,
    ) -> AsyncIterator[StreamItem]:
        served = Served(d)
        policy = d.policy
        rel = policy.reliability
        deadline = ctx.started + policy.request_timeout_s
        side_effects = self._side_effects(d, req)
        cap = self._cap(d, side_effects)
        min_window = 0
        chain = self.health.order(d.chain)
        i = 0
        while i < len(chain):
            cand = chain[i]
            i += 1
            if len(served.attempts) >= cap:
                break
            if min_window and cand.context_window and cand.context_window <= min_window:
                continue
            retry = bool(served.attempts)
            remaining = self._admit_attempt(served, deadline, retry)
            if remaining is None:
                break
            delay = None if retry else self._hedge_delay(d, cand, req, side_effects)
            if delay is not None and i < len(chain) and len(served.attempts) + 1 < cap:
                # Hedged up to the first event (see stream_hedge): the winner is kept.
                try:
                    (cand, events, aspan, t0), first, launched = await first_of_two(
                        self, cand, chain[i], delay, req, d, ctx, remaining, served
                    )
                except ProviderError as hedge_err:
                    served.error = hedge_err
                    if any(a.model == chain[i].model for a in served.attempts[-2:]):
                        i += 1  # the hedge was launched and failed too: not again
                    if not self._may_continue(hedge_err, side_effects, rel):
                        break
                    continue
                i += int(launched)
            else:
                t0 = time.perf_counter()
                aspan = self.spans.attempt(
                    cand.model, cand.provider, d.pool, ctx.span, cand.target.endpoint
                )
                # An async generator in fact; typed as such so it can be closed early.
                events = cast(
                    AsyncGenerator[StreamEvent, None],
                    providers.stream(
                        self.session,
                        cand.target,
                        req,
                        min(policy.first_token_timeout_s, remaining),
                        remaining,
                        policy.inter_token_timeout_s,
                    ),
                )
                # Current only while the request goes out (no yield in between): traceparent.
                token = enter(aspan)
                try:
                    first = await anext(events)
                except (ProviderError, StopAsyncIteration) as exc:
                    err = (
                        exc
                        if isinstance(exc, ProviderError)
                        else ProviderError(STREAM_CUT, "stream ended before its first event")
                    )
                    self._attempt_end(
                        aspan,
                        cand,
                        served,
                        AttemptRecord(
                            cand.model,
                            cand.provider,
                            err.error_class,
                            err.status,
                            (time.perf_counter() - t0) * 1000.0,
                        ),
                    )
                    self.health.failure(cand, err.error_class, err.retry_after_s, rel, d.chain)
                    served.error = err
                    await events.aclose()
                    if not self._may_continue(err, side_effects, rel):
                        break
                    if err.error_class == CONTEXT_LENGTH:
                        min_window = max(min_window, cand.context_window or 1)
                    continue
                finally:
                    leave(token)
                    if retry:
                        self.budget.release()
            self.metrics.first_chunk(
                cand.model, cand.provider, time.perf_counter() - t0, cand.target.endpoint
            )
            # Committed to this candidate: from here on a failure is visible.
            served.candidate, served.error = cand, None
            yield StreamStarted(served)
            text: list[str] = []
            calls: list[dict[str, Any]] = []
            item: StreamEvent = first
            try:
                while True:
                    if isinstance(item, StreamEnd):
                        served.result = ChatResult(
                            "".join(text),
                            calls,
                            item.finish_reason,
                            item.prompt_tokens,
                            item.completion_tokens,
                        )
                        served.cost_usd = cand.cost(item.prompt_tokens, item.completion_tokens)
                        break
                    if isinstance(item, TextDelta):
                        text.append(item.text)
                    else:
                        calls.append(item.call)
                    yield item
                    item = await anext(events)
            except (ProviderError, StopAsyncIteration) as exc:
                err = (
                    exc
                    if isinstance(exc, ProviderError)
                    else ProviderError(STREAM_CUT, "upstream stream ended without its final event")
                )
                served.error = err
                self._attempt_end(
                    aspan,
                    cand,
                    served,
                    AttemptRecord(
                        cand.model,
                        cand.provider,
                        err.error_class,
                        err.status,
                        (time.perf_counter() - t0) * 1000.0,
                    ),
                )
                self.health.failure(cand, err.error_class, err.retry_after_s, rel, d.chain)
                self._outcome(served, s, ctx)
                yield StreamFailed(served)
                return
            finally:
                await events.aclose()
            elapsed = time.perf_counter() - t0
            self._attempt_end(
                aspan,
                cand,
                served,
                AttemptRecord(cand.model, cand.provider, "", 200, elapsed * 1000.0),
            )
            if served.result is not None:
                self.metrics.usage(
                    cand.model,
                    cand.provider,
                    served.result.prompt_tokens,
                    served.result.completion_tokens,
                    cand.target.endpoint,
                )
            self.health.success(cand, elapsed)
            self._store(d, s, part, served)
            self._outcome(served, s, ctx)
            yield StreamDone(served)
            return
        if not d.chain:
            served.error = ProviderError(
                NO_CANDIDATE,
                f"no candidate in pool {d.pool!r} can serve this request (tools or context window)",
            )
        self._outcome(served, s, ctx)
        yield StreamFailed(served)

    # -- outcome ---------------------------------------------------------------
    def _outcome(self, served: Served, s: Signals, ctx: RequestContext) -> None:
        d = served.decision
        attempts = len(served.attempts)
        ok = served.error is None
        error_class = "" if ok else (served.error.error_class if served.error else "")
        latency_s = time.perf_counter() - ctx.started
        self.stats.observe(served)
        cache = (
            "hit" if served.cache_hit else ("miss" if d.cacheable and not ctx.no_cache else "off")
        )
        model = served.model
        self.metrics.request(
            d.policy.name,
            d.policy.version,
            d.pool,
            d.intent,
            model,
            error_class or "ok",
            cache,
            latency_s,
            served.cost_usd,
            attempts,
        )
        r = served.result
        self.spans.end_request(
            ctx.span,
            model,
            cache,
            attempts,
            served.cost_usd,
            (r.prompt_tokens, r.completion_tokens) if r else None,
            r.content if r else None,
            error_class,
        )
        self._report(served, s, ctx, model, error_class, latency_s)

    def _report(
        self,
        served: Served,
        s: Signals,
        ctx: RequestContext,
        model: str,
        error_class: str,
        latency_s: float,
    ) -> None:
        d = served.decision
        r = served.result
        attempts = len(served.attempts)
        ok = not error_class and served.error is None
        self.report(
            distribution_pb2.Outcome(
                request_id=ctx.request_id or new_id(),
                policy=d.policy.name,
                snapshot_version=d.policy.snapshot_version,
                policy_version=d.policy.version,
                pool=d.pool,
                model=model,
                intent=d.intent,
                latency_ms=latency_s * 1000.0,
                prompt_tokens=r.prompt_tokens if r else 0,
                completion_tokens=r.completion_tokens if r else 0,
                cost_usd=served.cost_usd,
                error_class=error_class,
                fallback_depth=max(0, attempts - 1) if ok else attempts,
                cache_hit=served.cache_hit,
                attempts=attempts,
                stream=ctx.stream,
                unix_ms=int(time.time() * 1000),
                intent_confidence=d.confidence,
                intent_source=d.intent_source,
                prompt_tokens_estimate=s.prompt_tokens,
                has_tools=s.has_tools,
                predicted_tool_use=d.tool_use,
                locale=s.locale,
                user_tier=s.user_tier,
                tenant=s.tenant,
                cache_similarity=served.cache_similarity,
                tool_called=bool(r.tool_calls) if r else False,
            )
        )
