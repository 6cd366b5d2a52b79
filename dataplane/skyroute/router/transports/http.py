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
``x-skyroute-tenant``, ``x-skyroute-locale``, ``x-skyroute-user-tier``,
``x-skyroute-safety-class``; ``Cache-Control: no-cache`` (or ``no-store``,
``max-age=0``, ``Pragma: no-cache``) bypasses the cache. ``Idempotency-Key`` makes a
repeated request wait for, or replay, the first one's answer.

Load is shed at the door: beyond ``--max-inflight`` requests in flight the
router answers 429 with ``Retry-After`` at once rather than queueing.
"""

from __future__ import annotations

import time
from typing import Any, cast

import orjson
from aiohttp import web

from skyroute.link import DOOR_MAX_BYTES
from skyroute.router.cache import cache_directive
from skyroute.router.canary import choose
from skyroute.router.decide import decide, signals_from_messages
from skyroute.router.engine import (
    RequestContext,
    Served,
    StreamDone,
    StreamFailed,
    StreamStarted,
)
from skyroute.router.idempotency import Claim
from skyroute.router.ids import new_id
from skyroute.router.providers.types import ChatRequest, TextDelta, ToolCallEvent
from skyroute.router.state import RouterState
from skyroute.router.telemetry import trace_parent
from skyroute.router.wire import (
    attempts_header,
    failure_record,
    http_status,
    idempotency_scope,
    record,
    request_fingerprint,
    settlement,
)

STATE = web.AppKey("state", RouterState)
_JSON = "application/json"


def _error(
    status: int,
    message: str,
    etype: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type=_JSON, headers=headers)


def _headers(served: Served) -> dict[str, str]:
    d = served.decision
    h = {
        "x-skyroute-policy": d.policy.name,
        "x-skyroute-policy-version": d.policy.version,
        "x-skyroute-track": d.policy.track or "stable",
        "x-skyroute-snapshot-version": d.policy.snapshot_version,
        "x-skyroute-intent": d.intent,
        "x-skyroute-rule": d.rule,
        "x-skyroute-pool": d.pool,
        "x-skyroute-model": served.model,
        "x-skyroute-attempts": attempts_header(served.attempts),
        "x-skyroute-cost-usd": f"{served.cost_usd:.8f}",
        "x-skyroute-cache": ("hit" if served.cache_hit else ("miss" if d.cacheable else "off")),
    }
    if served.cache_hit:
        h["x-skyroute-cache-similarity"] = f"{served.cache_similarity:.3f}"
    if served.notes:
        h["x-skyroute-notes"] = "; ".join(served.notes)
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
            return _bad(
                f"messages[{i}] must be an object with a string 'role'", f"messages[{i}].role"
            )
    tools = data.get("tools")
    if tools is not None and not isinstance(tools, list):
        return _bad("'tools' must be an array", "tools")
    model = data.get("model", "auto")
    if not isinstance(model, str):
        return _bad("'model' must be a string naming a RoutingPolicy or 'auto'", "model")
    return None


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if not state.admit():
        # Shed at once: a queue here would only turn overload into timeouts.
        return _error(
            429,
            f"router at capacity ({state.max_inflight} requests in flight); retry shortly",
            "rate_limit_error",
            code="overloaded",
            headers={"Retry-After": "1"},
        )
    try:
        return await _chat_completions(request, state)
    finally:
        state.done()


async def _chat_completions(request: web.Request, state: RouterState) -> web.StreamResponse:
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
        return _error(
            404,
            f"model {model!r} names no RoutingPolicy (known: {known}; or 'auto' for the default)",
            "invalid_request_error",
            "model",
            "model_not_found",
        )
    tools = data.get("tools") or []
    hdr = request.headers
    if policy.canary is not None:
        meta = data.get("metadata")
        session = hdr.get("x-skyroute-session") or (
            str(meta.get("session_id") or "") if isinstance(meta, dict) else ""
        )
        policy = choose(
            policy,
            user=str(data.get("user") or hdr.get("x-skyroute-user", "")),
            session=session,
            tenant=hdr.get("x-skyroute-tenant", ""),
            messages=data["messages"],
        )
    signals = signals_from_messages(
        data["messages"],
        bool(tools),
        locale=hdr.get("x-skyroute-locale", ""),
        user_tier=hdr.get("x-skyroute-user-tier", ""),
        tenant=hdr.get("x-skyroute-tenant", ""),
        declared_intent=hdr.get("x-skyroute-intent", ""),
        safety_class=hdr.get("x-skyroute-safety-class", ""),
        tools=tools,
    )
    decision = decide(policy, signals, state.engine.health)
    req = ChatRequest(
        messages=data["messages"],
        tools=tools,
        max_tokens=data.get("max_completion_tokens") or data.get("max_tokens"),
        temperature=data.get("temperature"),
        tool_choice=data.get("tool_choice"),
    )
    ctx = RequestContext(
        request_id=hdr.get("x-request-id") or new_id(),
        # no-cache, max-age=0, no-store or Pragma: no-cache: neither served from nor kept.
        no_cache=any(cache_directive(hdr.get("cache-control", ""), hdr.get("pragma", ""))),
        stream=bool(data.get("stream")),
        trace_parent=trace_parent(hdr.items()) if "traceparent" in hdr else None,
    )
    engine = state.engine
    include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
    key = hdr.get("idempotency-key")
    claim: Claim | None = None
    if key:
        scope = idempotency_scope(policy.name, signals.tenant, key)
        try:
            claim = await state.idempotency.claim(
                scope, policy.request_timeout_s, request_fingerprint(req)
            )
        except TimeoutError:
            return _error(
                409,
                f"a request with Idempotency-Key {key!r} is still in flight",
                "idempotency_error",
                param="Idempotency-Key",
                code="in_flight",
            )
        if claim.mismatch:
            return _error(
                422,
                f"Idempotency-Key {key!r} was already used with a different request body; "
                "use a new key for a different request",
                "idempotency_error",
                param="Idempotency-Key",
                code="key_reused",
            )
        if claim.unavailable:
            claim = None  # nothing to settle: the store is down
            if engine.side_effects(decision, req) and not policy.reliability.idempotency_fail_open:
                return _error(
                    503,
                    f"the idempotency store is unavailable, so Idempotency-Key {key!r} cannot "
                    "guarantee one execution of this request's non-idempotent tools; refused "
                    "rather than risk running them twice (retry later; the policy may allow "
                    "this with reliability.idempotencyUnavailable: failOpen)",
                    "idempotency_error",
                    param="Idempotency-Key",
                    code="idempotency_unavailable",
                    headers={"Retry-After": "1"},
                )
        if claim is not None and claim.stored is not None:
            stored = {
                **claim.stored,
                "headers": {**claim.stored["headers"], "x-skyroute-idempotent-replay": "true"},
            }
            if "error" in stored:
                return web.Response(
                    status=stored["error"]["status"],
                    body=orjson.dumps(stored["error"]["body"]),
                    content_type=_JSON,
                    headers=stored["headers"],
                )
            if ctx.stream:
                return await _replay_stream(request, stored, ctx, include_usage)
            return _render(stored, ctx)
    served: Served | None = None
    try:
        if ctx.stream:
            resp, served = await _stream(request, decision, signals, req, ctx, include_usage)
        else:
            served = await engine.complete(decision, signals, req, ctx)
            resp = _unary_response(served, ctx)
    except BaseException:
        if claim:  # interrupted: an attempt may have reached an upstream
            await _settle(state, claim, None, policy.reliability.idempotency_ttl_s)
        raise
    if claim:
        await _settle(state, claim, served, policy.reliability.idempotency_ttl_s)
    return resp


async def _settle(state: RouterState, claim: Claim, served: Served | None, ttl_s: float) -> None:
    """Store the answer or the failure under the key, or free it (see wire.settlement)."""
    how = settlement(served)
    if how == "complete" and served is not None:
        await state.idempotency.complete(claim, record(served, _headers(served)), ttl_s)
    elif how == "fail":
        if served is not None:
            failed = _failure(served)
            status, headers = failed.status, _headers(served)
            body = orjson.loads(cast(bytes, failed.body))
        else:
            status, headers = 502, {}
            body = {
                "error": {
                    "message": "the first request with this Idempotency-Key was interrupted "
                    "after it may have reached a model; use a new key to try again",
                    "type": "idempotency_error",
                    "param": "Idempotency-Key",
                    "code": "interrupted",
                }
            }
        await state.idempotency.complete(claim, failure_record(status, body, headers), ttl_s)
    else:
        await state.idempotency.release(claim)


def _failure(served: Served) -> web.Response:
    err = served.error
    cls = err.error_class if err else "unknown"
    msg = err.message if err else "request failed"
    return _error(
        http_status(cls),
        f"all attempts failed; last: {cls}: {msg}",
        "upstream_error",
        code=cls,
        headers=_headers(served),
    )


def _unary_response(served: Served, ctx: RequestContext) -> web.Response:
    if served.result is None or served.error is not None:
        return _failure(served)
    return _render(record(served, _headers(served)), ctx)


def _render(rec: dict[str, Any], ctx: RequestContext) -> web.Response:
    """A chat.completion body from a served (or stored) answer."""
    message: dict[str, Any] = {"role": "assistant", "content": rec["content"] or None}
    if rec["tool_calls"]:
        message["tool_calls"] = rec["tool_calls"]
    p, c = rec["prompt_tokens"], rec["completion_tokens"]
    body = {
        "id": "chatcmpl-" + ctx.request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": rec["model"],
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": rec["finish_reason"],
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
    }
    return web.Response(body=orjson.dumps(body), content_type=_JSON, headers=rec["headers"])


async def _replay_stream(
    request: web.Request, rec: dict[str, Any], ctx: RequestContext, include_usage: bool
) -> web.StreamResponse:
    """A stored answer replayed as a proper SSE stream."""
    sse = _SSE("chatcmpl-" + ctx.request_id, rec["model"])
    resp = web.StreamResponse(
        headers={**rec["headers"], "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    await resp.write(sse.chunk({"role": "assistant", "content": ""}))
    if rec["content"]:
        await resp.write(sse.chunk({"content": rec["content"]}))
    for i, call in enumerate(rec["tool_calls"]):
        await resp.write(sse.chunk({"tool_calls": [{"index": i, **call}]}))
    await resp.write(sse.finish(rec, include_usage))
    await resp.write_eof()
    return resp


class _SSE:
    """OpenAI chat.completion.chunk framing for one stream."""

    __slots__ = ("cid", "created", "model")

    def __init__(self, cid: str, model: str) -> None:
        self.cid, self.model, self.created = cid, model, int(time.time())

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return (
            b"data: "
            + orjson.dumps(
                {
                    "id": self.cid,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    **extra,
                }
            )
            + b"\n\n"
        )

    def finish(self, rec: dict[str, Any], include_usage: bool, **extra: Any) -> bytes:
        """The final chunk, the optional usage chunk and the [DONE] marker."""
        out = self.chunk({}, rec["finish_reason"], **extra)
        if include_usage:
            p, c = rec["prompt_tokens"], rec["completion_tokens"]
            out += (
                b"data: "
                + orjson.dumps(
                    {
                        "id": self.cid,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": p,
                            "completion_tokens": c,
                            "total_tokens": p + c,
                        },
                    }
                )
                + b"\n\n"
            )
        return out + b"data: [DONE]\n\n"


async def _stream(
    request: web.Request,
    decision: Any,
    signals: Any,
    req: ChatRequest,
    ctx: RequestContext,
    include_usage: bool,
) -> tuple[web.StreamResponse, Served | None]:
    engine = request.app[STATE].engine
    resp: web.StreamResponse | None = None
    sse = _SSE("chatcmpl-" + ctx.request_id, "")
    n_calls = 0
    async for item in engine.stream(decision, signals, req, ctx):
        if isinstance(item, StreamStarted):
            sse.model = item.served.model
            resp = web.StreamResponse(
                headers={
                    **_headers(item.served),
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                }
            )
            await resp.prepare(request)
            await resp.write(sse.chunk({"role": "assistant", "content": ""}))
        elif isinstance(item, TextDelta):
            assert resp is not None
            await resp.write(sse.chunk({"content": item.text}))
        elif isinstance(item, ToolCallEvent):
            assert resp is not None
            await resp.write(sse.chunk({"tool_calls": [{"index": n_calls, **item.call}]}))
            n_calls += 1
        elif isinstance(item, StreamDone):
            assert resp is not None and item.served.result is not None
            # skyroute's own facts ride along in an extra field that clients ignore.
            await resp.write(
                sse.finish(
                    record(item.served, {}),
                    include_usage,
                    x_skyroute={
                        "attempts": attempts_header(item.served.attempts),
                        "cost_usd": item.served.cost_usd,
                    },
                )
            )
            await resp.write_eof()
            return resp, item.served
        elif isinstance(item, StreamFailed):
            if resp is None:  # nothing sent yet: an ordinary error response
                return _failure(item.served), item.served
            err = item.served.error
            detail = err.message if err else ""
            await resp.write(
                b"data: "
                + orjson.dumps(
                    {
                        "error": {
                            "message": f"stream failed after it started: {detail}",
                            "type": "stream_error",
                            "code": err.error_class if err else "stream_cut",
                            "attempts": attempts_header(item.served.attempts),
                        }
                    }
                )
                + b"\n\n"
            )
            await resp.write_eof()
            return resp, item.served
    return _error(502, "stream produced nothing", "upstream_error"), None


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.draining:
        return web.Response(status=503, text="draining\n")
    if state.table is None:
        return web.Response(status=503, text="no snapshot loaded\n")
    return web.Response(text=f"ready {state.table.version}\n")


async def models(request: web.Request) -> web.Response:
    table = request.app[STATE].table
    names = sorted(table.policies) if table else []
    data = [{"id": n, "object": "model", "owned_by": "skyroute"} for n in ["auto", *names]]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type=_JSON)


async def debug_status(request: web.Request) -> web.Response:
    state = request.app[STATE]
    table = state.table
    body = {
        "node": state.node.id,
        "version": table.version if table else "",
        "policies": {p.name: p.version for p in table.policies.values()} if table else {},
        "cache_entries": len(state.engine.cache),
        "inflight": state.inflight,
        "max_inflight": state.max_inflight,
        "shed": state.shed,
        "retry_budget": {
            "active": state.engine.budget.active,
            "retrying": state.engine.budget.retrying,
            "denied": state.engine.budget.denied,
            "fallbacks": state.engine.budget.fallbacks,
            "by_endpoint": state.engine.budget.by_endpoint(),
        },
        "probes": state.engine.health.probes_total,
        "probe_returns": state.engine.health.returned_total,
        "hedges": state.engine.hedges,
        "endpoints": state.engine.health.as_json(),
        **(state.status_hook() if state.status_hook else {}),
    }
    return web.Response(body=orjson.dumps(body, default=str), content_type=_JSON)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of the router's OpenTelemetry instruments."""
    body, content_type = await request.app[STATE].exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


def build_app(state: RouterState) -> web.Application:
    app = web.Application(client_max_size=DOOR_MAX_BYTES)  # as the gRPC door (skyroute.link)
    app[STATE] = state
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/debug/status", debug_status)
    app.router.add_get("/metrics", metrics)
    return app
