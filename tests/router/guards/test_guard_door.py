"""The door stage end to end: snapshot tenants and keys, identity, limits, settlement.

Two ``Door`` objects on one real redis-server stand for two routers; the
snapshot is the contract's own message, as the control plane pushes it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid

import pytest

from skyroute.router.ingress.guards.door import Admission, Door
from skyroute.router.ingress.guards.errors import GuardError
from skyroute.router.ingress.guards.keys import NewKey, generate
from skyroute.router.ingress.guards.limits_guard import Limiter
from skyroute.router.ingress.guards.limits_redis import RedisLimitStore
from skyroute.router.ingress.guards.tenants import Estimate
from skyroute.v1 import snapshot_pb2

from redis_server import RedisProcess

# 100 prompt + 100 completion tokens at $1 / $2 per Mtok = $0.0003 per request.
EST = Estimate(100, 100, input_price=1.0, output_price=2.0)
NOON = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def snapshot(
    key: NewKey,
    *,
    rpm: int = 0,
    tpm: int = 0,
    usd: float = 0.0,
    route: bool = False,
    revoked: bool = False,
    delegate: bool = False,
) -> snapshot_pb2.Snapshot:
    t = snapshot_pb2.Tenant(
        name="acme", tier="free", policies=["support"], delegate=delegate, fail_open=True
    )
    if rpm or tpm:
        t.rate_limits.append(
            snapshot_pb2.TenantRateLimit(
                scope="tenant", requests_per_minute=rpm, tokens_per_minute=tpm
            )
        )
    if usd:
        t.budgets.append(
            snapshot_pb2.TenantBudget(
                name="daily",
                usd=usd,
                period="day",
                action="route" if route else "reject",
                pool="cheap" if route else "",
                soft_share=0.5,
            )
        )
    t.keys.append(snapshot_pb2.ApiKey(id=key.key_id, digest=key.digest, revoked=revoked))
    return snapshot_pb2.Snapshot(version="sha256:0000000000000000", tenants=[t])


def door(snap: snapshot_pb2.Snapshot, redis_url: str | None = None) -> Door:
    d = Door(Limiter(RedisLimitStore(redis_url, timeout_s=5) if redis_url else None))
    d.apply(snap)
    return d


async def admit(d: Door, key: str, est: Estimate = EST) -> Admission:
    ident = await d.identify(f"Bearer {key}")
    d.authorize(ident, "support")
    return await d.admit(ident, uuid.uuid4().hex, "support", "m1", est, 30_000, NOON)


def refusal(d: Door, key: str) -> GuardError:
    with pytest.raises(GuardError) as exc:
        asyncio.run(admit(d, key))
    err = exc.value
    secret = key.rsplit("-", 1)[-1]
    text = repr(err.body()) + repr(err.headers()) + str(err) + repr(err)
    assert secret not in text, "a key's secret leaked into an error"
    return err


def test_missing_wrong_and_revoked_keys_are_401_and_never_leak() -> None:
    key = generate()
    d = door(snapshot(key))
    with pytest.raises(GuardError) as exc:
        asyncio.run(d.identify(None))
    assert exc.value.status == 401
    wrong = f"sk-sr-{key.key_id}-{generate().key.rsplit('-', 1)[1]}"
    assert refusal(d, wrong).code == "invalid_api_key"
    assert refusal(d, generate().key).code == "invalid_api_key"
    d.apply(snapshot(key, revoked=True))  # the next snapshot push revokes it
    assert "revoked" in refusal(d, key.key).message


def test_a_remembered_key_is_still_revoked_and_expires() -> None:
    """The verified-key cache (one dict lookup instead of a SHA-256) changes no answer."""
    key = generate()
    d = door(snapshot(key))
    for _ in range(3):  # verified, then served from the cache
        assert asyncio.run(d.identify(f"Bearer {key.key}")).key_id == key.key_id
    # A key that differs only in its secret is not the remembered one.
    assert refusal(d, key.key[:-1] + ("A" if key.key[-1] != "A" else "B")).status == 401
    d.apply(snapshot(key, revoked=True))
    assert "revoked" in refusal(d, key.key).message
    # An expiring key: remembered while valid, refused once its time has passed.
    snap = snapshot(key)
    snap.tenants[0].keys[0].expires_unix = int(time.time()) + 1
    d.apply(snap)
    assert asyncio.run(d.identify(f"Bearer {key.key}")).key_id == key.key_id
    time.sleep(1.2)
    assert "expired" in refusal(d, key.key).message


def test_a_spoofed_tenant_and_tier_change_nothing() -> None:
    key = generate()
    d = door(snapshot(key))
    ident = asyncio.run(d.identify(f"Bearer {key.key}", None, "other-tenant", "premium"))
    assert (ident.tenant, ident.tier) == ("acme", "free")
    ident = asyncio.run(d.identify(None, key.key, "other-tenant", "premium"))  # x-api-key
    assert (ident.tenant, ident.tier) == ("acme", "free")
    with pytest.raises(GuardError) as exc:
        d.authorize(ident, "premium-chat")
    assert exc.value.status == 403 and exc.value.grpc_code == 7


def test_rate_limit_is_429_with_retry_after_and_openai_headers() -> None:
    key = generate()
    d = door(snapshot(key, rpm=2, tpm=100_000))
    first = asyncio.run(admit(d, key.key))
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-remaining-tokens"] == str(100_000 - 200)
    asyncio.run(admit(d, key.key))
    err = refusal(d, key.key)
    assert (err.status, err.code, err.grpc_code) == (429, "rate_limit_exceeded", 8)
    h = err.headers()
    assert int(h["retry-after"]) >= 1 and h["x-ratelimit-remaining-requests"] == "0"


def test_budget_exhaustion_clamp_and_pressure_routing() -> None:
    key = generate()
    # $0.0011 a day: three full requests ($0.0009), then a clamped one, then refusal.
    d = door(snapshot(key, usd=0.0011, route=True))
    ident = asyncio.run(d.identify(f"Bearer {key.key}"))
    assert d.pressure_pool(ident) is None
    for _ in range(3):
        assert asyncio.run(admit(d, key.key)).max_tokens is None
    assert d.pressure_pool(ident) == "cheap"  # 82% used >= softShare 0.5
    clamped = asyncio.run(admit(d, key.key))
    # $0.0002 left: the prompt costs $0.0001, the rest pays 50 completion tokens at $2/Mtok.
    assert clamped.max_tokens == 50
    err = refusal(d, key.key)
    assert (err.status, err.code) == (429, "insufficient_quota")


def test_streams_settle_on_the_tokens_received() -> None:
    key = generate()
    d = door(snapshot(key, tpm=1000))

    async def go() -> str:
        a = await admit(d, key.key, Estimate(100, 800))
        # The stream died after 50 completion tokens: settle 150, not 0 nor 900.
        assert await d.settle(a, 100, 50, 0.0)
        assert not await d.settle(a, 100, 50, 0.0)  # idempotent
        b = await admit(d, key.key, Estimate(10, 10))
        return b.headers["x-ratelimit-remaining-tokens"]

    assert 810 <= int(asyncio.run(go())) <= 830


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_one_request_id_twice_at_once_holds_twice(store: str, redis_server: RedisProcess) -> None:
    """A client's x-request-id is not unique: two requests with it in flight both get in."""
    key = generate()
    d = door(snapshot(key, rpm=10, tpm=10_000), redis_server.url if store == "redis" else None)

    async def go() -> tuple[str, str]:
        ident = await d.identify(f"Bearer {key.key}")
        a = await d.admit(ident, "client-id-1", "support", "m1", EST, 30_000, NOON)
        b = await d.admit(ident, "client-id-1", "support", "m1", EST, 30_000, NOON)
        held = b.headers["x-ratelimit-remaining-tokens"]
        assert await d.settle(a, 10, 10, 0.0) and await d.settle(b, 10, 10, 0.0)
        c = await d.admit(ident, "client-id-2", "support", "m1", Estimate(0, 0), 30_000, NOON)
        return held, c.headers["x-ratelimit-remaining-tokens"]

    held, settled = asyncio.run(go())
    # Two separate holds of the 200-token estimate (GCRA refills 167 a second: on a loaded
    # machine a few ms between the two reservations give a token or two back).
    assert 10_000 - 2 * 200 <= int(held) <= 10_000 - 2 * 200 + 5
    assert int(settled) >= 10_000 - 2 * 20 - 5  # each settled on its own usage


