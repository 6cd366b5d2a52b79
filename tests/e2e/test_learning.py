"""The learning loop end to end: real routers, control plane and provider simulator.

- Two routers reporting to one control plane: the merged figures count every
  attempt of both, and the merged p95 is the p95 of all their traffic.
- A provider whose latency triples loses most of its share within a stated
  bound (scored selection, adaptation on, interval 1 s, half-life 2 s) and
  wins it back after it recovers; the drift alert is raised and cleared.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness import Proc, Stack, http_get, wait_until

LOSE_BOUND_S = 15.0  # the slowed model falls under 30% of the traffic within this
REGAIN_BOUND_S = 25.0  # and climbs back over 60% within this after it recovers


def _drift_series(stack: Stack) -> bool:
    code, body = http_get(stack.admin + "/metrics")
    assert code == 200
    return any(
        line.startswith("skyroute_control_drift")
        and "learn-a" in line
        and "latency" in line
        and line.rstrip().endswith(" 1.0")
        for line in body.decode().splitlines()
    )


def _files(half_life_s: int, exploration: float) -> dict[str, str]:
    pool = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: learn}
spec:
  models:
    - {name: learn-a, provider: openai, endpoint: "{SIM}/openai/v1", family: fam-a,
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}, timeoutMs: 3000}
    - {name: learn-b, provider: openai, endpoint: "{SIM}/openai/v1", family: fam-b,
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}, timeoutMs: 3000}
"""
    policy = f"""\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {{name: learn}}
spec:
  default: true
  defaultPool: learn
  weights: {{cost: 0.1, latency: 1.0, success: 1.0, quality: 0.1}}
  selection: {{mode: scored}}
  adaptation: {{enabled: true, halfLifeS: {half_life_s}, exploration: {exploration},
               minSamples: 10, intervalS: 1, driftLatencyRatio: 1.5, driftCostRatio: 0}}
"""
    return {"pools.yaml": pool, "policy.yaml": policy}


def _scenario(a_ms: int) -> str:
    return f"""\
seed: 3
defaults:
  ttft_ms: {{p50: 60, p95: 70}}
  tokens_per_s: 20000
  completion_tokens: {{p50: 20, p95: 30, min: 5, max: 60}}
  error_rate: 0
models:
  learn-a: {{ttft_ms: {{p50: {a_ms}, p95: {a_ms + 10}}}}}
"""


def _learning(stack: Stack) -> dict[str, Any]:
    code, body = http_get(stack.admin + "/debug/learning")
    assert code == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


async def _one(session: aiohttp.ClientSession, url: str) -> tuple[str, float]:
    body = {"model": "learn", "messages": [{"role": "user", "content": "hello there"}]}
    t0 = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", json=body) as r:
        await r.read()
        assert r.status == 200, await r.text()
        return r.headers["x-skyroute-model"], time.perf_counter() - t0


@pytest.fixture
def two_routers(procs: list[Proc], tmp_path: Path) -> Iterator[Stack]:
    yield Stack(procs, tmp_path, _files(3600, 0.0), _scenario(30), routers=2)


