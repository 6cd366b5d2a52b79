"""Anthropic Messages adapter: OpenAI-shaped conversations to content blocks and back.

Out: system and developer messages become the top-level ``system``;
assistant ``tool_calls`` become ``tool_use`` blocks (arguments parsed from
their JSON string into ``input``); each OpenAI ``tool`` message becomes a
``tool_result`` block with the same id in a user turn, and consecutive
same-role turns are merged, because Anthropic wants all the results of one
assistant turn in the single user turn that follows it. Ids are passed
through :func:`~.common.fit_id` on both sides so they keep matching.
``max_tokens`` is mandatory upstream (4096 when the request has none) and a
temperature above Anthropic's maximum of 1 is clamped. Stop sequences go as
``stop_sequences``; what an Anthropic Messages client sent that only this
family knows (``ChatRequest.anthropic``: ``thinking``, ``top_k``, ``top_p``,
``metadata``, and the signed thinking blocks of earlier assistant turns) goes
back out unchanged, the thinking blocks at the head of their turns.

In: ``tool_use`` blocks become OpenAI tool calls (``input`` re-serialised),
``thinking`` and ``redacted_thinking`` blocks are kept as they came
(``ChatResult.thinking``);
stop reasons map ``end_turn``/``stop_sequence`` -> stop, ``max_tokens`` ->
length, ``tool_use`` -> tool_calls, ``refusal`` -> content_filter (or a
CONTENT_FILTER error when nothing usable came back). The stream's
``input_json_delta`` pieces are concatenated per block index and emitted as
one ToolCallEvent at the block's ``content_block_stop``, a thinking block
(its ``thinking_delta`` text and ``signature_delta``) as one ThinkingEvent; ``message_stop``
is the terminal event; an ``error`` event is classified like an HTTP error.
"""

from __future__ import annotations

from typing import Any

import orjson

from skyroute.router.providers.common import (
    Prepared,
    TranslationCache,
    function_of,
    join_url,
    openai_call,
    system_text,
    text_of,
    tool_calls_of,
    tool_result_id,
    unsupported_part,
)
from skyroute.router.providers.errors import bad_response, classify_status, eof_error
from skyroute.router.providers.options import (
    IGNORE,
    THINKING_BUDGET,
    Table,
    merge,
    to,
    translate,
)
from skyroute.router.providers.types import (
    CLIENT_ERROR,
    CONTENT_FILTER,
    ChatRequest,
    ChatResult,
    ProviderError,
    StreamEnd,
    StreamEvent,
    Target,
    TextDelta,
    ThinkingEvent,
    ToolCallEvent,
)

FAMILY = "anthropic"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
    "model_context_window_exceeded": "length",
}
#: The ChatRequest.anthropic fields sent on as body fields of the same name.
_PASSTHROUGH = ("thinking", "top_k", "top_p", "metadata")
# Chat Completions parameters as Anthropic takes them (the rest are refused: .options).
OPTIONS: Table = {
    "top_p": to("top_p"),
    "user": to("metadata.user_id"),
    "reasoning_effort": lambda effort: (
        [("thinking", {"type": "enabled", "budget_tokens": THINKING_BUDGET[effort]})]
        if THINKING_BUDGET.get(effort)
        else []
    ),
    "parallel_tool_calls": lambda on: (
        [] if on else [("tool_choice.disable_parallel_tool_use", True)]
    ),
    "metadata": IGNORE,  # skyroute's (session_id); Anthropic's takes only user_id
    "service_tier": IGNORE,
    "store": IGNORE,
}
# Anthropic wants max_tokens above the thinking budget; this much room is left for the answer.
_ANSWER_ROOM = 1024
_THINKING = ("thinking", "redacted_thinking")
_OVERLOAD_STATUS = {
    "overloaded_error": 529,
    "api_error": 500,
    "rate_limit_error": 429,
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "request_too_large": 413,
}


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        fn = function_of(tool, f"tools[{i}]")
        entry: dict[str, Any] = {
            "name": fn["name"],
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            entry["description"] = fn["description"]
        out.append(entry)
    return out


_TOOLS = TranslationCache(_tools)


def _put_options(body: dict[str, Any], fragments: dict[str, Any], tools: bool) -> None:
    """Merge translated options; thinking needs room in max_tokens, tool_choice needs tools."""
    merge(body, fragments)
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        if not tools:
            del body["tool_choice"]
        else:
            choice.setdefault("type", "auto")
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int):
        body["max_tokens"] = max(body["max_tokens"], thinking["budget_tokens"] + _ANSWER_ROOM)


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None or choice == "auto":
        return None
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "tool", "name": choice["function"].get("name")}
    raise ProviderError(CLIENT_ERROR, f"tool_choice: unsupported value {choice!r}")


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[dict[str, Any]] = []
    for part in content or ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                blocks.append(
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": media, "data": data},
                    }
                )
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            raise unsupported_part(part, FAMILY)
    return blocks


