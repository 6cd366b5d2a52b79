"""The ``skyroute.v1.Router`` Embed and ExplainEmbed calls: the Embeddings door over gRPC.

The same request as ``POST /v1/embeddings`` (:mod:`.openai_embeddings`, whose
input checks it shares): ``policy``, ``inputs`` (at most 2048 non-empty
texts), ``dimensions`` (0: the model's own) and the declared signals of
``CompletionRequest``; answered with one ``Embedding`` per input, the model,
usage and cost, the facts in trailing metadata. Errors are gRPC status codes
as on ``Complete`` (:mod:`.grpc_router`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skyroute.router.ingress.codecs import grpc_router
from skyroute.router.ingress.codecs.grpc_router import GrpcReply, GrpcRouter, trailers
from skyroute.router.ingress.codecs.openai_embeddings import MAX_DIMENSIONS, inputs
from skyroute.router.ingress.types import Answer, Inbound, Prepared, Rejection, invalid
from skyroute.router.providers.embeddings import EmbedRequest
from skyroute.router.providers.types import ChatRequest
from skyroute.router.telemetry import trace_parent
from skyroute.v1 import router_pb2


@dataclass(slots=True, frozen=True)
class GrpcEmbedIn:
    request: router_pb2.EmbedRequest
    metadata: Sequence[tuple[str, str | bytes]]


class GrpcEmbed:
    """The Embed codec; never streams."""

    __slots__ = ()

    def decode(self, wire: GrpcEmbedIn) -> Inbound:
        req = wire.request
        texts = inputs(list(req.inputs))
        if not 0 <= req.dimensions <= MAX_DIMENSIONS:
            raise invalid(f"dimensions: 0 (the model's own) to {MAX_DIMENSIONS}", "dimensions")
        md = wire.metadata
        return Inbound(
            policy=req.policy,
            chat=ChatRequest(messages=[{"role": "user", "content": t} for t in texts]),
            declared=grpc_router.declared(req),
            user=req.user,
            request_id=req.request_id,
            trace_parent=trace_parent(md),
            authorization=grpc_router.metadata(md, "authorization"),
            api_key=grpc_router.metadata(md, "x-api-key"),
            embed=EmbedRequest(texts, req.dimensions or None),
        )

    def answer(self, answer: Answer) -> GrpcReply:
        result = answer.served.result if answer.served is not None else None
        vectors = result.vectors if result is not None else []
        msg = router_pb2.EmbedResponse(
            model=answer.rec["model"],
            embeddings=[router_pb2.Embedding(values=v) for v in vectors],
            prompt_tokens=answer.rec["prompt_tokens"],
            cost_usd=answer.rec["cost_usd"],
            request_id=answer.prepared.ctx.request_id,
        )
        return GrpcReply(msg, trailers(answer.facts))

    def reject(self, rejection: Rejection) -> GrpcReply:
        return GrpcRouter().reject(rejection)

    def explained(self, prepared: Prepared) -> GrpcReply:
        return GrpcRouter().explained(prepared)

    def stream(self, prepared: Prepared) -> Any:
        """Never called: Embed does not stream (the Complete framing, typed)."""
        return GrpcRouter().stream(prepared)