def test_two_routers_merge_into_one_fleet_p95(two_routers: Stack) -> None:
    stack = two_routers
    urls = [url for _, _, url in stack.routers]
    N = 500  # within the outcome aggregator's 512-sample latency window

    async def traffic() -> list[tuple[str, float]]:
        async with aiohttp.ClientSession() as session:
            sem = asyncio.Semaphore(8)

            async def go(i: int) -> tuple[str, float]:
                async with sem:
                    return await _one(session, urls[i % 2])

            return await asyncio.gather(*(go(i) for i in range(N)))

    results = asyncio.run(traffic())
    assert [m for m, _ in results] == ["learn-a"] * N  # the fast model, no exploration

    def outcomes() -> dict[str, Any]:
        code, body = http_get(stack.admin + "/debug/outcomes")
        assert code == 200, body
        return json.loads(body)["by_pool_model"].get("learn/learn-a", {})  # type: ignore[no-any-return]

    def merged() -> bool:
        m = _learning(stack)["models"].get("learn-a", {})
        return outcomes().get("requests") == N and bool(m) and m["requests"] >= 0.99 * N

    wait_until(merged, timeout=10, what="both routers' stats and outcomes in")
    fleet = _learning(stack)["models"]["learn-a"]
    assert fleet["requests"] <= N  # decayed (half-life 1 h), never counted twice
    # The routers' own per-request latencies of the same traffic (every outcome,
    # nearest-rank p95): the merged sketch's p95 agrees within its 1% accuracy,
    # less the router's few hundred microseconds around the upstream attempt.
    exact = outcomes()["p95_latency_ms"]
    assert exact - 3.0 <= fleet["p95_ms"] * 1.01 and fleet["p95_ms"] <= exact * 1.01, (fleet, exact)


@pytest.fixture
def one_router(procs: list[Proc], tmp_path: Path) -> Iterator[Stack]:
    yield Stack(procs, tmp_path, _files(2, 0.15), _scenario(30), routers=1)


def test_slowed_provider_loses_share_and_regains_it(one_router: Stack) -> None:
    stack = one_router
    url = stack.routers[0][2]
    log: list[tuple[float, str]] = []

    def share(since: float, window: float = 1.5) -> float:
        now = time.monotonic()
        recent = [m for t, m in log if t >= max(since, now - window)]
        return recent.count("learn-a") / len(recent) if len(recent) >= 20 else -1.0

    async def run() -> tuple[float, float]:
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                while not stop.is_set():
                    model, _ = await _one(session, url)
                    log.append((time.monotonic(), model))

            workers = [asyncio.create_task(worker()) for _ in range(6)]
            loop = asyncio.get_running_loop()

            async def until(pred: Any, bound: float, what: str) -> float:
                t0 = time.monotonic()
                while time.monotonic() - t0 < bound:
                    await asyncio.sleep(0.25)
                    if pred(t0):
                        return time.monotonic() - t0
                raise AssertionError(f"{what} not within {bound} s: {_learning(stack)}")

            try:
                # Warm: learn-a leads, priors were pushed, its drift baseline is set.
                await until(
                    lambda t0: (
                        share(t0) > 0.7
                        and _learning(stack)["pushes"] > 0
                        and "learn-a" in _learning(stack)["baselines"]
                    ),
                    10,
                    "learn-a leading with learned priors and a baseline",
                )
                await loop.run_in_executor(None, stack.put_scenario, _scenario(90))
                lost = await until(
                    lambda t0: 0 <= share(t0) < 0.3, LOSE_BOUND_S, "learn-a losing its share"
                )
                # The raised alert is also a metric on the control plane's scrape endpoint.
                await until(lambda t0: _drift_series(stack), 8, "the drift metric")
                await asyncio.sleep(1.0)
                await loop.run_in_executor(None, stack.put_scenario, _scenario(30))
                regained = await until(
                    lambda t0: share(t0) > 0.6, REGAIN_BOUND_S, "learn-a regaining its share"
                )
            finally:
                stop.set()
                await asyncio.gather(*workers)
            return lost, regained

    lost, regained = asyncio.run(run())
    print(f"learn-a lost its share in {lost:.1f} s, regained it in {regained:.1f} s")
    history = _learning(stack)["drift_history"]
    kinds = [(h["model"], h["kind"], h["raised"]) for h in history]
    assert ("learn-a", "latency", True) in kinds, _learning(stack)
    wait_until(
        lambda: (
            ("learn-a", "latency", False)
            in [(h["model"], h["kind"], h["raised"]) for h in _learning(stack)["drift_history"]]
        ),
        timeout=10,
        what="drift cleared",
    )
    assert "drift raised" in stack.control.output()
    assert not _drift_series(stack)  # cleared: the series is gone
