"""Scenario behaviour over many requests: error rates, bursts, latency, hooks, seeds."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import aiohttp
import orjson
import pytest

from skyroute.simulator.harness import SimulatorThread


def fire(
    url: str, model: str, n: int, stream: bool = False, timeout: float = 5, concurrency: int = 50
) -> list[tuple[int, float]]:
    """n OpenAI requests; (status, seconds) each; status 0 = transport failure."""
    body = orjson.dumps(
        {
            "model": model,
            "stream": stream,
            "messages": [{"role": "user", "content": "status of my order"}],
        }
    )

    async def one(s: aiohttp.ClientSession, sem: asyncio.Semaphore) -> tuple[int, float]:
        async with sem:
            t0 = time.perf_counter()
            try:
                async with s.post(
                    url + "/openai/v1/chat/completions",
                    data=body,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as r:
                    await r.read()
                    return r.status, time.perf_counter() - t0
            except (aiohttp.ClientError, TimeoutError):
                return 0, time.perf_counter() - t0

    async def run() -> list[tuple[int, float]]:
        sem = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession() as s:
            return await asyncio.gather(*(one(s, sem) for _ in range(n)))

    return asyncio.run(run())


def test_error_rate_and_mix_are_statistically_right() -> None:
    scenario = {
        "seed": 3,
        "time_scale": 1000,
        "models": {"flaky": {"error_rate": 0.2, "errors": {"server_error": 3, "rate_limited": 1}}},
    }
    with SimulatorThread(scenario) as sim:
        results = fire(sim.url, "flaky", 1000)
        stats = sim.stats()["models"]["flaky"]
    codes = [s for s, _ in results]
    failures = sum(1 for c in codes if c != 200)
    # binomial(1000, 0.2): sd ~12.6; 5 sd bounds
    assert 137 <= failures <= 263
    n500, n429 = codes.count(500), codes.count(429)
    assert n500 + n429 == failures
    assert 0.6 <= n500 / failures <= 0.9  # expected 0.75
    assert stats["requests"] == 1000 and stats["ok"] == 1000 - failures
    assert stats["errors"] == {"server_error": n500, "rate_limited": n429}


def test_same_seed_same_failure_sequence() -> None:
    scenario = {"seed": 11, "time_scale": 1000, "models": {"flaky": {"error_rate": 0.3}}}
    runs = []
    for _ in range(2):
        with SimulatorThread(scenario) as sim:
            runs.append([s for s, _ in fire(sim.url, "flaky", 60, concurrency=1)])
    assert runs[0] == runs[1] and 200 in runs[0] and 500 in runs[0]


def test_burst_window_on_the_scenario_clock() -> None:
    # time_scale 10: the burst [30 s, 1030 s) of scenario time starts 3 s after (re)start,
    # room enough for the "before" requests on a loaded machine.
    scenario = {
        "time_scale": 10,
        "defaults": {"error_rate": 0},
        "bursts": [
            {
                "models": ["gpt-*"],
                "start_s": 30,
                "duration_s": 1000,
                "error_rate": 1.0,
                "errors": {"unavailable": 1},
            }
        ],
    }
    with SimulatorThread(scenario) as sim:
        sim.reset()
        t0 = time.monotonic()
        before = {s for s, _ in fire(sim.url, "gpt-5.2", 20)}
        assert time.monotonic() - t0 < 3.0, "the 'before' requests outlasted the quiet window"
        time.sleep(max(0.0, t0 + 3.2 - time.monotonic()))
        during = {s for s, _ in fire(sim.url, "gpt-5.2", 20)}
        other = {s for s, _ in fire(sim.url, "claude-4.5-haiku", 20)}
        sim.reset()  # restarts the burst clock
        after_reset = {s for s, _ in fire(sim.url, "gpt-5.2", 20)}
    assert before == {200} and during == {503} and other == {200} and after_reset == {200}


def test_repeating_burst_and_latency_multiplier() -> None:
    scenario = {
        "time_scale": 1,
        "defaults": {"error_rate": 0, "ttft_ms": {"p50": 20, "p95": 20}, "tokens_per_s": 100000},
    }
    with SimulatorThread(scenario) as sim:
        base = statistics.median(t for _, t in fire(sim.url, "m", 10))
        sim.set_scenario(
            {
                **scenario,
                "bursts": [
                    {"start_s": 0, "duration_s": 5, "every_s": 100, "latency_multiplier": 10}
                ],
            }
        )
        slow = statistics.median(t for _, t in fire(sim.url, "m", 10))
    assert base < 0.1 and 0.18 < slow < 1.0


def test_latency_follows_ttft_and_time_scale() -> None:
    scenario = {
        "seed": 5,
        "time_scale": 4,
        "defaults": {"ttft_ms": {"p50": 1000, "p95": 2000}, "tokens_per_s": 1e6, "error_rate": 0},
    }
    with SimulatorThread(scenario) as sim:
        times = sorted(t for _, t in fire(sim.url, "m", 80))
    median = times[len(times) // 2]
    # 1000 ms / time_scale 4 = 250 ms (unscaled would be 1 s); sleeps never end early, and
    # the bounds leave a loaded machine 350 ms of slack.
    assert 0.2 < median < 0.6
    assert times[int(len(times) * 0.95)] < 1.2


def test_timeout_hangs_until_client_gives_up() -> None:
    scenario = {
        "time_scale": 100,
        "hang_s": 30,
        "models": {"hang": {"error_rate": 1, "errors": {"timeout": 1}}},
    }
    with SimulatorThread(scenario) as sim:
        [(status, took)] = fire(sim.url, "hang", 1, timeout=0.4)
        stats = sim.stats()["models"]["hang"]
    assert status == 0 and 0.35 < took < 2
    assert stats["errors"] == {"timeout": 1} and stats["ok"] == 0


def test_hooks_stats_reset_scenario_health() -> None:
    with SimulatorThread({"time_scale": 1000, "defaults": {"error_rate": 0}}) as sim:
        fire(sim.url, "a", 3)
        fire(sim.url, "a", 2, stream=True)
        stats = sim.stats()
        assert stats["models"]["a"] == {
            "requests": 5,
            "ok": 5,
            "streams": 2,
            "tool_calls": 0,
            "errors": {},
        }
        sim.reset()
        assert sim.stats()["models"] == {}
        sim.set_scenario("models:\n  a:\n    error_rate: 1\n    errors: {bad_request: 1}\n")
        assert {s for s, _ in fire(sim.url, "a", 3)} == {400}
        health = _get(sim.url + "/healthz")
        assert health == (200, {"status": "ok"})
        status, body = _put(sim.url + "/_sim/scenario", b"models:\n  a:\n    ttft_ms: {p99: 1}\n")
        assert status == 400 and "models.a.ttft_ms" in body["error"] and "p99" in body["error"]
        assert {s for s, _ in fire(sim.url, "a", 2)} == {400}  # old scenario kept


def _get(url: str) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return r.status, await r.json()

    return asyncio.run(go())


def _put(url: str, data: bytes) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.put(url, data=data) as r:
            return r.status, await r.json()

    return asyncio.run(go())


@pytest.mark.parametrize("key_ok", [True, False])
def test_api_key_enforced_when_configured(key_ok: bool) -> None:
    with SimulatorThread({"api_key": "secret-1", "time_scale": 1000}) as sim:

        async def go() -> int:
            headers = {"Authorization": "Bearer " + ("secret-1" if key_ok else "nope")}
            async with (
                aiohttp.ClientSession() as s,
                s.post(
                    sim.url + "/openai/v1/chat/completions",
                    headers=headers,
                    json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                ) as r,
            ):
                return r.status

        assert asyncio.run(go()) == (200 if key_ok else 401)
