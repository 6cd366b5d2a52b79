"""Anthropic Messages, as the official ``anthropic`` SDK expects it.

Requests need the ``anthropic-version`` header and ``max_tokens`` (both
required by the real API, so an adapter that forgets them fails here and not
first in production). Tool results are checked the way the real API checks
them: every ``tool_use`` block of an assistant turn needs a ``tool_result``
with the same id in the very next user turn, and a ``tool_result`` whose id
was not used in the previous turn is rejected.

A streamed answer is the documented event sequence: ``message_start``, then
``content_block_start`` (a text block, or a ``tool_use`` block with ``id``
and ``name`` and empty ``input``), ``ping``, ``content_block_delta`` events
(``text_delta`` or ``input_json_delta`` with ``partial_json``),
``content_block_stop``, ``message_delta`` with ``stop_reason`` and output
usage, and ``message_stop``. Errors use ``{"type": "error", "error": {"type",
"message"}}`` with the real statuses (529 ``overloaded_error``, 429
``rate_limit_error`` with Retry-After...). A content-filter outcome is what
Claude 4 models do: a 200 with ``stop_reason: "refusal"`` and no content.
With ``thinking: {"type": "enabled"}`` an answer opens with a ``thinking``
block (streamed as ``thinking_delta`` then ``signature_delta``) whose text
and signature are a function of the prompt, so a test can tell it came back
intact.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from aiohttp import web

from skyroute.families import Family
from skyroute.simulator.answers import Answer, new_id
from skyroute.simulator.wire import (
    ErrorContext,
    Rendered,
    SimRequest,
    StreamFrames,
    WireError,
    bearer,
    piece_tokens,
    retry_after_header,
    sse,
    stop_list,
    text_of,
)

_JSON = {"Content-Type": "application/json"}
_SSE = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_ERRORS: dict[str, tuple[int, str, str]] = {
    "server_error": (500, "api_error", "Internal server error"),
    "unavailable": (503, "api_error", "Service unavailable"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "bad_request": (
        400,
        "invalid_request_error",
        "temperature: Input should be less than or equal to 1",
    ),
    "auth": (401, "authentication_error", "invalid x-api-key"),
    "not_found": (404, "not_found_error", "model: not found"),
}
_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
}


def _err(status: int, etype: str, message: str, headers: dict[str, str] | None = None) -> Rendered:
    request_id = new_id("req_")
    body = {"type": "error", "error": {"type": etype, "message": message}, "request_id": request_id}
    return Rendered(
        status, {**_JSON, "request-id": request_id, **(headers or {})}, orjson.dumps(body)
    )


class AnthropicWire:
    name: Family = "anthropic"

    def api_key(self, request: web.Request) -> str | None:
        return request.headers.get("x-api-key") or bearer(request)

    def check_headers(self, request: web.Request) -> None:
        if "anthropic-version" not in request.headers:
            raise WireError("anthropic-version: header is required")

    def parse(self, body: Any, path_model: str | None, stream_path: bool) -> SimRequest:
        if not isinstance(body, dict):
            raise WireError("body: Input should be an object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise WireError("model: Field required")
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise WireError("max_tokens: Field required (a positive integer)")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise WireError("messages: Field required (a non-empty list)")
        texts = [text_of(body.get("system"))]
        expected: list[str] = []  # tool_use ids the next user turn must answer
        last_is_user_turn = False
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                raise WireError(f"messages.{i}: Input should be an object")
            role = msg.get("role")
            if role not in ("user", "assistant"):
                raise WireError(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            content = msg.get("content")
            blocks = content if isinstance(content, list) else []
            texts.append(text_of(content))
            used: list[str] = []
            answered: list[str] = []
            for j, block in enumerate(blocks):
                btype = block.get("type") if isinstance(block, dict) else None
                if btype == "tool_use":
                    if role != "assistant" or not isinstance(block.get("id"), str):
                        raise WireError(f"messages.{i}.content.{j}: invalid tool_use block")
                    used.append(block["id"])
                    texts.append(orjson.dumps(block.get("input", {})).decode())
                elif btype == "tool_result":
                    tid = block.get("tool_use_id")
                    if role != "user" or tid not in expected:
                        raise WireError(
                            f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                            f"`tool_result` blocks: {tid}. Each `tool_result` block must have a "
                            "corresponding `tool_use` block in the previous message."
                        )
                    answered.append(tid)
            missing = [t for t in expected if t not in answered]
            if missing:
                raise WireError(
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message."
                )
            expected = used
            last_is_user_turn = role == "user" and not answered
        if expected:
            raise WireError(
                f"messages.{len(messages) - 1}: `tool_use` ids were found without `tool_result` "
                f"blocks immediately after: {', '.join(expected)}."
            )
        prompt_text = "\n".join(t for t in texts if t)
        tool_name, schema = None, None
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        if not isinstance(choice, dict):
            choice = {}
        if tools and last_is_user_turn and choice.get("type") != "none":
            tool_name, schema = _pick_tool(tools, choice)
        return SimRequest(
            model=model,
            stream=bool(body.get("stream")),
            max_tokens=max_tokens,
            prompt_chars=len(prompt_text),
            prompt_text=prompt_text,
            tool_name=tool_name,
            tool_schema=schema,
            thinking=isinstance(body.get("thinking"), dict)
            and body["thinking"].get("type") == "enabled",
            stop=stop_list(body.get("stop_sequences"), "stop_sequences", 8191),
        )

    def render(self, req: SimRequest, answer: Answer) -> bytes:
        if answer.is_tool:
            content: list[dict[str, Any]] = [
                {
                    "type": "tool_use",
                    "id": new_id("toolu_"),
                    "name": answer.tool_name,
                    "input": answer.tool_args,
                }
            ]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": answer.text}]
            stop = _stop_reason(answer)
        if req.thinking:
            content.insert(0, thinking_block(req.prompt_text))
        return orjson.dumps(
            {
                "id": new_id("msg_"),
                "type": "message",
                "role": "assistant",
                "model": req.model,
                "content": content,
                "stop_reason": stop,
                "stop_sequence": answer.stop_sequence,
                "usage": _usage(answer.prompt_tokens, answer.completion_tokens),
            }
        )

    def stream(self, req: SimRequest, answer: Answer, chunk_tokens: int) -> StreamFrames:
        head = _message_start(req.model, answer.prompt_tokens)
        b = self._blocks(req, answer, chunk_tokens)
        if not req.thinking:
            return StreamFrames(head + b.head, b.pieces, b.tail, b.piece_tokens)
        # Block 0 is the thinking; the answer's own block is then block 1.
        return StreamFrames(
            head + _thinking_frames(thinking_block(req.prompt_text)) + _reindex(b.head),
            [_reindex(p) for p in b.pieces],
            _reindex(b.tail),
            b.piece_tokens,
        )

    def _blocks(self, req: SimRequest, answer: Answer, chunk_tokens: int) -> StreamFrames:
        """The answer's own block (index 0), after an empty head."""
        head = b""
        pieces: list[bytes] = []
        if answer.is_tool:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": new_id("toolu_"),
                "name": answer.tool_name,
                "input": {},
            }
            pieces.append(
                sse(
                    "content_block_start",
                    orjson.dumps(
                        {"type": "content_block_start", "index": 0, "content_block": block}
                    ),
                )
            )
            for piece in answer.arg_pieces():
                pieces.append(
                    sse(
                        "content_block_delta",
                        orjson.dumps(
                            {
                                "type": "content_block_delta",
                                "index": 0,
                                "delta": {"type": "input_json_delta", "partial_json": piece},
                            }
                        ),
                    )
                )
            share = max(1, answer.completion_tokens // len(pieces))
            tokens = [share] * len(pieces)
            stop = "tool_use"
        else:
            head += sse(
                "content_block_start",
                b'{"type":"content_block_start","index":0,'
                b'"content_block":{"type":"text","text":""}}',
            )
            for piece in answer.pieces:
                pieces.append(
                    sse(
                        "content_block_delta",
                        b'{"type":"content_block_delta",'
                        b'"index":0,"delta":{"type":"text_delta","text":'
                        + orjson.dumps(piece)
                        + b"}}",
                    )
                )
            tokens = piece_tokens(answer.completion_tokens, len(pieces), chunk_tokens)
            stop = _stop_reason(answer)
        head += sse("ping", b'{"type":"ping"}')
        tail = sse("content_block_stop", b'{"type":"content_block_stop","index":0}')
        tail += _message_end(stop, answer.completion_tokens, answer.stop_sequence)
        return StreamFrames(head, pieces, tail, tokens)

    def error(self, kind: str, ctx: ErrorContext) -> Rendered:
        if kind in _ERRORS:
            status, etype, message = _ERRORS[kind]
            return _err(status, etype, message)
        if kind == "rate_limited":
            return _err(
                429,
                "rate_limit_error",
                "This request would exceed the rate limit for "
                "your organization of 50 requests per minute. Please retry later.",
                retry_after_header(ctx.retry_after_s),
            )
        if kind == "context_length":
            return _err(
                400,
                "invalid_request_error",
                f"prompt is too long: {ctx.prompt_tokens} tokens > {ctx.context_window} maximum",
            )
        if kind == "content_filter":
            if ctx.stream:
                body = _message_start(ctx.model, ctx.prompt_tokens) + _message_end("refusal", 0)
                return Rendered(200, dict(_SSE), body)
            return Rendered(
                200,
                dict(_JSON),
                orjson.dumps(
                    {
                        "id": new_id("msg_"),
                        "type": "message",
                        "role": "assistant",
                        "model": ctx.model,
                        "content": [],
                        "stop_reason": "refusal",
                        "stop_sequence": None,
                        "usage": _usage(ctx.prompt_tokens, 0),
                    }
                ),
            )
        if kind == "bad_response":
            if ctx.stream:
                return Rendered(200, dict(_SSE), b"event: message_start\ndata: {broken\n\n")
            return Rendered(200, dict(_JSON), b'{"id": "msg_broken", "content": [')
        return _err(500, "api_error", "Internal server error")

    def invalid(self, message: str, status: int = 400) -> Rendered:
        return _err(status, _STATUS_TYPES.get(status, "invalid_request_error"), message)


def thinking_block(prompt_text: str) -> dict[str, Any]:
    """The signed thinking block the simulated model opens with (a function of the prompt)."""
    raw = hashlib.blake2b(prompt_text.encode(), digest_size=12).digest()
    # Words, not the hex digest: a model's thinking is prose (a hex run reads as an identifier).
    about = " ".join(_THOUGHTS[b % len(_THOUGHTS)] for b in raw[:6])
    return {
        "type": "thinking",
        "thinking": f"Thinking about {about}.",
        "signature": "Eq" + raw.hex(),
    }


_THOUGHTS = (
    "orders",
    "returns",
    "shipping",
    "accounts",
    "refunds",
    "delivery",
    "sizes",
    "prices",
    "billing",
    "stock",
    "warranty",
    "tracking",
    "coupons",
    "exchanges",
    "payments",
    "support",
)


def _thinking_frames(block: dict[str, Any]) -> bytes:
    start = {"type": "thinking", "thinking": "", "signature": ""}
    out = sse(
        "content_block_start",
        orjson.dumps({"type": "content_block_start", "index": 0, "content_block": start}),
    )
    for key, dtype in (("thinking", "thinking_delta"), ("signature", "signature_delta")):
        delta = {"type": dtype, key: block[key]}
        out += sse(
            "content_block_delta",
            orjson.dumps({"type": "content_block_delta", "index": 0, "delta": delta}),
        )
    return out + sse("content_block_stop", b'{"type":"content_block_stop","index":0}')


def _reindex(frames: bytes) -> bytes:
    """Content block events moved from index 0 to index 1 (message events have none)."""
    return frames.replace(b'"index":0', b'"index":1')


def _message_start(model: str, prompt_tokens: int) -> bytes:
    message: dict[str, Any] = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(prompt_tokens, 1),
    }
    return sse("message_start", orjson.dumps({"type": "message_start", "message": message}))


def _stop_reason(answer: Answer) -> str:
    if answer.stop_sequence is not None:
        return "stop_sequence"
    return "max_tokens" if answer.truncated else "end_turn"


def _message_end(stop: str, output_tokens: int, sequence: str | None = None) -> bytes:
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": sequence},
        "usage": {"output_tokens": output_tokens},
    }
    return sse("message_delta", orjson.dumps(delta)) + sse(
        "message_stop", b'{"type":"message_stop"}'
    )


def _usage(prompt_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _pick_tool(tools: Any, choice: dict[str, Any]) -> tuple[str | None, Any]:
    if not isinstance(tools, list):
        raise WireError("tools: Input should be a valid list")
    by_name: dict[str, Any] = {}
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise WireError(f"tools.{i}.name: Field required")
        if not isinstance(tool.get("input_schema"), dict):
            raise WireError(f"tools.{i}.input_schema: Field required")
        by_name.setdefault(tool["name"], tool["input_schema"])
    if choice.get("type") == "tool":
        name = choice.get("name")
        if name not in by_name:
            raise WireError(f"tool_choice.name: no tool named {name!r} in tools")
        return name, by_name[name]
    name = next(iter(by_name))
    return name, by_name[name]
