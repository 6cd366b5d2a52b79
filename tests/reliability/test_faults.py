"""Fault injection: real routers against the provider simulator, numbers asserted.

One module-wide stack (simulator, control plane, two routers). The first
test checks that ejections reach the control plane; every later test runs
with the control plane killed, so all of it also shows that routers keep
serving from their last known good snapshot while it is away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from faults import INVOICE_TOOL, SCENARIO, files
from harness import Proc, Stack, free_port, wait_until
from redis_server import start_redis


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    procs: list[Proc] = []
    s = Stack(
        procs,
        tmp_path_factory.mktemp("faults"),
        files(),
        SCENARIO,
        routers=2,
        router_args=["--max-inflight", "32"],
    )
    yield s
    for p in reversed(procs):
        p.stop()


@pytest.fixture
def control_down(stack: Stack) -> Stack:
    if stack.control.alive():
        stack.control.kill()
    return stack


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], float, Any]:
    t0 = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
        data = await r.json(content_type=None)
        return r.status, dict(r.headers), time.perf_counter() - t0, data


async def _burst(
    urls: list[str], policy: str, n: int, concurrency: int, tools: bool = False
) -> list[tuple[int, dict[str, str], float, Any]]:
    sem = asyncio.Semaphore(concurrency)
    body: dict[str, Any] = {
        "model": policy,
        "messages": [{"role": "user", "content": "where is my parcel"}],
    }
    if tools:
        body["tools"] = [INVOICE_TOOL]

    async def one(i: int, session: aiohttp.ClientSession) -> tuple[int, dict[str, str], float, Any]:
        async with sem:
            return await _post(session, urls[i % len(urls)], body)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        return await asyncio.gather(*(one(i, session) for i in range(n)))


def _urls(stack: Stack) -> list[str]:
    return [url for _, _, url in stack.routers]


def _sim(stack: Stack, model: str, key: str = "requests") -> int:
    return int(stack.sim_stats()["models"].get(model, {}).get(key, 0))


def test_primary_down_keeps_success_and_ejects_it(stack: Stack) -> None:
    results = asyncio.run(_burst(_urls(stack), "down", 300, 16))
    ok = sum(1 for status, *_ in results if status == 200)
    assert ok / len(results) >= 0.999, f"success {ok}/{len(results)}"
    assert all(r[1]["x-skyroute-model"] == "b-down" for r in results if r[0] == 200)
    # After 3 consecutive failures per router the primary is ejected: later requests
    # go straight to the backup instead of paying for a failed attempt first.
    assert _sim(stack, "a-down") <= 2 * (3 + 16), _sim(stack, "a-down")
    one_attempt = sum(1 for r in results if r[1]["x-skyroute-attempts"].count(";") == 3)
    assert one_attempt >= 200, one_attempt
    for i in range(2):
        eps = {e["model"]: e for e in stack.router_status(i)["endpoints"]}
        assert eps["a-down"]["ejected"] and eps["a-down"]["ejections"] >= 1
    # ...and reported to the control plane with the outcome batches.
    wait_until(
        lambda: all(
            any(e.get("model") == "a-down" and e.get("ejected") for e in r.get("endpoints", []))
            for r in stack.status()["routers"]
        ),
        timeout=5,
        what="ejection reported to control",
    )


def test_timeout_burst_keeps_p95_and_caps_upstream_calls(control_down: Stack) -> None:
    stack = control_down
    results = asyncio.run(_burst(_urls(stack), "hang", 120, 12))
    assert all(status == 200 for status, *_ in results)
    latencies = sorted(r[2] for r in results)
    p95 = latencies[int(0.95 * len(latencies)) - 1]
    # Bound: one primary attempt timeout (0.4 s) plus a healthy backup call.
    assert p95 < 1.0, f"p95 {p95:.3f}s"
    attempts = [r[1]["x-skyroute-attempts"].count(",") + 1 for r in results]
    assert max(attempts) <= 3
    upstream = _sim(stack, "a-hang") + _sim(stack, "b-hang")
    assert upstream <= 3 * len(results)
    assert upstream / len(results) <= 1.5, upstream  # ejection: most need one call


def test_429_storm_honours_retry_after(control_down: Stack) -> None:
    stack = control_down

    async def sequential() -> list[tuple[int, dict[str, str], float, Any]]:
        out = []
        async with aiohttp.ClientSession() as session:
            for i in range(60):
                out.append(
                    await _post(
                        session,
                        _urls(stack)[i % 2],
                        {"model": "storm", "messages": [{"role": "user", "content": f"q{i}"}]},
                    )
                )
        return out

    t0 = time.monotonic()
    results = asyncio.run(sequential())
    assert time.monotonic() - t0 < 3.0  # all inside the 3 s Retry-After window
    assert all(status == 200 for status, *_ in results)
    # One 429 per router, then the primary is left alone until Retry-After passes.
    assert _sim(stack, "a-429") <= 2, _sim(stack, "a-429")


def test_slow_first_token_fails_over_silently(control_down: Stack) -> None:
    c = openai.OpenAI(base_url=control_down.routers[0][2] + "/v1", api_key="x", max_retries=0)
    trails = []
    for _ in range(4):
        t0 = time.monotonic()
        with c.chat.completions.with_streaming_response.create(
            model="ttft",
            stream=True,
            messages=[{"role": "user", "content": "hello there"}],
        ) as raw:
            assert raw.headers["x-skyroute-model"] == "b-ttft"
            # Streamed headers carry the attempts that failed before the first token.
            trails.append(raw.headers["x-skyroute-attempts"])
            chunks = list(raw.parse())
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text.startswith("[b-ttft]")
        assert time.monotonic() - t0 < 1.5
    assert trails[0].startswith("a-ttft;first_token_timeout"), trails
    # The final chunk carries the whole trail, the successful attempt included.
    extra = chunks[-1].model_extra or {}
    assert extra["x_skyroute"]["attempts"].startswith("b-ttft;ok;200;"), extra


@pytest.mark.parametrize("policy", ["cut", "stall"])
def test_failure_after_first_token_is_an_explicit_error(control_down: Stack, policy: str) -> None:
    c = openai.OpenAI(base_url=control_down.routers[1][2] + "/v1", api_key="x", max_retries=0)
    received: list[str] = []
    t0 = time.monotonic()
    with pytest.raises(openai.APIError) as e:
        for ch in c.chat.completions.create(
            model=policy, stream=True, messages=[{"role": "user", "content": "tell me more"}]
        ):
            if ch.choices and ch.choices[0].delta.content:
                received.append(ch.choices[0].delta.content)
    assert received, "the stream should have started before it failed"
    assert "stream failed after it started" in str(e.value)
    assert time.monotonic() - t0 < 3.0
    # No fallback after the first token: the backup was never called.
    assert _sim(control_down, f"b-{policy}") == 0


def _client_retries(urls: list[str], key: str, attempts: int = 40) -> dict[str, Any]:
    """A naive client: 0.3 s timeout, retries with the same Idempotency-Key."""

    async def run() -> dict[str, Any]:
        body = {
            "model": "tool",
            "tools": [INVOICE_TOOL],
            "messages": [{"role": "user", "content": "create the invoice for order 77"}],
        }
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as session:
            for i in range(attempts):
                try:
                    status, headers, _, data = await _post(
                        session, urls[i % len(urls)], body, {"Idempotency-Key": key}
                    )
                except (TimeoutError, aiohttp.ClientError):
                    await asyncio.sleep(0.05)
                    continue
                if status == 200:
                    return {"headers": headers, "data": data, "tries": i + 1}
                await asyncio.sleep(0.05)
        raise AssertionError("no success")

    return asyncio.run(run())


def test_idempotency_key_one_tool_call_per_key(control_down: Stack) -> None:
    stack = control_down
    before = _sim(stack, "a-tool", "tool_calls")
    # One router: the in-process store.
    first = _client_retries(_urls(stack)[:1], "key-single")
    assert first["tries"] > 1  # the client did time out and retry
    call = first["data"]["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "create_invoice"
    assert _sim(stack, "a-tool", "tool_calls") - before == 1
    again = _client_retries(_urls(stack)[:1], "key-single")
    assert again["headers"].get("x-skyroute-idempotent-replay") == "true"
    assert again["data"]["choices"][0]["message"]["tool_calls"][0]["id"] == call["id"]
    assert _sim(stack, "a-tool", "tool_calls") - before == 1


def test_idempotency_key_over_grpc(control_down: Stack) -> None:
    import grpc
    import orjson

    from skyroute.v1 import router_pb2, router_pb2_grpc

    stack = control_down
    before = _sim(stack, "a-tool", "tool_calls")
    req = router_pb2.CompletionRequest(
        policy="tool",
        idempotency_key="grpc-key-1",
        messages=[router_pb2.Message(role="user", content="create the invoice for order 78")],
        tools=[
            router_pb2.Tool(
                name="create_invoice",
                description="Create an invoice",
                parameters=orjson.dumps(INVOICE_TOOL["function"]["parameters"]).decode(),
            )
        ],
    )
    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        first = stub.Complete(req, timeout=10)
        again, call = stub.Complete.with_call(req, timeout=10)
    assert first.message.tool_calls[0].name == "create_invoice"
    assert again.message.tool_calls[0].id == first.message.tool_calls[0].id
    assert ("x-skyroute-idempotent-replay", "true") in tuple(call.trailing_metadata())
    assert [a.model for a in first.attempts] == ["a-tool"]
    assert _sim(stack, "a-tool", "tool_calls") - before == 1
    # StreamComplete with a key: one upstream answer, the retry replays it as a stream.
    # (Policy "down": its healthy backup streams fast; "tool"'s model is slower than
    # the first-token timeout, which only streams have.)
    streamed = router_pb2.CompletionRequest()
    streamed.CopyFrom(req)
    streamed.policy, streamed.idempotency_key = "down", "grpc-stream-key-1"
    calls = _sim(stack, "b-down", "tool_calls")
    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        live = list(stub.StreamComplete(streamed, timeout=10))
        replay_call = stub.StreamComplete(streamed, timeout=10)
        replay = list(replay_call)
        replay_meta = tuple(replay_call.trailing_metadata())
    kinds = [c.WhichOneof("chunk") for c in live]
    assert kinds[0] == "decision" and kinds[-1] == "done" and "tool_call" in kinds, kinds
    replayed = [c.WhichOneof("chunk") for c in replay]
    assert replayed[0] == "decision" and replayed[-1] == "done", replayed
    live_call = next(c.tool_call for c in live if c.WhichOneof("chunk") == "tool_call")
    again_call = next(c.tool_call for c in replay if c.WhichOneof("chunk") == "tool_call")
    assert again_call.id == live_call.id and again_call.name == "create_invoice"
    assert ("x-skyroute-idempotent-replay", "true") in replay_meta
    assert _sim(stack, "b-down", "tool_calls") - calls == 1


def test_non_idempotent_tool_is_not_retried_after_a_timeout(control_down: Stack) -> None:
    stack = control_down
    results = asyncio.run(_burst(_urls(stack), "toolhang", 4, 4, tools=True))
    assert all(status == 504 for status, *_ in results), [r[0] for r in results]
    assert _sim(stack, "b-toolhang") == 0  # never sent again after an ambiguous failure


def test_overload_sheds_fast_and_loses_nothing_accepted(control_down: Stack) -> None:
    stack = control_down
    results = asyncio.run(_burst(_urls(stack)[:1], "slow", 64, 64))
    shed = [r for r in results if r[0] == 429]
    accepted = [r for r in results if r[0] != 429]
    assert 24 <= len(shed) <= 40, len(shed)  # capacity 32 of 64 at once
    assert all(r[1].get("Retry-After") == "1" for r in shed)
    assert max(r[2] for r in shed) < 0.25  # answered at once, not queued
    assert all(r[0] == 200 for r in accepted)  # every accepted request completed
    assert max(r[2] for r in accepted) < 3.0  # no timeouts


def test_hedge_beats_a_slow_primary(control_down: Stack) -> None:
    results = asyncio.run(_burst(_urls(control_down), "hedge", 10, 5))
    assert all(r[0] == 200 and r[1]["x-skyroute-model"] == "b-hedge" for r in results)
    # The hedge starts 100 ms in and answers in tens of ms; the primary needs 900 ms.
    assert max(r[2] for r in results) < 0.6, [round(r[2], 3) for r in results]
    for r in results:
        trail = r[1]["x-skyroute-attempts"]
        assert "b-hedge;ok" in trail and "a-hedge;cancelled" in trail, trail
    assert sum(control_down.router_status(i)["hedges"] for i in range(2)) >= 10


def test_hedge_races_a_stream_to_its_first_token(control_down: Stack) -> None:
    c = openai.OpenAI(base_url=control_down.routers[0][2] + "/v1", api_key="x", max_retries=0)
    for _ in range(4):
        t0 = time.monotonic()
        with c.chat.completions.with_streaming_response.create(
            model="hedge",
            stream=True,
            messages=[{"role": "user", "content": "hello"}],
        ) as raw:
            assert raw.headers["x-skyroute-model"] == "b-hedge"
            # The primary lost the race and was cancelled before the first token went
            # out (without the hedge it would have hit the 300 ms first-token timeout).
            trail = raw.headers["x-skyroute-attempts"]
            chunks = list(raw.parse())
        assert trail.startswith("a-hedge;cancelled"), trail
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text.startswith("[b-hedge]")
        assert time.monotonic() - t0 < 0.6
        extra = chunks[-1].model_extra or {}
        assert "b-hedge;ok;200;" in extra["x_skyroute"]["attempts"], extra


def test_idempotency_across_two_routers_with_redis(procs: list[Proc], tmp_path: Path) -> None:
    redis = start_redis()
    try:
        stack = Stack(
            procs, tmp_path, files(), SCENARIO, routers=2, router_args=["--redis", redis.url]
        )
        first = _client_retries(_urls(stack), "key-shared")
        assert first["tries"] > 1
        assert _sim(stack, "a-tool", "tool_calls") == 1
        # The replay is served by whichever router the retry reaches.
        for url in _urls(stack):
            again = _client_retries([url], "key-shared")
            assert again["headers"].get("x-skyroute-idempotent-replay") == "true"
        assert _sim(stack, "a-tool", "tool_calls") == 1
    finally:
        redis.stop()


@pytest.mark.parametrize(
    "policy,error_class", [("uttft", "first_token_timeout"), ("ustall", "stream_cut")]
)
def test_unary_stall_is_cut_by_the_stream_timeouts(
    control_down: Stack, policy: str, error_class: str
) -> None:
    # A unary caller: the router streams from the upstream anyway, so a first token that
    # never comes (5 s) or a stream that stops midway is cut at 500 ms, not at the 6 s
    # attempt timeout, and the healthy backup answers.
    async def one() -> tuple[int, dict[str, str], float, Any]:
        async with aiohttp.ClientSession() as session:
            body = {"model": policy, "messages": [{"role": "user", "content": "tell me"}]}
            return await _post(session, _urls(control_down)[0], body)

    status, headers, _, data = asyncio.run(one())
    assert status == 200 and headers["x-skyroute-model"] == f"b-{policy}"
    first, second = headers["x-skyroute-attempts"].split(", ")
    model, cls, _, ms = first.split(";")
    assert (model, cls) == (f"a-{policy}", error_class)
    assert float(ms.removesuffix("ms")) < 3000, first  # well before the 6 s attempt timeout
    assert second.startswith(f"b-{policy};ok;200;")
    assert data["choices"][0]["message"]["content"].startswith(f"[b-{policy}]")


def test_retry_budget_exhausted_at_one_provider_still_falls_back_to_another(
    control_down: Stack,
) -> None:
    # The budget policy allows no retries at all (ratio 0, floor 0): the second model on
    # the primary's endpoint is not tried, but the healthy one on another provider is.
    async def one() -> tuple[int, dict[str, str], float, Any]:
        async with aiohttp.ClientSession() as session:
            body = {"model": "budget", "messages": [{"role": "user", "content": "hello"}]}
            return await _post(session, _urls(control_down)[0], body)

    status, headers, _, _ = asyncio.run(one())
    assert status == 200 and headers["x-skyroute-model"] == "b-budget", headers
    trail = headers["x-skyroute-attempts"].split(", ")
    assert [a.split(";")[0] for a in trail] == ["a-budget", "b-budget"], trail
    notes = headers["x-skyroute-notes"]
    assert "a2-budget: not tried, retry budget exhausted at" in notes, notes
    assert "b-budget: fallback to another endpoint" in notes, notes
    assert _sim(control_down, "a2-budget") == 0


async def _keyed(
    url: str, body: dict[str, Any], key: str, tenant: str = ""
) -> tuple[int, dict[str, str], float, Any]:
    headers = {"Idempotency-Key": key, **({"x-skyroute-tenant": tenant} if tenant else {})}
    async with aiohttp.ClientSession() as session:
        return await _post(session, url, body, headers)


def test_idempotency_after_a_timeout_keeps_the_stored_failure(control_down: Stack) -> None:
    # The first request's attempt timed out after it was sent: the upstream may have
    # emitted the tool call. The key is not released: the client's retry gets the same
    # failure, and nothing is sent upstream again (Stripe's semantics).
    url = _urls(control_down)[0]
    body = {
        "model": "idemhang",
        "tools": [INVOICE_TOOL],
        "messages": [{"role": "user", "content": "create the invoice for order 91"}],
    }
    status, headers, _, data = asyncio.run(_keyed(url, body, "key-hang"))
    assert status == 504, (status, data)
    assert headers["x-skyroute-attempts"].startswith("a-idemhang;first_token_timeout")
    sent = _sim(control_down, "a-idemhang")
    assert sent == 1 and _sim(control_down, "b-idemhang") == 0
    for _ in range(2):
        again_status, again_headers, _, again = asyncio.run(_keyed(url, body, "key-hang"))
        assert (again_status, again) == (status, data)
        assert again_headers.get("x-skyroute-idempotent-replay") == "true"
    assert _sim(control_down, "a-idemhang") == sent and _sim(control_down, "b-idemhang") == 0


def test_idempotency_key_reused_with_another_body_is_refused(control_down: Stack) -> None:
    url = _urls(control_down)[0]
    body = {"model": "slow", "messages": [{"role": "user", "content": "first question"}]}
    status, _, _, first = asyncio.run(_keyed(url, body, "key-reuse"))
    assert status == 200
    other = {**body, "messages": [{"role": "user", "content": "another question"}]}
    status, _, _, data = asyncio.run(_keyed(url, other, "key-reuse"))
    assert status == 422, data
    assert data["error"]["code"] == "key_reused" and "'key-reuse'" in data["error"]["message"]
    # The same body still replays; the same key under another tenant is another key.
    status, headers, _, again = asyncio.run(_keyed(url, body, "key-reuse"))
    assert status == 200 and headers.get("x-skyroute-idempotent-replay") == "true"
    assert again["choices"] == first["choices"]
    status, headers, _, _ = asyncio.run(_keyed(url, other, "key-reuse", tenant="t2"))
    assert status == 200 and "x-skyroute-idempotent-replay" not in headers


def test_idempotency_with_redis_down_fails_closed_for_side_effects(
    procs: list[Proc], tmp_path: Path
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    stack = Stack(procs, tmp_path, files(), SCENARIO, routers=1, router_args=["--redis", dead])
    url = _urls(stack)[0]
    tool = {
        "model": "tool",
        "tools": [INVOICE_TOOL],
        "messages": [{"role": "user", "content": "create the invoice for order 5"}],
    }
    status, _, _, data = asyncio.run(_keyed(url, tool, "key-down"))
    assert status == 503, data
    assert data["error"]["code"] == "idempotency_unavailable"
    assert "non-idempotent tools" in data["error"]["message"]
    assert _sim(stack, "a-tool") == 0 and _sim(stack, "b-tool") == 0  # nothing ran
    # A request without side effects is served, only without deduplication.
    plain = {"model": "slow", "messages": [{"role": "user", "content": "hello"}]}
    status, _, _, _ = asyncio.run(_keyed(url, plain, "key-down-plain"))
    assert status == 200


def test_a_latency_objective_hedges_on_first_token_time_within_its_budget(
    control_down: Stack,
) -> None:
    # objective p95 1400 ms: a tool-free request whose primary (first token at 900 ms)
    # has said nothing after 700 ms is hedged, to the fast model on another provider
    # rather than the same provider's next; the first to answer wins. Hedges spend the
    # hedge budget (a tenth of the requests, plus the first): the rest wait for the primary.
    n = 40
    results = asyncio.run(_burst(_urls(control_down), "objective", n, 2))
    assert all(r[0] == 200 for r in results)
    hedged = [r for r in results if r[1]["x-skyroute-model"] == "b-obj"]
    waited = [r for r in results if r[1]["x-skyroute-model"] == "a-obj"]
    assert len(hedged) + len(waited) == n  # the same provider's a2-obj never answers
    # Two routers, each at most its first hedge plus a tenth of its 20 requests.
    assert 2 <= len(hedged) <= 2 * (1 + 20 // 10), len(hedged)
    for r in hedged:
        trail, notes = r[1]["x-skyroute-attempts"], r[1].get("x-skyroute-notes", "")
        assert trail.startswith("a-obj;cancelled") and "b-obj;ok" in trail, trail
        assert "a-obj: hedged to b-obj, no first token after 700 ms" in notes, notes
    for r in waited:
        assert r[1]["x-skyroute-attempts"].startswith("a-obj;ok"), r[1]["x-skyroute-attempts"]
    refused = [r for r in waited if "not hedged, hedge budget spent" in r[1]["x-skyroute-notes"]]
    assert len(refused) == len(waited)
