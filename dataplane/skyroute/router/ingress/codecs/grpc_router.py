"""The ``skyroute.v1.Router`` gRPC API for in-cluster services.

``CompletionRequest`` carries, as fields, everything the HTTP door takes as
body fields and headers: the policy, messages and tools, every declared
signal of the registry (under the field the registry names), user and
session for canaries, ``request_id``, ``no_cache`` and ``idempotency_key``
(``temperature``, 0-2 and finite, ``max_tokens``, 0 for none, and each tool's
``parameters``, a JSON object, and each message's role, checked as the HTTP
doors check them);
the caller's W3C trace context and credential (``authorization: Bearer
...``, or ``x-api-key``) come as metadata. Answers carry the
decision (as Explain returns it), the attempts, the cost and the cache
facts, and the same ``x-skyroute-*`` facts the HTTP door sends as headers
travel as trailing metadata.

Failures before any content are gRPC status codes (mapped from the HTTP
status the OpenAI door would answer) with the facts in trailing metadata
(``x-skyroute-attempts``, ``x-skyroute-error-class``, ``retry-after``); a
stream that fails after its first content ends with a ``StreamError``
chunk and an error status, never with a clean end. A replayed
``idempotency_key`` answer has ``x-skyroute-idempotent-replay`` in its
trailers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
from google.protobuf.message import Message

from skyroute.router.decide import explain
from skyroute.router.engine import AttemptRecord, Served
from skyroute.router.ingress.codecs import fields
from skyroute.router.ingress.codecs import openai_params as params
from skyroute.router.ingress.facts import FEEDBACK_ID
from skyroute.router.ingress.types import Answer, Inbound, Prepared, Rejection, invalid
from skyroute.router.providers.types import ChatRequest
from skyroute.router.signals import SignalError, read_declared
from skyroute.router.telemetry import trace_parent
from skyroute.v1 import router_pb2

_GRPC_FOR_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    422: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


@dataclass(slots=True, frozen=True)
class GrpcIn:
    """A gRPC call as the transport received it."""

    request: router_pb2.CompletionRequest
    metadata: Sequence[tuple[str, str | bytes]]
    stream: bool = False


@dataclass(slots=True, frozen=True)
class GrpcReply:
    """A whole gRPC reply: a message, or a status code with details; trailers either way."""

    message: Message | None
    trailing: tuple[tuple[str, str], ...] = ()
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""


def metadata(md: Sequence[tuple[str, str | bytes]], name: str) -> str:
    """One text metadata value ("" when absent; binary values never carry a credential)."""
    for k, v in md:
        if k == name and isinstance(v, str):
            return v
    return ""


def trailers(facts: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((k.lower(), v) for k, v in facts.items())


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
            raise invalid(f"tools[{i}].parameters is not valid JSON: {e}", "tools") from e
        fields.obj(params, f"tools[{i}].parameters")
        tools.append(
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": params},
            }
        )
    return tools


def declared(
    req: router_pb2.CompletionRequest | router_pb2.EmbedRequest | router_pb2.MessagesRequest,
) -> dict[str, str]:
    """The declared signals of a request message (the registry's fields, by name)."""
    try:
        return read_declared(lambda s: getattr(req, s.field))
    except SignalError as e:
        raise invalid(f"{e.signal.field}: {e}", e.signal.field) from e


def attempts(records: list[AttemptRecord]) -> list[router_pb2.Attempt]:
    return [
        router_pb2.Attempt(
            model=a.model,
            provider=a.provider,
            error_class=a.error_class,
            status_code=a.status,
            duration_ms=a.duration_ms,
            endpoint=a.endpoint,
            endpoint_url=a.endpoint_url,
        )
        for a in records
    ]


def _tool_call(c: dict[str, Any]) -> router_pb2.ToolCall:
    f = c.get("function") or {}
    return router_pb2.ToolCall(
        id=c.get("id", ""), name=f.get("name", ""), arguments=f.get("arguments", "")
    )


def _response(answer: Answer, content: str | None = None) -> router_pb2.CompletionResponse:
    """The CompletionResponse for an answer; ``content`` overrides the text (streams)."""
    rec, served, p = answer.rec, answer.served, answer.prepared
    msg = router_pb2.Message(
        role="assistant", content=rec["content"] if content is None else content
    )
    msg.tool_calls.extend(_tool_call(c) for c in rec["tool_calls"])
    out = router_pb2.CompletionResponse(
        id=p.ctx.request_id,
        model=rec["model"],
        message=msg,
        finish_reason=rec["finish_reason"],
        usage=router_pb2.Usage(
            prompt_tokens=rec["prompt_tokens"], completion_tokens=rec["completion_tokens"]
        ),
        cost_usd=rec["cost_usd"],
        decision=explain(p.decision, p.signals),
    )
    out.feedback_id = answer.facts.get(FEEDBACK_ID, "")
    if served is not None:
        out.attempts.extend(attempts(served.attempts))
        out.cache_hit = served.cache_hit
        out.cache_similarity = served.cache_similarity
    return out


class GrpcRouter:
    """The ``skyroute.v1.Router`` codec."""

    __slots__ = ()

    def decode(self, wire: GrpcIn) -> Inbound:
        req = wire.request
        if not req.messages:
            raise invalid("messages: must not be empty", "messages")
        temperature = req.temperature if req.HasField("temperature") else None
        turns = _messages(req)
        params.messages(turns)
        chat = ChatRequest(
            turns,
            _tools(req),
            fields.integer(req.max_tokens or None, "max_tokens"),
            fields.number(temperature, "temperature", 0.0, 2.0),
        )
        return Inbound(
            policy=req.policy,
            chat=chat,
            declared=declared(req),
            stream=wire.stream,
            stream_usage=True,
            user=req.user,
            session=req.session,
            request_id=req.request_id,
            no_cache=req.no_cache,
            idempotency_key=req.idempotency_key,
            trace_parent=trace_parent(wire.metadata),
            authorization=metadata(wire.metadata, "authorization"),
            api_key=metadata(wire.metadata, "x-api-key"),
        )

    def answer(self, answer: Answer) -> GrpcReply:
        return GrpcReply(_response(answer), trailers(answer.facts))

    def reject(self, rejection: Rejection) -> GrpcReply:
        trailing = trailers(rejection.facts)
        if rejection.kind == "upstream_error" and rejection.code:
            trailing += (("x-skyroute-error-class", rejection.code),)
        return GrpcReply(
            None,
            trailing,
            _GRPC_FOR_HTTP.get(rejection.status, grpc.StatusCode.UNAVAILABLE),
            rejection.message,
        )

    def explained(self, prepared: Prepared) -> GrpcReply:
        return GrpcReply(explain(prepared.decision, prepared.signals))

    def stream(self, prepared: Prepared) -> Chunks:
        return Chunks(prepared)


class Chunks:
    """One ``StreamComplete`` as CompletionChunk messages."""

    __slots__ = ("prepared",)

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared

    def head(self, facts: Mapping[str, str]) -> Mapping[str, str]:
        return facts

    def start(self, model: str) -> Sequence[router_pb2.CompletionChunk]:
        p = self.prepared
        return (router_pb2.CompletionChunk(decision=explain(p.decision, p.signals)),)

    def text(self, text: str) -> router_pb2.CompletionChunk:
        return router_pb2.CompletionChunk(delta=text)

    def thinking(self, block: dict[str, Any]) -> None:
        """No frame: this API has no thinking blocks (only Anthropic's own signed ones)."""
        return None

    def tool_call(self, call: dict[str, Any]) -> router_pb2.CompletionChunk:
        return router_pb2.CompletionChunk(tool_call=_tool_call(call))

    def done(self, answer: Answer) -> Sequence[router_pb2.CompletionChunk]:
        # Text was already streamed: the final message carries the rest.
        return (router_pb2.CompletionChunk(done=_response(answer, content="")),)

    def cut(self, served: Served) -> router_pb2.CompletionChunk:
        return router_pb2.CompletionChunk(error=stream_error(served))


def stream_error(served: Served) -> router_pb2.StreamError:
    """What ends a stream that failed after it started (every streaming call's last chunk)."""
    err = served.error
    return router_pb2.StreamError(
        error_class=err.error_class if err else "stream_cut",
        message=err.message if err else "",
        attempts=attempts(served.attempts),
    )
