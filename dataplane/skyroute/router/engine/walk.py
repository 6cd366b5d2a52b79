"""Serving a decided request: cache, attempts along the chain, outcome.

One engine per router process. It owns the rules every request follows
after the decision:

- A cacheable decision looks in the cache first; a hit costs nothing and is
  answered without an upstream call.
- Attempts walk the decision's chain in order (ejected or cooling endpoints
  last, except for a due half-open probe), at most ``max_attempts`` in all,
  inside one request deadline that bounds every attempt's timeout: the router
  is the one owner of retries (adapters never retry). A retryable failure
  (timeout, connect error, 429, 5xx, ...) moves on to the next candidate: a
  first attempt on another endpoint is a fallback, always allowed; a retry at
  an endpoint already tried needs a token of that endpoint's retry budget,
  and without one the candidate is skipped (the next endpoint may still be
  tried). A candidate whose median latency exceeds the time left is not
  started. A client error (a 400 the next model would also refuse) stops at
  once; a context-length refusal skips to a candidate with a larger window; a
  content-filter refusal falls back only if the policy says so. The notes
  (``x-skyroute-notes``) say why each retry or fallback was or was not made.
- Unary requests are streamed from the upstream too and gathered, so the
  first-token and inter-token timeouts cut a stalled upstream as early for a
  unary caller as for a streaming one.
- A latency objective (the rule's ``selection.objective.p95Ms``) is met on
  first-token time: a tool-free request is hedged to the next candidate
  (another provider first) when its first attempt has no first token after
  the primary's observed first-token percentile, at most half the objective;
  hedges are bounded by the hedge budget (a tenth of such requests). A
  request offering idempotent tools falls back at half the objective instead.
- Requests offering a tool the policy marks non-idempotent get a stricter
  cap and are never sent again after a failure that may have let the
  upstream act (a timeout, a cut stream).
- Hedging (policy opt-in or a latency objective, tool-free requests only):
  when the first attempt has no first token after ``afterMs`` or the
  endpoint's observed first-token percentile, a second candidate starts; the
  first to produce a first token wins and the other is cancelled (both in the
  attempt trail); a stream is then relayed, a unary answer gathered (:mod:`.hedge`).
- Streaming: nothing is emitted before the first upstream event, so a failure
  before it falls back silently; after it, a failure becomes an explicit
  :class:`StreamFailed` event and never a clean end.
- Every request ends in one ``Outcome`` handed to the reporter, and in the
  OpenTelemetry instruments of :mod:`.telemetry`: a request span (continuing
  the caller's W3C trace context) with a child span per cache lookup and per
  attempt; the attempt's context is current while the provider is called, so
  the transport passes ``traceparent`` upstream.

Unary and streaming requests share one walk of the chain (:meth:`Engine._walk`)
and one provider-call seam (:meth:`Engine._attempt`): they differ only in what
"the attempt answered" means (the whole result, or the first stream event) and
in what happens after it (nothing, or relaying the rest of the stream).
An Embeddings request (:meth:`Engine.embed`) takes the same walk too, over the
chain's models of one embedding space, without the cache.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Generic, TypeVar, cast

import aiohttp
from opentelemetry.trace import Span

from skyroute.learned import quantize
from skyroute.router import providers, tokens
from skyroute.router.cache import Probe, ResponseCache, Scope, request_params
from skyroute.router.decide import Decision
from skyroute.router.engine.balance import Balancer, every_endpoint
from skyroute.router.engine.health import Clock, EndpointHealth, RetryBudget
from skyroute.router.engine.hedge import AttemptFn, HedgeBudget, race
from skyroute.router.engine.records import (
    AttemptRecord,
    RequestContext,
    Served,
    StreamDone,
    StreamFailed,
    StreamItem,
    StreamStarted,
)
from skyroute.router.engine.stats import WindowStats
from skyroute.router.ids import new_id
from skyroute.router.providers.embeddings import EmbedRequest
from skyroute.router.providers.options import without
from skyroute.router.providers.types import (
    AMBIGUOUS,
    CONTENT_FILTER,
    CONTEXT_LENGTH,
    STREAM_CUT,
    TIMEOUT,
    ChatRequest,
    ChatResult,
    ProviderError,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ThinkingEvent,
    ToolCallEvent,
)
from skyroute.router.signals import Signals
from skyroute.router.spans import Spans, enter, leave
from skyroute.router.table import Candidate, ReliabilitySettings
from skyroute.router.telemetry import RouterMetrics
from skyroute.router.tokens import received_tokens
from skyroute.v1 import distribution_pb2

T = TypeVar("T")
# A stream that produced its first event: that event, and the rest.
Events = AsyncGenerator[StreamEvent, None]
FirstEvent = tuple[StreamEvent, Events]


_DEADLINE = "request deadline exceeded"


def _first_token_s(d: Decision, cand: Candidate, req: ChatRequest, side_effects: bool) -> float:
    """The first-token timeout: the policy's, or half the latency objective.

    With an objective (``selection.objective.p95Ms``) a request offering tools (which
    is never hedged) falls back when its attempt has produced nothing after half of
    it, so the next candidate can still answer within it; the pool's last candidate
    keeps the policy's full wait, and so does a request offering a non-idempotent tool
    (it could not be sent again after the cut). A tool-free request is hedged instead
    (see ``Engine._hedge_delay``): its first attempt keeps running, first token wins.
    """
    ftt = d.policy.first_token_timeout_s
    objective = _objective_s(d)
    if objective and req.tools and not side_effects and d.chain and cand is not d.chain[-1]:
        return min(ftt, objective / 2.0)
    return ftt


def _objective_s(d: Decision) -> float:
    return d.selection.objective_p95_s if d.selection is not None else 0.0


def _sent(d: Decision, cand: Candidate, req: ChatRequest) -> ChatRequest:
    """What ``cand`` is sent: ``req``, without the parameters the policy drops for it."""
    names = d.dropped_for(cand.model) if d.dropped else ()
    return without(req, names) if names else req


def replay(result: ChatResult) -> list[TextDelta | ToolCallEvent | ThinkingEvent]:
    """A complete answer as the stream events that would have brought it (a cache hit's).

    The order a live stream brings them in: thinking blocks (intact, signed), the
    text, then the tool calls; :class:`_Pieces` folds them back into the same answer.
    """
    events: list[TextDelta | ToolCallEvent | ThinkingEvent] = [
        ThinkingEvent(dict(b)) for b in result.thinking
    ]
    if result.content:
        events.append(TextDelta(result.content))
    events += [ToolCallEvent(dict(c)) for c in result.tool_calls]
    return events


class _Pieces:
    """An answer's pieces as a stream brings them, and the ChatResult they make."""

    __slots__ = ("calls", "text", "thinking")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.thinking: list[dict[str, Any]] = []

    def add(self, item: StreamEvent) -> None:
        if isinstance(item, TextDelta):
            self.text.append(item.text)
        elif isinstance(item, ThinkingEvent):
            self.thinking.append(item.block)
        elif isinstance(item, ToolCallEvent):
            self.calls.append(item.call)

    def result(self, end: StreamEnd, req: ChatRequest) -> ChatResult:
        """The answer; its usage as reported, or estimated where the upstream sent none.

        A server that reports no usage in streams (a self-hosted one that ignores
        ``stream_options``) is charged as a cut stream is: the request's estimated
        prompt and the text (and tool calls) received, never $0. Either way the
        completion count is at most the request's ``max_tokens`` when the estimate
        is ours or the server is known to overcount (``StreamEnd.over_max``).
        """
        text = "".join(self.text)
        prompt, completion = end.prompt_tokens, end.completion_tokens
        if not end.reported:
            prompt = tokens.estimate(req.messages, req.tools)
            completion = received_tokens(text) + round(tokens.calls_tokens(self.calls))
        if (end.over_max or not end.reported) and req.max_tokens is not None:
            completion = min(completion, req.max_tokens)
        return ChatResult(
            text, self.calls, end.finish_reason, prompt, completion, thinking=self.thinking
        )


async def _collect(
    events: AsyncIterator[StreamEvent], req: ChatRequest, on_first: Callable[[], None]
) -> ChatResult:
    """An upstream stream gathered into one answer (for a unary caller)."""
    pieces = _Pieces()
    seen = False
    try:
        async for item in events:
            if not seen:
                seen = True
                on_first()
            if isinstance(item, StreamEnd):
                return pieces.result(item, req)
            pieces.add(item)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
    raise ProviderError(STREAM_CUT, "upstream stream ended without its final event")


@dataclass(slots=True)
class Attempt:
    """One upstream call under way: its candidate, span and start (perf_counter)."""

    cand: Candidate
    span: Span
    started: float
    # Counted in the balancer's outstanding requests until the attempt is over.
    counted: bool = False


@dataclass(slots=True)
class Opened(Generic[T]):
    """An attempt that answered: with its whole result (unary) or its first event (stream)."""

    attempt: Attempt
    value: T


class Engine:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        report: Callable[[distribution_pb2.Outcome], None],
        cache: ResponseCache | None = None,
        stats: WindowStats | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.session = session
        self.report = report
        self.cache = cache if cache is not None else ResponseCache()
        # Per-(model, intent) sketches for the learning loop, drained by the reporter.
        self.stats = stats if stats is not None else WindowStats()
        # Ejections, probes and decay run on ``clock`` (tests pass a faster one).
        self.health = EndpointHealth(clock)
        # Which of a model's several endpoints goes first (balance.py).
        self.balance = Balancer(self.health.available, clock)
        self.budget = RetryBudget()
        # Hedges a latency objective asks for: at most a tenth of its requests (hedge.py).
        self.hedge_budget = HedgeBudget()
        self.hedges = 0
        self.metrics = RouterMetrics()
        self.spans = Spans()

    def _request_span(
        self, d: Decision, req: ChatRequest, ctx: RequestContext, operation: str = "chat"
    ) -> Span:
        ctx.span = self.spans.request(
            ctx.trace_parent,
            {
                "gen_ai.operation.name": operation,
                "skyroute.policy": d.policy.name,
                "skyroute.policy_version": d.policy.version,
                "skyroute.pool": d.pool,
                "skyroute.intent": d.intent,
                "skyroute.stream": ctx.stream,
            },
            req.messages,
        )
        return ctx.span

    # -- cache -----------------------------------------------------------------
    def _partition(
        self, d: Decision, s: Signals, req: ChatRequest, ctx: RequestContext
    ) -> Probe | None:
        # None when the request must not use the cache (tools, personal data, ...).
        if not d.cacheable or ctx.no_cache:
            return None
        scope = Scope(d.policy.cache_scope, s.tenant, s.locale, s.safety_class, d.intent)
        return self.cache.probe(scope, req.messages, request_params(req), req.tools, s.embeddings)

    async def _cached(self, d: Decision, ctx: RequestContext, part: Probe | None) -> Served | None:
        if part is None:
            return None
        span = self.spans.child("cache lookup", ctx.span, {"skyroute.pool": d.pool})
        hit = None
        try:
            hit = await self.cache.lookup(part, self.cache.rule(d.policy.cache, d.intent))
        finally:
            span.set_attribute("skyroute.cache", "miss" if hit is None else "hit")
            span.end()
        return None if hit is None else Served.from_cache(d, hit)

    def _store(self, d: Decision, part: Probe | None, served: Served) -> None:
        if part is None or served.result is None or served.candidate is None:
            return
        self.cache.store(
            part,
            self.cache.rule(d.policy.cache, d.intent),
            served.result,
            served.candidate.model,
            d.policy.version,
        )

    # -- attempt policy ----------------------------------------------------------
    @staticmethod
    def side_effects(d: Decision, req: ChatRequest) -> bool:
        """Does the request offer a tool the policy marks non-idempotent?"""
        marked = d.policy.reliability.non_idempotent_tools
        if not marked or not req.tools:
            return False
        return any((t.get("function") or {}).get("name") in marked for t in req.tools)

    @staticmethod
    def _may_continue(e: ProviderError, side_effects: bool, rel: ReliabilitySettings) -> bool:
        if e.error_class == CONTENT_FILTER:
            return rel.content_filter_fallback
        if e.error_class == STREAM_CUT:
            # Only ever seen here before anything reached the caller (a unary answer is
            # gathered from a stream): the next candidate may answer, unless side effects.
            return not side_effects
        if not e.retryable:
            return False
        # After a timeout the upstream may still have produced a tool call: a side-effecting
        # request is never sent again (the caller decides, with its Idempotency-Key).
        return not (side_effects and e.error_class in AMBIGUOUS)

    def _admit_attempt(
        self, served: Served, deadline: float, cand: Candidate, tried: set[str]
    ) -> tuple[float | None, str]:
        """(Seconds left for an attempt on ``cand``, the endpoint whose retry token it holds).

        Seconds is None when the attempt is not made: the deadline passed
        (``served.error`` is a timeout: stop), ``cand``'s median latency exceeds the
        time left, or ``cand``'s endpoint was tried already and its retry budget is
        exhausted (skip it: a candidate on another endpoint may still go). A first
        attempt on another endpoint is a fallback: counted, never refused by a
        budget. The caller releases a held token.
        """
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            served.error = ProviderError(TIMEOUT, _DEADLINE)
            return None, ""
        typical = self.health.percentile(cand, 50.0)
        if typical is not None and typical > remaining:
            served.notes.append(
                f"{cand.model}: not started, its median {typical:.2f} s exceeds the "
                f"{remaining:.2f} s left"
            )
            if served.error is None:
                served.error = ProviderError(TIMEOUT, "no candidate could finish in the time left")
            return None, ""
        endpoint = cand.endpoint_key
        if not tried:
            return remaining, ""
        if endpoint not in tried:
            self.budget.fallbacks += 1
            served.notes.append(f"{cand.label}: fallback to another endpoint")
            return remaining, ""
        if not self.budget.allow(endpoint, served.decision.policy.reliability):
            served.notes.append(f"{cand.label}: not tried, retry budget exhausted at {endpoint}")
            return None, ""
        served.notes.append(f"{cand.label}: retry at the same endpoint")
        return remaining, endpoint

    def _cap(self, d: Decision, side_effects: bool) -> int:
        p = d.policy
        if side_effects:
            return min(p.max_attempts, p.reliability.non_idempotent_max_attempts)
        return p.max_attempts

    def _hedge_delay(
        self, d: Decision, cand: Candidate, req: ChatRequest, side_effects: bool
    ) -> tuple[float | None, HedgeBudget | None]:
        """(How long the first attempt may go without a first token before a hedge, its throttle).

        Opted in (``hedging``): after ``afterMs``, else the endpoint's observed
        first-token percentile. With a latency objective: after the primary's
        observed first-token percentile, at most half the objective (its
        first-token budget), throttled by the hedge budget. Never for a request
        offering tools. (None, None): no hedge.
        """
        rel = d.policy.reliability
        objective = _objective_s(d)
        if side_effects or req.tools or not (rel.hedge_enabled or objective):
            return None, None
        seen = self.health.first_token_percentile(cand, rel.hedge_percentile)
        delays: list[float] = []
        if rel.hedge_enabled and (rel.hedge_after_s or seen is not None):
            delays.append(rel.hedge_after_s or cast(float, seen))
        throttle = None
        if objective:
            self.hedge_budget.earn()
            throttle = self.hedge_budget
            delays.append(objective / 2.0 if seen is None else min(seen, objective / 2.0))
        if not delays:
            return None, None
        return min(delays), throttle if not rel.hedge_enabled else None

    @staticmethod
    def _hedge_target(chain: list[Candidate], i: int, cand: Candidate) -> int:
        """Index of the candidate a hedge of ``cand`` goes to: another provider first."""
        for j in range(i, len(chain)):
            if chain[j].provider != cand.provider:
                return j
        return i

    # -- the walk --------------------------------------------------------------
    async def _walk(
        self,
        d: Decision,
        req: ChatRequest,
        ctx: RequestContext,
        served: Served,
        call: AttemptFn[T],
        discard: Callable[[Opened[T]], Awaitable[None]],
    ) -> Opened[T] | None:
        """Attempts along the chain until one answers; None when none did (see served.error).

        ``call(candidate, seconds_left)`` is the provider call for this kind of
        request; ``discard`` disposes of an answer that lost a hedge race.
        """
        rel = d.policy.reliability
        deadline = ctx.started + d.policy.request_timeout_s
        side_effects = self.side_effects(d, req)
        cap = self._cap(d, side_effects)
        endpoints = self.balance.expand(d.chain)
        chain = list(self.health.order(endpoints, served.notes))
        attempt: AttemptFn[Opened[T]] = partial(self._attempt, served=served, ctx=ctx, call=call)
        tried: set[str] = set()
        min_window = 0
        i = 0
        while i < len(chain) and len(served.attempts) < cap:
            cand = chain[i]
            i += 1
            if min_window and cand.context_window and cand.context_window <= min_window:
                continue  # a context-length refusal: only a larger window can help
            retry = bool(served.attempts)
            remaining, held = self._admit_attempt(served, deadline, cand, tried)
            if remaining is None:
                if served.error is not None and served.error.message == _DEADLINE:
                    break
                continue
            tried.add(cand.endpoint_key)
            opened: Opened[T] | None = None
            error: ProviderError | None = None
            try:
                delay, throttle = (
                    (None, None) if retry else self._hedge_delay(d, cand, req, side_effects)
                )
                if delay is not None and i < len(chain) and len(served.attempts) + 1 < cap:
                    j = self._hedge_target(chain, i, cand)
                    to = chain[j]
                    raced = await race(
                        attempt, cand, to, delay, remaining, self.budget, rel, discard, throttle
                    )
                    opened, error = raced.value, raced.error
                    if raced.launched:
                        self.hedges += 1
                        served.notes.append(
                            f"{cand.label}: hedged to {to.label}, no first token "
                            f"after {delay * 1000:.0f} ms"
                        )
                        tried.add(to.endpoint_key)
                        del chain[j]  # the hedge tried it already
                    elif raced.refused:
                        served.notes.append(f"{cand.label}: not hedged, {raced.refused}")
                else:
                    try:
                        opened = await attempt(cand, remaining, asyncio.Event())
                    except ProviderError as exc:
                        error = exc
            finally:
                if held:
                    self.budget.release(held)
            if opened is not None:
                served.error = None
                return opened
            assert error is not None
            served.error = error
            if not self._may_continue(error, side_effects, rel):
                break
            if error.error_class == CONTEXT_LENGTH:
                min_window = max(min_window, cand.context_window or 1)
        if not d.chain:
            served.no_candidate()
        return None

    async def _attempt(
        self,
        cand: Candidate,
        budget_s: float,
        first: asyncio.Event,
        *,
        served: Served,
        ctx: RequestContext,
        call: AttemptFn[T],
    ) -> Opened[T]:
        """The provider-call seam: one call, its span current while the request goes out.

        A failure or cancellation is recorded here; an answer is recorded by the
        caller when the attempt is over (at once for unary, at the stream's end).
        """
        at = Attempt(
            cand,
            self.spans.attempt(
                cand.model, cand.provider, served.decision.pool, ctx.span, cand.target.endpoint
            ),
            time.perf_counter(),
            counted=cand.site is not None,
        )
        if at.counted:
            self.balance.acquire(cand)
            assert cand.site is not None
            at.span.set_attribute("skyroute.endpoint", cand.site.name)
        token = enter(at.span)
        try:
            return Opened(at, await call(cand, budget_s, first))
        except ProviderError as exc:
            self._end(served, at, exc)
            raise
        except asyncio.CancelledError:  # a hedge that lost the race, or the request went away
            self._end(served, at, cancelled=True)
            raise
        except Exception:
            self._release(at)
            raise
        finally:
            leave(token)

    def _end(
        self,
        served: Served,
        at: Attempt,
        error: ProviderError | None = None,
        *,
        cancelled: bool = False,
    ) -> AttemptRecord:
        """An attempt is over: into the trail, the metrics, its span and endpoint health."""
        cand = at.cand
        self._release(at)
        rec = AttemptRecord.of(cand, at.started, error, cancelled=cancelled)
        served.attempts.append(rec)
        self.metrics.attempt(
            served.decision.pool,
            cand.model,
            cand.provider,
            rec.error_class,
            rec.duration_ms / 1e3,
            cand.target.endpoint,
        )
        self.spans.end_attempt(at.span, cand.model, rec.error_class)
        if error is not None:
            rel = served.decision.policy.reliability
            self.health.failure(
                cand,
                error.error_class,
                error.retry_after_s,
                rel,
                every_endpoint(served.decision.chain),
            )
        return rec

    def _release(self, at: Attempt) -> None:
        """The attempt no longer counts as outstanding at its endpoint (once)."""
        if at.counted:
            at.counted = False
            self.balance.release(at.cand)

    def _answered(self, served: Served, at: Attempt, result: ChatResult) -> None:
        """The attempt ended with an answer: it is the request's."""
        rec = self._end(served, at)
        served.succeeded(at.cand, result)
        self.metrics.usage(
            at.cand.model,
            at.cand.provider,
            result.prompt_tokens,
            result.completion_tokens,
            at.cand.target.endpoint,
        )
        self.health.success(at.cand, rec.duration_ms / 1e3)

    # -- unary -----------------------------------------------------------------
    async def complete(
        self, d: Decision, s: Signals, req: ChatRequest, ctx: RequestContext
    ) -> Served:
        span = self._request_span(d, req, ctx)
        token = enter(span)
        try:
            part = self._partition(d, s, req, ctx)
            served = await self._cached(d, ctx, part)
            if served is None:
                served = Served(d)
                self.budget.active += 1
                try:
                    opened = await self._walk(
                        d,
                        req,
                        ctx,
                        served,
                        partial(self._call, d, req),
                        partial(self._lost, served),
                    )
                finally:
                    self.budget.active -= 1
                if opened is not None:
                    self._answered(served, opened.attempt, opened.value)
                    self._store(d, part, served)
            self._outcome(served, s, ctx)
        except BaseException:
            span.end()  # cancelled before its outcome: the span still ends
            raise
        finally:
            leave(token)
        return served

    async def _call(
        self, d: Decision, req: ChatRequest, cand: Candidate, budget_s: float, first: asyncio.Event
    ) -> ChatResult:
        # Streamed from the upstream even for a unary caller: a stall before the first
        # token or between tokens is cut by the same timeouts as a stream's.
        timeout = min(cand.timeout_s, budget_s)
        return await _collect(
            providers.stream(
                self.session,
                cand.target,
                _sent(d, cand, req),
                min(_first_token_s(d, cand, req, self.side_effects(d, req)), timeout),
                timeout,
                d.policy.inter_token_timeout_s,
            ),
            req,
            partial(self._first_event, cand, time.perf_counter(), first),
        )

    # -- embeddings --------------------------------------------------------------
    async def embed(
        self, d: Decision, s: Signals, req: EmbedRequest, ctx: RequestContext
    ) -> Served:
        """An Embeddings request: the chain's first model, then only models of its space.

        Vectors from two embedding spaces are not comparable, so a fallback never
        leaves the space of the model the decision put first. No cache; the same
        attempt policy (deadline, retry budget, health) as a chat request.
        """
        space = d.chain[0].embedding_space if d.chain else ""
        d = replace(d, chain=tuple(c for c in d.chain if c.embedding_space == space))
        chat = ChatRequest(messages=[{"role": "user", "content": text} for text in req.inputs])
        span = self._request_span(d, chat, ctx, "embeddings")
        token = enter(span)
        try:
            served = Served(d)
            self.budget.active += 1
            try:
                opened = await self._walk(
                    d,
                    chat,
                    ctx,
                    served,
                    partial(self._embed_call, req),
                    partial(self._lost, served),
                )
            finally:
                self.budget.active -= 1
            if opened is not None:
                self._answered(served, opened.attempt, opened.value)
            self._outcome(served, s, ctx)
        except BaseException:
            span.end()
            raise
        finally:
            leave(token)
        return served

    async def _embed_call(
        self, req: EmbedRequest, cand: Candidate, budget_s: float, first: asyncio.Event
    ) -> ChatResult:
        started = time.perf_counter()
        got = await providers.embed(self.session, cand.target, req, min(cand.timeout_s, budget_s))
        self._first_event(cand, started, first)
        return ChatResult("", [], "stop", got.prompt_tokens, 0, vectors=got.vectors)

    def _first_event(self, cand: Candidate, started: float, first: asyncio.Event) -> None:
        """An attempt's first upstream event: the hedge race hears of it, health learns its time."""
        first.set()
        self.health.first_token(cand, time.perf_counter() - started)

    async def _lost(self, served: Served, opened: Opened[Any]) -> None:
        """An answer that came in with a hedge race's winner: recorded as the loser it is."""
        self._end(served, opened.attempt, cancelled=True)

    # -- streaming -------------------------------------------------------------
    async def stream(
        self, d: Decision, s: Signals, req: ChatRequest, ctx: RequestContext
    ) -> AsyncIterator[StreamItem]:
        self._request_span(d, req, ctx)  # ended by _outcome, which every stream reaches
        part = self._partition(d, s, req, ctx)
        cached = await self._cached(d, ctx, part)
        if cached is not None and cached.result is not None:
            yield StreamStarted(cached)
            for event in replay(cached.result):
                yield event
            self._outcome(cached, s, ctx)
            yield StreamDone(cached)
            return
        served = Served(d)
        self.budget.active += 1
        try:
            opened = await self._walk(
                d,
                req,
                ctx,
                served,
                partial(self._open_stream, d, req),
                partial(self._lost_stream, served),
            )
            if opened is None:
                self._outcome(served, s, ctx)
                yield StreamFailed(served)
                return
            async for item in self._relay(opened, served, s, req, ctx, part):
                yield item
        finally:
            self.budget.active -= 1

    async def _open_stream(
        self, d: Decision, req: ChatRequest, cand: Candidate, budget_s: float, first: asyncio.Event
    ) -> FirstEvent:
        """Open a stream and wait for its first event (what a stream attempt answers with)."""
        policy = d.policy
        started = time.perf_counter()
        # An async generator in fact; typed as such so it can be closed early.
        events = cast(
            Events,
            providers.stream(
                self.session,
                cand.target,
                _sent(d, cand, req),
                min(_first_token_s(d, cand, req, self.side_effects(d, req)), budget_s),
                budget_s,
                policy.inter_token_timeout_s,
            ),
        )
        try:
            event = await anext(events)
        except StopAsyncIteration:
            await events.aclose()
            raise ProviderError(STREAM_CUT, "stream ended before its first event") from None
        except BaseException:
            await events.aclose()
            raise
        self._first_event(cand, started, first)
        return event, events

    async def _lost_stream(self, served: Served, opened: Opened[FirstEvent]) -> None:
        await opened.value[1].aclose()
        await self._lost(served, opened)

    async def _relay(
        self,
        opened: Opened[FirstEvent],
        served: Served,
        s: Signals,
        req: ChatRequest,
        ctx: RequestContext,
        part: Probe | None,
    ) -> AsyncIterator[StreamItem]:
        """The committed stream, relayed: from its first event on a failure is visible."""
        at = opened.attempt
        item, events = opened.value
        self.metrics.first_chunk(
            at.cand.model,
            at.cand.provider,
            time.perf_counter() - at.started,
            at.cand.target.endpoint,
        )
        served.candidate = at.cand
        yield StreamStarted(served)
        pieces = _Pieces()
        try:
            while not isinstance(item, StreamEnd):
                pieces.add(item)
                yield item
                item = await anext(events)
        except (ProviderError, StopAsyncIteration) as exc:
            err = (
                exc
                if isinstance(exc, ProviderError)
                else ProviderError(STREAM_CUT, "upstream stream ended without its final event")
            )
            served.error = err
            # Cut before any usage report: charged (ledger and limits alike) for the
            # prompt and the text received, as the door settles it.
            text = "".join(pieces.text)
            if text:
                served.cost_usd = at.cand.cost(s.prompt_tokens, received_tokens(text))
            self._end(served, at, err)
            self._outcome(served, s, ctx)
            yield StreamFailed(served)
            return
        finally:
            self._release(at)  # also when the caller went away mid-stream
            await events.aclose()
        result = pieces.result(item, req)
        self._answered(served, at, result)
        self._store(served.decision, part, served)
        self._outcome(served, s, ctx)
        yield StreamDone(served)

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
            (ctx.account, ctx.key_id),
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
            _with_features(
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
                    account=ctx.account,
                    key_id=ctx.key_id,
                    charge_id=new_id(),
                ),
                d,
                s,
            )
        )


#: How much of the prompt an outcome carries when the policy opts in (spec.outcomes).
MAX_PROMPT_CHARS = 2000


def _with_features(
    o: distribution_pb2.Outcome, d: Decision, s: Signals
) -> distribution_pb2.Outcome:
    """The learned signal's features and prediction, and the prompt if the policy opts in."""
    if d.policy.prompt_text:
        o.prompt_text = s.prompt[:MAX_PROMPT_CHARS]
    if d.prediction is not None and d.embedding is not None:
        o.prompt_embedding = quantize(d.embedding)
        o.win_probability = d.prediction.win
        o.win_explored = d.prediction.explored
    return o
