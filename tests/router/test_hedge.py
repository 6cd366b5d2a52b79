"""The hedge race shared by unary requests and streams (engine/hedge.py).

The attempts are plain coroutines gated by events, so the order of answers
is set by the test, not by timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from skyroute.router.engine.health import RetryBudget
from skyroute.router.engine.hedge import HedgeBudget, Raced, race
from skyroute.router.providers.types import SERVER_ERROR, ProviderError, Target
from skyroute.router.table import Candidate, ReliabilitySettings


def _cand(model: str) -> Candidate:
    return Candidate(
        model, "openai", "x", Target("openai", "http://127.0.0.1:1/v1", model),
        0.0, 0.0, 8192, True, 1024, 5.0, {}, 0.0, 0.0, 0.0,
    )  # fmt: skip


A, B = _cand("a"), _cand("b")


class Upstreams:
    """Each candidate answers (or fails) when its gate opens; cancellations are noted."""

    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self.gates = {"a": asyncio.Event(), "b": asyncio.Event()}
        self.fail = fail
        self.cancelled: list[str] = []
        self.started: list[str] = []
        self.discarded: list[str] = []

    async def attempt(self, cand: Candidate, budget_s: float, first: asyncio.Event) -> str:
        self.started.append(cand.model)
        try:
            await self.gates[cand.model].wait()
        except asyncio.CancelledError:
            self.cancelled.append(cand.model)
            raise
        if cand.model in self.fail:
            raise ProviderError(SERVER_ERROR, f"{cand.model} failed", 500)
        return cand.model

    async def discard(self, value: str) -> None:
        self.discarded.append(value)


def _race(
    up: Upstreams, budget: RetryBudget, settings: ReliabilitySettings | None = None
) -> Coroutine[Any, Any, Raced[str]]:
    return race(up.attempt, A, B, 0.0, 5.0, budget, settings or ReliabilitySettings(), up.discard)


def test_the_hedge_wins_and_the_primary_is_cancelled() -> None:
    async def go() -> None:
        up, budget = Upstreams(), RetryBudget()
        task = asyncio.ensure_future(_race(up, budget))
        while len(up.started) < 2:
            await asyncio.sleep(0)
        up.gates["b"].set()
        raced = await task
        assert (raced.value, raced.error, raced.launched) == ("b", None, True)
        assert up.cancelled == ["a"]
        assert budget.retrying == 0  # the hedge's budget token is back

    asyncio.run(go())


def test_a_tie_keeps_the_primary_and_discards_the_other() -> None:
    async def go() -> None:
        up, budget = Upstreams(), RetryBudget()
        task = asyncio.ensure_future(_race(up, budget))
        while len(up.started) < 2:
            await asyncio.sleep(0)
        up.gates["b"].set()
        up.gates["a"].set()
        raced = await task
        assert raced.value == "a" and up.discarded == ["b"] and up.cancelled == []

    asyncio.run(go())


def test_both_failing_returns_the_last_error_and_says_the_hedge_ran() -> None:
    async def go() -> None:
        up, budget = Upstreams(fail=frozenset({"a", "b"})), RetryBudget()
        task = asyncio.ensure_future(_race(up, budget))
        while len(up.started) < 2:
            await asyncio.sleep(0)
        up.gates["a"].set()
        await asyncio.sleep(0)
        up.gates["b"].set()
        raced = await task
        assert raced.value is None and raced.launched
        assert raced.error is not None and raced.error.message == "b failed"

    asyncio.run(go())


def test_no_budget_no_hedge() -> None:
    async def go() -> None:
        up, budget = Upstreams(fail=frozenset({"a"})), RetryBudget()
        stingy = ReliabilitySettings(retry_budget_ratio=0.0, retry_budget_min_concurrency=0)
        task = asyncio.ensure_future(_race(up, budget, stingy))
        while not up.started:
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)  # past the zero delay: the hedge would have started
        up.gates["a"].set()
        raced = await task
        assert up.started == ["a"] and not raced.launched and budget.denied == 1
        assert raced.error is not None and raced.error.message == "a failed"

    asyncio.run(go())


class Tokens(Upstreams):
    """Upstreams that signal a first token (``firsts`` gate) before their whole answer."""

    def __init__(self) -> None:
        super().__init__()
        self.firsts = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def attempt(self, cand: Candidate, budget_s: float, first: asyncio.Event) -> str:
        self.started.append(cand.model)
        try:
            await self.firsts[cand.model].wait()
            first.set()
            await self.gates[cand.model].wait()
        except asyncio.CancelledError:
            self.cancelled.append(cand.model)
            raise
        return cand.model


def test_the_first_token_decides_the_race_not_the_whole_answer() -> None:
    async def go() -> None:
        up, budget = Tokens(), RetryBudget()
        task = asyncio.ensure_future(
            race(up.attempt, A, B, 0.0, 5.0, budget, ReliabilitySettings(), up.discard)
        )
        while len(up.started) < 2:
            await asyncio.sleep(0)
        up.firsts["b"].set()  # the hedge has its first token: the primary is cancelled
        while not up.cancelled:
            await asyncio.sleep(0)
        assert up.cancelled == ["a"] and not task.done()
        assert budget.retrying == 0  # decided: the hedge's retry token is back
        up.gates["b"].set()
        raced = await task
        assert (raced.value, raced.launched) == ("b", True)

    asyncio.run(go())


def test_a_first_token_before_the_delay_means_no_hedge() -> None:
    async def go() -> None:
        up, budget = Tokens(), RetryBudget()
        up.firsts["a"].set()
        task = asyncio.ensure_future(
            race(up.attempt, A, B, 0.05, 5.0, budget, ReliabilitySettings(), up.discard)
        )
        await asyncio.sleep(0.1)  # past the delay, the primary still streaming
        up.gates["a"].set()
        raced = await task
        assert up.started == ["a"] and (raced.value, raced.launched) == ("a", False)

    asyncio.run(go())


def test_the_hedge_budget_bounds_hedges_to_its_share() -> None:
    hb = HedgeBudget(share=0.1, burst=5.0)
    granted = 0
    for _ in range(100):
        hb.earn()
        granted += hb.take()
    assert granted <= 1 + 0.1 * 100 and granted >= 9
    assert hb.refused == 100 - granted

    async def go() -> None:
        up, budget = Upstreams(), RetryBudget()
        spent = HedgeBudget(share=0.1)
        spent.tokens = 0.0
        task = asyncio.ensure_future(
            race(up.attempt, A, B, 0.0, 5.0, budget, ReliabilitySettings(), up.discard, spent)
        )
        await asyncio.sleep(0.01)
        up.gates["a"].set()
        raced = await task
        assert up.started == ["a"] and raced.refused == "hedge budget spent"
        assert budget.retrying == 0 and budget.denied == 0

    asyncio.run(go())


def test_a_hedge_the_retry_budget_refuses_gives_its_hedge_token_back() -> None:
    async def go() -> None:
        up, budget = Upstreams(), RetryBudget()
        throttle = HedgeBudget()
        stingy = ReliabilitySettings(retry_budget_ratio=0.0, retry_budget_min_concurrency=0)
        task = asyncio.ensure_future(
            race(up.attempt, A, B, 0.0, 5.0, budget, stingy, up.discard, throttle)
        )
        await asyncio.sleep(0.01)
        up.gates["a"].set()
        raced = await task
        assert raced.refused.startswith("retry budget exhausted at ") and not raced.launched
        assert throttle.tokens == 1.0 and throttle.refused == 0 and budget.denied == 1

    asyncio.run(go())
