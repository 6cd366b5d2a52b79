"""Hedging a stream: two upstream streams race for the first event; one is kept.

Unary hedging (``Engine._hedged``) races two whole answers. A stream cannot
be raced to the end, because the client sees its text as it comes: once a
token has been sent, the answer is that candidate's. So a stream is hedged up
to its first event only. The primary is opened; if no event has arrived
after the hedge delay (``hedging.afterMs``, or the endpoint's observed
latency percentile), and the retry budget allows, the next candidate is
opened too; the first to produce an event wins, and the other is cancelled
and closed (its attempt is recorded as ``cancelled``, as on unary calls).
Both failing before any event raises the last error, with both attempts in
the trail. The same rules as unary hedging apply: idempotent, tool-free
requests only, first attempts only.

Each attempt's span is current while its request goes out (the task is
created inside it), so each upstream request carries its own traceparent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, cast

from skyroute.router import providers
from skyroute.router.providers.types import STREAM_CUT, ChatRequest, ProviderError, StreamEvent
from skyroute.router.spans import enter, leave
from skyroute.router.table import Candidate

if TYPE_CHECKING:
    from skyroute.router.decide import Decision
    from skyroute.router.engine.walk import Engine, RequestContext, Served

Opened = tuple[Candidate, AsyncGenerator[StreamEvent, None], Any, float]


def _open(
    engine: Engine,
    cand: Candidate,
    req: ChatRequest,
    d: Decision,
    ctx: RequestContext,
    remaining: float,
) -> tuple[asyncio.Task[StreamEvent], Opened]:
    policy = d.policy
    span = engine.spans.attempt(cand.model, cand.provider, d.pool, ctx.span, cand.target.endpoint)
    events = cast(
        AsyncGenerator[StreamEvent, None],
        providers.stream(
            engine.session,
            cand.target,
            req,
            min(policy.first_token_timeout_s, remaining),
            remaining,
            policy.inter_token_timeout_s,
        ),
    )
    token = enter(span)
    try:
        task = asyncio.ensure_future(anext(events))  # copies the context: this span
    finally:
        leave(token)
    return task, (cand, events, span, time.perf_counter())


async def first_of_two(
    engine: Engine,
    first: Candidate,
    second: Candidate,
    delay_s: float,
    req: ChatRequest,
    d: Decision,
    ctx: RequestContext,
    remaining: float,
    served: Served,
) -> tuple[Opened, StreamEvent, bool]:
    """The stream that produced the first event, that event, and whether a hedge launched.

    Raises the last ProviderError when every opened stream failed before its first event.
    """
    from skyroute.router.engine.walk import CANCELLED, AttemptRecord  # engine imports this module

    rel = d.policy.reliability
    task, opened = _open(engine, first, req, d, ctx, remaining)
    streams: dict[asyncio.Task[StreamEvent], Opened] = {task: opened}
    pending: set[asyncio.Task[StreamEvent]] = {task}
    done, _ = await asyncio.wait(pending, timeout=delay_s)
    launched = False
    if not done and engine.budget.allow(rel):
        launched = True
        engine.hedges += 1
        task_b, opened_b = _open(engine, second, req, d, ctx, max(0.001, remaining - delay_s))
        streams[task_b] = opened_b
        pending.add(task_b)
    error: ProviderError | None = None
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                cand, events, span, t0 = streams[t]
                exc = t.exception()
                if exc is None:
                    return streams[t], t.result(), launched
                if isinstance(exc, StopAsyncIteration):
                    exc = ProviderError(STREAM_CUT, "stream ended before its first event")
                if not isinstance(exc, ProviderError):
                    raise exc
                engine._attempt_end(
                    span,
                    cand,
                    served,
                    AttemptRecord(
                        cand.model,
                        cand.provider,
                        exc.error_class,
                        exc.status,
                        (time.perf_counter() - t0) * 1000.0,
                    ),
                )
                engine.health.failure(cand, exc.error_class, exc.retry_after_s, rel, d.chain)
                await events.aclose()
                error = exc
        assert error is not None
        raise error
    finally:
        if launched:
            engine.budget.release()
        for t in pending:  # the race's loser (or both, if the request was cancelled)
            t.cancel()
        if pending:
            await asyncio.wait(pending)
        for t in pending:
            cand, events, span, t0 = streams[t]
            engine._attempt_end(
                span,
                cand,
                served,
                AttemptRecord(
                    cand.model, cand.provider, CANCELLED, 0, (time.perf_counter() - t0) * 1000.0
                ),
            )
            await events.aclose()
