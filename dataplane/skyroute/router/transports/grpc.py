"""The gRPC Router API for in-cluster services (``skyroute.v1.Router``).

Same decision and engine as the HTTP door; only the envelope differs.
Failures before any content map to gRPC status codes with the attempt trail
in trailing metadata (``x-skyroute-attempts``); a stream that fails after
its first content ends with a ``StreamError`` chunk and an error status,
never with a clean end. ``idempotency_key`` works on both calls, as the
``Idempotency-Key`` header does over HTTP: one upstream answer per key, and a
retried ``StreamComplete`` replays the stored answer as a stream (decision,
text, tool calls, done) with ``x-skyroute-idempotent-replay`` in its trailers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson

from skyroute.router.canary import choose
from skyroute.router.decide import Decision, Signals, decide, explain, signals_from_messages
from skyroute.router.engine import (
    AttemptRecord,
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
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments or "{}"},
                }
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
        tools.append(
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": params},
            }
        )
    return tools


def _attempts(records: list[AttemptRecord]) -> list[router_pb2.Attempt]:
    return [
        router_pb2.Attempt(
            model=a.model,
            provider=a.provider,
            error_class=a.error_class,
            status_code=a.status,
            duration_ms=a.duration_ms,
        )
        for a in records
    ]


def _tool_call(c: dict[str, Any]) -> router_pb2.ToolCall:
    f = c.get("function") or {}
    return router_pb2.ToolCall(
        id=c.get("id", ""), name=f.get("name", ""), arguments=f.get("arguments", "")
    )


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
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"policy {req.policy!r} not found (known: {', '.join(sorted(table.policies))})",
            )
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
        if policy.canary is not None:
            policy = choose(policy, req.user, req.session, req.tenant, messages)
        signals = signals_from_messages(
            messages, bool(tools), req.locale, req.user_tier, req.tenant, req.intent, tools=tools
        )
        chat = ChatRequest(
            messages,
            tools,
            req.max_tokens or None,
            req.temperature if req.HasField("temperature") else None,
        )
        return decide(policy, signals, self.state.engine.health), signals, chat

    def _ctx(
        self,
        req: router_pb2.CompletionRequest,
        stream: bool,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> RequestContext:
        return RequestContext(
            request_id=req.request_id or new_id(),
            no_cache=req.no_cache,
            stream=stream,
            trace_parent=trace_parent(context.invocation_metadata()),
        )

    async def _fail(self, served: Served, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        err = served.error
        cls = err.error_class if err else "unknown"
        context.set_trailing_metadata(
            (
                ("x-skyroute-attempts", attempts_header(served.attempts)),
                ("x-skyroute-error-class", cls),
            )
        )
        code = _GRPC_FOR_HTTP.get(http_status(cls), grpc.StatusCode.UNAVAILABLE)
        await context.abort(code, f"all attempts failed; last: {cls}: {err.message if err else ''}")

    def _response(
        self, served: Served, signals: Signals, ctx: RequestContext, content: str | None = None
    ) -> router_pb2.CompletionResponse:
        r = served.result
        msg = router_pb2.Message(role="assistant")
        if r is not None:
            msg.content = r.content if content is None else content
            msg.tool_calls.extend(_tool_call(c) for c in r.tool_calls)
        return router_pb2.CompletionResponse(
            id=ctx.request_id,
            model=served.model,
            message=msg,
            finish_reason=r.finish_reason if r else "",
            usage=router_pb2.Usage(
                prompt_tokens=r.prompt_tokens if r else 0,
                completion_tokens=r.completion_tokens if r else 0,
            ),
            cost_usd=served.cost_usd,
            decision=explain(served.decision, signals),
            attempts=_attempts(served.attempts),
            cache_hit=served.cache_hit,
            cache_similarity=served.cache_similarity,
        )

    async def _admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Load shedding, as on the HTTP door: over capacity is RESOURCE_EXHAUSTED at once."""
        if not self.state.admit():
            context.set_trailing_metadata((("retry-after", "1"),))
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"router at capacity ({self.state.max_inflight} in flight)",
            )

    async def Complete(
        self, request: router_pb2.CompletionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.CompletionResponse:
        await self._admit(context)
        try:
            return await self._complete(request, context)
        finally:
            self.state.done()

    async def _complete(
        self, request: router_pb2.CompletionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.CompletionResponse:
        decision, signals, chat = await self._prepare(request, context)
        ctx = self._ctx(request, stream=False, context=context)
        claim, stored = await self._claim(request, decision, signals, chat, context)
        if stored is not None:
            return self._replayed(stored, decision, signals, ctx)
        try:
            served = await self.state.engine.complete(decision, signals, chat, ctx)
        except BaseException:
            await self._settle(claim, None, decision)
            raise
        ok = served.error is None and served.result is not None
        await self._settle(claim, served, decision)
        if not ok:
            await self._fail(served, context)
        return self._response(served, signals, ctx)

    def _replayed(
        self, rec: dict[str, Any], decision: Decision, signals: Signals, ctx: RequestContext
    ) -> router_pb2.CompletionResponse:
        msg = router_pb2.Message(role="assistant", content=rec["content"] or "")
        msg.tool_calls.extend(_tool_call(c) for c in rec["tool_calls"])
        return router_pb2.CompletionResponse(
            id=ctx.request_id,
            model=rec["model"],
            message=msg,
            finish_reason=rec["finish_reason"],
            usage=router_pb2.Usage(
                prompt_tokens=rec["prompt_tokens"], completion_tokens=rec["completion_tokens"]
            ),
            cost_usd=rec["cost_usd"],
            decision=explain(decision, signals),
        )

    async def StreamComplete(
        self, request: router_pb2.CompletionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[router_pb2.CompletionChunk]:
        await self._admit(context)
        try:
            async for chunk in self._stream(request, context):
                yield chunk
        finally:
            self.state.done()

    async def _stream(
        self, request: router_pb2.CompletionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[router_pb2.CompletionChunk]:
        decision, signals, chat = await self._prepare(request, context)
        ctx = self._ctx(request, stream=True, context=context)
        # As on the unary call and on HTTP streams: one upstream answer per key; a
        # retried stream replays the stored answer as a stream of the same shape.
        claim, stored = await self._claim(request, decision, signals, chat, context)
        if stored is not None:
            for chunk in self._replay_chunks(stored, decision, signals, ctx):
                yield chunk
            return
        finished: Served | None = None
        try:
            async for chunk, served in self._live_chunks(decision, signals, chat, ctx, context):
                finished = served or finished
                yield chunk
        except BaseException:
            await self._settle(claim, None, decision)
            raise
        await self._settle(claim, finished, decision)

    async def _claim(
        self,
        request: router_pb2.CompletionRequest,
        decision: Decision,
        signals: Signals,
        chat: ChatRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> tuple[Claim | None, dict[str, Any] | None]:
        """(our claim, stored answer to replay or None); no claim without a key (or store).

        Same rules as the HTTP door (see ``idempotency``): a different body under the
        key is refused, a stored failure is returned as the failure it was, and with
        the store down a request offering a non-idempotent tool fails closed.
        """
        key = request.idempotency_key
        if not key:
            return None, None
        policy = decision.policy
        scope = idempotency_scope(policy.name, signals.tenant, key)
        try:
            claim = await self.state.idempotency.claim(
                scope, policy.request_timeout_s, request_fingerprint(chat)
            )
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.ABORTED,
                f"idempotency_key {key!r} still in flight",
            )
            raise AssertionError from None
        if claim.mismatch:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"idempotency_key {key!r} was already used with a different request; "
                "use a new key for a different request",
            )
            raise AssertionError
        if claim.unavailable:
            if self.state.engine.side_effects(decision, chat) and not (
                policy.reliability.idempotency_fail_open
            ):
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"the idempotency store is unavailable, so idempotency_key {key!r} cannot "
                    "guarantee one execution of this request's non-idempotent tools; refused "
                    "rather than risk running them twice",
                )
                raise AssertionError
            return None, None
        if claim.stored is not None:
            context.set_trailing_metadata((("x-skyroute-idempotent-replay", "true"),))
            failed = claim.stored.get("error")
            if failed is not None:
                code = _GRPC_FOR_HTTP.get(failed["status"], grpc.StatusCode.UNAVAILABLE)
                await context.abort(code, str(failed["body"]["error"]["message"]))
                raise AssertionError
        return claim, claim.stored

    async def _settle(self, claim: Claim | None, served: Served | None, decision: Decision) -> None:
        """Store the answer or the failure under its key, or free it (``wire.settlement``)."""
        if claim is None:
            return
        store = self.state.idempotency
        ttl = decision.policy.reliability.idempotency_ttl_s
        how = settlement(served)
        if how == "complete" and served is not None:
            await store.complete(claim, record(served, {}), ttl)
        elif how == "fail":
            err = served.error if served is not None else None
            cls = err.error_class if err else "interrupted"
            message = (
                f"all attempts failed; last: {cls}: {err.message}"
                if err
                else "the first request with this idempotency_key was interrupted after it "
                "may have reached a model; use a new key to try again"
            )
            body = {"error": {"message": message, "type": "upstream_error", "code": cls}}
            await store.complete(claim, failure_record(http_status(cls), body, {}), ttl)
        else:
            await store.release(claim)

    async def _live_chunks(
        self,
        decision: Decision,
        signals: Signals,
        chat: ChatRequest,
        ctx: RequestContext,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[tuple[router_pb2.CompletionChunk, Served | None]]:
        """The engine's stream as chunks; the Served of a clean finish comes with the last."""
        started = False
        async for item in self.state.engine.stream(decision, signals, chat, ctx):
            if isinstance(item, StreamStarted):
                started = True
                yield router_pb2.CompletionChunk(decision=explain(decision, signals)), None
            elif isinstance(item, TextDelta):
                yield router_pb2.CompletionChunk(delta=item.text), None
            elif isinstance(item, ToolCallEvent):
                yield router_pb2.CompletionChunk(tool_call=_tool_call(item.call)), None
            elif isinstance(item, StreamDone):
                # Text was already streamed: the final message carries the rest.
                done = self._response(item.served, signals, ctx, content="")
                yield router_pb2.CompletionChunk(done=done), item.served
            elif isinstance(item, StreamFailed):
                if not started:
                    await self._fail(item.served, context)
                err = item.served.error
                yield (
                    router_pb2.CompletionChunk(
                        error=router_pb2.StreamError(
                            error_class=err.error_class if err else "stream_cut",
                            message=err.message if err else "",
                            attempts=_attempts(item.served.attempts),
                        )
                    ),
                    None,
                )
                await context.abort(grpc.StatusCode.UNAVAILABLE, "stream failed after it started")

    def _replay_chunks(
        self, rec: dict[str, Any], decision: Decision, signals: Signals, ctx: RequestContext
    ) -> list[router_pb2.CompletionChunk]:
        """A stored answer as the stream a live one would have been."""
        done = self._replayed(rec, decision, signals, ctx)
        chunks = [router_pb2.CompletionChunk(decision=done.decision)]
        if done.message.content:
            chunks.append(router_pb2.CompletionChunk(delta=done.message.content))
        chunks.extend(router_pb2.CompletionChunk(tool_call=c) for c in done.message.tool_calls)
        done.message.content = ""  # already streamed, as in a live stream's last chunk
        chunks.append(router_pb2.CompletionChunk(done=done))
        return chunks

    async def Explain(
        self, request: router_pb2.CompletionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.Decision:
        decision, signals, _ = await self._prepare(request, context)
        return explain(decision, signals)
