"""Pieces every family adapter shares: the adapter protocol and translation helpers.

An adapter is three pure translations (request out, answer in, stream
events in) plus a :class:`Prepared` per target holding the URLs and the
prebuilt header dicts, so a request allocates only its body. The transport
(:mod:`.transport`) does the I/O, deadlines and error classification the
same way for every family. How a family authenticates (:class:`AuthScheme`)
and frames a stream (:class:`Framing`) are declared per family in
:mod:`.registry`, not assumed: a key in a header is one scheme, a request
signature (SigV4) another; SSE is one framing, a binary event stream another.

Tool-call ids are the fragile part of cross-family fallback: a conversation
started on one provider carries that provider's ids into the next. Ids are
kept as they are whenever the destination accepts them, and otherwise
rewritten by a deterministic function of the original id (:func:`fit_id`),
so the rewritten tool call and its tool result still match each other.
"""

from __future__ import annotations

import re
import secrets
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from skyroute.router.providers.sse import SSEDecoder
from skyroute.router.providers.types import (
    CLIENT_ERROR,
    ChatRequest,
    ChatResult,
    ProviderError,
    StreamEvent,
    Target,
)

_ID_OK = re.compile(r"[A-Za-z0-9_-]{1,40}")
_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_CACHE_LIMIT = 512


# (url, headers, body) -> the headers to send: a new dict, the argument is left alone.
# Awaited, so a scheme whose credentials expire can refresh them off the event loop.
Signer = Callable[[str, dict[str, str], bytes], Awaitable[dict[str, str]]]


class Framing(Protocol):
    """Cuts a response byte stream into the payloads an :class:`Assembler` reads."""

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes as they arrived; return the payloads they completed."""
        ...

    def close(self) -> list[bytes]:
        """End of stream: the payload still pending, if any."""
        ...


class AuthScheme(Protocol):
    """How a family proves who is calling, given the target (its key, auth method, region)."""

    def headers(self, target: Target) -> dict[str, str]:
        """Headers fixed for the target (built once per target)."""
        ...

    def signer(self, target: Target) -> Signer | None:
        """Per-request signing (a signature over method, URL and body), or None."""
        ...


@dataclass(slots=True, frozen=True)
class Prepared:
    """Per-target constants: where to send, with which headers, how to read a stream."""

    url: str
    stream_url: str
    headers: dict[str, str]
    stream_headers: dict[str, str]
    model: str
    api_key: str | None
    # Set from the family's declaration by the registry (see registry.prepare).
    framing: Callable[[], Framing] = SSEDecoder
    sign: Signer | None = None
    # The server answers a request it cannot validate with a 500 (quirk errors-as-500).
    invalid_as_500: bool = False
    # A second request in flight cuts the first short: send one at a time per endpoint.
    one_at_a_time: bool = False


class Assembler(Protocol):
    """Turns one family's SSE data payloads into StreamEvents."""

    started: bool  # a token or tool call has arrived (ends the first-token wait)
    done: bool  # the terminal event arrived; nothing more needs reading

    def feed(self, data: bytes) -> list[StreamEvent]: ...

    def at_eof(self) -> list[StreamEvent]:
        """The stream ended: the final events, or raise if it ended too early."""
        ...


class Adapter(Protocol):
    family: str

    def prepare(self, target: Target) -> Prepared:
        """URLs and the family's fixed headers (no credentials: the registry adds those)."""
        ...

    def encode(self, req: ChatRequest, model: str, stream: bool) -> bytes: ...

    def decode(self, body: bytes) -> ChatResult: ...

    def assembler(self) -> Assembler: ...


def fit_id(call_id: str) -> str:
    """An id every family accepts ([A-Za-z0-9_-], at most 40 chars), stable per input."""
    if _ID_OK.fullmatch(call_id):
        return call_id
    digest = f"{zlib.crc32(call_id.encode()):08x}"
    return (_ID_BAD_CHARS.sub("_", call_id)[:29] + "_" + digest) if call_id else "call_" + digest


def new_call_id() -> str:
    """A fresh OpenAI-style tool-call id for families that do not send one."""
    return "call_" + secrets.token_hex(12)


def text_of(content: Any) -> str:
    """The text of an OpenAI message content (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return str(content)


def unsupported_part(part: dict[str, Any], family: str) -> ProviderError:
    """A content part a family's wire has no place for (``input_audio``, ``file``...):
    refused as the client's error, never left out of the request in silence."""
    return ProviderError(
        CLIENT_ERROR,
        f"content part type {str(part.get('type'))[:64]!r}: not supported by the {family} "
        "family; remove it",
        400,
    )


def parse_arguments(arguments: Any, where: str) -> dict[str, Any]:
    """A tool call's ``arguments`` JSON string as an object, or a CLIENT_ERROR naming where."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or arguments == "":
        return {}
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        raise ProviderError(CLIENT_ERROR, f"{where}: arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise ProviderError(CLIENT_ERROR, f"{where}: arguments must be a JSON object")
    return value


def tool_calls_of(message: dict[str, Any], i: int) -> list[tuple[str, str, dict[str, Any]]]:
    """An assistant message's tool calls as (id fitted by :func:`fit_id`, name, arguments)."""
    out = []
    for j, call in enumerate(message.get("tool_calls") or ()):
        fn = call.get("function") or {}
        where = f"messages[{i}].tool_calls[{j}].function"
        out.append(
            (
                fit_id(str(call.get("id", ""))),
                str(fn.get("name", "")),
                parse_arguments(fn.get("arguments"), where),
            )
        )
    return out


def tool_result_id(message: dict[str, Any], i: int) -> str:
    """A ``tool`` message's ``tool_call_id``, fitted (a CLIENT_ERROR naming it if missing)."""
    if not message.get("tool_call_id"):
        raise ProviderError(CLIENT_ERROR, f"messages[{i}].tool_call_id is missing")
    return fit_id(str(message["tool_call_id"]))


def function_of(tool: Any, where: str) -> dict[str, Any]:
    """The ``function`` object of an OpenAI tool definition, validated."""
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise ProviderError(
            CLIENT_ERROR, f"{where}: expected {{'type': 'function', 'function': {{'name': ...}}}}"
        )
    return fn


def openai_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


class TranslationCache:
    """Memoises tool-list translations keyed by their JSON bytes (tools repeat a lot)."""

    __slots__ = ("_entries", "_translate")

    def __init__(self, translate: Callable[[list[dict[str, Any]]], Any]) -> None:
        self._translate = translate
        self._entries: dict[bytes, Any] = {}

    def get(self, tools: list[dict[str, Any]]) -> Any:
        key = orjson.dumps(tools)
        hit = self._entries.get(key)
        if hit is None:
            hit = self._translate(tools)
            if len(self._entries) >= _CACHE_LIMIT:
                self._entries.clear()
            self._entries[key] = hit
        return hit


def join_url(endpoint: str, path: str) -> str:
    return endpoint.rstrip("/") + path


def system_text(messages: list[dict[str, Any]]) -> str:
    """All system/developer message text, joined (Anthropic and Gemini take it apart)."""
    return "\n\n".join(
        text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
    )
