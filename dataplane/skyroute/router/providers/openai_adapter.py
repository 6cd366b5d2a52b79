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
normal result whose finish reason is ``content_filter``. A stream that ends
without a usage report says so (``StreamEnd.reported``), and the router
charges it by estimate rather than as free.

Self-hosted servers that speak this format (vLLM, llama.cpp, TGI, Ollama:
the ``openai-compatible`` family) use the same codec bent by :class:`Quirks`:
the family's own defaults (the budget as ``max_tokens``, which every such
server knows and llama.cpp's servers need; tool-call ``arguments`` sent as
an object re-encoded as a string, a missing call id made up) plus what a
model's ``quirks`` declare (:data:`skyroute.families.Quirk`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from skyroute.router.providers.common import Prepared, fit_id, join_url, new_call_id, openai_call
from skyroute.router.providers.errors import bad_response, classify_status, eof_error
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

FAMILY = "openai"
_STREAM_OPTIONS = {"include_usage": True}


@dataclass(frozen=True, slots=True)
class Quirks:
    """Where a server differs from OpenAI's Chat Completions, and what the codec does about it.

    The defaults are OpenAI's own behaviour; :meth:`declared` turns a model's
    ``quirks`` (:data:`skyroute.families.Quirk` names) into fields.
    """

    max_tokens_field: str = "max_completion_tokens"  # where the budget goes
    stream_options: bool = True  # ask for the stream's usage (rejects-stream-options: no)
    null_content: bool = True  # assistant content may be null (rejects-null-content: "")
    several_choices: bool = True  # n > 1 is honoured (ignores-n: refused instead)
    # completion_tokens may exceed max_tokens (overcounts-completion): capped by the router
    overcounts: bool = False
    invalid_as_500: bool = False  # a request it cannot validate is a 500 (errors-as-500)
    one_at_a_time: bool = False  # a second request cuts the first (serves-one-at-a-time)
    lenient_calls: bool = False  # tool-call arguments as objects, calls without ids
    # A stream that ends without a finish_reason was cut, not finished (a server that
    # stops a stream early still sends [DONE]: llama-cpp-python interrupted).
    needs_finish: bool = False

    def declared(self, names: Iterable[str]) -> Quirks:
        """These quirks plus the named ones (names are the contract's, checked upstream)."""
        have = set(names)
        return replace(
            self,
            stream_options=self.stream_options and "rejects-stream-options" not in have,
            null_content=self.null_content and "rejects-null-content" not in have,
            several_choices=self.several_choices and "ignores-n" not in have,
            overcounts=self.overcounts or "overcounts-completion" in have,
            invalid_as_500=self.invalid_as_500 or "errors-as-500" in have,
            one_at_a_time=self.one_at_a_time or "serves-one-at-a-time" in have,
        )


#: What every self-hosted server of the openai-compatible family gets, before its own.
SELF_HOSTED = Quirks(max_tokens_field="max_tokens", lenient_calls=True, needs_finish=True)


def quirk_refuses(quirks: frozenset[str], options: Mapping[str, Any]) -> str | None:
    """The parameter a server with ``quirks`` cannot honour, or None (selection skips it)."""
    if "ignores-n" in quirks and options.get("n") not in (None, 1):
        return "n"
    return None


def _needs_fit(messages: list[dict[str, Any]], null_content: bool = True) -> bool:
    for m in messages:
        if not null_content and m.get("content") is None and m.get("role") == "assistant":
            return True
        tcid = m.get("tool_call_id")
        if isinstance(tcid, str) and len(tcid) > 40:
            return True
        for call in m.get("tool_calls") or ():
            if len(str(call.get("id", ""))) > 40:
                return True
    return False


