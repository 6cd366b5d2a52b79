"""Limits that hold across routers: two real routers, one real redis-server, concurrent load.

A control plane with Tenants in its folder (keys from ``skyroute keys
create``), two router processes started with ``--redis`` and
``--limits-local-share 0.5``, the provider simulator upstream (every answer
exactly 40 completion tokens). Requests go through the official ``openai``
SDK, spread over both routers from a thread pool, all at once:

- requests per minute: exactly the limit is accepted, plus at most what GCRA
  refills while the burst lasts (limit / 60 s per second), the rest 429
  ``rate_limit_exceeded`` with ``Retry-After``; a shadow limit on the same
  tenant refuses nothing but is counted (``/debug/status``, ``/metrics``,
  ``skyroute status``);
- tokens per minute: the tokens the provider reported for the accepted
  requests stay within the limit plus the refill and one request's estimate;
- a daily budget: the spend the responses reported never exceeds the budget
  by more than the documented bound (here only prompt-estimate error: the
  last grant is clamped to what is left), the rest 429 ``insufficient_quota``;
- Redis killed mid-run: a ``failOpen`` tenant is served on each router's
  share of its limit (two routers, half each: the fleet stays at the
  limit), a ``failClosed`` tenant gets 503 ``limits_unavailable``; both
  routers and ``skyroute status`` say ``REDIS DOWN``; once Redis is back the
  shared counters are used again.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import BASE_POOL, Proc, Stack, control_status, http_get, keys_cli, wait_until
from redis_server import RedisProcess, start_redis

pytestmark = pytest.mark.timeout(300)

RPM = 20
TPM = 1_000
BUDGET_USD = 0.01  # the CRD's least; at $20/Mtok both ways, about nine requests
PRICE = 20.0
# Prompts free, $250 per million completion tokens: a 40-token answer costs $0.01, so a
# $0.015 budget pays one whole answer and then exactly 20 tokens.
CLAMP_PRICE = 250.0
CLAMP_BUDGET_USD = 0.015
COMPLETION = 40

FILES = {
    "pool.yaml": BASE_POOL
    + f"""\
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: dear}}
spec:
  models:
    - name: dear-model
      provider: openai
      endpoint: "{{SIM}}/openai/v1"
      pricing: {{inputPerMTok: {PRICE}, outputPerMTok: {PRICE}}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: clampy}}
spec:
  models:
    - name: clampy-model
      provider: openai
      endpoint: "{{SIM}}/openai/v1"
      pricing: {{inputPerMTok: 0, outputPerMTok: {CLAMP_PRICE}}}
""",
    "policies.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: shop}
spec:
  default: true
  defaultPool: base
---
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: dear}
spec:
  defaultPool: dear
---
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: clampy}
spec:
  defaultPool: clampy
""",
    "tenants.yaml": f"""\
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {{name: rpm}}
spec:
  policies: [shop]
  rateLimits:
    requestsPerMinute: {RPM}
    perPolicy:
      - {{name: shop, requestsPerMinute: 5, shadow: true}}
---
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {{name: tpm}}
spec:
  policies: [shop]
  rateLimits:
    tokensPerMinute: {TPM}
---
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {{name: budget}}
spec:
  policies: [dear]
  budgets:
    - {{name: daily, usd: {BUDGET_USD}, period: day}}
---
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {{name: clamp}}
spec:
  policies: [clampy]
  budgets:
    - {{name: daily, usd: {CLAMP_BUDGET_USD}, period: day}}
---
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {{name: opens}}
spec:
  policies: [shop]
  redisDown: failOpen
  rateLimits:
    requestsPerMinute: 10
---
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {{name: closes}}
spec:
  policies: [shop]
  redisDown: failClosed
  rateLimits:
    requestsPerMinute: 1000
""",
}
SCENARIO = f"""\
seed: 5
defaults:
  ttft_ms: {{p50: 20, p95: 40}}
  tokens_per_s: 20000
  completion_tokens: {{p50: {COMPLETION}, p95: {COMPLETION}, min: {COMPLETION}, max: {COMPLETION}}}
  error_rate: 0
"""
TENANTS = ("rpm", "tpm", "budget", "clamp", "opens", "closes")


