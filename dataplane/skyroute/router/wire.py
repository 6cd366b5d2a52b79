"""Shared helpers for the router's two front doors (HTTP and gRPC).

Both front doors turn a served request into the same facts: an HTTP-ish
status for a failure, and the attempt trail. Keeping them here means the
OpenAI-compatible API and the gRPC API can never disagree about them.
"""

from __future__ import annotations

from skyroute.router.engine import NO_CANDIDATE, AttemptRecord
from skyroute.router.providers import types as t

# Error class of the final attempt -> HTTP status the client sees.
HTTP_STATUS = {
    t.CLIENT_ERROR: 400,
    t.CONTEXT_LENGTH: 400,
    t.CONTENT_FILTER: 400,
    t.RATE_LIMITED: 429,
    t.TIMEOUT: 504,
    t.FIRST_TOKEN_TIMEOUT: 504,
    NO_CANDIDATE: 503,
}


def http_status(error_class: str) -> int:
    return HTTP_STATUS.get(error_class, 502)


def attempts_header(attempts: list[AttemptRecord]) -> str:
    """``model;class;status;ms`` per attempt, comma-separated, ``ok`` for success."""
    return ", ".join(
        f"{a.model};{a.error_class or 'ok'};{a.status};{a.duration_ms:.0f}ms" for a in attempts
    )