def translate_messages(
    messages: list[dict[str, Any]], thinking: dict[int, list[dict[str, Any]]] | None = None
) -> list[dict[str, Any]]:
    """OpenAI messages (system ones excluded) to Anthropic turns.

    ``thinking`` maps an assistant message's index to the thinking blocks that
    open its turn (they must come first, and unchanged: they are signed).
    """
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role in ("system", "developer"):
            continue
        if role == "user":
            blocks = _user_blocks(m.get("content"))
        elif role == "assistant":
            blocks = list(thinking.get(i, ())) if thinking else []
            text = text_of(m.get("content"))
            if text:
                blocks.append({"type": "text", "text": text})
            for call_id, name, arguments in tool_calls_of(m, i):
                blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": arguments})
        elif role == "tool":
            call_id = tool_result_id(m, i)
            role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": call_id,
                    "content": text_of(m.get("content")),
                }
            ]
        else:
            raise ProviderError(CLIENT_ERROR, f"messages[{i}].role: unsupported role {role!r}")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


class AnthropicAdapter:
    family = FAMILY

    def prepare(self, target: Target) -> Prepared:
        headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION}
        endpoint = target.endpoint.rstrip("/")
        url = join_url(endpoint, "/messages" if endpoint.endswith("/v1") else "/v1/messages")
        return Prepared(
            url,
            url,
            headers,
            {**headers, "Accept": "text/event-stream"},
            target.model,
            target.api_key,
        )

    def encode(self, req: ChatRequest, model: str, stream: bool) -> bytes:
        return orjson.dumps(self.message(req, model, stream))

    def message(self, req: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
        """The Messages request body (before serialisation: Vertex AI moves ``model``)."""
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": translate_messages(req.messages, _thinking_blocks(req.anthropic)),
        }
        for name in _PASSTHROUGH:
            if name in req.anthropic:
                body[name] = req.anthropic[name]
        if req.stop:
            body["stop_sequences"] = req.stop
        system = system_text(req.messages)
        if system:
            body["system"] = system
        if req.tools:
            body["tools"] = _TOOLS.get(req.tools)
            choice = _tool_choice(req.tool_choice)
            if choice is not None:
                body["tool_choice"] = choice
        if req.temperature is not None:
            body["temperature"] = min(req.temperature, 1.0)
        if req.options:
            _put_options(body, translate(req.options, OPTIONS, FAMILY), bool(req.tools))
        if stream:
            body["stream"] = True
        return body

    def decode(self, body: bytes) -> ChatResult:
        try:
            obj = orjson.loads(body)
            texts: list[str] = []
            calls: list[dict[str, Any]] = []
            thinking: list[dict[str, Any]] = []
            for block in obj["content"]:
                if block["type"] in _THINKING:
                    thinking.append(block)
                elif block["type"] == "text":
                    texts.append(block["text"])
                elif block["type"] == "tool_use":
                    calls.append(
                        openai_call(
                            block["id"],
                            block["name"],
                            orjson.dumps(block.get("input") or {}).decode(),
                        )
                    )
            stop = obj.get("stop_reason") or "end_turn"
            usage = obj.get("usage") or {}
            prompt = _input_tokens(usage)
            completion = int(usage.get("output_tokens") or 0)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise bad_response(FAMILY, f"{type(exc).__name__}: {exc}") from None
        content = "".join(texts)
        if stop == "refusal" and not content and not calls:
            raise ProviderError(
                CONTENT_FILTER, f"{FAMILY}: the model refused (stop_reason refusal)"
            )
        return ChatResult(
            content, calls, _STOP.get(stop, "stop"), prompt, completion, thinking=thinking
        )

    def assembler(self) -> AnthropicStream:
        return AnthropicStream()


