"""The request and answer types every door shares.

A codec decodes its wire request into an :class:`Inbound` (the internal
request plus its context); the pipeline turns it into a :class:`Prepared`
request (signals, decision, engine context), serves it, and hands the codec
an :class:`Answer` or a :class:`Rejection` to encode in its API's own format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context

from skyroute.router.decide import Decision
from skyroute.router.engine import RequestContext, Served
from skyroute.router.ingress.guards.door import Admission
from skyroute.router.ingress.guards.errors import GuardError
from skyroute.router.ingress.guards.identity import Identity
from skyroute.router.providers.embeddings import EmbedRequest
from skyroute.router.providers.types import ChatRequest
from skyroute.router.signals import Signals

# Rejection kinds: what went wrong, in API-neutral words that codecs map.
INVALID = "invalid_request_error"
NOT_FOUND = "not_found_error"
OVERLOADED = "rate_limit_error"
UNAVAILABLE = "unavailable"
CONFLICT = "idempotency_error"
UPSTREAM = "upstream_error"
INTERNAL = "server_error"  # a router bug: OpenAI's type for its own 500s


@dataclass(slots=True)
class Kept:
    """A request's part in the stored conversations (the Responses API's ``store``).

    ``id`` is the response's id (``resp_`` and 32 hex digits) and
    ``created_at`` its creation time, both set when the request is decoded;
    ``previous`` names the stored response this one continues
    (``previous_response_id``), whose conversation is put after the first
    ``lead`` messages (this request's instructions, never carried over);
    ``store`` asks for the answer to be kept, ``stored`` says it was, and
    ``depth`` counts the turns before this one.
    """

    id: str
    created_at: int
    store: bool = True
    previous: str = ""
    lead: int = 0
    depth: int = 0
    stored: bool = False


@dataclass(slots=True)
class Inbound:
    """One request as decoded from any API: the chat request and its context."""

    policy: str  # the RoutingPolicy named; "" or "auto" for the default
    chat: ChatRequest
    # Declared signals by their Signals attribute (registry names), only those given.
    declared: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    # A stream ends with a usage event (OpenAI ``stream_options.include_usage``).
    stream_usage: bool = False
    user: str = ""
    session: str = ""
    request_id: str = ""
    no_cache: bool = False
    idempotency_key: str = ""
    trace_parent: Context | None = None
    # The credential as presented: ``Authorization`` (Bearer) and ``x-api-key``.
    authorization: str = ""
    api_key: str = ""
    # An Embeddings request (``chat`` then holds its texts, for the signals): served by
    # the engine's embeddings walk instead of a chat completion.
    embed: EmbedRequest | None = None
    # A Responses request: its id, and what is stored or continued (ingress.stored).
    kept: Kept | None = None


@dataclass(slots=True)
class Prepared:
    """A decided request, ready for the engine."""

    inbound: Inbound
    signals: Signals
    decision: Decision
    ctx: RequestContext
    identity: Identity
    # Set once the door admitted the request (its limits reserved), before the engine runs.
    admission: Admission | None = None


@dataclass(slots=True)
class Answer:
    """A complete answer to encode: live, cached, or replayed from the idempotency store.

    ``rec`` is the stored form (:func:`skyroute.router.wire.record`) and
    ``facts`` the ``x-skyroute-*`` facts about it; ``served`` is None for a
    replay, which has no attempts of its own.
    """

    prepared: Prepared
    rec: Mapping[str, Any]
    facts: Mapping[str, str]
    served: Served | None = None


class Rejection(Exception):
    """A request refused or failed before any content, in API-neutral terms.

    ``status`` is the HTTP status the OpenAI-shaped APIs answer with; the
    gRPC codec maps it to a status code. ``facts`` ride along as headers or
    trailing metadata (the attempt trail of a failed request, Retry-After).
    """

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        *,
        param: str | None = None,
        code: str | None = None,
        facts: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.facts: Mapping[str, str] = facts or {}


def refused(e: GuardError) -> Rejection:
    """A refusal of the identity-and-limits stage (401, 403, 429, 503) as a rejection."""
    return Rejection(e.status, e.message, e.type, param=e.param, code=e.code, facts=e.headers())


def invalid(message: str, param: str) -> Rejection:
    """A 400 for a request that is malformed; ``param`` names the offending part."""
    return Rejection(400, message, INVALID, param=param)
