"""The gRPC Router API for in-cluster services (``skyroute.v1.Router``).

Same decision and engine as the HTTP door; only the envelope differs.
Failures before any content map to gRPC status codes with the attempt trail
in trailing metadata (``x-skyroute-attempts``); a stream that fails after
its first content ends with a ``StreamError`` chunk and an error status,
never with a clean end.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
from skyroute.router.decide import Decision, Signals, decide, explain, signals_from_messages
from skyroute.router.engine import (
    AttemptRecord,
    RequestContext,
    Served,
    StreamDone,
    StreamFailed,
    StreamStarted,
)
from skyroute.router.providers.types import ChatRequest, TextDelta, ToolCallEvent
from skyroute.router.state import RouterState
from skyroute.router.wire import attempts_header, http_status
from skyroute.v1 import router_pb2, router_pb2_grpc

_GRPC_FOR_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def _messages(req: router_pb2.CompletionRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in req.messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            d["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments or "{}"}}
                for c in m.tool_calls
            ]
            if not m.content:
                d["content"] = None
        if m.tool_call_id:
            d["tool_call_id"] = m.tool_call_id
        if m.name:
            d["name"] = m.name
        out.append(d)
    return out


def _tools(req: router_pb2.CompletionRequest) -> list[dict[str, Any]]:
    tools = []
    for i, t in enumerate(req.tools):
        try:
            params = orjson.loads(t.parameters) if t.parameters else {"type": "object"}
        except orjson.JSONDecodeError as e:
            raise ValueError(f"tools[{i}].parameters is not valid JSON: {e}") from e
        tools.append({"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": params}})
    return tools


def _attempts(records: list[AttemptRecord]) -> list[router_pb2.Attempt]:
    return [router_pb2.Attempt(model=a.model, provider=a.provider, error_class=a.error_class,
                               status_code=a.status, duration_ms=a.duration_ms)
            for a in records]


def _tool_call(c: dict[str, Any]) -> router_pb2.ToolCall:
    f = c.get("function") or {}
    return router_pb2.ToolCall(id=c.get("id", ""), name=f.get("name", ""),
                               arguments=f.get("arguments", ""))


class RouterService(router_pb2_grpc.RouterServicer):
    def __init__(self, state: RouterState) -> None:
        self.state = state

    async def _prepare(
        self, req: router_pb2.CompletionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[Decision, Signals, ChatRequest]:
        table = self.state.table
        if table is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "router has no policy snapshot yet")
            raise AssertionError  # abort raises
        policy = table.policy(req.policy)
        if policy is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"policy {req.policy!r} not found (known: "
                                f"{', '.join(sorted(table.policies))})")
            raise AssertionError
        if not req.messages:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "messages: must not be empty")
            raise AssertionError
        try:
            tools = _tools(req)
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            raise AssertionError from e
        messages = _messages(req)
        signals = signals_from_messages(messages, bool(tools), req.locale, req.user_tier,
                                        req.tenant, req.intent)
        chat = ChatRequest(messages, tools, req.max_tokens or None,
                           req.temperature if req.HasField("temperature") else None)
        return decide(policy, signals, self.state.engine.health), signals, chat

    def _ctx(self, req: router_pb2.CompletionRequest, stream: bool) -> RequestContext:
        return RequestContext(request_id=req.request_id or uuid.uuid4().hex,
                              no_cache=req.no_cache, stream=stream)

    async def _fail(self, served: Served, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        err = served.error
        cls = err.error_class if err else "unknown"
        context.set_trailing_metadata((("x-skyroute-attempts", attempts_header(served.attempts)),
                                       ("x-skyroute-error-class", cls)))
        code = _GRPC_FOR_HTTP.get(http_status(cls), grpc.StatusCode.UNAVAILABLE)
        await context.abort(code, f"all attempts failed; last: {cls}: "
                            f"{err.message if err else ''}")

    def _response(self, served: Served, signals: Signals, ctx: RequestContext,
                  content: str | None = None) -> router_pb2.CompletionResponse:
        r = served.result
        msg = router_pb2.Message(role="assistant")
        if r is not None:
            msg.content = r.content if content is None else content
            msg.tool_calls.extend(_tool_call(c) for c in r.tool_calls)
        return router_pb2.CompletionResponse(
            id=ctx.request_id, model=served.model, message=msg,
            finish_reason=r.finish_reason if r else "",
            usage=router_pb2.Usage(prompt_tokens=r.prompt_tokens if r else 0,
                                   completion_tokens=r.completion_tokens if r else 0),
            cost_usd=served.cost_usd, decision=explain(served.decision, signals),
            attempts=_attempts(served.attempts), cache_hit=served.cache_hit,
            cache_similarity=served.cache_similarity)

    async def Complete(
        self, request: router_pb2.CompletionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.CompletionResponse:
        decision, signals, chat = await self._prepare(request, context)
        ctx = self._ctx(request, stream=False)
        served = await self.state.engine.complete(decision, signals, chat, ctx)
        if served.error is not None or served.result is None:
            await self._fail(served, context)
        return self._response(served, signals, ctx)

    async def StreamComplete(
        self, request: router_pb2.CompletionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[router_pb2.CompletionChunk]:
        decision, signals, chat = await self._prepare(request, context)
        ctx = self._ctx(request, stream=True)
        started = False
        async for item in self.state.engine.stream(decision, signals, chat, ctx):
            if isinstance(item, StreamStarted):
                started = True
                yield router_pb2.CompletionChunk(decision=explain(decision, signals))
            elif isinstance(item, TextDelta):
                yield router_pb2.CompletionChunk(delta=item.text)
            elif isinstance(item, ToolCallEvent):
                yield router_pb2.CompletionChunk(tool_call=_tool_call(item.call))
            elif isinstance(item, StreamDone):
                # Text was already streamed: the final message carries the rest.
                done = self._response(item.served, signals, ctx, content="")
                yield router_pb2.CompletionChunk(done=done)
            elif isinstance(item, StreamFailed):
                if not started:
                    await self._fail(item.served, context)
                err = item.served.error
                yield router_pb2.CompletionChunk(error=router_pb2.StreamError(
                    error_class=err.error_class if err else "stream_cut",
                    message=err.message if err else "",
                    attempts=_attempts(item.served.attempts)))
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    "stream failed after it started")

    async def Explain(
        self, request: router_pb2.CompletionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.Decision:
        decision, signals, _ = await self._prepare(request, context)
        return explain(decision, signals)
