"""Amazon Bedrock Converse adapter: OpenAI-shaped conversations to Converse messages and back.

Bedrock serves every model family it hosts (Anthropic, Meta, Mistral, Amazon
Nova, Cohere...) through one API, Converse (``POST
{endpoint}/model/{modelId}/converse``) and ConverseStream (``.../converse-stream``,
answered as an AWS binary event stream: :mod:`.bedrock_eventstream`). The
endpoint is ``https://bedrock-runtime.{region}.amazonaws.com`` with the
model's region (``us-east-1`` when it names none); the model id (or an
inference-profile ARN) is percent-encoded into the path. Authentication is
:mod:`.bedrock_auth`'s.

Out: system and developer text becomes ``system: [{"text"}]``; user text and
``data:`` images become ``text`` and ``image`` blocks (Bedrock takes no image
URLs); assistant tool calls become ``toolUse`` blocks (``input`` an object),
each OpenAI ``tool`` message a ``toolResult`` block in a user turn, and
consecutive same-role turns are merged, as Converse requires alternating
roles. Ids go through :func:`~.common.fit_id` on both sides. The budget,
temperature, ``top_p`` and stop sequences go in ``inferenceConfig``; tools in
``toolConfig`` (``toolSpec`` with ``inputSchema.json``) with ``toolChoice``
``any`` for ``required`` and ``tool`` for a named function. Converse has no
"none" choice: with ``tool_choice: "none"`` the tools are left out, unless
the conversation already holds tool blocks (Bedrock then requires
``toolConfig``), in which case the model may choose. ``response_format``
``json_schema`` (and JSON mode, as ``{"type": "object"}``) becomes
``outputConfig.textFormat`` (Bedrock's structured output; the schema goes as
a JSON string); ``reasoning_effort`` goes in ``outputConfig.effort``.

In: ``text`` and ``toolUse`` blocks; ``stopReason`` ``end_turn`` and
``stop_sequence`` -> stop, ``max_tokens`` and ``model_context_window_exceeded``
-> length, ``tool_use`` -> tool_calls, ``guardrail_intervened`` and
``content_filtered`` -> a CONTENT_FILTER error (a guardrail's answer is its
canned message, not the model's), ``malformed_model_output`` and
``malformed_tool_use`` -> BAD_RESPONSE (another model may do better). Usage
is ``inputTokens`` (plus cache reads and writes) and ``outputTokens``.

The stream's events are ``messageStart``, ``contentBlockStart`` (a
``toolUse`` with id and name), ``contentBlockDelta`` (``text``, or a
``toolUse.input`` JSON piece), ``contentBlockStop`` (a tool call is emitted
whole there), ``messageStop`` (``stopReason``) and last ``metadata``
(``usage``); an exception event (``throttlingException``...) is classified
as the HTTP error of the same name would be.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from skyroute.router.providers.bedrock_auth import region_of
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
from skyroute.router.providers.errors import aws_error, bad_response, eof_error
from skyroute.router.providers.options import IGNORE, Table, json_schema_of, merge, to, translate
from skyroute.router.providers.types import (
    BAD_RESPONSE,
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

FAMILY = "bedrock"
#: The public endpoint; ``{region}`` is the model's region.
ENDPOINT = "https://bedrock-runtime.{region}.amazonaws.com"
_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "malformed_model_output": "malformed",
    "malformed_tool_use": "malformed",
}
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
# The exception events of ConverseStream, as the HTTP errors of the same name.
_STREAM_EXCEPTIONS = {
    "internalServerException": "InternalServerException",
    "modelStreamErrorException": "ModelStreamErrorException",
    "validationException": "ValidationException",
    "throttlingException": "ThrottlingException",
    "serviceUnavailableException": "ServiceUnavailableException",
}


def _text_format(fmt: Any) -> list[tuple[str, Any]]:
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return []
    schema = json_schema_of(fmt) or {"type": "object"}
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        spec = {}
    definition: dict[str, Any] = {"schema": orjson.dumps(schema).decode()}
    if spec.get("name"):
        definition["name"] = str(spec["name"])
    if spec.get("description"):
        definition["description"] = str(spec["description"])
    return [
        (
            "outputConfig.textFormat",
            {"type": "json_schema", "structure": {"jsonSchema": definition}},
        )
    ]


# Chat Completions parameters as Converse takes them (the rest are refused: .options).
OPTIONS: Table = {
    "top_p": to("inferenceConfig.topP"),
    "response_format": _text_format,
    # Bedrock's effort levels are OpenAI's names (low, medium, high, xhigh; and max);
    # "minimal" is the lowest it has, "none" leaves the model's default.
    "reasoning_effort": lambda effort: (
        []
        if effort == "none"
        else [("outputConfig.effort", "low" if effort == "minimal" else effort)]
    ),
    "user": IGNORE,
    "metadata": IGNORE,
    "service_tier": IGNORE,
    "store": IGNORE,
}


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        fn = function_of(tool, f"tools[{i}]")
        spec: dict[str, Any] = {
            "name": fn["name"],
            "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}},
        }
        if fn.get("description"):
            spec["description"] = fn["description"]
        out.append({"toolSpec": spec})
    return out


_TOOLS = TranslationCache(_tools)


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None or choice in ("auto", "none"):
        return None
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"tool": {"name": choice["function"].get("name")}}
    raise ProviderError(CLIENT_ERROR, f"tool_choice: unsupported value {choice!r}")


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and part.get("text"):
            blocks.append({"text": part["text"]})
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            media, _, data = (
                url[5:].partition(";base64,") if url.startswith("data:") else ("", "", "")
            )
            fmt = _IMAGE_FORMATS.get(media)
            if fmt is None or not data:
                raise ProviderError(
                    CLIENT_ERROR,
                    f"{where}: the bedrock family takes images only inline, as data: URLs "
                    f"of {', '.join(_IMAGE_FORMATS)}",
                )
            blocks.append({"image": {"format": fmt, "source": {"bytes": data}}})
        elif part.get("type") != "text":
            raise unsupported_part(part, FAMILY)
    return blocks


def translate_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """OpenAI messages (system ones excluded) to Converse turns, and whether any is a tool block."""
    turns: list[dict[str, Any]] = []
    has_tools = False
    for i, m in enumerate(messages):
        role = m.get("role")
        if role in ("system", "developer"):
            continue
        if role == "user":
            blocks = _user_blocks(m.get("content"), f"messages[{i}].content")
        elif role == "assistant":
            text = text_of(m.get("content"))
            blocks = [{"text": text}] if text else []
            for call_id, name, arguments in tool_calls_of(m, i):
                has_tools = True
                blocks.append({"toolUse": {"toolUseId": call_id, "name": name, "input": arguments}})
        elif role == "tool":
            call_id = tool_result_id(m, i)
            role = "user"
            has_tools = True
            text = text_of(m.get("content"))
            blocks = [
                {
                    "toolResult": {
                        "toolUseId": call_id,
                        "content": [{"text": text}] if text else [{"json": {}}],
                    }
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
    return turns, has_tools


def model_url(endpoint: str, model: str, method: str) -> str:
    """``{endpoint}/model/{model id, percent-encoded}/{method}``."""
    return join_url(endpoint, f"/model/{quote(model, safe='')}/{method}")


class BedrockAdapter:
    family = FAMILY

    def prepare(self, target: Target) -> Prepared:
        endpoint = target.endpoint.replace("{region}", region_of(target))
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        return Prepared(
            model_url(endpoint, target.model, "converse"),
            model_url(endpoint, target.model, "converse-stream"),
            headers,
            {"Content-Type": "application/json", "Accept": "application/vnd.amazon.eventstream"},
            target.model,
            target.api_key,
        )

    def encode(self, req: ChatRequest, model: str, stream: bool) -> bytes:
        messages, has_tool_blocks = translate_messages(req.messages)
        body: dict[str, Any] = {"messages": messages}
        system = system_text(req.messages)
        if system:
            body["system"] = [{"text": system}]
        config: dict[str, Any] = {}
        if req.max_tokens is not None:
            config["maxTokens"] = req.max_tokens
        if req.temperature is not None:
            config["temperature"] = req.temperature
        if req.stop:
            config["stopSequences"] = req.stop
        if config:
            body["inferenceConfig"] = config
        if req.tools and (req.tool_choice != "none" or has_tool_blocks):
            tool_config: dict[str, Any] = {"tools": _TOOLS.get(req.tools)}
            choice = _tool_choice(req.tool_choice)
            if choice is not None:
                tool_config["toolChoice"] = choice
            body["toolConfig"] = tool_config
        if req.options:
            merge(body, translate(req.options, OPTIONS, FAMILY))
        return orjson.dumps(body)

    def decode(self, body: bytes) -> ChatResult:
        try:
            obj = orjson.loads(body)
            texts: list[str] = []
            calls: list[dict[str, Any]] = []
            for block in obj["output"]["message"]["content"]:
                if "text" in block:
                    texts.append(block["text"])
                elif "toolUse" in block:
                    use = block["toolUse"]
                    calls.append(
                        openai_call(
                            use["toolUseId"],
                            use["name"],
                            orjson.dumps(use.get("input") or {}).decode(),
                        )
                    )
            stop = str(obj.get("stopReason") or "end_turn")
            prompt, completion = _usage(obj.get("usage") or {})
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise bad_response(FAMILY, f"{type(exc).__name__}: {exc}") from None
        finish = _finish(stop, started=False)
        return ChatResult("".join(texts), calls, finish, prompt, completion)

    def assembler(self) -> BedrockStream:
        return BedrockStream()


def _finish(stop: str, started: bool) -> str:
    """The OpenAI finish reason for a stopReason, or the error it stands for."""
    finish = _STOP.get(stop, "stop")
    if finish == "content_filter" and not started:
        raise ProviderError(CONTENT_FILTER, f"{FAMILY}: answer blocked (stopReason {stop})")
    if finish == "malformed":
        if not started:
            raise ProviderError(BAD_RESPONSE, f"{FAMILY}: the model's output was unusable ({stop})")
        return "stop"
    return finish


def _usage(usage: dict[str, Any]) -> tuple[int, int]:
    prompt = (
        int(usage.get("inputTokens") or 0)
        + int(usage.get("cacheReadInputTokens") or 0)
        + int(usage.get("cacheWriteInputTokens") or 0)
    )
    return prompt, int(usage.get("outputTokens") or 0)


class BedrockStream:
    __slots__ = ("_blocks", "_completion", "_prompt", "_stop", "done", "started")

    def __init__(self) -> None:
        self.started = False
        self.done = False  # metadata, the last event, arrived
        self._blocks: dict[int, list[Any]] = {}  # index -> [id, name, [input pieces]]
        self._stop: str | None = None
        self._prompt = 0
        self._completion = 0

    def feed(self, data: bytes) -> list[StreamEvent]:
        try:
            obj = orjson.loads(data)
            ((etype, ev),) = obj.items()
            if not isinstance(ev, dict):
                raise TypeError("event is not an object")
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError):
            raise bad_response(FAMILY, f"stream event is not valid: {data[:80]!r}") from None
        if etype == "contentBlockDelta":
            delta = ev.get("delta") or {}
            text = delta.get("text")
            if text:
                self.started = True
                return [TextDelta(text)]
            piece = (delta.get("toolUse") or {}).get("input")
            block = self._blocks.get(ev.get("contentBlockIndex", 0))
            if block is not None and piece:
                block[2].append(piece)
            return []
        if etype == "contentBlockStart":
            use = (ev.get("start") or {}).get("toolUse")
            if isinstance(use, dict):
                self.started = True
                self._blocks[ev.get("contentBlockIndex", 0)] = [
                    use.get("toolUseId", ""),
                    use.get("name", ""),
                    [],
                ]
            return []
        if etype == "contentBlockStop":
            tool = self._blocks.pop(ev.get("contentBlockIndex", 0), None)
            if tool is None:
                return []
            return [ToolCallEvent(openai_call(tool[0], tool[1], "".join(tool[2]) or "{}"))]
        if etype == "messageStop":
            self._stop = str(ev.get("stopReason") or "end_turn")
        elif etype == "metadata":
            self._prompt, self._completion = _usage(ev.get("usage") or {})
            self.done = True
        elif etype in _STREAM_EXCEPTIONS:
            raise aws_error(FAMILY, _STREAM_EXCEPTIONS[etype], str(ev.get("message", "")))
        elif etype == "error":
            raise aws_error(FAMILY, str(ev.get("code") or "InternalServerException"), str(ev))
        return []

    def at_eof(self) -> list[StreamEvent]:
        if self._stop is None:
            raise eof_error(FAMILY, self.started)
        return [StreamEnd(_finish(self._stop, self.started), self._prompt, self._completion)]
