"""The provider-neutral shapes that adapters translate to and from.

A request inside the router is kept in the OpenAI Chat Completions shape
(messages as dicts with ``role``, ``content``, ``tool_calls`` and
``tool_call_id``; tools as ``{"type": "function", "function": {...}}``),
because that is what most clients send and it carries everything the other
wire formats need. Adapters translate it into the Anthropic Messages or
Gemini generateContent shape on the way out, and translate every answer back
into :class:`ChatResult` or a stream of :class:`StreamEvent` values.

Failures surface as :class:`ProviderError` with an ``error_class`` from a
small fixed vocabulary; the router's fallback logic looks only at that class,
never at provider-specific details.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The error classes an attempt can end with. The router decides retry and
# fallback from these alone.
TIMEOUT = "timeout"  # no answer (or no first byte) within the attempt's time
CONNECT = "connect"  # connection refused / reset before a response
RATE_LIMITED = "rate_limited"  # HTTP 429
SERVER_ERROR = "server_error"  # HTTP 5xx (and Anthropic 529 overloaded)
CLIENT_ERROR = "client_error"  # other 4xx: the request itself is wrong
CONTEXT_LENGTH = "context_length"  # prompt too long for this model
CONTENT_FILTER = "content_filter"  # refused by the provider's safety filter
AUTH = "auth"  # 401/403: bad or missing key
# 404: no such model or deployment at this endpoint (Azure's DeploymentNotFound, Bedrock's
# ResourceNotFoundException, OpenAI's model_not_found). The router built the URL and named
# the model, so a 404 is the candidate's configuration, never the request's: the next may serve.
NOT_FOUND = "not_found"
FIRST_TOKEN_TIMEOUT = "first_token_timeout"  # stream opened, no token in time
STREAM_CUT = "stream_cut"  # stream ended or broke after it started
BAD_RESPONSE = "bad_response"  # 2xx with a body that does not parse

#: Classes after which trying the next candidate may help.
RETRYABLE = frozenset(
    {
        TIMEOUT,
        CONNECT,
        RATE_LIMITED,
        SERVER_ERROR,
        FIRST_TOKEN_TIMEOUT,
        BAD_RESPONSE,
        CONTEXT_LENGTH,
        AUTH,
        NOT_FOUND,
    }
)


#: Classes after which an upstream may already have acted on the request (produced an
#: answer, maybe a tool call, that never arrived): never re-sent for side effects, and an
#: Idempotency-Key whose request ended in one keeps its stored failure.
AMBIGUOUS = frozenset({TIMEOUT, FIRST_TOKEN_TIMEOUT, STREAM_CUT, BAD_RESPONSE})


@dataclass(slots=True)
class Target:
    """One upstream model, resolved from a snapshot candidate."""

    provider: str  # a family of the registry (skyroute.families.Family)
    endpoint: str  # base URL, e.g. http://127.0.0.1:8790/openai/v1
    model: str  # model name sent upstream
    api_key: str | None = None
    # The ``api-version`` query parameter, for families whose URLs carry one (Azure OpenAI).
    api_version: str | None = None
    # How to authenticate (skyroute.families.Auth; "api-key" sends api_key, if any),
    # and the cloud region and project of families addressed by them (Bedrock, Vertex AI).
    auth: str = "api-key"
    region: str | None = None
    project: str | None = None
    # What a self-hosted server does differently (skyroute.families.Quirk names).
    quirks: frozenset[str] = frozenset()


@dataclass(slots=True)
class ChatRequest:
    """A chat request in the OpenAI shape (see module docstring)."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    max_tokens: int | None = None
    temperature: float | None = None
    tool_choice: Any = None
    stop: list[str] = field(default_factory=list)  # stop sequences, every family
    # Anthropic-only fields an Anthropic Messages client sent, sent on only to that family
    # (other families have no such thing): ``thinking`` (the request's extended thinking),
    # ``top_k``, ``top_p``, ``metadata``, and ``blocks``: ``[[message index, [thinking or
    # redacted_thinking blocks]], ...]`` to put back, intact, at the head of those turns.
    anthropic: dict[str, Any] = field(default_factory=dict)
    # Every other Chat Completions parameter, in OpenAI's names (``top_p``, ``seed``,
    # ``response_format``...) and unknown ones too: each adapter sends on, translates or
    # refuses each one (:mod:`.options`), so none is silently dropped.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ChatResult:
    """A complete answer, translated to the OpenAI vocabulary."""

    content: str
    # OpenAI shape:
    # {"id": ..., "type": "function", "function": {"name": ..., "arguments": "<json>"}}
    tool_calls: list[dict[str, Any]]
    finish_reason: str  # "stop" | "length" | "tool_calls" | "content_filter"
    prompt_tokens: int
    completion_tokens: int
    # Anthropic thinking and redacted_thinking blocks, as the upstream sent them (signed).
    thinking: list[dict[str, Any]] = field(default_factory=list)
    # An Embeddings answer's vectors, one per input in order (no content then).
    vectors: list[list[float]] = field(default_factory=list)


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ToolCallEvent:
    """One complete tool call (adapters assemble streamed argument pieces)."""

    call: dict[str, Any]  # OpenAI shape, as in ChatResult.tool_calls


@dataclass(slots=True)
class ThinkingEvent:
    """One complete Anthropic thinking or redacted_thinking block, signed, as it came."""

    block: dict[str, Any]


@dataclass(slots=True)
class StreamEnd:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    # False: the upstream sent no usage (the counts are 0), so the router estimates them.
    reported: bool = True
    # The upstream's completion count may exceed the request's max_tokens (a self-hosted
    # server's quirk): the router caps it there.
    over_max: bool = False


StreamEvent = TextDelta | ToolCallEvent | ThinkingEvent | StreamEnd


class ProviderError(Exception):
    """An attempt failed; ``error_class`` says how (see the constants above)."""

    def __init__(
        self,
        error_class: str,
        message: str,
        status: int = 0,
        retry_after_s: float | None = None,
        public: bool = False,
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
        # The router's own words about the client's request (no upstream host, address or
        # body in them), so the client may read them; other messages stay in the log.
        self.public = public

    @property
    def retryable(self) -> bool:
        return self.error_class in RETRYABLE