@dataclass
class Fleet:
    stack: Stack
    redis: RedisProcess
    keys: dict[str, str]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("limits")
    redis = start_redis()
    procs: list[Proc] = []
    try:
        args = ["--redis", redis.url, "--limits-local-share", "0.5"]
        stack = Stack(procs, tmp, FILES, SCENARIO, routers=2, router_args=args)
        keys = {
            t: keys_cli("create", "--tenant", t, "--source", str(stack.source)) for t in TENANTS
        }
        for i in range(2):
            wait_until(
                lambda i=i: stack.router_status(i)["door"]["keys"] == len(TENANTS),
                what=f"router-{i} has every key",
            )
        yield Fleet(stack, redis, keys)
    finally:
        for p in reversed(procs):
            p.stop()
        redis.stop()


@dataclass
class Answer:
    status: int
    code: str | None
    headers: dict[str, str]
    total_tokens: int = 0
    cost_usd: float = 0.0
    completion_tokens: int = 0
    finish_reason: str = ""


def ask(url: str, key: str, i: int, model: str = "shop") -> Answer:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model,
            messages=[{"role": "user", "content": f"question {i}: where is my parcel?"}],
            max_tokens=COMPLETION,
        )
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return Answer(e.status_code, body.get("code"), dict(e.response.headers))
    r = raw.parse()
    assert r.usage is not None
    return Answer(
        200,
        None,
        dict(raw.headers),
        r.usage.total_tokens,
        float(raw.headers["x-skyroute-cost-usd"]),
        r.usage.completion_tokens,
        r.choices[0].finish_reason or "",
    )


def burst(fleet: Fleet, tenant: str, n: int, model: str = "shop") -> tuple[list[Answer], float]:
    """``n`` requests at once, alternating between the two routers; and how long it took."""
    urls = [fleet.stack.routers[0][2], fleet.stack.routers[1][2]]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=n) as pool:
        out = list(pool.map(lambda i: ask(urls[i % 2], fleet.keys[tenant], i, model), range(n)))
    return out, time.monotonic() - t0


def metric(fleet: Fleet, i: int, name: str, **labels: str) -> float:
    code, body = http_get(fleet.stack.router_admins[i] + "/metrics")
    assert code == 200
    return sum(
        s.value
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_requests_per_minute_hold_across_two_routers(fleet: Fleet) -> None:
    answers, elapsed = burst(fleet, "rpm", 2 * RPM)
    ok = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status != 200]
    # GCRA: a burst of the whole limit, then limit/60 s per second refills while it lasts.
    assert RPM <= len(ok) <= RPM + int(elapsed * RPM / 60) + 1, (len(ok), elapsed)
    assert all(a.status == 429 and a.code == "rate_limit_exceeded" for a in refused)
    assert all(int(a.headers["retry-after"]) >= 1 for a in refused)
    assert all(a.headers["x-ratelimit-limit-requests"] == str(RPM) for a in answers)
    # Both routers served some: one limit, not one per router.
    by_router = {i % 2 for i, a in enumerate(answers) if a.status == 200}
    assert by_router == {0, 1}

    # The shadow limit (5 a minute on the policy) refused nothing, but was counted.
    shadow = [fleet.stack.router_status(i)["door"]["shadow_denied"] for i in range(2)]
    counted = sum(e["requests"] for s in shadow for e in s if e["tenant"] == "rpm")
    assert counted >= len(ok) - 5, shadow
    assert all(e["scope"] == "policy:shop" for s in shadow for e in s)
    assert counted == sum(
        metric(fleet, i, "skyroute_router_limits_shadow_denied_total", skyroute_tenant="rpm")
        for i in range(2)
    )
    table = control_status(fleet.stack)
    wait_until(
        lambda: all(
            re.search(r"keys 6t/6k .*redis shadow:\d+", row)
            for row in control_status(fleet.stack).splitlines()
            if row.startswith("router-")
        ),
        what=f"skyroute status shows the shared limits and the shadow count\n{table}",
    )


