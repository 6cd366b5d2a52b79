"""The gRPC door: ``skyroute.v1.Router`` over the inbound pipeline.

A thin transport: each call becomes a :class:`~skyroute.router.ingress.codecs.grpc_router.GrpcIn`
for the pipeline, and a sink that returns the unary message, writes stream
chunks with ``context.write``, sets trailing metadata and aborts with the
codec's status. The API itself (fields, errors, trailers) is described in
:mod:`skyroute.router.ingress.codecs.grpc_router` (``Complete``...),
:mod:`~skyroute.router.ingress.codecs.grpc_embeddings` (``Embed``) and
:mod:`~skyroute.router.ingress.codecs.grpc_messages` (``Messages``: the
Anthropic Messages shape).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias, TypeVar, cast

import grpc
from google.protobuf.message import Message

from skyroute.router.ingress import feedback as ingress_feedback
from skyroute.router.ingress.codecs.base import Codec
from skyroute.router.ingress.codecs.grpc_embeddings import GrpcEmbed, GrpcEmbedIn
from skyroute.router.ingress.codecs.grpc_messages import GrpcMessages, GrpcMessagesIn
from skyroute.router.ingress.codecs.grpc_router import GrpcIn, GrpcReply, GrpcRouter
from skyroute.router.ingress.pipeline import Pipeline
from skyroute.router.ingress.types import Rejection
from skyroute.router.state import RouterState
from skyroute.v1 import router_pb2, router_pb2_grpc

_CODEC = GrpcRouter()
_EMBED = GrpcEmbed()
_MESSAGES = GrpcMessages()
_Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
W = TypeVar("W")


class _Sink:
    """One call's end: the message to return, or chunks written as they come."""

    __slots__ = ("context", "reply", "trailing")

    def __init__(self, context: _Context) -> None:
        self.context = context
        self.reply: Message | None = None
        self.trailing: tuple[tuple[str, str], ...] = ()

    async def send(self, reply: GrpcReply) -> None:
        if reply.trailing:
            self.context.set_trailing_metadata(reply.trailing)
        if reply.message is None:
            await self.context.abort(reply.code, reply.details)
        self.reply = reply.message

    async def open(self, head: Mapping[str, str]) -> None:
        self.trailing = tuple((k.lower(), v) for k, v in head.items())

    async def write(self, frame: Message) -> None:
        await self.context.write(frame)

    async def close(self, cut: bool = False) -> None:
        if self.trailing:
            self.context.set_trailing_metadata(self.trailing)
        if cut:
            await self.context.abort(grpc.StatusCode.UNAVAILABLE, "stream failed after it started")


class RouterService(router_pb2_grpc.RouterServicer):
    def __init__(self, state: RouterState) -> None:
        self.state = state
        self.pipeline = Pipeline(state)

    async def _call(
        self, codec: Codec[W, GrpcReply, Any], wire: W, context: _Context, dry_run: bool = False
    ) -> Message | None:
        """One unary call (or a dry run) through the pipeline: the message it answers."""
        sink = _Sink(context)
        await (self.pipeline.explain if dry_run else self.pipeline.serve)(codec, wire, sink)
        return sink.reply

    def _wire(
        self, request: router_pb2.CompletionRequest, context: _Context, stream: bool
    ) -> GrpcIn:
        return GrpcIn(request, tuple(context.invocation_metadata() or ()), stream)

    async def Complete(
        self, request: router_pb2.CompletionRequest, context: _Context
    ) -> router_pb2.CompletionResponse:
        reply = await self._call(_CODEC, self._wire(request, context, False), context)
        return cast(router_pb2.CompletionResponse, reply)

    # A coroutine that writes its chunks (grpc.aio's writer API) rather than an
    # async generator: the pipeline pushes frames as the engine yields them.
    async def StreamComplete(  # type: ignore[override]
        self, request: router_pb2.CompletionRequest, context: _Context
    ) -> None:
        await self.pipeline.serve(_CODEC, self._wire(request, context, True), _Sink(context))

    async def Feedback(
        self, request: router_pb2.FeedbackRequest, context: _Context
    ) -> router_pb2.FeedbackResponse:
        meta = {k: v for k, v in context.invocation_metadata() or ()}
        try:
            served = await ingress_feedback.take(
                self.state, ingress_feedback.from_grpc(request, meta)
            )
        except Rejection as r:
            reply = _CODEC.reject(r)
            await context.abort(reply.code, reply.details)
        return router_pb2.FeedbackResponse(
            request_id=served.request_id, model=served.model, intent=served.intent
        )

    async def Explain(
        self, request: router_pb2.CompletionRequest, context: _Context
    ) -> router_pb2.Decision:
        reply = await self._call(_CODEC, self._wire(request, context, False), context, dry_run=True)
        return cast(router_pb2.Decision, reply)

    def _embed_wire(self, request: router_pb2.EmbedRequest, context: _Context) -> GrpcEmbedIn:
        return GrpcEmbedIn(request, tuple(context.invocation_metadata() or ()))

    async def Embed(
        self, request: router_pb2.EmbedRequest, context: _Context
    ) -> router_pb2.EmbedResponse:
        reply = await self._call(_EMBED, self._embed_wire(request, context), context)
        return cast(router_pb2.EmbedResponse, reply)

    async def ExplainEmbed(
        self, request: router_pb2.EmbedRequest, context: _Context
    ) -> router_pb2.Decision:
        reply = await self._call(_EMBED, self._embed_wire(request, context), context, dry_run=True)
        return cast(router_pb2.Decision, reply)

    def _messages_wire(
        self, request: router_pb2.MessagesRequest, context: _Context, stream: bool
    ) -> GrpcMessagesIn:
        return GrpcMessagesIn(request, tuple(context.invocation_metadata() or ()), stream)

    async def Messages(
        self, request: router_pb2.MessagesRequest, context: _Context
    ) -> router_pb2.MessagesResponse:
        reply = await self._call(_MESSAGES, self._messages_wire(request, context, False), context)
        return cast(router_pb2.MessagesResponse, reply)

    async def StreamMessages(  # type: ignore[override]
        self, request: router_pb2.MessagesRequest, context: _Context
    ) -> None:
        wire = self._messages_wire(request, context, True)
        await self.pipeline.serve(_MESSAGES, wire, _Sink(context))

    async def ExplainMessages(
        self, request: router_pb2.MessagesRequest, context: _Context
    ) -> router_pb2.Decision:
        reply = await self._call(
            _MESSAGES, self._messages_wire(request, context, False), context, dry_run=True
        )
        return cast(router_pb2.Decision, reply)
