"""OpenAI Chat Completions, as the official ``openai`` SDK expects it.

Non-streamed answers are ``chat.completion`` objects; streamed ones are
``chat.completion.chunk`` SSE events: a first chunk with the assistant role,
content deltas (or, for a tool call, one chunk that opens the call with its
``id``, ``type`` and ``function.name`` followed by ``function.arguments``
pieces, all keyed by ``index``), a chunk with the ``finish_reason``, the
usage chunk with empty ``choices`` when ``stream_options.include_usage`` is
set (every other chunk then carries ``"usage": null``), and ``data: [DONE]``.
``n`` > 1 answers ``n`` choices (each its own text; streamed, their chunks
take turns, keyed by ``index``); ``logprobs`` (with ``top_logprobs``) puts
``logprobs.content`` on each choice and each content chunk; ``stop`` cuts
the text before a stop sequence (``finish_reason: stop``); ``seed`` picks
the text (see :mod:`.answers`).

Errors use the ``{"error": {"message", "type", "param", "code"}}`` body with
the real statuses and codes (``rate_limit_exceeded`` with Retry-After,
``context_length_exceeded``, ``content_filter``, ``invalid_api_key``), so the
SDK raises its own typed exceptions (``RateLimitError``, ``BadRequestError``,
``InternalServerError``...).

Chunk bytes are built from a per-request prefix and suffix around the one
JSON-encoded delta, so a chunk costs one small ``orjson.dumps``.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson
from aiohttp import web

from skyroute.families import Family
from skyroute.simulator.answers import Answer, new_id, token_logprobs
from skyroute.simulator.wire import (
    ErrorContext,
    Rendered,
    SimRequest,
    StreamFrames,
    WireError,
    bearer,
    int_field,
    piece_tokens,
    retry_after_header,
    stop_list,
    text_of,
)

_JSON = {"Content-Type": "application/json"}
_SSE = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_FINISH = {"text": b'"stop"', "length": b'"length"', "tool": b'"tool_calls"'}


def _err(
    status: int,
    message: str,
    etype: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Rendered:
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return Rendered(status, {**_JSON, **(headers or {})}, orjson.dumps(body))


class OpenAIWire:
    name: Family = "openai"

    def api_key(self, request: web.Request) -> str | None:
        return bearer(request)

    def check_headers(self, request: web.Request) -> None:
        return None

    def parse(self, body: Any, path_model: str | None, stream_path: bool) -> SimRequest:
        if not isinstance(body, dict):
            raise WireError("The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise WireError("you must provide a model parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise WireError("Invalid 'messages': expected a non-empty array.")
        texts: list[str] = []
        pending: list[str] = []
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                raise WireError(f"Invalid type for 'messages[{i}]': expected an object.")
            role = msg.get("role")
            if role not in ("system", "developer", "user", "assistant", "tool"):
                raise WireError(f"Invalid value for 'messages[{i}].role': {role!r}.")
            if role != "tool" and pending:
                raise WireError(
                    "An assistant message with 'tool_calls' must be followed by tool messages "
                    "responding to each 'tool_call_id'. The following tool_call_ids did not "
                    f"have response messages: {', '.join(pending)}"
                )
            texts.append(text_of(msg.get("content")))
            if role == "assistant":
                for j, call in enumerate(msg.get("tool_calls") or ()):
                    fn = call.get("function") if isinstance(call, dict) else None
                    if not isinstance(fn, dict) or not isinstance(call.get("id"), str):
                        raise WireError(f"Invalid 'messages[{i}].tool_calls[{j}]'.")
                    if len(call["id"]) > 40:
                        raise WireError(
                            f"Invalid 'messages[{i}].tool_calls[{j}].id': string too long. "
                            "Expected a string with maximum length 40."
                        )
                    pending.append(call["id"])
                    texts.append(str(fn.get("arguments", "")))
            elif role == "tool":
                call_id = msg.get("tool_call_id")
                if call_id not in pending:
                    raise WireError(
                        "Invalid parameter: messages with role 'tool' must be a response to a "
                        f"preceeding message with 'tool_calls' (messages[{i}].tool_call_id="
                        f"{call_id!r})."
                    )
                pending.remove(call_id)
        prompt_text = "\n".join(t for t in texts if t)
        max_tokens = int_field(body, "max_completion_tokens", "")
        if max_tokens is None:
            max_tokens = int_field(body, "max_tokens", "")
        tool_name, schema = None, None
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        last_user = messages[-1].get("role") == "user"
        if tools and last_user and choice != "none":
            tool_name, schema = _pick_tool(tools, choice)
        options = body.get("stream_options")
        n, logprobs, top = _choices(body)
        return SimRequest(
            model=model,
            stream=bool(body.get("stream")),
            max_tokens=max_tokens,
            prompt_chars=len(prompt_text),
            prompt_text=prompt_text,
            tool_name=tool_name,
            tool_schema=schema,
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
            json_schema=_json_schema(body.get("response_format")),
            # OpenAI takes at most 4 (the router skips or drops a longer list by policy).
            stop=stop_list(body.get("stop"), "stop", 4),
            seed=_seed(body.get("seed")),
            n=n,
            logprobs=logprobs,
            top_logprobs=top,
        )

    def render(self, req: SimRequest, answer: Answer) -> bytes:
        choices = [self._choice(req, i, a) for i, a in enumerate(_all(answer))]
        return orjson.dumps(
            {
                "id": new_id("chatcmpl-"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": req.model,
                "choices": choices,
                "usage": _usage(answer),
                "service_tier": "default",
                "system_fingerprint": "fp_skyroute_sim",
            }
        )

    def _choice(self, req: SimRequest, index: int, answer: Answer) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if answer.is_tool else answer.text,
            "refusal": None,
            "annotations": [],
        }
        if answer.is_tool:
            message["tool_calls"] = [
                {
                    "id": new_id("call_"),
                    "type": "function",
                    "function": {"name": answer.tool_name, "arguments": answer.tool_args_json},
                }
            ]
            finish = "tool_calls"
        else:
            finish = "length" if answer.truncated else "stop"
        return {
            "index": index,
            "message": message,
            "logprobs": _logprobs(req, answer.text) if not answer.is_tool else None,
            "finish_reason": finish,
        }

    def stream(self, req: SimRequest, answer: Answer, chunk_tokens: int) -> StreamFrames:
        usage_null = b',"usage":null' if req.include_usage else b""
        base = b"".join(
            (
                b'data: {"id":"',
                new_id("chatcmpl-").encode(),
                b'","object":"chat.completion.chunk","created":',
                str(int(time.time())).encode(),
                b',"model":',
                orjson.dumps(req.model),
                b',"system_fingerprint":"fp_skyroute_sim","choices":[{"index":',
            )
        )
        head = b""
        per_choice: list[tuple[list[bytes], list[int]]] = []
        tail = b""
        for index, one in enumerate(_all(answer)):
            prefix = base + str(index).encode() + b',"delta":'
            open_end = b',"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"
            head += prefix + b'{"role":"assistant","content":"","refusal":null}' + open_end
            pieces, tokens, finish = self._pieces(req, one, chunk_tokens, prefix, usage_null)
            per_choice.append((pieces, tokens))
            tail += (
                prefix
                + b'{},"logprobs":null,"finish_reason":'
                + finish
                + b"}]"
                + usage_null
                + b"}\n\n"
            )
        # Choices take turns, as OpenAI interleaves them.
        pieces, tokens = [], []
        for turn in itertools.zip_longest(*(zip(p, t, strict=True) for p, t in per_choice)):
            for item in turn:
                if item is not None:
                    pieces.append(item[0])
                    tokens.append(item[1])
        if req.include_usage:
            usage_prefix = base[: base.index(b',"choices":')]
            tail += (
                usage_prefix + b',"choices":[],"usage":' + orjson.dumps(_usage(answer)) + b"}\n\n"
            )
        tail += b"data: [DONE]\n\n"
        return StreamFrames(head, pieces, tail, tokens)

    def _pieces(
        self, req: SimRequest, answer: Answer, chunk_tokens: int, prefix: bytes, usage_null: bytes
    ) -> tuple[list[bytes], list[int], bytes]:
        """One choice's content chunks, the tokens each stands for, and its finish reason."""
        open_end = b',"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"
        pieces: list[bytes] = []
        if answer.is_tool:
            call = {
                "index": 0,
                "id": new_id("call_"),
                "type": "function",
                "function": {"name": answer.tool_name, "arguments": ""},
            }
            pieces.append(prefix + orjson.dumps({"tool_calls": [call]}) + open_end)
            arg_pieces = answer.arg_pieces()
            for piece in arg_pieces:
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                pieces.append(prefix + orjson.dumps(delta) + open_end)
            share = max(1, answer.completion_tokens // (len(arg_pieces) + 1))
            return pieces, [share] * len(pieces), _FINISH["tool"]
        position = 0
        for piece in answer.pieces:
            end = open_end
            if req.logprobs:
                content = token_logprobs(piece, req.top_logprobs, position)
                position += len(content)
                lp = orjson.dumps({"content": content, "refusal": None})
                end = b',"logprobs":' + lp + b',"finish_reason":null}]' + usage_null + b"}\n\n"
            pieces.append(prefix + b'{"content":' + orjson.dumps(piece) + b"}" + end)
        tokens = piece_tokens(answer.completion_tokens, len(pieces), chunk_tokens)
        return pieces, tokens, _FINISH["length" if answer.truncated else "text"]

    def error(self, kind: str, ctx: ErrorContext) -> Rendered:
        if kind == "rate_limited":
            return _err(
                429,
                f"Rate limit reached for {ctx.model} on requests per min (RPM): Limit 500, "
                f"Used 500, Requested 1. Please try again in {ctx.retry_after_s:.3g}s.",
                "requests",
                "rate_limit_exceeded",
                headers=retry_after_header(ctx.retry_after_s),
            )
        if kind == "context_length":
            return _err(
                400,
                f"This model's maximum context length is {ctx.context_window} tokens. However, "
                f"your messages resulted in {ctx.prompt_tokens} tokens. Please reduce the length "
                "of the messages.",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            )
        if kind == "content_filter":
            return _err(
                400,
                "The response was filtered due to the prompt triggering the content management "
                "policy. Please modify your prompt and retry.",
                "invalid_request_error",
                "content_filter",
                "prompt",
            )
        if kind == "bad_request":
            return _err(
                400,
                "Invalid value for 'temperature': must be between 0 and 2.",
                "invalid_request_error",
                "invalid_value",
                "temperature",
            )
        if kind == "auth":
            return _err(
                401,
                "Incorrect API key provided. You can find your API key at your account settings.",
                "invalid_request_error",
                "invalid_api_key",
            )
        if kind == "not_found":
            return _err(
                404,
                f"The model `{ctx.model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        if kind == "unavailable":
            return _err(
                503, "The engine is currently overloaded, please try again later.", "server_error"
            )
        if kind == "overloaded":
            return _err(529, "The server is overloaded, please try again later.", "server_error")
        if kind == "bad_response":
            if ctx.stream:
                return Rendered(200, dict(_SSE), b'data: {"id":"chatcmpl-\x00 not json\n\n')
            return Rendered(200, dict(_JSON), b'{"id": "chatcmpl-broken", "choices": [')
        return _err(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        )

    def invalid(self, message: str, status: int = 400) -> Rendered:
        if status == 401:
            return _err(401, message, "invalid_request_error", "invalid_api_key")
        if status == 404:
            return _err(404, message, "invalid_request_error", "unknown_url")
        return _err(status, message, "invalid_request_error")


def _all(answer: Answer) -> list[Answer]:
    """Every choice of an answer: itself, then its alternatives (``n`` > 1)."""
    return [answer, *answer.alternatives]


def _logprobs(req: SimRequest, text: str) -> dict[str, Any] | None:
    if not req.logprobs:
        return None
    return {"content": token_logprobs(text, req.top_logprobs), "refusal": None}


def _seed(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise WireError(f"Invalid type for 'seed': expected an integer, but got {value!r}.")
    return value


def _choices(body: dict[str, Any]) -> tuple[int, bool, int]:
    """``n``, ``logprobs`` and ``top_logprobs``, checked as OpenAI checks them."""
    n = body.get("n")
    if n is None:
        n = 1
    elif isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 128:
        raise WireError(f"Invalid 'n': expected an integer from 1 to 128, got {n!r}.")
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise WireError(f"Invalid type for 'logprobs': expected a boolean, but got {logprobs!r}.")
    top = body.get("top_logprobs")
    if top is None:
        top = 0
    elif isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20:
        raise WireError(f"Invalid 'top_logprobs': expected an integer from 0 to 20, got {top!r}.")
    elif not logprobs:
        raise WireError("Invalid value for 'top_logprobs': 'logprobs' must be set to true.")
    return n, bool(logprobs), top


def _json_schema(fmt: Any) -> dict[str, Any] | None:
    """What ``response_format`` asks of the answer: a schema, {} for any object, or None."""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_object", "json_schema"):
        return None
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else {}


def _pick_tool(tools: Any, choice: Any) -> tuple[str | None, Any]:
    if not isinstance(tools, list):
        raise WireError("Invalid 'tools': expected an array.")
    by_name: dict[str, Any] = {}
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise WireError(f"Missing required parameter: 'tools[{i}].function.name'.")
        by_name.setdefault(fn["name"], fn.get("parameters") or {})
    if not by_name:
        return None, None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in by_name:
            raise WireError(f"Invalid 'tool_choice': no tool named {name!r}.")
        return name, by_name[name]
    name = next(iter(by_name))
    return name, by_name[name]


def _usage(answer: Answer) -> dict[str, Any]:
    completion = sum(a.completion_tokens for a in _all(answer))
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": answer.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
