"""What the three wire modules share: the parsed request and the invalid-request error.

Each provider family (:mod:`.openai_wire`, :mod:`.anthropic_wire`,
:mod:`.gemini_wire`) parses its own request JSON into a :class:`SimRequest`,
the little the engine needs (model, stream flag, token budget, prompt size
and hash, which tool to call if any), and renders an
:class:`~skyroute.simulator.answers.Answer` or an error kind back in its own
format. Request validation mirrors the real APIs where a routing bug would
show up: a tool result whose id matches no earlier tool call is rejected with
the provider's own wording, because translating tool-call ids between
families correctly is exactly what the router's adapters must get right.

A family module exposes the :class:`Family` protocol below; the server holds
one instance per family and never branches on the family otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from skyroute.families import Family as FamilyName
from skyroute.simulator.answers import Answer


class WireError(Exception):
    """The request is invalid for this family: a 400 in the family's error format."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(slots=True)
class SimRequest:
    model: str
    stream: bool
    max_tokens: int | None
    prompt_chars: int
    prompt_text: str  # all text of the conversation, for the answer's hash
    tool_name: str | None  # the tool to call, or None to answer with text
    tool_schema: Any
    include_usage: bool = False
    thinking: bool = False  # Anthropic extended thinking asked for: answer with a signed block
    # JSON mode: the schema the answer must satisfy ({} for any JSON object), or None.
    json_schema: dict[str, Any] | None = None
    # Stop sequences (the text is cut before the first one), the seed, the number of
    # choices and the log probabilities asked for (OpenAI: logprobs, top_logprobs).
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(slots=True)
class Rendered:
    """A complete HTTP answer: status, extra headers, body bytes."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class StreamFrames:
    """An SSE answer cut where the server paces it.

    ``head`` goes out at once (before the first token), each of ``pieces``
    after its share of output time, ``tail`` at the end. ``piece_tokens``
    says how many output tokens each piece stands for. ``headers`` are the
    response's (None: SSE's; Bedrock's binary event stream has its own type).
    """

    head: bytes
    pieces: list[bytes]
    tail: bytes
    piece_tokens: list[int]
    headers: dict[str, str] | None = None


@dataclass(slots=True)
class ErrorContext:
    """What an error body may mention (the real providers quote these numbers)."""

    model: str
    stream: bool
    retry_after_s: float
    prompt_tokens: int
    context_window: int


class Family(Protocol):
    @property
    def name(self) -> FamilyName: ...

    def api_key(self, request: web.Request) -> str | None: ...

    def check_headers(self, request: web.Request) -> None: ...

    def parse(self, body: Any, path_model: str | None, stream_path: bool) -> SimRequest: ...

    def render(self, req: SimRequest, answer: Answer) -> bytes: ...

    def stream(self, req: SimRequest, answer: Answer, chunk_tokens: int) -> StreamFrames: ...

    def error(self, kind: str, ctx: ErrorContext) -> Rendered: ...

    def invalid(self, message: str, status: int = 400) -> Rendered: ...


def text_of(content: Any) -> str:
    """Flatten a message content (string, or a list of text-bearing parts) to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out: list[str] = []
        for part in content:
            if isinstance(part, dict):
                t = part.get("text")
                if isinstance(t, str):
                    out.append(t)
                elif "content" in part:  # nested tool_result content
                    out.append(text_of(part["content"]))
            elif isinstance(part, str):
                out.append(part)
        return "\n".join(out)
    return ""


def bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


def int_field(body: dict[str, Any], key: str, where: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WireError(f"{where}{key}: expected a positive integer, got {value!r}")
    return value


def stop_list(value: Any, where: str, most: int) -> tuple[str, ...]:
    """Stop sequences as sent: a string or a list of at most ``most`` strings (or none)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if (
        not isinstance(value, list)
        or len(value) > most
        or not all(isinstance(v, str) for v in value)
    ):
        raise WireError(f"Invalid '{where}': expected a string or at most {most} strings.")
    return tuple(value)


def retry_after_header(seconds: float) -> dict[str, str]:
    """Retry-After in seconds (fractional when time is scaled) plus OpenAI's ms variant."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".") or "0"
    return {"retry-after": text, "retry-after-ms": str(round(seconds * 1000))}


def piece_tokens(total: int, pieces: int, chunk: int) -> list[int]:
    """How many output tokens each of ``pieces`` text chunks stands for."""
    if pieces == 0:
        return []
    out = [chunk] * pieces
    out[-1] = max(1, total - chunk * (pieces - 1))
    return out


def sse(event: str, data: bytes) -> bytes:
    """One named SSE event (the Anthropic framing)."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