def test_two_routers_hold_one_limit_and_one_budget(redis_server: RedisProcess) -> None:
    """40 concurrent requests on two routers: RPM 25, and a budget for exactly 12."""
    key = generate()
    snap_rpm = snapshot(key, rpm=25)
    snap_budget = snapshot(key, usd=0.0036)  # 12 x $0.0003

    async def burst(snap: snapshot_pb2.Snapshot, settle: bool) -> tuple[int, list[Admission]]:
        a, b = door(snap, redis_server.url), door(snap, redis_server.url)

        async def one(i: int) -> Admission | None:
            try:
                adm = await admit(a if i % 2 else b, key.key)
            except GuardError as e:
                assert e.status == 429
                return None
            if settle:  # the provider reported exactly the estimate's usage
                await (a if i % 2 else b).settle(adm, 100, 100, 0.0003)
            return adm

        got = [x for x in await asyncio.gather(*[one(i) for i in range(40)]) if x is not None]
        spent = await RedisLimitStore(redis_server.url).spent("acme", "daily:2026-12-03")
        return spent[0], got

    _, accepted = asyncio.run(burst(snap_rpm, settle=False))
    assert len(accepted) == 25
    redis_server.kill()
    redis_server.start()
    spent, accepted = asyncio.run(burst(snap_budget, settle=True))
    assert len(accepted) == 12
    # Overshoot bound: actual cost never exceeded the held estimate, so spend <= budget.
    assert spent == 12 * 300_000 and spent <= 0.0036 * 1e9


