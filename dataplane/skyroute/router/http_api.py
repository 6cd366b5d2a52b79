"""The OpenAI-compatible HTTP front door.

Existing OpenAI clients work unchanged: ``POST /v1/chat/completions`` takes
the Chat Completions body, where ``model`` names a RoutingPolicy (or ``auto``
for the default one), and answers in the same shape, streaming as SSE when
``stream`` is true. What the router decided travels in ``x-skyroute-*``
response headers (policy and snapshot version, intent, pool, model, cache,
cost, and the attempt trail), so a client that ignores them loses nothing.

Streaming holds the response until the first upstream token: headers then
name the model that really answers, and a failure before that point falls
back without the client seeing it. A failure after it is sent as an SSE
``error`` event with no ``[DONE]``, which the OpenAI SDK raises as an error
rather than mistaking for a complete answer.

Request signals may also come as headers: ``x-skyroute-intent``,
``x-skyroute-tenant``, ``x-skyroute-locale``, ``x-skyroute-user-tier``;
``Cache-Control: no-cache`` bypasses the cache.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from aiohttp import web
from skyroute.router.decide import decide, signals_from_messages
from skyroute.router.engine import (
    RequestContext,
    Served,
    StreamDone,
    StreamFailed,
    StreamStarted,
)
from skyroute.router.providers.types import ChatRequest, TextDelta, ToolCallEvent
from skyroute.router.state import RouterState
from skyroute.router.wire import attempts_header, http_status

STATE = web.AppKey("state", RouterState)
_JSON = "application/json"


def _error(status: int, message: str, etype: str, param: str | None = None,
           code: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type=_JSON,
                        headers=headers)


def _headers(served: Served) -> dict[str, str]:
    d = served.decision
    h = {
        "x-skyroute-policy": d.policy.name,
        "x-skyroute-policy-version": d.policy.version,
        "x-skyroute-snapshot-version": d.policy.snapshot_version,
        "x-skyroute-intent": d.intent,
        "x-skyroute-rule": d.rule,
        "x-skyroute-pool": d.pool,
        "x-skyroute-model": served.model,
        "x-skyroute-attempts": attempts_header(served.attempts),
        "x-skyroute-cost-usd": f"{served.cost_usd:.8f}",
        "x-skyroute-cache": (
            "hit" if served.cache_hit else ("miss" if d.cacheable else "off")
        ),
    }
    if served.cache_hit:
        h["x-skyroute-cache-similarity"] = f"{served.cache_similarity:.3f}"
    return h


def _bad(message: str, param: str) -> web.Response:
    return _error(400, message, "invalid_request_error", param=param)


def _validate(data: Any) -> web.Response | None:
    if not isinstance(data, dict):
        return _bad("request body must be a JSON object", "body")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return _bad("'messages' must be a non-empty array", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return _bad(f"messages[{i}] must be an object with a string 'role'",
                        f"messages[{i}].role")
    tools = data.get("tools")
    if tools is not None and not isinstance(tools, list):
        return _bad("'tools' must be an array", "tools")
    model = data.get("model", "auto")
    if not isinstance(model, str):
        return _bad("'model' must be a string naming a RoutingPolicy or 'auto'", "model")
    return None


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError as e:
        return _bad(f"request body is not valid JSON: {e}", "body")
    bad = _validate(data)
    if bad is not None:
        return bad
    table = state.table
    if table is None:
        return _error(503, "router has no policy snapshot yet", "unavailable", code="not_ready")
    model = data.get("model") or "auto"
    policy = table.policy(model)
    if policy is None:
        known = ", ".join(sorted(table.policies))
        return _error(404, f"model {model!r} names no RoutingPolicy (known: {known}; "
                      "or 'auto' for the default)", "invalid_request_error", "model",
                      "model_not_found")
    tools = data.get("tools") or []
    hdr = request.headers
    signals = signals_from_messages(
        data["messages"], bool(tools),
        locale=hdr.get("x-skyroute-locale", ""),
        user_tier=hdr.get("x-skyroute-user-tier", ""),
        tenant=hdr.get("x-skyroute-tenant", ""),
        declared_intent=hdr.get("x-skyroute-intent", ""),
    )
    decision = decide(policy, signals)
    req = ChatRequest(
        messages=data["messages"],
        tools=tools,
        max_tokens=data.get("max_completion_tokens") or data.get("max_tokens"),
        temperature=data.get("temperature"),
        tool_choice=data.get("tool_choice"),
    )
    ctx = RequestContext(
        request_id=hdr.get("x-request-id") or uuid.uuid4().hex,
        no_cache="no-cache" in hdr.get("cache-control", ""),
        stream=bool(data.get("stream")),
    )
    engine = state.engine
    if ctx.stream:
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        return await _stream(request, decision, signals, req, ctx, include_usage)
    served = await engine.complete(decision, signals, req, ctx)
    return _unary_response(served, ctx)


def _failure(served: Served) -> web.Response:
    err = served.error
    cls = err.error_class if err else "unknown"
    msg = err.message if err else "request failed"
    return _error(http_status(cls), f"all attempts failed; last: {cls}: {msg}",
                  "upstream_error", code=cls, headers=_headers(served))


def _unary_response(served: Served, ctx: RequestContext) -> web.Response:
    r = served.result
    if r is None or served.error is not None:
        return _failure(served)
    message: dict[str, Any] = {"role": "assistant", "content": r.content or None}
    if r.tool_calls:
        message["tool_calls"] = r.tool_calls
    body = {
        "id": "chatcmpl-" + ctx.request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": served.model,
        "choices": [{"index": 0, "message": message, "finish_reason": r.finish_reason,
                     "logprobs": None}],
        "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                  "total_tokens": r.prompt_tokens + r.completion_tokens},
    }
    return web.Response(body=orjson.dumps(body), content_type=_JSON, headers=_headers(served))


async def _stream(request: web.Request, decision: Any, signals: Any, req: ChatRequest,
                  ctx: RequestContext, include_usage: bool) -> web.StreamResponse:
    engine = request.app[STATE].engine
    resp: web.StreamResponse | None = None
    cid = "chatcmpl-" + ctx.request_id
    created = int(time.time())
    model = ""
    n_calls = 0

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return b"data: " + orjson.dumps({
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra,
        }) + b"\n\n"

    async for item in engine.stream(decision, signals, req, ctx):
        if isinstance(item, StreamStarted):
            model = item.served.model
            resp = web.StreamResponse(headers={
                **_headers(item.served), "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache"})
            await resp.prepare(request)
            await resp.write(chunk({"role": "assistant", "content": ""}))
        elif isinstance(item, TextDelta):
            assert resp is not None
            await resp.write(chunk({"content": item.text}))
        elif isinstance(item, ToolCallEvent):
            assert resp is not None
            call = {"index": n_calls, **item.call}
            n_calls += 1
            await resp.write(chunk({"tool_calls": [call]}))
        elif isinstance(item, StreamDone):
            assert resp is not None and item.served.result is not None
            end = item.served.result
            # skyroute's own facts ride along in an extra field that clients ignore.
            await resp.write(chunk({}, end.finish_reason, x_skyroute={
                "attempts": attempts_header(item.served.attempts),
                "cost_usd": item.served.cost_usd}))
            if include_usage:
                await resp.write(b"data: " + orjson.dumps({
                    "id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [],
                    "usage": {"prompt_tokens": end.prompt_tokens,
                              "completion_tokens": end.completion_tokens,
                              "total_tokens": end.prompt_tokens + end.completion_tokens},
                }) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
        elif isinstance(item, StreamFailed):
            if resp is None:  # nothing sent yet: an ordinary error response
                return _failure(item.served)
            err = item.served.error
            await resp.write(b"data: " + orjson.dumps({"error": {
                "message": f"stream failed after it started: {err.message if err else ''}",
                "type": "stream_error", "code": err.error_class if err else "stream_cut",
                "attempts": attempts_header(item.served.attempts)}}) + b"\n\n")
    if resp is None:
        return _error(502, "stream produced nothing", "upstream_error")
    await resp.write_eof()
    return resp


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    table = request.app[STATE].table
    if table is None:
        return web.Response(status=503, text="no snapshot loaded\n")
    return web.Response(text=f"ready {table.version}\n")


async def models(request: web.Request) -> web.Response:
    table = request.app[STATE].table
    names = sorted(table.policies) if table else []
    data = [{"id": n, "object": "model", "owned_by": "skyroute"} for n in ["auto", *names]]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}),
                        content_type=_JSON)


async def debug_status(request: web.Request) -> web.Response:
    state = request.app[STATE]
    table = state.table
    body = {
        "node": state.node.id,
        "version": table.version if table else "",
        "policies": {p.name: p.version for p in table.policies.values()} if table else {},
        "cache_entries": len(state.engine.cache),
        **(state.status_hook() if state.status_hook else {}),
    }
    return web.Response(body=orjson.dumps(body, default=str), content_type=_JSON)


def build_app(state: RouterState) -> web.Application:
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[STATE] = state
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/debug/status", debug_status)
    return app
