"""The limits engine against both stores: in-process and a real redis-server.

Each test runs the same semantics on ``MemoryLimitStore`` and on
``RedisLimitStore`` (one Lua script per request); the cross-router tests use
two Redis clients, i.e. two routers' worth of connections to one Redis.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from skyroute.router.ingress.guards.errors import GuardError
from skyroute.router.ingress.guards.limits import (
    Check,
    LimitStore,
    go_duration,
    period_bounds,
    ratelimit_headers,
)
from skyroute.router.ingress.guards.limits_guard import Limiter
from skyroute.router.ingress.guards.limits_memory import MemoryLimitStore
from skyroute.router.ingress.guards.limits_redis import RedisLimitStore

from redis_server import RedisProcess, ensure_redis_server

STORES = ["memory", "redis"]


def rid() -> str:
    return uuid.uuid4().hex


def rpm(limit: float, key: str = "t:rpm", shadow: bool = False) -> Check:
    return Check("rate", "tenant", "requests", key, limit, 1, 60_000, shadow=shadow)


def tpm(limit: float, cost: float, key: str = "t:tpm") -> Check:
    return Check("rate", "tenant", "tokens", key, limit, cost, 60_000)


def conc(limit: int, hold_ms: int = 30_000) -> Check:
    return Check("concurrency", "tenant", "concurrent", "t:conc", limit, 1, hold_ms=hold_ms)


def budget(limit: int, cost: int, hold_ms: int = 30_000, cost_min: int = 0) -> Check:
    return Check("budget", "budget:b", "usd", "b:total", limit, cost, 0, hold_ms, cost_min)


def run(
    kind: str,
    server: RedisProcess | None,
    body: Callable[[LimitStore], Awaitable[Any]],
) -> Any:
    async def go() -> Any:
        store: LimitStore
        if kind == "memory":
            store = MemoryLimitStore()
            return await body(store)
        assert server is not None
        rstore = RedisLimitStore(server.url)
        try:
            return await body(rstore)
        finally:
            await rstore.close()

    return asyncio.run(go())


@pytest.fixture(params=STORES)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(kind: str, request: pytest.FixtureRequest) -> RedisProcess | None:
    if kind == "memory":
        return None
    s: RedisProcess = request.getfixturevalue("redis_server")
    return s


def test_requests_per_minute_burst_then_refusal(kind: str, server: RedisProcess | None) -> None:
    async def body(store: LimitStore) -> None:
        remaining = []
        for _ in range(5):
            d = await store.reserve("acme", rid(), [rpm(5)], 60_000)
            assert d.allowed
            remaining.append(d.states[0].remaining)
        assert remaining == [4, 3, 2, 1, 0]
        d = await store.reserve("acme", rid(), [rpm(5)], 60_000)
        assert not d.allowed and d.denied is not None and d.denied.scope == "tenant"
        # One request's share of the window (12 s) is the most to wait.
        assert 0 < d.retry_after_ms <= 12_000
        # Another tenant is not affected.
        assert (await store.reserve("other", rid(), [rpm(5)], 60_000)).allowed

    run(kind, server, body)


def test_tokens_are_reserved_then_settled_from_usage(
    kind: str, server: RedisProcess | None
) -> None:
    async def body(store: LimitStore) -> None:
        first, checks = rid(), [tpm(1000, 600)]
        assert (await store.reserve("acme", first, checks, 60_000)).allowed
        assert not (await store.reserve("acme", rid(), checks, 60_000)).allowed
        # The call used 100 tokens, not 600: the difference comes back.
        assert await store.settle("acme", first, checks, [100])
        d = await store.reserve("acme", rid(), checks, 60_000)
        assert d.allowed and 200 <= d.states[0].remaining <= 300

    run(kind, server, body)


def test_settlement_is_idempotent(kind: str, server: RedisProcess | None) -> None:
    async def body(store: LimitStore) -> None:
        r, checks = rid(), [budget(10_000, 4_000)]
        assert (await store.reserve("acme", r, checks, 60_000)).allowed
        assert await store.settle("acme", r, checks, [3_000])
        assert not await store.settle("acme", r, checks, [3_000])
        d = await store.reserve("acme", rid(), [budget(10_000, 7_000)], 60_000)
        assert d.allowed and d.states[0].remaining == 0
        assert not (await store.reserve("acme", rid(), [budget(10_000, 1)], 60_000)).allowed

    run(kind, server, body)


def test_concurrency_holds_and_releases(kind: str, server: RedisProcess | None) -> None:
    async def body(store: LimitStore) -> None:
        a, b = rid(), rid()
        assert (await store.reserve("acme", a, [conc(2)], 60_000)).allowed
        assert (await store.reserve("acme", b, [conc(2)], 60_000)).allowed
        assert not (await store.reserve("acme", rid(), [conc(2)], 60_000)).allowed
        assert await store.settle("acme", a, [conc(2)], [0])
        assert (await store.reserve("acme", rid(), [conc(2)], 60_000)).allowed

    run(kind, server, body)


def test_orphaned_holds_refund_themselves(kind: str, server: RedisProcess | None) -> None:
    async def body(store: LimitStore) -> None:
        # A router reserved and died: nobody settles. The holds expire with their TTL.
        checks = [budget(1_000, 1_000, hold_ms=300), conc(1, hold_ms=300)]
        assert (await store.reserve("acme", rid(), checks, 300)).allowed
        assert not (await store.reserve("acme", rid(), checks, 300)).allowed
        await asyncio.sleep(0.45)
        assert (await store.reserve("acme", rid(), checks, 300)).allowed

    run(kind, server, body)


def test_budget_clamps_to_what_is_left(kind: str, server: RedisProcess | None) -> None:
    async def body(store: LimitStore) -> None:
        r = rid()
        assert (await store.reserve("acme", r, [budget(10_000, 8_000)], 60_000)).allowed
        d = await store.reserve("acme", rid(), [budget(10_000, 5_000, cost_min=1_000)], 60_000)
        assert d.allowed and d.states[0].granted == 2_000 and d.states[0].remaining == 0
        d = await store.reserve("acme", rid(), [budget(10_000, 5_000, cost_min=1_000)], 60_000)
        assert not d.allowed and d.denied is not None and d.denied.metric == "usd"

    run(kind, server, body)


def test_one_refusal_reserves_nothing_elsewhere(kind: str, server: RedisProcess | None) -> None:
    async def body(store: LimitStore) -> None:
        assert (await store.reserve("acme", rid(), [budget(100, 100)], 60_000)).allowed
        for _ in range(3):
            d = await store.reserve("acme", rid(), [rpm(10), budget(100, 50)], 60_000)
            assert not d.allowed and d.denied is not None and d.denied.kind == "budget"
        d = await store.reserve("acme", rid(), [rpm(10)], 60_000)
        assert d.allowed and d.states[0].remaining == 9

    run(kind, server, body)


def test_shadow_limits_count_but_never_refuse(kind: str, server: RedisProcess | None) -> None:
    async def body(store: LimitStore) -> None:
        shadowed = 0
        for _ in range(4):
            d = await store.reserve("acme", rid(), [rpm(2, shadow=True), rpm(100, "t:b")], 60_000)
            assert d.allowed
            shadowed += len(d.shadow_denied)
        assert shadowed == 2

    run(kind, server, body)


def test_two_routers_enforce_one_limit(redis_server: RedisProcess) -> None:
    """Two stores (two routers' Redis clients), 80 concurrent requests, a limit of 30."""

    async def go() -> int:
        a = RedisLimitStore(redis_server.url, timeout_s=5)
        b = RedisLimitStore(redis_server.url, timeout_s=5)
        try:
            checks = [rpm(30), tpm(100_000, 10), budget(10**9, 1_000)]
            results = await asyncio.gather(
                *[(a if i % 2 else b).reserve("acme", rid(), checks, 60_000) for i in range(80)]
            )
            return sum(d.allowed for d in results)
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(go()) == 30


def test_every_key_of_a_tenant_shares_one_hash_tag(redis_server: RedisProcess) -> None:
    async def go() -> list[bytes]:
        store = RedisLimitStore(redis_server.url)
        try:
            r = rid()
            checks = [rpm(10), tpm(1000, 5), conc(3), budget(1000, 10)]
            assert (await store.reserve("acme", r, checks, 60_000)).allowed
            keys: list[bytes] = await store.redis.keys("sr:lim:*")
            assert await store.settle("acme", r, checks, [1, 5, 0, 10])
            return keys
        finally:
            await store.close()

    keys = asyncio.run(go())
    assert len(keys) >= 5
    assert all(k.startswith(b"sr:lim:{acme}:") for k in keys)


def test_redis_down_fails_open_on_a_local_share_or_closed(redis_server: RedisProcess) -> None:
    async def go() -> tuple[int, str, GuardError]:
        limiter = Limiter(RedisLimitStore(redis_server.url, timeout_s=0.2), local_share=0.5)
        assert (await limiter.reserve("acme", rid(), [rpm(4)], 60_000, True)).decision.allowed
        redis_server.kill()
        opened = [await limiter.reserve("acme", rid(), [rpm(4)], 60_000, True) for _ in range(4)]
        with pytest.raises(GuardError) as exc:
            await limiter.reserve("acme", rid(), [rpm(4)], 60_000, False)
        return sum(r.decision.allowed for r in opened), opened[0].decision.store, exc.value

    allowed, store, err = asyncio.run(go())
    assert allowed == 2 and store == "memory-failopen"
    assert err.status == 503 and err.code == "limits_unavailable" and err.grpc_code == 14


def test_headers_come_from_the_tightest_scope() -> None:
    store = MemoryLimitStore()
    checks = [rpm(100, "a"), rpm(3, "b"), tpm(10_000, 600), rpm(1, "s", shadow=True)]
    d = store.reserve_now("acme", rid(), checks, 60_000, 1_000_000.0)
    h = ratelimit_headers(d)
    assert h["x-ratelimit-limit-requests"] == "3"
    assert h["x-ratelimit-remaining-requests"] == "2"
    assert h["x-ratelimit-reset-requests"] == "20s"
    assert h["x-ratelimit-limit-tokens"] == "10000"
    assert h["x-ratelimit-remaining-tokens"] == "9400"
    assert h["x-ratelimit-reset-tokens"] == "3.6s"


def test_go_durations_and_utc_periods() -> None:
    assert [go_duration(x) for x in (0, 20, 1000, 1500, 360_000, 3_723_000)] == [
        "0s",
        "20ms",
        "1s",
        "1.5s",
        "6m0s",
        "1h2m3s",
    ]
    late = dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert period_bounds("day", late) == ("2027-01-01", dt.datetime(2027, 1, 2, tzinfo=dt.UTC))
    assert period_bounds("month", late)[1] == dt.datetime(2027, 2, 1, tzinfo=dt.UTC)
    assert period_bounds("total", late) == ("total", None)


def test_one_script_call_stays_on_one_cluster_shard(tmp_path: Path) -> None:
    """A real redis-server in cluster mode refuses a script whose keys span slots."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(ensure_redis_server()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(tmp_path / "nodes.conf"),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        async def go() -> tuple[bool, bool]:
            import redis.asyncio as aioredis

            plain = aioredis.from_url(f"redis://127.0.0.1:{port}/0")
            for _ in range(200):
                try:
                    await plain.ping()
                    break
                except Exception:
                    await asyncio.sleep(0.05)
            await plain.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
            for _ in range(200):
                if b"cluster_state:ok" in await plain.execute_command("CLUSTER", "INFO"):
                    break
                await asyncio.sleep(0.05)
            await plain.aclose()
            store = RedisLimitStore(f"redis://127.0.0.1:{port}/0", cluster=True, timeout_s=5)
            try:
                r = rid()
                checks = [rpm(10), tpm(1000, 5), conc(3), budget(1000, 10)]
                ok = (await store.reserve("acme", r, checks, 60_000)).allowed
                return ok, await store.settle("acme", r, checks, [1, 5, 0, 10])
            finally:
                await store.close()

        assert asyncio.run(go()) == (True, True)
    finally:
        proc.kill()
        proc.wait(5)


def _free_port() -> int:
    """A free port whose cluster bus port (port + 10000) exists and is free too."""
    while True:
        with socket.socket() as s, socket.socket() as bus:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port + 10000 > 65535:
                continue
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port
