"""Hedging: two attempts race to their first answer; the first to answer is kept.

One race serves unary requests and streams. What an attempt "answers" with
is the engine's business: the whole result of a unary call, or the first
event of a stream (a stream cannot be raced to its end, because the client
sees its text as it comes: once a token has been sent, the answer is that
candidate's). The primary starts; if it has not answered after the hedge
delay (``hedging.afterMs``, or the endpoint's observed latency percentile)
and the retry budget allows, the second candidate starts too; the first
answer wins and the other attempt is cancelled (the engine records it as
``cancelled``). An answer that arrives together with the winner's is handed
to ``discard``, so an opened stream is always closed. Both failing returns
the last error. The engine applies the rules for when to hedge at all
(policy opt-in, idempotent tool-free requests, first attempts only).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from skyroute.router.engine.health import RetryBudget
from skyroute.router.providers.types import ProviderError
from skyroute.router.table import Candidate, ReliabilitySettings

T = TypeVar("T")


@dataclass(slots=True)
class Raced(Generic[T]):
    """The winning answer, or the last error; and whether the second attempt started."""

    value: T | None
    error: ProviderError | None
    launched: bool


async def race(
    attempt: Callable[[Candidate, float], Awaitable[T]],
    first: Candidate,
    second: Candidate,
    delay_s: float,
    budget_s: float,
    budget: RetryBudget,
    settings: ReliabilitySettings,
    discard: Callable[[T], Awaitable[None]],
) -> Raced[T]:
    """Run ``attempt(first, budget_s)``, and ``attempt(second, ...)`` after ``delay_s``."""
    a = asyncio.ensure_future(attempt(first, budget_s))  # copies the context: the request's
    started, _ = await asyncio.wait({a}, timeout=delay_s)
    # A hedge is a concurrent retry: it takes a token from its endpoint's budget.
    if started or not budget.allow(second.target.endpoint, settings):
        try:
            return Raced(await a, None, False)
        except ProviderError as failed:
            return Raced(None, failed, False)
    b = asyncio.ensure_future(attempt(second, max(0.001, budget_s - delay_s)))
    pending: set[asyncio.Future[T]] = {a, b}
    error: ProviderError | None = None
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            won: T | None = None
            for task in sorted(done, key=lambda t: t is not a):  # the primary wins a tie
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
        return Raced(None, error, True)
    finally:
        budget.release(second.target.endpoint)
        for task in pending:  # the race's loser (or both, if the request was cancelled)
            task.cancel()
        if pending:
            await asyncio.wait(pending)