def _fit_messages(
    messages: list[dict[str, Any]], null_content: bool = True
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if not null_content and m.get("content") is None and m.get("role") == "assistant":
            m = {**m, "content": ""}
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
    """The Chat Completions codec; families speaking it elsewhere override ``prepare``.

    ``family`` names it in errors; ``quirks`` bend it for a server that is not
    OpenAI (the openai-compatible family builds one per declared set of quirks).
    """

    family = FAMILY

    def __init__(self, family: str | None = None, quirks: Quirks | None = None) -> None:
        if family is not None:
            self.family = family
        self.quirks = quirks or Quirks()

    def with_quirks(self, names: Iterable[str]) -> OpenAIAdapter:
        """This codec for a model whose server has the named quirks (itself if none)."""
        quirks = self.quirks.declared(names)
        return self if quirks == self.quirks else OpenAIAdapter(self.family, quirks)

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
            invalid_as_500=self.quirks.invalid_as_500,
            one_at_a_time=self.quirks.one_at_a_time,
        )

    def encode(self, req: ChatRequest, model: str, stream: bool) -> bytes:
        q = self.quirks
        messages = (
            _fit_messages(req.messages, q.null_content)
            if _needs_fit(req.messages, q.null_content)
            else req.messages
        )
        body: dict[str, Any] = {"model": model, "messages": messages}
        if req.tools:
            body["tools"] = req.tools
            if req.tool_choice is not None:
                body["tool_choice"] = req.tool_choice
        if req.max_tokens is not None:
            body[q.max_tokens_field] = req.max_tokens
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.stop:
            body["stop"] = req.stop
        # Everything else as the client sent it, unknown parameters too (see .options).
        for name, value in req.options.items():
            body.setdefault(name, value)
        # Selection skips such a model (quirk_refuses); this is for a request sent anyway.
        if not q.several_choices and body.get("n") not in (None, 1):
            raise ProviderError(
                CLIENT_ERROR,
                f"n: {self.family} model {model!r} answers one choice only; send n: 1",
                400,
            )
        if stream:
            body["stream"] = True
            if q.stream_options:
                body["stream_options"] = _STREAM_OPTIONS
            else:
                body.pop("stream_options", None)
        return orjson.dumps(body)

    def decode(self, body: bytes) -> ChatResult:
        try:
            obj = orjson.loads(body)
            choice = obj["choices"][0]
            message = choice["message"]
            content = message.get("content") or ""
            lenient = self.quirks.lenient_calls
            calls = [
                openai_call(
                    (c.get("id") or new_call_id()) if lenient else c["id"],
                    c["function"]["name"],
                    _arguments(c["function"].get("arguments"), lenient),
                )
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
        return OpenAIStream(self.family, self.quirks)


def _arguments(value: Any, lenient: bool) -> str:
    """A tool call's ``arguments`` as the JSON string OpenAI sends (TGI sends an object)."""
    if lenient and value is not None and not isinstance(value, str):
        return orjson.dumps(value).decode()
    return str(value or "{}")


class OpenAIStream:
    __slots__ = (
        "_calls",
        "_completion",
        "_family",
        "_finish",
        "_finished",
        "_prompt",
        "_quirks",
        "_refused",
        "_reported",
        "done",
        "started",
    )

    def __init__(self, family: str = FAMILY, quirks: Quirks | None = None) -> None:
        self._family = family
        self._quirks = quirks or Quirks()
        self.started = False
        self.done = False
        self._calls: dict[int, list[Any]] = {}  # index -> [id, name, [argument pieces]]
        self._finish = "stop"
        self._finished = False
        self._prompt = 0
        self._completion = 0
        self._refused = False
        self._reported = False

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
            self._reported = True
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
                    slot[2].append(_arguments(fn["arguments"], self._quirks.lenient_calls))
            finish = choice.get("finish_reason")
            if finish:
                self._finish = finish
                self._finished = True
                out.extend(self._flush_calls())
        return out

    def _flush_calls(self) -> list[StreamEvent]:
        lenient = self._quirks.lenient_calls
        events: list[StreamEvent] = [
            ToolCallEvent(
                openai_call((cid or new_call_id()) if lenient else cid, name, "".join(args) or "{}")
            )
            for _, (cid, name, args) in sorted(self._calls.items())
        ]
        self._calls.clear()
        return events

    def at_eof(self) -> list[StreamEvent]:
        if not self.done or (self._quirks.needs_finish and not self._finished):
            raise eof_error(self._family, self.started)
        if not self.started and (self._refused or self._finish == "content_filter"):
            raise ProviderError(
                CONTENT_FILTER, f"{self._family}: answer withheld by the content filter"
            )
        out = self._flush_calls()
        out.append(
            StreamEnd(
                self._finish,
                self._prompt,
                self._completion,
                reported=self._reported,
                over_max=self._quirks.overcounts,
            )
        )
        return out
