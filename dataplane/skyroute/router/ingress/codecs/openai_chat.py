"""OpenAI Chat Completions: ``POST /v1/chat/completions`` and its SSE stream.

Existing OpenAI clients work unchanged: ``model`` names a RoutingPolicy (or
``auto`` for the default one) and the answer has the same shape, streaming
as SSE when ``stream`` is true. What the router decided travels in
``x-skyroute-*`` response headers, so a client that ignores them loses
nothing. Declared signals come as the headers the signal registry names
(``x-skyroute-tenant``...); ``Cache-Control: no-cache`` (or ``no-store``,
``max-age=0``, ``Pragma: no-cache``) bypasses the cache; ``Idempotency-Key``
makes a repeat wait for, or replay, the first answer. The caller's key comes
as ``Authorization: Bearer`` (OpenAI clients) or ``x-api-key`` (Anthropic
clients); admitted requests carry OpenAI's ``x-ratelimit-*`` headers.

A stream that fails after its first token ends with an SSE ``error`` event
and no ``[DONE]``, which the OpenAI SDK raises as an error rather than
mistaking for a complete answer. Parameters are checked as OpenAI checks
them (:mod:`.openai_params`); those without a field of their own travel in
``ChatRequest.options`` for the adapters to pass on, translate or refuse.
Errors use the OpenAI error shape (``{"error": {"message", "type", "param", "code"}}``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format

from skyroute.router.cache import cache_directive
from skyroute.router.decide import explain
from skyroute.router.engine import Served
from skyroute.router.ingress.codecs import openai_params as params
from skyroute.router.ingress.facts import public_message
from skyroute.router.ingress.types import Answer, Inbound, Prepared, Rejection, invalid
from skyroute.router.providers.types import ChatRequest
from skyroute.router.signals import SignalError, read_declared
from skyroute.router.telemetry import trace_parent
from skyroute.router.wire import attempts_header

JSON = "application/json"
_STREAM_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
# The pipeline's neutral parameter names, as this API calls them.
_PARAM = {"policy": "model", "idempotency_key": "Idempotency-Key"}


@dataclass(slots=True, frozen=True)
class HttpIn:
    """An HTTP request as a transport read it: the body and the headers."""

    body: bytes
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)


@dataclass(slots=True, frozen=True)
class HttpReply:
    """A whole HTTP response, for the transport to send."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    content_type: str = JSON


