"""What the engine hands back: the attempt trail, the served request, stream items.

These are the engine's output vocabulary, read by the doors (status codes,
the attempts header, Idempotency-Key records), by :mod:`.stats` and by the
outcome report. Each record has one constructor here, so the walk, the
hedge race and the streaming relay cannot build them differently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry.trace import Span

from skyroute.router.cache import CacheHit
from skyroute.router.decide import Decision
from skyroute.router.providers.types import (
    ChatResult,
    ProviderError,
    TextDelta,
    ThinkingEvent,
    ToolCallEvent,
)
from skyroute.router.spans import NO_SPAN
from skyroute.router.table import Candidate

NO_CANDIDATE = "no_candidate"
CANCELLED = "cancelled"  # a hedged attempt that lost the race


@dataclass(slots=True)
class AttemptRecord:
    """One upstream attempt as the trail shows it (``x-skyroute-attempts``)."""

    model: str
    provider: str
    error_class: str  # "" on success
    status: int
    duration_ms: float
    # The endpoint's name when the model has several ("" otherwise), and its URL.
    endpoint: str = ""
    endpoint_url: str = ""

    @property
    def label(self) -> str:
        """``model@endpoint`` when the model has several endpoints, else the model."""
        return f"{self.model}@{self.endpoint}" if self.endpoint else self.model

    @classmethod
    def of(
        cls,
        cand: Candidate,
        started: float,
        error: ProviderError | None = None,
        *,
        cancelled: bool = False,
    ) -> AttemptRecord:
        """The attempt at ``cand`` begun at ``started`` (perf_counter), ending now."""
        if cancelled:
            error_class, status = CANCELLED, 0
        elif error is not None:
            error_class, status = error.error_class, error.status
        else:
            error_class, status = "", 200
        ms = (time.perf_counter() - started) * 1000.0
        name = cand.site.name if cand.site is not None else ""
        return cls(cand.model, cand.provider, error_class, status, ms, name, cand.target.endpoint)


@dataclass(slots=True)
class RequestContext:
    """What a door knows about a request besides its decision and body."""

    request_id: str = ""
    no_cache: bool = False
    stream: bool = False
    started: float = field(default_factory=time.perf_counter)
    # The caller's trace context (W3C traceparent from HTTP headers or gRPC metadata).
    trace_parent: otel_context.Context | None = None
    span: Span = NO_SPAN
    # Who pays (the door's identity): the billed tenant and the key's public id.
    account: str = ""
    key_id: str = ""


@dataclass(slots=True)
class Served:
    """How a request ended (unary, or the summary of a stream)."""

    decision: Decision
    result: ChatResult | None = None
    candidate: Candidate | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    cost_usd: float = 0.0
    cache_hit: bool = False
    cache_similarity: float = 0.0
    cache_entry: str = ""  # the id of the entry a hit replayed
    error: ProviderError | None = None
    cached_model: str = ""
    # Why the attempts stopped early, when not obvious from the last error.
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_cache(cls, decision: Decision, hit: CacheHit) -> Served:
        return cls(
            decision,
            result=hit.answer.result(),
            cache_hit=True,
            cache_similarity=hit.similarity,
            cache_entry=hit.entry,
            cached_model=hit.answer.model,
        )

    @property
    def model(self) -> str:
        return self.candidate.model if self.candidate else self.cached_model

    def succeeded(self, cand: Candidate, result: ChatResult) -> None:
        """``cand`` answered with ``result``: the request's answer, model and cost."""
        self.result, self.candidate, self.error = result, cand, None
        self.cost_usd = cand.cost(result.prompt_tokens, result.completion_tokens)

    def no_candidate(self) -> None:
        """The pool had no model able to serve the request at all."""
        self.error = ProviderError(
            NO_CANDIDATE,
            f"no candidate in pool {self.decision.pool!r} can serve this request "
            "(tools or context window)",
        )


@dataclass(slots=True)
class StreamStarted:
    """Emitted once, right before the first content event: headers can go out now."""

    served: Served


@dataclass(slots=True)
class StreamDone:
    """Last on success: the served request, complete with usage, cost and attempts."""

    served: Served


@dataclass(slots=True)
class StreamFailed:
    served: Served


StreamItem = StreamStarted | TextDelta | ToolCallEvent | ThinkingEvent | StreamDone | StreamFailed
