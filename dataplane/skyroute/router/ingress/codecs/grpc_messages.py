"""The ``skyroute.v1.Router`` Messages calls: the Anthropic Messages door over gRPC.

``Messages``, ``StreamMessages`` and ``ExplainMessages`` take a
``MessagesRequest``: the Messages API's ``system``, turns of typed
``ContentBlock`` (``text``, ``image``, ``tool_use``, ``tool_result``,
``thinking``, ``redacted_thinking``), custom tools, ``tool_choice``,
``stop_sequences``, ``max_tokens`` (required), ``temperature``, ``top_p``,
``top_k``, the extended thinking budget and ``metadata.user_id``, with the
declared signals and the request's context as on ``CompletionRequest``.
Decoding builds the Messages body the HTTP door reads and hands it to the
same decoder (:func:`.anthropic_messages.chat_request`), so both doors check,
translate and route a conversation identically: thinking blocks and the
thinking setting reach an Anthropic upstream intact and no other family, a
block type the HTTP door refuses is refused here too (``INVALID_ARGUMENT``
naming the part).

The answer is a ``MessagesResponse``: content blocks as the HTTP door's
(:func:`.anthropic_messages.content_blocks`: an Anthropic upstream's signed
thinking first, then text, then ``tool_use``), the stop reason in the
Messages API's words, usage, cost, the decision and the attempts, with the
``x-skyroute-*`` facts in trailing metadata. A stream is the decision, then
``text_delta`` chunks and whole ``block`` chunks (thinking, tool uses), then
``done`` with everything but the streamed content, or a ``StreamError`` and
an error status when it fails after it started. Errors are gRPC status codes
as on ``Complete`` (:mod:`.grpc_router`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from skyroute.router.decide import explain
from skyroute.router.engine import Served
from skyroute.router.ingress.codecs import grpc_router
from skyroute.router.ingress.codecs.anthropic_messages import (
    chat_request,
    content_blocks,
    stop_reason,
    tool_use,
)
from skyroute.router.ingress.codecs.grpc_router import GrpcReply, GrpcRouter, trailers
from skyroute.router.ingress.facts import FEEDBACK_ID
from skyroute.router.ingress.types import Answer, Inbound, Prepared, Rejection, invalid
from skyroute.router.telemetry import trace_parent
from skyroute.v1 import router_pb2


@dataclass(slots=True, frozen=True)
class GrpcMessagesIn:
    request: router_pb2.MessagesRequest
    metadata: Sequence[tuple[str, str | bytes]]
    stream: bool = False


def _json(text: str, where: str, empty: Any) -> Any:
    if not text:
        return empty
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise invalid(f"{where}: not valid JSON: {e}", where) from e


def _block(b: router_pb2.ContentBlock, where: str) -> dict[str, Any]:
    """A content block as the Messages API's JSON (an unknown type is left to the decoder)."""
    kind = b.type
    if kind == "text":
        return {"type": "text", "text": b.text}
    if kind == "image":
        if b.url:
            return {"type": "image", "source": {"type": "url", "url": b.url}}
        source = {"type": "base64", "media_type": b.media_type, "data": b.data}
        return {"type": "image", "source": source}
    if kind == "tool_use":
        args = _json(b.input, f"{where}.input", {})
        return {"type": "tool_use", "id": b.id, "name": b.name, "input": args}
    if kind == "tool_result":
        return {
            "type": "tool_result",
            "tool_use_id": b.tool_use_id,
            "content": b.text,
            "is_error": b.is_error,
        }
    if kind == "thinking":
        return {"type": "thinking", "thinking": b.text, "signature": b.signature}
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": b.data}
    return {"type": kind}


def body(req: router_pb2.MessagesRequest) -> dict[str, Any]:
    """The Messages API body the HTTP door would read for this request."""
    data: dict[str, Any] = {
        "model": req.policy,
        "max_tokens": req.max_tokens or None,
        "messages": [
            {
                "role": turn.role,
                "content": [
                    _block(b, f"messages.{i}.content.{j}") for j, b in enumerate(turn.content)
                ],
            }
            for i, turn in enumerate(req.messages)
        ],
    }
    if req.system:
        data["system"] = req.system
    for name in ("temperature", "top_p", "top_k"):
        if req.HasField(name):
            data[name] = getattr(req, name)
    if req.stop_sequences:
        data["stop_sequences"] = list(req.stop_sequences)
    if req.tools:
        data["tools"] = [
            {
                "name": t.name,
                "description": t.description,
                "input_schema": _json(
                    t.input_schema, f"tools.{i}.input_schema", {"type": "object"}
                ),
            }
            for i, t in enumerate(req.tools)
        ]
    if req.tool_choice:
        choice: dict[str, Any] = {"type": req.tool_choice}
        if req.tool_choice == "tool":
            choice["name"] = req.tool_choice_name
        data["tool_choice"] = choice
    if req.thinking_budget_tokens:
        data["thinking"] = {"type": "enabled", "budget_tokens": req.thinking_budget_tokens}
    if req.user_id:
        data["metadata"] = {"user_id": req.user_id}
    return data