def error_reply(
    status: int,
    message: str,
    etype: str,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpReply:
    """An error in the OpenAI error shape."""
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return HttpReply(status, headers or {}, orjson.dumps(body))


def _validated(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise invalid("request body must be a JSON object", "body")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty array", "messages")
    tools = data.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise invalid("'tools' must be an array", "tools")
    model = data.get("model", "auto")
    if not isinstance(model, str):
        raise invalid("'model' must be a string naming a RoutingPolicy or 'auto'", "model")
    params.check(data)
    return data


def _declared(hdr: Mapping[str, str]) -> dict[str, str]:
    try:
        return read_declared(lambda s: hdr.get(s.header))
    except SignalError as e:
        raise invalid(f"header {e.signal.header}: {e}", e.signal.header) from e


def http_context(hdr: Mapping[str, str]) -> dict[str, Any]:
    """The :class:`Inbound` fields every HTTP door reads from the same headers.

    Declared signals (``x-skyroute-*``), ``x-request-id``, the cache
    directives, ``Idempotency-Key``, the W3C trace context and the credential
    (``Authorization: Bearer`` from OpenAI clients, ``x-api-key`` from Anthropic ones).
    """
    return {
        "declared": _declared(hdr),
        "request_id": hdr.get("x-request-id", ""),
        # no-cache, max-age=0, no-store or Pragma: no-cache: neither served from nor kept.
        "no_cache": any(cache_directive(hdr.get("cache-control", ""), hdr.get("pragma", ""))),
        "idempotency_key": hdr.get("idempotency-key", ""),
        "trace_parent": trace_parent(hdr.items()) if "traceparent" in hdr else None,
        "authorization": hdr.get("authorization", ""),
        "api_key": hdr.get("x-api-key", ""),
    }


def _include_usage(options: Any) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise invalid("'stream_options' must be an object", "stream_options")
    return bool(options.get("include_usage"))


def _usage(rec: Mapping[str, Any]) -> dict[str, int]:
    p, c = rec["prompt_tokens"], rec["completion_tokens"]
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class OpenAIChat:
    """The Chat Completions codec."""

    __slots__ = ()

    def decode(self, wire: HttpIn) -> Inbound:
        try:
            data = _validated(orjson.loads(wire.body))
        except orjson.JSONDecodeError as e:
            raise invalid(f"request body is not valid JSON: {e}", "body") from e
        hdr = wire.headers
        meta = data.get("metadata")
        session = hdr.get("x-skyroute-session") or (
            str(meta.get("session_id") or "") if isinstance(meta, dict) else ""
        )
        chat = ChatRequest(
            messages=data["messages"],
            tools=data.get("tools") or [],
            max_tokens=data.get("max_completion_tokens") or data.get("max_tokens"),
            temperature=data.get("temperature"),
            tool_choice=data.get("tool_choice"),
            stop=params.stop(data.get("stop")),
            options=params.options(data),
        )
        return Inbound(
            policy=data.get("model") or "auto",
            chat=chat,
            stream=data.get("stream") is True,
            stream_usage=_include_usage(data.get("stream_options")),
            user=str(data.get("user") or hdr.get("x-skyroute-user", "")),
            session=session,
            **http_context(hdr),
        )

    def answer(self, answer: Answer) -> HttpReply:
        rec = answer.rec
        message: dict[str, Any] = {"role": "assistant", "content": rec["content"] or None}
        if rec["tool_calls"]:
            message["tool_calls"] = rec["tool_calls"]
        body = {
            "id": "chatcmpl-" + answer.prepared.ctx.request_id,
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
            "usage": _usage(rec),
        }
        return HttpReply(200, answer.facts, orjson.dumps(body))

    def reject(self, rejection: Rejection) -> HttpReply:
        param = _PARAM.get(rejection.param or "", rejection.param)
        return error_reply(
            rejection.status,
            rejection.message,
            rejection.kind,
            param,
            rejection.code,
            rejection.facts,
        )

    def explained(self, prepared: Prepared) -> HttpReply:
        d = explain(prepared.decision, prepared.signals)
        return HttpReply(
            200, {}, orjson.dumps(json_format.MessageToDict(d, preserving_proto_field_name=True))
        )

    def stream(self, prepared: Prepared) -> SSE:
        return SSE("chatcmpl-" + prepared.ctx.request_id, prepared.inbound.stream_usage)


class SSE:
    """OpenAI chat.completion.chunk framing for one stream."""

    __slots__ = ("cid", "created", "include_usage", "model", "n_calls")

    def __init__(self, cid: str, include_usage: bool) -> None:
        self.cid, self.include_usage = cid, include_usage
        self.model, self.created, self.n_calls = "", int(time.time()), 0

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {
            "id": self.cid,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return self._event([{"index": 0, "delta": delta, "finish_reason": finish}], **extra)

    def head(self, facts: Mapping[str, str]) -> Mapping[str, str]:
        return {**facts, **_STREAM_HEADERS}

    def start(self, model: str) -> Sequence[bytes]:
        self.model = model
        return (self.chunk({"role": "assistant", "content": ""}),)

    def text(self, text: str) -> bytes:
        return self.chunk({"content": text})

    def thinking(self, block: dict[str, Any]) -> None:
        """No frame: this API has no thinking blocks (only Anthropic's own signed ones)."""
        return None

    def tool_call(self, call: dict[str, Any]) -> bytes:
        out = self.chunk({"tool_calls": [{"index": self.n_calls, **call}]})
        self.n_calls += 1
        return out

    def done(self, answer: Answer) -> Sequence[bytes]:
        """The final chunk, the optional usage chunk and the [DONE] marker."""
        rec, served = answer.rec, answer.served
        # skyroute's own facts ride along in an extra field that clients ignore.
        extra = (
            {
                "x_skyroute": {
                    "attempts": attempts_header(served.attempts),
                    "cost_usd": served.cost_usd,
                }
            }
            if served is not None
            else {}
        )
        out = [self.chunk({}, rec["finish_reason"], **extra)]
        if self.include_usage:
            out.append(self._event([], usage=_usage(rec)))
        out.append(b"data: [DONE]\n\n")
        return out

    def cut(self, served: Served) -> bytes:
        err = served.error
        body = {
            "error": {
                "message": f"stream failed after it started: {public_message(served)}",
                "type": "stream_error",
                "code": err.error_class if err else "stream_cut",
                "attempts": attempts_header(served.attempts),
            }
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"
