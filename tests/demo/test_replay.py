"""The replayer against a scripted router on a real socket: retries, cost, duplicates."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from skyroute.cli.demo_replay import Arm, Outcome, Replayer, parse_attempts
from skyroute.cli.demo_traffic import TrafficRequest


def test_parse_attempts_shapes() -> None:
    trail = parse_attempts("gpt-5.2;timeout;0;8000ms, claude-4.5-sonnet;ok;200;900ms")
    assert [(a.model, a.error_class) for a in trail] == [
        ("gpt-5.2", "timeout"),
        ("claude-4.5-sonnet", ""),
    ]
    assert len(parse_attempts("3")) == 3
    assert (
        parse_attempts('[{"model": "m", "error_class": "server_error"}]')[0].error_class
        == "server_error"
    )
    assert parse_attempts("") == []


def _req(i: int, tools: bool, at: float = 0.0) -> TrafficRequest:
    return TrafficRequest(
        index=i,
        at_s=at,
        intent="tools.ticket" if tools else "faq.refund",
        tenant="t",
        locale="en-US",
        user="u",
        user_tier="free",
        messages=[{"role": "user", "content": f"question {i}"}],
        tools=[
            {
                "type": "function",
                "function": {"name": "open_ticket", "description": "", "parameters": {}},
            }
        ]
        if tools
        else [],
    )


async def _scripted_router(seen: dict[str, int]) -> tuple[web.AppRunner, str]:
    """Request i: first attempt fails with 504 when i is odd; cost 0.001 per answer."""

    async def handler(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        rid = request.headers["x-request-id"]
        key = f"{body['model']}/{rid}"
        seen[key] = seen.get(key, 0) + 1
        i = int(rid.rsplit("-", 1)[1])
        headers = {
            "x-skyroute-pool": "p-" + body["model"],
            "x-skyroute-model": "m",
            "x-skyroute-cost-usd": "0.00100000",
            "x-skyroute-cache": "miss",
            "x-skyroute-policy-version": "sha256:abc",
        }
        if i % 2 == 1 and seen[key] == 1:
            headers["x-skyroute-attempts"] = "m;timeout;0;50ms"
            headers["x-skyroute-cost-usd"] = "0.00000000"
            return web.json_response(
                {"error": {"type": "upstream_error", "code": "timeout"}},
                status=504,
                headers=headers,
            )
        headers["x-skyroute-attempts"] = "m;ok;200;10ms"
        usage: dict[str, Any] = {"prompt_tokens": 10, "completion_tokens": 5}
        return web.json_response({"choices": [], "usage": usage}, headers=headers)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def test_naive_client_retries_pay_twice_and_duplicate_tool_actions() -> None:
    async def scenario() -> tuple[dict[str, list[Outcome]], dict[str, int]]:
        seen: dict[str, int] = {}
        runner, url = await _scripted_router(seen)
        try:
            reqs = [_req(i, tools=(i < 4), at=i * 0.01) for i in range(8)]
            arms = (
                Arm("baseline", "baseline", retries=2, backoff_s=0.01),
                Arm("routed", "acmeshop", retries=0),
            )
            done: list[str] = []
            rp = Replayer([url, url], on_done=lambda arm, o: done.append(arm))
            out = await rp.run(arms, reqs)
            assert len(done) == 16
            return out, seen
        finally:
            await runner.cleanup()

    out, _ = asyncio.run(scenario())
    base, routed = out["baseline"], out["routed"]
    assert [o.index for o in base] == list(range(8))
    # Odd requests failed once with a 504: the naive client retried and succeeded.
    assert all(o.ok for o in base)
    assert [o.client_attempts for o in base] == [1, 2] * 4
    assert all(o.cost_usd == 0.001 for o in base)
    # Requests 1 and 3 carried tools and were re-sent after an ambiguous 504.
    assert sum(o.duplicate_tool_actions for o in base) == 2
    # The routed client never retries: odd requests fail, nothing is duplicated.
    assert [o.ok for o in routed] == [True, False] * 4
    assert all(o.client_attempts == 1 for o in routed)
    assert sum(o.duplicate_tool_actions for o in routed) == 0
    assert routed[1].error == "upstream_error" and routed[1].status == 504
    assert base[0].pool == "p-baseline" and routed[0].pool == "p-acmeshop"
    assert base[0].prompt_tokens == 10 and base[0].policy_version == "sha256:abc"


def test_refused_connection_is_a_failure_not_a_crash() -> None:
    async def scenario() -> list[Outcome]:
        rp = Replayer(["http://127.0.0.1:9"])  # discard port: nothing listens
        out = await rp.run([Arm("routed", "acmeshop")], [_req(0, tools=False)])
        return out["routed"]

    (o,) = asyncio.run(scenario())
    assert not o.ok and o.error.startswith("client_") and o.status == 0
