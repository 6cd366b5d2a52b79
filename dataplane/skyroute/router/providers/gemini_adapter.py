"""Gemini generateContent adapter: OpenAI-shaped conversations to contents/parts and back.

Out: roles become ``user`` and ``model``; system and developer text goes to
``systemInstruction``; assistant tool calls become ``functionCall`` parts
(``args`` as an object); an OpenAI ``tool`` message becomes a
``functionResponse`` part in a user turn. Gemini matches responses to calls
by function *name*, so the name is looked up from the tool-call id in the
earlier assistant turn (an unknown id is a CLIENT_ERROR naming the message),
and consecutive same-role turns are merged so the responses to parallel
calls share one turn, as Gemini requires. Tool parameter schemas are pruned
to the OpenAPI subset Gemini accepts (no ``additionalProperties``,
``$schema``...; types upper-cased as the ``Type`` enum spells them;
``["string", "null"]`` becomes ``nullable``), memoised per
tool list.

In: Gemini sends no tool-call ids, so a fresh ``call_...`` id is minted for
each ``functionCall``, which is what lets a conversation continue on another
family. ``finishReason`` STOP maps to stop or tool_calls, MAX_TOKENS to
length, the safety reasons to content_filter; a ``promptFeedback.blockReason``
is a CONTENT_FILTER error. The stream has no sentinel: it is complete when a
chunk with ``finishReason`` has arrived and the body ends.
"""

from __future__ import annotations

from typing import Any

import orjson

from skyroute.router.providers.common import (
    Prepared,
    TranslationCache,
    function_of,
    join_url,
    new_call_id,
    openai_call,
    parse_arguments,
    system_text,
    text_of,
    unsupported_part,
)
from skyroute.router.providers.errors import bad_response, classify_status, eof_error
from skyroute.router.providers.options import (
    IGNORE,
    THINKING_BUDGET,
    Table,
    json_schema_of,
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
    ToolCallEvent,
)

FAMILY = "gemini"
_FILTER_REASONS = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
)
_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)


def clean_schema(schema: Any) -> Any:
    """A JSON Schema pruned to the subset Gemini's ``parameters`` accepts."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: clean_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = clean_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [clean_schema(v) for v in value]
        elif key == "type" and isinstance(value, list):
            kinds = [str(k) for k in value if k != "null"]
            out[key] = (kinds[0] if kinds else "null").upper()
            if "null" in value:
                out["nullable"] = True
        elif key == "type":
            out[key] = str(value).upper()
        else:
            out[key] = value
    return out


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    decls = []
    for i, tool in enumerate(tools):
        fn = function_of(tool, f"tools[{i}]")
        decl: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if params and (params.get("properties") or params.get("type") != "object"):
            decl["parameters"] = clean_schema(params)
        decls.append(decl)
    return [{"functionDeclarations": decls}]


_TOOLS = TranslationCache(_tools)


def _response_format(fmt: Any) -> list[tuple[str, Any]]:
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return []
    out: list[tuple[str, Any]] = [("generationConfig.responseMimeType", "application/json")]
    schema = json_schema_of(fmt)
    if schema is not None:
        out.append(("generationConfig.responseJsonSchema", schema))
    return out


# Chat Completions parameters as Gemini takes them (the rest are refused: .options).
OPTIONS: Table = {
    "top_p": to("generationConfig.topP"),
    "seed": to("generationConfig.seed"),
    "presence_penalty": to("generationConfig.presencePenalty"),
    "frequency_penalty": to("generationConfig.frequencyPenalty"),
    "response_format": _response_format,
    "reasoning_effort": lambda effort: [
        ("generationConfig.thinkingConfig", {"thinkingBudget": THINKING_BUDGET.get(effort, -1)})
    ],
    "user": IGNORE,
    "metadata": IGNORE,
    "service_tier": IGNORE,
    "store": IGNORE,
}


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None or choice == "auto":
        return None
    if choice == "none":
        mode: dict[str, Any] = {"mode": "NONE"}
    elif choice == "required":
        mode = {"mode": "ANY"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        mode = {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name")]}
    else:
        raise ProviderError(CLIENT_ERROR, f"tool_choice: unsupported value {choice!r}")
    return {"functionCallingConfig": mode}


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[dict[str, Any]] = []
    for part in content or ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            parts.append({"text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                parts.append({"inlineData": {"mimeType": media, "data": data}})
            else:
                parts.append({"fileData": {"fileUri": url}})
        else:
            raise unsupported_part(part, FAMILY)
    return parts


def _response_object(content: Any) -> dict[str, Any]:
    text = text_of(content)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def translate_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages (system ones excluded) to Gemini ``contents``."""
    names: dict[str, str] = {}  # tool-call id -> function name
    contents: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role in ("system", "developer"):
            continue
        if role == "user":
            parts = _user_parts(m.get("content"))
        elif role == "assistant":
            role = "model"
            parts = []
            text = text_of(m.get("content"))
            if text:
                parts.append({"text": text})
            for j, call in enumerate(m.get("tool_calls") or ()):
                fn = call.get("function") or {}
                name = str(fn.get("name", ""))
                names[str(call.get("id", ""))] = name
                parts.append(
                    {
                        "functionCall": {
                            "name": name,
                            "args": parse_arguments(
                                fn.get("arguments"), f"messages[{i}].tool_calls[{j}].function"
                            ),
                        }
                    }
                )
        elif role == "tool":
            call_id = str(m.get("tool_call_id", ""))
            if call_id not in names:
                raise ProviderError(
                    CLIENT_ERROR,
                    f"messages[{i}].tool_call_id {call_id!r} "
                    "matches no earlier assistant tool call",
                )
            role = "user"
            parts = [
                {
                    "functionResponse": {
                        "name": names[call_id],
                        "response": _response_object(m.get("content")),
                    }
                }
            ]
        else:
            raise ProviderError(CLIENT_ERROR, f"messages[{i}].role: unsupported role {role!r}")
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