def test_tokens_per_minute_hold_across_two_routers(fleet: Fleet) -> None:
    answers, elapsed = burst(fleet, "tpm", 30)
    ok = [a for a in answers if a.status == 200]
    assert ok and len(ok) < 30
    assert all(a.code == "rate_limit_exceeded" for a in answers if a.status != 200)
    # Each request reserves its estimate (prompt + max_tokens) and settles on the
    # reported usage: what was used stays within the limit, the refill while the
    # burst lasted, and one request's reservation.
    used = sum(a.total_tokens for a in ok)
    one = max(a.total_tokens for a in ok)
    assert used <= TPM + elapsed * TPM / 60 + one, (used, len(ok), elapsed)
    # And the limit was not left unused: every reservation (the estimate: the prompt
    # estimated, a few tokens off, plus max_tokens) fitted until the next did not.
    est = one + 8
    assert len(ok) * est >= TPM - est, (used, len(ok))


def test_a_budget_is_not_overshot_under_concurrency_across_two_routers(fleet: Fleet) -> None:
    answers, _ = burst(fleet, "budget", 30, model="dear")
    ok = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status != 200]
    assert ok and refused
    assert all(a.status == 429 and a.code == "insufficient_quota" for a in refused)
    spent = sum(a.cost_usd for a in ok)
    one = max(a.cost_usd for a in ok)
    # The bound: actual minus held cost of the requests in flight when it ran out. Every
    # grant was at least the actual completion (the clamp), so only the prompt estimate
    # can be off: a few tokens per request.
    assert spent <= BUDGET_USD + len(ok) * 4 * PRICE / 1e6, (spent, len(ok))
    # And the budget was used, not left idle: less than one request's cost remains.
    assert spent >= BUDGET_USD - one, (spent, len(ok))


def test_max_tokens_is_clamped_to_what_the_budget_can_still_pay(fleet: Fleet) -> None:
    url = fleet.stack.routers[0][2]
    key = fleet.keys["clamp"]
    full = ask(url, key, 0, model="clampy")
    assert (full.status, full.completion_tokens) == (200, COMPLETION)
    assert abs(full.cost_usd - 0.01) < 1e-9
    # $0.005 left: the upstream is asked for 20 tokens (not 40), and the answer stops there.
    clamped = ask(url, key, 1, model="clampy")
    assert clamped.status == 200, clamped
    assert clamped.completion_tokens == 20 and clamped.finish_reason == "length"
    assert abs(clamped.cost_usd - 0.005) < 1e-9
    spent = ask(url, key, 2, model="clampy")
    assert (spent.status, spent.code) == (429, "insufficient_quota")


def test_redis_killed_mid_run_fails_open_on_a_share_or_closed(fleet: Fleet) -> None:
    stack = fleet.stack
    assert ask(stack.routers[0][2], fleet.keys["opens"], 0).status == 200  # shared counters
    fleet.redis.kill()
    try:
        # Fail open: each router counts alone, on half the limit (--limits-local-share 0.5),
        # so the two routers together admit the tenant's 10 a minute, not 10 each.
        answers, _ = burst(fleet, "opens", 24)
        ok = sum(a.status == 200 for a in answers)
        assert ok == 10, [a.status for a in answers]
        assert all(a.code == "rate_limit_exceeded" for a in answers if a.status != 200)
        # Fail closed: 503 limits_unavailable, in OpenAI's error shape.
        for url in (stack.routers[0][2], stack.routers[1][2]):
            a = ask(url, fleet.keys["closes"], 1)
            assert (a.status, a.code) == (503, "limits_unavailable")
        for i in range(2):
            door = stack.router_status(i)["door"]
            assert door["limits"] == "redis-down" and door["limits_redis_down_since"]
            assert door["tenants_fail_closed"] == ["closes"]
            assert metric(fleet, i, "skyroute_router_limits_redis_up") == 0
        wait_until(
            lambda: all(
                "REDIS DOWN (1 fail closed)" in row
                for row in control_status(stack).splitlines()
                if row.startswith("router-")
            ),
            what="skyroute status shows Redis down on both routers",
        )
        data = json.loads(control_status(stack, "--json"))
        assert {r["door"]["limits"] for r in data["routers"]} == {"redis-down"}
    finally:
        fleet.redis.start()
    # Redis is back: the next request uses the shared counters again.
    wait_until(
        lambda: ask(stack.routers[0][2], fleet.keys["closes"], 2).status == 200,
        what="the fail-closed tenant served again once Redis is back",
    )
    assert stack.router_status(0)["door"]["limits"] == "redis"
    assert metric(fleet, 0, "skyroute_router_limits_redis_up") == 1
