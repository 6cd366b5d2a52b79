"""Hedging: two attempts race to their first token; the first to produce one is kept.

One race serves unary requests and streams. An attempt is called with an
:class:`asyncio.Event` it sets when its first upstream event arrives (a unary
answer is gathered from a stream, so it has one too); finishing also counts.
The primary starts; if it has produced nothing after the hedge delay and the
budgets allow, the second candidate starts too. The first attempt to produce
a first token wins and the other is cancelled (the engine records it as
``cancelled``); the race then waits for the winner's whole answer (a unary
result, or a stream's first event). An answer that arrives together with the
winner's is handed to ``discard``, so an opened stream is always closed. An
attempt failing before its first token leaves the other running; both failing
returns the last error. The engine applies the rules for when to hedge at all
(policy opt-in or a latency objective, idempotent tool-free requests, first
attempts only) and chooses the delay and the second candidate.

Two budgets bound hedges. A hedge is a concurrent retry, so it takes a token
of its endpoint's :class:`RetryBudget`; and hedges a latency objective asks
for also spend :class:`HedgeBudget` tokens, earned at ``share`` per request,
so they can never double the load: over any run, at most ``share`` of the
objective's requests plus a small burst are hedged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from skyroute.router.engine.health import RetryBudget
from skyroute.router.providers.types import ProviderError
from skyroute.router.table import Candidate, ReliabilitySettings

T = TypeVar("T")
# attempt(candidate, seconds_left, first_token): sets ``first_token`` on its first event.
AttemptFn = Callable[[Candidate, float, asyncio.Event], Awaitable[T]]

#: Share of an objective's requests that may be hedged, and the largest burst.
HEDGE_SHARE = 0.1
HEDGE_BURST = 5.0


class HedgeBudget:
    """A token bucket: ``share`` of a token per request, at most ``burst`` saved up."""

    def __init__(self, share: float = HEDGE_SHARE, burst: float = HEDGE_BURST) -> None:
        self.share = share
        self.burst = burst
        self.tokens = 1.0
        self.refused = 0  # hedges not launched for want of a token

    def earn(self) -> None:
        """One more request that may be hedged."""
        self.tokens = min(self.burst, self.tokens + self.share)

    def take(self) -> bool:
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.refused += 1
        return False

    def refund(self) -> None:
        self.tokens = min(self.burst, self.tokens + 1.0)


@dataclass(slots=True)
class Raced(Generic[T]):
    """The winning answer, or the last error; whether the second attempt started, or why not."""

    value: T | None
    error: ProviderError | None
    launched: bool
    refused: str = ""  # "" or why the hedge was due but not launched


async def _own(a: asyncio.Future[T]) -> Raced[T]:
    try:
        return Raced(await a, None, False)
    except ProviderError as failed:
        return Raced(None, failed, False)


def _admit(
    second: Candidate,
    budget: RetryBudget,
    settings: ReliabilitySettings,
    throttle: HedgeBudget | None,
) -> str:
    """ "" when the hedge may start (its tokens taken), else why not."""
    if throttle is not None and not throttle.take():
        return "hedge budget spent"
    if not budget.allow(second.endpoint_key, settings):
        if throttle is not None:
            throttle.refund()
        return f"retry budget exhausted at {second.endpoint_key}"
    return ""


async def race(
    attempt: AttemptFn[T],
    first: Candidate,
    second: Candidate,
    delay_s: float,
    budget_s: float,
    budget: RetryBudget,
    settings: ReliabilitySettings,
    discard: Callable[[T], Awaitable[None]],
    throttle: HedgeBudget | None = None,
) -> Raced[T]:
    """``attempt(first, ...)``, and ``attempt(second, ...)`` if no first token by ``delay_s``."""
    token_a = asyncio.Event()
    a = asyncio.ensure_future(attempt(first, budget_s, token_a))  # copies the request's context
    signal_a = asyncio.ensure_future(token_a.wait())
    try:
        await asyncio.wait({a, signal_a}, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not signal_a.done():
            signal_a.cancel()
    if a.done() or token_a.is_set():
        return await _own(a)
    refused = _admit(second, budget, settings, throttle)
    if refused:
        raced = await _own(a)
        raced.refused = refused
        return raced
    token_b = asyncio.Event()
    b = asyncio.ensure_future(attempt(second, max(0.001, budget_s - delay_s), token_b))
    held = True
    try:
        winner = await _first_token(a, b, token_a, token_b, discard)
        budget.release(second.endpoint_key)  # the race is decided: the hedge is over
        held = False
        if isinstance(winner, Raced):
            return winner
        raced = await _own(winner)
        raced.launched = True
        return raced
    finally:
        if held:
            budget.release(second.endpoint_key)
        for task in (a, b):  # the race's loser (or both, if the request was cancelled)
            if not task.done():
                task.cancel()
        await asyncio.wait({a, b})


async def _first_token(
    a: asyncio.Future[T],
    b: asyncio.Future[T],
    token_a: asyncio.Event,
    token_b: asyncio.Event,
    discard: Callable[[T], Awaitable[None]],
) -> asyncio.Future[T] | Raced[T]:
    """The attempt that produced a first token first (the loser cancelled), or the outcome.

    The outcome is a :class:`Raced` when it is known already: an attempt finished
    first with its answer (a tie keeps the primary, the other is discarded), or both
    failed (the last error).
    """
    tokens = {a: token_a, b: token_b}
    running: set[asyncio.Future[T]] = {a, b}
    error: ProviderError | None = None
    while running:
        signals: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(tokens[t].wait()) for t in running
        ]
        watched: set[asyncio.Future[Any]] = {*running, *signals}
        try:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for s in signals:
                s.cancel()
        won: T | None = None
        for task in sorted((t for t in done if t in running), key=lambda t: t is not a):
            running.discard(task)
            problem = task.exception()
            if problem is None:
                if won is None:
                    won = task.result()
                else:
                    await discard(task.result())
            elif not isinstance(problem, ProviderError):
                raise problem
            else:
                error = problem
        if won is not None:
            return Raced(won, None, True)
        for task in sorted(running, key=lambda t: t is not a):  # the primary wins a tie
            if tokens[task].is_set():
                for other in running - {task}:
                    other.cancel()
                return task
    return Raced(None, error, True)
