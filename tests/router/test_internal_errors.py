"""A bug in a handler fails that one request as a JSON 500 in the door's format.

The router's HTTP middleware (``transports.http.json_errors``) over a real
aiohttp server on loopback: a handler that raises something nobody expected
answers OpenAI's error shape on OpenAI routes and Anthropic's on the Messages
route, says nothing of the exception to the client, is counted, and the next
request is served.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web

from skyroute.router.engine import Engine
from skyroute.router.state import RouterState
from skyroute.router.transports.http import STATE, json_errors
from skyroute.v1 import distribution_pb2


async def _buggy(request: web.Request) -> web.Response:
    raise KeyError("secret-internal-detail")


async def _fine(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _run() -> tuple[list[tuple[int, str, str]], int]:
    session = aiohttp.ClientSession()
    state = RouterState(
        node=distribution_pb2.Node(id="t"), engine=Engine(session, lambda _: None, None)
    )
    app = web.Application(middlewares=[json_errors])
    app[STATE] = state
    app.router.add_post("/v1/chat/completions", _buggy)
    app.router.add_post("/v1/messages", _buggy)
    app.router.add_get("/healthz", _fine)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    got: list[tuple[int, str, str]] = []
    try:
        for method, path in (
            ("POST", "/v1/chat/completions"),
            ("POST", "/v1/messages"),
            ("GET", "/healthz"),
        ):
            async with session.request(method, base + path, json={}) as r:
                got.append((r.status, r.content_type, await r.text()))
    finally:
        await session.close()
        await runner.cleanup()
    return got, state.internal_errors


def test_a_handler_bug_is_a_json_500_in_the_doors_format() -> None:
    (chat, messages, health), counted = asyncio.run(_run())
    assert chat[:2] == (500, "application/json")
    err = json.loads(chat[2])["error"]
    assert err["type"] == "server_error" and err["message"]
    assert messages[:2] == (500, "application/json")
    body = json.loads(messages[2])
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    for text in (chat[2], messages[2]):
        assert "secret-internal-detail" not in text and "KeyError" not in text
    assert counted == 2
    assert health[0] == 200  # the server goes on
