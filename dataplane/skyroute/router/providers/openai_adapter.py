"""OpenAI Chat Completions adapter: the near-identity translation.

Requests inside the router already are in the OpenAI shape, so messages
and tools go out as they are (no copy) unless a tool-call id from another
family is longer than OpenAI's 40-character limit, in which case the
messages are rebuilt with :func:`~.common.fit_id`. The token budget is sent
as ``max_completion_tokens`` (reasoning models reject ``max_tokens``), and
streams always ask for ``stream_options.include_usage`` so usage is known.
Every other parameter the client sent (``response_format``, ``top_p``,
``seed``..., and ones the router does not know) goes out as it came.

Streamed tool calls arrive as pieces keyed by ``index``: the first piece has
the ``id`` and ``function.name``, the rest append to ``function.arguments``.
They are assembled and emitted as complete ToolCallEvents when the choice's
``finish_reason`` arrives; ``data: [DONE]`` is the terminal event.

A refusal (``message.refusal``, or ``finish_reason: content_filter``) with
no usable content raises CONTENT_FILTER; with partial content it is a
normal result whose finish reason is ``content_filter``.
"""

from __future__ import annotations

from typing import Any

import orjson

from skyroute.router.providers.common import Prepared, fit_id, join_url, openai_call
from skyroute.router.providers.errors import bad_response, classify_status, eof_error
from skyroute.router.providers.types import (
    CONTENT_FILTER,
    ChatRequest,
    ChatResult,
    ProviderError,
    StreamEnd,
    StreamEvent,
    Target,
    TextDelta,
    ToolCallEvent,
)

FAMILY = "openai"
_STREAM_OPTIONS = {"include_usage": True}


def _needs_fit(messages: list[dict[str, Any]]) -> bool:
    for m in messages:
        tcid = m.get("tool_call_id")
        if isinstance(tcid, str) and len(tcid) > 40:
            return True
        for call in m.get("tool_calls") or ():
            if len(str(call.get("id", ""))) > 40:
                return True
    return False


def _fit_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.get("tool_call_id") is not None:
            m = {**m, "tool_call_id": fit_id(str(m["tool_call_id"]))}
        if m.get("tool_calls"):
            m = {
                **m,
                "tool_calls": [{**c, "id": fit_id(str(c.get("id", "")))} for c in m["tool_calls"]],
            }
        out.append(m)
    return out


class OpenAIAdapter:
    """The Chat Completions codec; families speaking it elsewhere override ``prepare``."""

    family = FAMILY

    def prepare(self, target: Target) -> Prepared:
        headers = {"Content-Type": "application/json"}
        url = join_url(target.endpoint, "/chat/completions")
        return Prepared(
            url,
            url,
            headers,
            {**headers, "Accept": "text/event-stream"},
            target.model,
            target.api_key,
        )

    def encode(self, req: ChatRequest, model: str, stream: bool) -> bytes:
        messages = _fit_messages(req.messages) if _needs_fit(req.messages) else req.messages
        body: dict[str, Any] = {"model": model, "messages": messages}
        if req.tools:
            body["tools"] = req.tools
            if req.tool_choice is not None:
                body["tool_choice"] = req.tool_choice
        if req.max_tokens is not None:
            body["max_completion_tokens"] = req.max_tokens
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.stop:
            body["stop"] = req.stop
        # Everything else as the client sent it, unknown parameters too (see .options).
        for name, value in req.options.items():
            body.setdefault(name, value)
        if stream:
            body["stream"] = True
            body["stream_options"] = _STREAM_OPTIONS
        return orjson.dumps(body)

    def decode(self, body: bytes) -> ChatResult:
        try:
            obj = orjson.loads(body)
            choice = obj["choices"][0]
            message = choice["message"]
            content = message.get("content") or ""
            calls = [
                openai_call(c["id"], c["function"]["name"], c["function"].get("arguments") or "{}")
                for c in message.get("tool_calls") or ()
            ]
            finish = choice.get("finish_reason") or "stop"
            usage = obj.get("usage") or {}
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise bad_response(self.family, f"{type(exc).__name__}: {exc}") from None
        if not content and not calls and (message.get("refusal") or finish == "content_filter"):
            raise ProviderError(
                CONTENT_FILTER,
                f"{self.family}: answer withheld by the content "
                f"filter: {str(message.get('refusal') or '')[:200]}",
            )
        return ChatResult(content, calls, finish, prompt, completion)

    def assembler(self) -> OpenAIStream:
        return OpenAIStream(self.family)


class OpenAIStream:
    __slots__ = (
        "_calls",
        "_completion",
        "_family",
        "_finish",
        "_prompt",
        "_refused",
        "done",
        "started",
    )

    def __init__(self, family: str = FAMILY) -> None:
        self._family = family
        self.started = False
        self.done = False
        self._calls: dict[int, list[Any]] = {}  # index -> [id, name, [argument pieces]]
        self._finish = "stop"
        self._prompt = 0
        self._completion = 0
        self._refused = False

    def feed(self, data: bytes) -> list[StreamEvent]:
        if data == b"[DONE]":
            self.done = True
            return []
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise bad_response(self._family, f"stream chunk is not JSON: {data[:80]!r}") from None
        if not isinstance(obj, dict):
            raise bad_response(self._family, "stream chunk is not an object")
        if "error" in obj:
            raise classify_status(self._family, 500, data, {}, None)
        out: list[StreamEvent] = []
        usage = obj.get("usage")
        if usage:
            self._prompt = int(usage.get("prompt_tokens") or 0)
            self._completion = int(usage.get("completion_tokens") or 0)
        for choice in obj.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                self.started = True
                out.append(TextDelta(text))
            if delta.get("refusal"):
                self._refused = True
            for piece in delta.get("tool_calls") or ():
                self.started = True
                slot = self._calls.get(piece.get("index", 0))
                if slot is None:
                    slot = self._calls[piece.get("index", 0)] = ["", "", []]
                if piece.get("id"):
                    slot[0] = piece["id"]
                fn = piece.get("function") or {}
                if fn.get("name"):
                    slot[1] = fn["name"]
                if fn.get("arguments"):
                    slot[2].append(fn["arguments"])
            finish = choice.get("finish_reason")
            if finish:
                self._finish = finish
                out.extend(self._flush_calls())
        return out

    def _flush_calls(self) -> list[StreamEvent]:
        events: list[StreamEvent] = [
            ToolCallEvent(openai_call(cid, name, "".join(args) or "{}"))
            for _, (cid, name, args) in sorted(self._calls.items())
        ]
        self._calls.clear()
        return events

    def at_eof(self) -> list[StreamEvent]:
        if not self.done:
            raise eof_error(self._family, self.started)
        if not self.started and (self._refused or self._finish == "content_filter"):
            raise ProviderError(
                CONTENT_FILTER, f"{self._family}: answer withheld by the content filter"
            )
        out = self._flush_calls()
        out.append(StreamEnd(self._finish, self._prompt, self._completion))
        return out