def _pb_block(block: Mapping[str, Any]) -> router_pb2.ContentBlock:
    kind = str(block.get("type", ""))
    if kind == "tool_use":
        return router_pb2.ContentBlock(
            type=kind,
            id=block.get("id", ""),
            name=block.get("name", ""),
            input=orjson.dumps(block.get("input", {})).decode(),
        )
    if kind == "thinking":
        return router_pb2.ContentBlock(
            type=kind, text=block.get("thinking", ""), signature=block.get("signature", "")
        )
    if kind == "redacted_thinking":
        return router_pb2.ContentBlock(type=kind, data=block.get("data", ""))
    return router_pb2.ContentBlock(type=kind, text=block.get("text", ""))


def _response(answer: Answer, streamed: bool = False) -> router_pb2.MessagesResponse:
    """The MessagesResponse for an answer (``streamed``: without the content already sent)."""
    rec, served, p = answer.rec, answer.served, answer.prepared
    out = router_pb2.MessagesResponse(
        id="msg_" + p.ctx.request_id,
        model=rec["model"],
        content=[] if streamed else [_pb_block(b) for b in content_blocks(rec)],
        stop_reason=stop_reason(rec),
        usage=router_pb2.Usage(
            prompt_tokens=rec["prompt_tokens"], completion_tokens=rec["completion_tokens"]
        ),
        cost_usd=rec["cost_usd"],
        decision=explain(p.decision, p.signals),
        feedback_id=answer.facts.get(FEEDBACK_ID, ""),
    )
    if served is not None:
        out.attempts.extend(grpc_router.attempts(served.attempts))
        out.cache_hit = served.cache_hit
    return out


class GrpcMessages:
    """The Messages codec over gRPC."""

    __slots__ = ()

    def decode(self, wire: GrpcMessagesIn) -> Inbound:
        req, md = wire.request, wire.metadata
        chat, _, user = chat_request(body(req))
        return Inbound(
            policy=req.policy,
            chat=chat,
            declared=grpc_router.declared(req),
            stream=wire.stream,
            user=user or "",
            session=req.session,
            request_id=req.request_id,
            no_cache=req.no_cache,
            idempotency_key=req.idempotency_key,
            trace_parent=trace_parent(md),
            authorization=grpc_router.metadata(md, "authorization"),
            api_key=grpc_router.metadata(md, "x-api-key"),
        )

    def answer(self, answer: Answer) -> GrpcReply:
        return GrpcReply(_response(answer), trailers(answer.facts))

    def reject(self, rejection: Rejection) -> GrpcReply:
        return GrpcRouter().reject(rejection)

    def explained(self, prepared: Prepared) -> GrpcReply:
        return GrpcRouter().explained(prepared)

    def stream(self, prepared: Prepared) -> MessagesChunks:
        return MessagesChunks(prepared)


class MessagesChunks:
    """One ``StreamMessages`` as MessagesChunk messages."""

    __slots__ = ("prepared",)

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared

    def head(self, facts: Mapping[str, str]) -> Mapping[str, str]:
        return facts

    def start(self, model: str) -> Sequence[router_pb2.MessagesChunk]:
        p = self.prepared
        return (router_pb2.MessagesChunk(decision=explain(p.decision, p.signals)),)

    def text(self, text: str) -> router_pb2.MessagesChunk:
        return router_pb2.MessagesChunk(text_delta=text)

    def thinking(self, block: dict[str, Any]) -> router_pb2.MessagesChunk:
        return router_pb2.MessagesChunk(block=_pb_block(block))

    def tool_call(self, call: dict[str, Any]) -> router_pb2.MessagesChunk:
        return router_pb2.MessagesChunk(block=_pb_block(tool_use(call)))

    def done(self, answer: Answer) -> Sequence[router_pb2.MessagesChunk]:
        return (router_pb2.MessagesChunk(done=_response(answer, streamed=True)),)

    def cut(self, served: Served) -> router_pb2.MessagesChunk:
        return router_pb2.MessagesChunk(error=grpc_router.stream_error(served))