def _thinking_blocks(native: dict[str, Any]) -> dict[int, list[dict[str, Any]]] | None:
    blocks = native.get("blocks")
    return {int(i): list(b) for i, b in blocks} if blocks else None


def _input_tokens(usage: dict[str, Any]) -> int:
    return (
        int(usage.get("input_tokens") or 0)
        + int(usage.get("cache_creation_input_tokens") or 0)
        + int(usage.get("cache_read_input_tokens") or 0)
    )


class AnthropicStream:
    __slots__ = ("_blocks", "_completion", "_prompt", "_stop", "_thinking", "done", "started")

    def __init__(self) -> None:
        self.started = False
        self.done = False
        self._blocks: dict[int, list[Any]] = {}  # index -> [id, name, [json pieces]]
        self._thinking: dict[int, dict[str, Any]] = {}  # index -> the block being streamed
        self._stop = "end_turn"
        self._prompt = 0
        self._completion = 0

    def feed(self, data: bytes) -> list[StreamEvent]:
        try:
            ev = orjson.loads(data)
            etype = ev["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise bad_response(FAMILY, f"stream event is not valid: {data[:80]!r}") from None
        if etype == "content_block_delta":
            delta = ev.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text")
                if text:
                    self.started = True
                    return [TextDelta(text)]
            elif dtype in ("thinking_delta", "signature_delta"):
                thinking = self._thinking.get(ev.get("index", 0))
                if thinking is not None:
                    key = "thinking" if dtype == "thinking_delta" else "signature"
                    thinking[key] = thinking.get(key, "") + str(delta.get(key) or "")
            elif dtype == "input_json_delta":
                block = self._blocks.get(ev.get("index", 0))
                if block is not None:
                    block[2].append(delta.get("partial_json") or "")
            return []
        if etype == "content_block_start":
            start: dict[str, Any] = ev.get("content_block") or {}
            if start.get("type") in _THINKING:
                self.started = True
                self._thinking[ev.get("index", 0)] = dict(start)
            elif start.get("type") == "tool_use":
                self.started = True
                self._blocks[ev.get("index", 0)] = [start.get("id", ""), start.get("name", ""), []]
            return []
        if etype == "content_block_stop":
            thought = self._thinking.pop(ev.get("index", 0), None)
            if thought is not None:
                return [ThinkingEvent(thought)]
            tool = self._blocks.pop(ev.get("index", 0), None)
            if tool is None:
                return []
            return [ToolCallEvent(openai_call(tool[0], tool[1], "".join(tool[2]) or "{}"))]
        if etype == "message_start":
            self._prompt = _input_tokens((ev.get("message") or {}).get("usage") or {})
        elif etype == "message_delta":
            self._stop = (ev.get("delta") or {}).get("stop_reason") or self._stop
            usage = ev.get("usage") or {}
            self._completion = int(usage.get("output_tokens") or self._completion)
        elif etype == "message_stop":
            self.done = True
        elif etype == "error":
            err = ev.get("error") or {}
            status = _OVERLOAD_STATUS.get(str(err.get("type")), 500)
            raise classify_status(FAMILY, status, data, {}, None)
        return []

    def at_eof(self) -> list[StreamEvent]:
        if not self.done:
            raise eof_error(FAMILY, self.started)
        if self._stop == "refusal" and not self.started:
            raise ProviderError(
                CONTENT_FILTER, f"{FAMILY}: the model refused (stop_reason refusal)"
            )
        return [StreamEnd(_STOP.get(self._stop, "stop"), self._prompt, self._completion)]
