"""Real router processes sharing a real redis-server as their response cache.

- A response cached by one router is served by the other (exact and
  paraphrase), unary and as an SSE stream, without an upstream call; other
  tenants, personal data and ``Cache-Control: no-cache`` never get it.
- Redis killed mid-traffic: every request still succeeds (as a miss, and
  quickly); when Redis is back, caching resumes by itself.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness import Proc, Stack, wait_until
from redis_server import RedisProcess

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata:
  name: fast
spec:
  models:
    - name: primary-model
      provider: openai
      endpoint: {SIM}/openai/v1
      pricing: {inputPerMTok: 1.0, outputPerMTok: 4.0}
"""

POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata:
  name: support
spec:
  default: true
  intents:
    - name: faq.account
      keywords: ["password", "account"]
    - name: chat.other
      keywords: ["poem"]
  rules: []
  defaultPool: fast
  cache:
    enabled: true
    intents: ["faq.*"]
    ttlSeconds: 600
"""

SCENARIO = """\
seed: 3
defaults:
  ttft_ms: {p50: 2, p95: 4}
  tokens_per_s: 20000
  completion_tokens: {p50: 12, p95: 20, min: 1, max: 40}
  error_rate: 0
"""


def post(
    url: str,
    text: str,
    tenant: str = "acme",
    stream: bool = False,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    body = {
        "model": "support",
        "stream": stream,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
    }
    req = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "content-type": "application/json",
            "x-skyroute-tenant": tenant,
            **(headers or {}),
        },
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()


def content(body: bytes) -> str:
    return str(json.loads(body)["choices"][0]["message"]["content"])


def upstream_calls(stack: Stack) -> int:
    stats: dict[str, Any] = stack.sim_stats()
    models = stats.get("models", stats)
    return sum(int(m.get("requests", 0)) for m in models.values() if isinstance(m, dict))


@pytest.fixture
def shared(procs: list[Proc], tmp_path: Path, redis_server: RedisProcess) -> Stack:
    return Stack(
        procs,
        tmp_path,
        {"pools.yaml": POOLS, "policy.yaml": POLICY},
        SCENARIO,
        routers=2,
        router_args=["--cache-redis", redis_server.url],
    )


def test_routers_serve_each_others_cached_answers(shared: Stack) -> None:
    r0, r1 = shared.routers[0][2], shared.routers[1][2]
    status, h, body = post(r0, "How do I reset my password?")
    assert status == 200 and h["x-skyroute-cache"] == "miss"
    answer = content(body)
    calls = upstream_calls(shared)
    assert calls == 1

    # The other router: the same question, then a paraphrase; no upstream call.
    def exact_hit() -> bool:
        return post(r1, "how do I reset my password")[1]["x-skyroute-cache"] == "hit"

    wait_until(exact_hit, timeout=5, what="router-1 serving router-0's entry")
    _, h, body = post(r1, "How do I reset my password?")
    assert h["x-skyroute-cache"] == "hit" and h["x-skyroute-cache-similarity"] == "1.000"
    assert content(body) == answer and h["x-skyroute-model"] == "primary-model"
    _, h, body = post(r1, "How can I reset my password?")
    assert h["x-skyroute-cache"] == "hit", h
    assert 0.9 <= float(h["x-skyroute-cache-similarity"]) < 1.0
    assert content(body) == answer
    assert upstream_calls(shared) == calls

    # Streaming from the cache is a proper SSE stream.
    status, h, raw = post(r1, "How can I reset my password?", stream=True)
    assert status == 200 and h["content-type"].startswith("text/event-stream")
    assert h["x-skyroute-cache"] == "hit"
    events = [ln.removeprefix("data: ") for ln in raw.decode().split("\n\n") if ln]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == answer
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert upstream_calls(shared) == calls

    # Never across tenants, never with personal data, never against no-cache.
    _, h, _ = post(r1, "How do I reset my password?", tenant="globex")
    assert h["x-skyroute-cache"] == "miss"
    assert upstream_calls(shared) == calls + 1
    for _ in range(2):
        post(r0, "How do I reset my password? My email is jo@example.com")
    assert upstream_calls(shared) == calls + 3
    _, h, _ = post(r0, "How do I reset my password?", headers={"cache-control": "no-cache"})
    assert h["x-skyroute-cache"] != "hit"
    assert upstream_calls(shared) == calls + 4
    # Outside the cache intents: not cacheable at all.
    _, h, _ = post(r0, "write me a poem")
    assert h["x-skyroute-cache"] == "off"
    cache = shared.router_status(0)["cache"]
    assert cache["backend"] == "redis" and cache["refusals"]["personal_data"] >= 2


def test_redis_outage_mid_traffic_is_only_misses(shared: Stack, redis_server: RedisProcess) -> None:
    r0, r1 = shared.routers[0][2], shared.routers[1][2]
    post(r0, "How do I delete my account?")
    wait_until(
        lambda: post(r1, "How do I delete my account?")[1]["x-skyroute-cache"] == "hit",
        timeout=5,
        what="shared entry",
    )
    redis_server.kill()
    slowest = 0.0
    for i in range(30):
        url = (r0, r1)[i % 2]
        t0 = time.monotonic()
        status, h, body = post(
            url,
            ("How do I delete my account?", f"Why is my account locked, attempt {i % 5}?")[i % 2],
        )
        slowest = max(slowest, time.monotonic() - t0)
        assert status == 200 and content(body)
        assert h["x-skyroute-cache"] == "miss"
    assert slowest < 2.0
    cache = shared.router_status(0)["cache"]
    assert cache["errors"] >= 1 and cache["last_error"], cache

    # Back (empty, same port): caching resumes once the back-off has passed.
    redis_server.start()

    def cached_again() -> bool:
        post(r0, "How do I change my account password?")
        return post(r1, "How do I change my account password?")[1]["x-skyroute-cache"] == "hit"

    wait_until(cached_again, timeout=15, interval=0.5, what="cache recovery after Redis restart")
