"""Anthropic Messages: ``POST /v1/messages``, its SSE stream and ``count_tokens``.

The official ``anthropic`` SDK (and Claude Code, with ``ANTHROPIC_BASE_URL``
pointing at the router) works unchanged: ``model`` names a RoutingPolicy (or
``auto``), the answer is a ``message`` with content blocks, a stream is
Anthropic's event sequence, and errors are Anthropic's
(``{"type": "error", "error": {"type", "message"}}``, the type following the
status as the API's does). The same ``x-skyroute-*`` headers as on the
OpenAI door declare signals and report the decision.

Decoding (to the router's OpenAI-shaped :class:`ChatRequest`): ``system``
(a string or text blocks) becomes a system message; ``text`` and ``image``
blocks (base64 or URL) become content parts; an assistant's ``tool_use``
blocks become tool calls and a user's ``tool_result`` blocks become ``tool``
messages, ahead of that turn's other content as OpenAI wants them;
``tools`` (custom tools: ``name``, ``description``, ``input_schema``) and
``tool_choice`` (``auto``, ``any``, ``tool``, ``none``) are translated;
``stop_sequences``, ``max_tokens`` and ``temperature`` go to every family.
Numbers are bounded as the Messages API bounds them (``temperature`` and
``top_p`` 0-1, ``top_k`` at least 0, ``max_tokens`` at least 1; ``stream`` a
boolean), through the one checker every door uses (:mod:`.fields`).
``thinking``/``redacted_thinking`` blocks of earlier turns, the ``thinking``
setting, ``top_k``, ``top_p`` and ``metadata`` are kept as sent and go on
only when the upstream is Anthropic (``ChatRequest.anthropic``); other
families have no way to take a signed thinking block, so it is left out
there. ``metadata.user_id`` is the user for canaries. ``anthropic-version``
and ``anthropic-beta`` are accepted (bounded); the router speaks its own
version upstream. Refused with a 400 naming the part: server tools, content
block types other than the above (``document``, ``search_result``...), and
malformed input.

Encoding: the answer's text and tool calls become ``text`` and ``tool_use``
blocks (the upstream's thinking blocks first, when it sent any); finish
reasons map back (stop → ``end_turn``, length → ``max_tokens``, tool calls
→ ``tool_use``, content filter → ``refusal``). A stream is ``message_start``,
``ping``, then per block ``content_block_start``/``content_block_delta``
(``thinking_delta`` and ``signature_delta`` for an Anthropic upstream's
thinking, ``text_delta``, ``input_json_delta``)/``content_block_stop``, then
``message_delta`` (stop reason and usage) and ``message_stop``; a stream
that fails after it started ends with an ``error`` event, which the SDK
raises. ``POST /v1/messages/count_tokens`` answers ``{"input_tokens": N}``
with the router's own estimate (:mod:`skyroute.router.tokens`), after the
same guards and policy lookup as a request, calling no model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from skyroute.router.engine import Served
from skyroute.router.ingress.codecs.fields import (
    MAX_INT32,
    boolean,
    integer,
    json_object,
    number,
    obj,
    policy,
    positive_int,
    string,
)
from skyroute.router.ingress.codecs.openai_chat import HttpIn, HttpReply, OpenAIChat, http_context
from skyroute.router.ingress.facts import public_message
from skyroute.router.ingress.types import Answer, Inbound, Prepared, Rejection, invalid
from skyroute.router.providers.types import ChatRequest

_STREAM_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
# The pipeline's neutral parameter names, as this API calls them.
_PARAM = {"policy": "model", "idempotency_key": "Idempotency-Key"}
# Anthropic's error type for each status (what its SDK maps back to an exception class).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}
_THINKING = ("thinking", "redacted_thinking")
_PASSTHROUGH = ("thinking", "top_k", "top_p", "metadata")
MAX_USER_ID = 256  # the Messages API's limit on metadata.user_id
# Header limits: a version is a date, betas a short comma-separated list.
_HEADER_LIMITS = {"anthropic-version": 64, "anthropic-beta": 2048}
MAX_STOP_SEQUENCES = 64
MAX_STOP_SEQUENCE_CHARS = 1024


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status (5xx: ``api_error``)."""
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def _text_blocks(value: Any, where: str) -> str:
    """A string, or a list of text blocks, as one text."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise invalid(f"{where}: Input should be a string or a list of text blocks", where)
    texts = []
    for i, block in enumerate(value):
        b = obj(block, f"{where}.{i}")
        if b.get("type") != "text":
            raise invalid(f"{where}.{i}.type: only text blocks are accepted here", f"{where}.{i}")
        texts.append(string(b.get("text"), f"{where}.{i}.text"))
    return "\n".join(texts)


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = obj(block.get("source"), f"{where}.source")
    kind = source.get("type")
    if kind == "base64":
        media = string(source.get("media_type"), f"{where}.source.media_type")
        data = string(source.get("data"), f"{where}.source.data")
        url = f"data:{media};base64,{data}"
    elif kind == "url":
        url = string(source.get("url"), f"{where}.source.url")
    else:
        raise invalid(f"{where}.source.type: expected 'base64' or 'url'", f"{where}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    tid = string(block.get("tool_use_id"), f"{where}.tool_use_id")
    content = block.get("content", "")
    if isinstance(content, list):  # text (and image) blocks: the text is what other families take
        content = "\n".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    text = string(content, f"{where}.content")
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": tid, "content": text}


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    """One user turn: its tool results first (as ``tool`` messages), then the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, raw in enumerate(content):
        w = f"{where}.content.{j}"
        block = obj(raw, w)
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": string(block.get("text"), f"{w}.text")})
        elif kind == "image":
            parts.append(_image_part(block, w))
        elif kind == "tool_result":
            results.append(_tool_result(block, w))
        else:
            raise invalid(f"{w}.type: content block {kind!r} is not supported in a user turn", w)
    out = results
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant(content: Any, where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One assistant turn and its thinking blocks (kept as they are, for Anthropic)."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}, []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for j, raw in enumerate(content):
        w = f"{where}.content.{j}"
        block = obj(raw, w)
        kind = block.get("type")
        if kind == "text":
            texts.append(string(block.get("text"), f"{w}.text"))
        elif kind == "tool_use":
            fn = {
                "name": string(block.get("name"), f"{w}.name"),
                "arguments": orjson.dumps(obj(block.get("input", {}), f"{w}.input")).decode(),
            }
            calls.append(
                {"id": string(block.get("id"), f"{w}.id"), "type": "function", "function": fn}
            )
        elif kind in _THINKING:
            thinking.append(block)
        else:
            raise invalid(
                f"{w}.type: content block {kind!r} is not supported in an assistant turn", w
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message, thinking


def _messages(data: dict[str, Any]) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """The conversation in the OpenAI shape, and the thinking blocks by message index."""
    out: list[dict[str, Any]] = []
    if "system" in data:
        system = _text_blocks(data["system"], "system")
        if system:
            out.append({"role": "system", "content": system})
    raw = data.get("messages")
    if not isinstance(raw, list) or not raw:
        raise invalid("messages: Field required (a non-empty list)", "messages")
    blocks: list[list[Any]] = []
    for i, m in enumerate(raw):
        msg = obj(m, f"messages.{i}")
        role, content = msg.get("role"), msg.get("content")
        if not isinstance(content, str | list):
            raise invalid(
                f"messages.{i}.content: Input should be a string or a list", f"messages.{i}"
            )
        if role == "user":
            out.extend(_user(content, f"messages.{i}"))
        elif role == "assistant":
            message, thinking = _assistant(content, f"messages.{i}")
            if thinking:
                blocks.append([len(out), thinking])
            out.append(message)
        else:
            raise invalid(
                f"messages.{i}.role: Input should be 'user' or 'assistant'", f"messages.{i}.role"
            )
    return out, blocks


def _tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise invalid("tools: Input should be a list", "tools")
    tools = []
    for i, t in enumerate(raw):
        tool = obj(t, f"tools.{i}")
        if tool.get("type") not in (None, "custom"):
            raise invalid(
                f"tools.{i}.type: server tool {tool.get('type')!r} is not supported by this "
                "router; declare custom tools (name, description, input_schema)",
                f"tools.{i}",
            )
        fn: dict[str, Any] = {
            "name": string(tool.get("name"), f"tools.{i}.name"),
            "parameters": obj(tool.get("input_schema"), f"tools.{i}.input_schema"),
        }
        if tool.get("description"):
            fn["description"] = string(tool["description"], f"tools.{i}.description")
        tools.append({"type": "function", "function": fn})
    return tools


def _tool_choice(raw: Any) -> Any:
    if raw is None:
        return None
    choice = obj(raw, "tool_choice")
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": string(choice.get("name"), "tool_choice")}}
    if kind not in _TOOL_CHOICE:
        raise invalid("tool_choice.type: expected 'auto', 'any', 'tool' or 'none'", "tool_choice")
    return _TOOL_CHOICE[kind]


def _stop(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_STOP_SEQUENCES:
        raise invalid(f"stop_sequences: a list of at most {MAX_STOP_SEQUENCES}", "stop_sequences")
    for s in raw:
        if not isinstance(s, str) or not s or len(s) > MAX_STOP_SEQUENCE_CHARS:
            raise invalid(
                f"stop_sequences: each a non-empty string of at most {MAX_STOP_SEQUENCE_CHARS} "
                "characters",
                "stop_sequences",
            )
    return list(raw)


def _headers(hdr: Mapping[str, str]) -> None:
    for name, limit in _HEADER_LIMITS.items():
        if len(hdr.get(name, "")) > limit:
            raise invalid(f"header {name}: at most {limit} characters", name)


def decode_messages(wire: HttpIn, *, count_only: bool = False) -> Inbound:
    """A Messages (or count_tokens, without ``max_tokens``) request as the pipeline's."""
    data = json_object(wire.body)
    _headers(wire.headers)
    chat, stream, user = chat_request(data, count_only=count_only)
    hdr = wire.headers
    return Inbound(
        policy=policy(data),
        chat=chat,
        stream=stream,
        user=str(user or hdr.get("x-skyroute-user", "")),
        session=hdr.get("x-skyroute-session", ""),
        **http_context(hdr),
    )


def chat_request(
    data: dict[str, Any], *, count_only: bool = False
) -> tuple[ChatRequest, bool, str | None]:
    """A Messages request body (whichever door it came through) as the router's request,
    whether it streams, and its ``metadata.user_id``."""
    max_tokens = positive_int(data.get("max_tokens"), "max_tokens", required=not count_only)
    temperature = number(data.get("temperature"), "temperature", 0.0, 1.0)
    number(data.get("top_p"), "top_p", 0.0, 1.0)
    integer(data.get("top_k"), "top_k", 0, MAX_INT32)
    stream = boolean(data.get("stream"), "stream")
    user = None
    if data.get("metadata") is not None:
        user = obj(data["metadata"], "metadata").get("user_id")
        if user is not None and len(string(user, "metadata.user_id")) > MAX_USER_ID:
            raise invalid(
                f"metadata.user_id: String should have at most {MAX_USER_ID} characters",
                "metadata.user_id",
            )
    if data.get("thinking") is not None:
        obj(data["thinking"], "thinking")
    messages, blocks = _messages(data)
    native: dict[str, Any] = {k: data[k] for k in _PASSTHROUGH if k in data}
    if blocks:
        native["blocks"] = blocks
    chat = ChatRequest(
        messages=messages,
        tools=_tools(data.get("tools")),
        max_tokens=max_tokens if not count_only else None,
        temperature=temperature,
        tool_choice=_tool_choice(data.get("tool_choice")),
        stop=_stop(data.get("stop_sequences")),
        anthropic=native,
    )
    return chat, bool(stream) and not count_only, user


def content_blocks(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A stored answer's content blocks: thinking first, then text, then tool uses."""
    blocks: list[dict[str, Any]] = list(rec.get("thinking") or ())
    if rec["content"]:
        blocks.append({"type": "text", "text": rec["content"]})
    blocks.extend(tool_use(call) for call in rec["tool_calls"])
    return blocks


def tool_use(call: Mapping[str, Any]) -> dict[str, Any]:
    """A Chat tool call as a ``tool_use`` block."""
    fn = call.get("function") or {}
    try:
        args = orjson.loads(fn.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):  # a model's malformed arguments: kept, not dropped
        args = {"_arguments": fn.get("arguments")}
    return {"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""), "input": args}


def stop_reason(rec: Mapping[str, Any]) -> str:
    """The Messages API's stop reason for a stored answer's finish reason."""
    return _STOP_REASON.get(rec["finish_reason"], "end_turn")


def _usage(rec: Mapping[str, Any]) -> dict[str, int]:
    return {"input_tokens": rec["prompt_tokens"], "output_tokens": rec["completion_tokens"]}


class AnthropicMessages:
    """The Messages codec (``POST /v1/messages``)."""

    __slots__ = ()

    def decode(self, wire: HttpIn) -> Inbound:
        return decode_messages(wire)

    def answer(self, answer: Answer) -> HttpReply:
        rec = answer.rec
        body = {
            "id": "msg_" + answer.prepared.ctx.request_id,
            "type": "message",
            "role": "assistant",
            "model": rec["model"],
            "content": content_blocks(rec),
            "stop_reason": stop_reason(rec),
            "stop_sequence": None,
            "usage": _usage(rec),
        }
        return HttpReply(200, answer.facts, orjson.dumps(body))

    def reject(self, rejection: Rejection) -> HttpReply:
        message = rejection.message
        param = _PARAM.get(rejection.param or "", rejection.param)
        if param and param not in message:
            message = f"{param}: {message}"
        body = error_body(rejection.status, message)
        return HttpReply(rejection.status, rejection.facts, orjson.dumps(body))

    def explained(self, prepared: Prepared) -> HttpReply:
        return OpenAIChat().explained(prepared)

    def stream(self, prepared: Prepared) -> MessageEvents:
        return MessageEvents("msg_" + prepared.ctx.request_id, prepared.signals.prompt_tokens)


class CountTokens(AnthropicMessages):
    """``POST /v1/messages/count_tokens``: the estimate, after the guards and the policy.

    Served as a dry run (:meth:`Pipeline.explain`), so no model is called.
    """

    __slots__ = ()

    def decode(self, wire: HttpIn) -> Inbound:
        return decode_messages(wire, count_only=True)

    def explained(self, prepared: Prepared) -> HttpReply:
        body = {"input_tokens": prepared.signals.prompt_tokens}
        return HttpReply(200, {}, orjson.dumps(body))


def _event(name: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class MessageEvents:
    """Anthropic's stream events for one answer (content blocks numbered as they open)."""

    __slots__ = ("mid", "n_blocks", "prompt_tokens", "text_open")

    def __init__(self, mid: str, prompt_tokens: int) -> None:
        self.mid, self.prompt_tokens = mid, prompt_tokens
        self.n_blocks = 0
        self.text_open = False

    def head(self, facts: Mapping[str, str]) -> Mapping[str, str]:
        return {**facts, **_STREAM_HEADERS}

    def start(self, model: str) -> Sequence[bytes]:
        message: dict[str, Any] = {
            "id": self.mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 0},
        }
        return (
            _event("message_start", {"type": "message_start", "message": message}),
            _event("ping", {"type": "ping"}),
        )

    def _close_text(self) -> bytes:
        if not self.text_open:
            return b""
        self.text_open = False
        self.n_blocks += 1
        return _event(
            "content_block_stop", {"type": "content_block_stop", "index": self.n_blocks - 1}
        )

    def _block(self, block: dict[str, Any], delta: dict[str, Any] | None) -> bytes:
        i = self.n_blocks
        out = _event(
            "content_block_start",
            {"type": "content_block_start", "index": i, "content_block": block},
        )
        if delta is not None:
            out += _event(
                "content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}
            )
        return out

    def text(self, text: str) -> bytes:
        out = b""
        if not self.text_open:
            out = self._block({"type": "text", "text": ""}, None)
            self.text_open = True
        delta = {"type": "text_delta", "text": text}
        return out + _event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self.n_blocks, "delta": delta},
        )

    def thinking(self, block: dict[str, Any]) -> bytes:
        """A thinking block as Anthropic streams one: start, its deltas, stop."""
        out = self._close_text()
        i = self.n_blocks
        if block.get("type") == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            out += self._block(
                start, {"type": "thinking_delta", "thinking": block.get("thinking", "")}
            )
            delta = {"type": "signature_delta", "signature": block.get("signature", "")}
            out += _event(
                "content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}
            )
        else:  # redacted_thinking comes whole in its start event
            out += self._block(block, None)
        self.n_blocks += 1
        return out + _event("content_block_stop", {"type": "content_block_stop", "index": i})

    def tool_call(self, call: dict[str, Any]) -> bytes:
        out = self._close_text()
        fn = call.get("function") or {}
        block = {
            "type": "tool_use",
            "id": call.get("id", ""),
            "name": fn.get("name", ""),
            "input": {},
        }
        delta = {"type": "input_json_delta", "partial_json": fn.get("arguments") or "{}"}
        out += self._block(block, delta)
        self.n_blocks += 1
        return out + _event(
            "content_block_stop", {"type": "content_block_stop", "index": self.n_blocks - 1}
        )

    def done(self, answer: Answer) -> Sequence[bytes]:
        rec = answer.rec
        delta = {
            "stop_reason": stop_reason(rec),
            "stop_sequence": None,
        }
        end = _event(
            "message_delta", {"type": "message_delta", "delta": delta, "usage": _usage(rec)}
        )
        out = [end, _event("message_stop", {"type": "message_stop"})]
        closing = self._close_text()
        return [closing, *out] if closing else out

    def cut(self, served: Served) -> bytes:
        message = f"stream failed after it started: {public_message(served)}"
        return _event("error", error_body(502, message))