def test_anonymous_mode_serves_without_a_key_and_trusts_the_header() -> None:
    d = Door(allow_anonymous=True)
    d.apply(snapshot(generate()))
    ident = asyncio.run(d.identify(None, None, "t1", "gold"))
    assert ident.anonymous and (ident.tenant, ident.tier) == ("t1", "gold")
    adm = asyncio.run(d.admit(ident, "r1", "support", "m1", EST, 30_000))
    assert adm.reservation is None and adm.headers == {}


def test_no_tenant_is_closed_unless_anonymous_is_allowed() -> None:
    closed, opened = Door(), Door(allow_anonymous=True)
    for d in (closed, opened):
        d.apply(snapshot_pb2.Snapshot())
    for cred in (None, "Bearer sk-sr-0123456789ab-x"):
        with pytest.raises(GuardError) as e:
            asyncio.run(closed.identify(cred, None, "t1", "gold"))
        assert e.value.status == 401 and e.value.code == "invalid_api_key"
        assert "declare a Tenant" in e.value.message and "--allow-anonymous" in e.value.message
    assert closed.status()["mode"] == "closed" and closed.refused == {"unauthenticated": 2}
    assert closed.readiness().startswith("CLOSED: ")
    ident = asyncio.run(opened.identify(None, None, "t1", "gold"))
    assert ident.anonymous and (ident.tenant, ident.tier) == ("t1", "gold")
    assert opened.status()["open"] is True and opened.readiness().startswith("OPEN: ")
    # The first Tenant turns keys on; the flag then only admits keyless callers.
    opened.apply(snapshot(generate()))
    assert opened.status()["mode"] == "keys" and "anonymous" in opened.readiness()
    closed.apply(snapshot(generate()))
    assert closed.status()["mode"] == "keys" and closed.readiness() == ""


def test_open_without_tenants_turns_keys_on_with_the_first_tenant() -> None:
    d = Door(open_without_tenants=True)
    d.apply(snapshot_pb2.Snapshot())
    ident = asyncio.run(d.identify(None, None, "t1", "gold"))
    assert ident.anonymous and (ident.tenant, ident.tier) == ("t1", "gold")
    assert d.status()["mode"] == "open" and d.status()["anonymous_allowed"] is False
    d.apply(snapshot(generate()))
    with pytest.raises(GuardError) as e:
        asyncio.run(d.identify(None, None, "t1", "gold"))
    assert e.value.status == 401 and "didn't provide an API key" in e.value.message
    assert d.status()["mode"] == "keys" and d.readiness() == ""


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_settle_soon_does_not_hold_the_answer_back(store: str, redis_server: RedisProcess) -> None:
    """In process: settled on the spot. Redis: in the background, done by ``settled()``."""
    key = generate()
    d = door(snapshot(key, usd=1.0), redis_server.url if store == "redis" else None)

    async def go() -> tuple[int, int, int]:
        a = await admit(d, key.key)
        d.settle_soon(a, 100, 50, 0.0002)  # a plain call: nothing to await
        assert a.reservation is not None and a.reservation.settled
        left = await d.settled()
        if store == "redis":
            r = RedisLimitStore(redis_server.url)
            spent, held = await r.spent("acme", "daily:2026-12-03")
            await r.close()
        else:
            spent, held = d.limiter.memory.spent("acme", "daily:2026-12-03")
        return left, spent, held

    left, spent, held = asyncio.run(go())
    assert left == 0 and (spent, held) == (200_000, 0)