class GeminiAdapter:
    family = FAMILY

    def prepare(self, target: Target) -> Prepared:
        headers = {"Content-Type": "application/json"}
        endpoint = target.endpoint.rstrip("/")
        if not endpoint.endswith(("/v1beta", "/v1")):
            endpoint += "/v1beta"
        base = join_url(endpoint, f"/models/{target.model}")
        return Prepared(
            base + ":generateContent",
            base + ":streamGenerateContent?alt=sse",
            headers,
            {**headers, "Accept": "text/event-stream"},
            target.model,
            target.api_key,
        )

    def encode(self, req: ChatRequest, model: str, stream: bool) -> bytes:
        body: dict[str, Any] = {"contents": translate_messages(req.messages)}
        system = system_text(req.messages)
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if req.tools:
            body["tools"] = _TOOLS.get(req.tools)
            config = _tool_config(req.tool_choice)
            if config is not None:
                body["toolConfig"] = config
        generation: dict[str, Any] = {}
        if req.max_tokens is not None:
            generation["maxOutputTokens"] = req.max_tokens
        if req.temperature is not None:
            generation["temperature"] = req.temperature
        if req.stop:
            generation["stopSequences"] = req.stop
        if generation:
            body["generationConfig"] = generation
        if req.options:
            merge(body, translate(req.options, OPTIONS, FAMILY))
        return orjson.dumps(body)

    def decode(self, body: bytes) -> ChatResult:
        try:
            obj = orjson.loads(body)
            _check_blocked(obj)
            candidate = obj["candidates"][0]
            texts, calls = _parts(candidate.get("content") or {})
            reason = candidate.get("finishReason") or "STOP"
            prompt, completion = _usage(obj.get("usageMetadata") or {})
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise bad_response(FAMILY, f"{type(exc).__name__}: {exc}") from None
        content = "".join(texts)
        finish = _finish(reason, bool(calls))
        if finish == "content_filter" and not content and not calls:
            raise ProviderError(CONTENT_FILTER, f"{FAMILY}: answer blocked (finishReason {reason})")
        return ChatResult(content, calls, finish, prompt, completion)

    def assembler(self) -> GeminiStream:
        return GeminiStream()


def _check_blocked(obj: dict[str, Any]) -> None:
    reason = (obj.get("promptFeedback") or {}).get("blockReason")
    if reason and not obj.get("candidates"):
        raise ProviderError(CONTENT_FILTER, f"{FAMILY}: prompt blocked (blockReason {reason})")


def _parts(content: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in content.get("parts") or ():
        if "text" in part and not part.get("thought"):
            texts.append(part["text"])
        call = part.get("functionCall")
        if call is not None:
            calls.append(
                openai_call(
                    call.get("id") or new_call_id(),
                    call["name"],
                    orjson.dumps(call.get("args") or {}).decode(),
                )
            )
    return texts, calls


def _finish(reason: str, has_calls: bool) -> str:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTER_REASONS:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def _usage(usage: dict[str, Any]) -> tuple[int, int]:
    completion = int(usage.get("candidatesTokenCount") or 0)
    completion += int(usage.get("thoughtsTokenCount") or 0)
    return int(usage.get("promptTokenCount") or 0), completion


class GeminiStream:
    __slots__ = ("_completion", "_has_calls", "_prompt", "_reason", "done", "started")

    def __init__(self) -> None:
        self.started = False
        self.done = False  # Gemini has no terminal event: the end of the body is it
        self._reason: str | None = None
        self._has_calls = False
        self._prompt = 0
        self._completion = 0

    def feed(self, data: bytes) -> list[StreamEvent]:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise bad_response(FAMILY, f"stream chunk is not JSON: {data[:80]!r}") from None
        if not isinstance(obj, dict):
            raise bad_response(FAMILY, "stream chunk is not an object")
        if "error" in obj:
            code = (obj["error"] or {}).get("code") if isinstance(obj["error"], dict) else None
            raise classify_status(FAMILY, code if isinstance(code, int) else 500, data, {}, None)
        if not self.started:
            _check_blocked(obj)
        usage = obj.get("usageMetadata")
        if usage:
            self._prompt, completion = _usage(usage)
            self._completion = completion or self._completion
        out: list[StreamEvent] = []
        for candidate in obj.get("candidates") or ():
            try:
                texts, calls = _parts(candidate.get("content") or {})
            except (KeyError, TypeError, AttributeError) as exc:
                raise bad_response(FAMILY, f"bad stream part: {exc}") from None
            for text in texts:
                if text:
                    self.started = True
                    out.append(TextDelta(text))
            for call in calls:
                self.started = True
                self._has_calls = True
                out.append(ToolCallEvent(call))
            if candidate.get("finishReason"):
                self._reason = candidate["finishReason"]
            break  # only the first candidate is used
        return out

    def at_eof(self) -> list[StreamEvent]:
        if self._reason is None:
            raise eof_error(FAMILY, self.started)
        finish = _finish(self._reason, self._has_calls)
        if finish == "content_filter" and not self.started:
            raise ProviderError(
                CONTENT_FILTER, f"{FAMILY}: answer blocked (finishReason {self._reason})"
            )
        return [StreamEnd(finish, self._prompt, self._completion)]
