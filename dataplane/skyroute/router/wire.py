"""Shared helpers for the router's two front doors (HTTP and gRPC).

Both front doors turn a served request into the same facts: an HTTP-ish
status for a failure, and the attempt trail. Keeping them here means the
OpenAI-compatible API and the gRPC API can never disagree about them.
"""

from __future__ import annotations

from typing import Any

from skyroute.router.engine import NO_CANDIDATE, AttemptRecord, Served
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


def record(served: Served, headers: dict[str, str]) -> dict[str, Any]:
    """A successful answer as stored for Idempotency-Key replays (JSON-safe)."""
    r = served.result
    assert r is not None
    return {
        "model": served.model,
        "headers": headers,
        "content": r.content,
        "tool_calls": r.tool_calls,
        "finish_reason": r.finish_reason,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cost_usd": served.cost_usd,
    }


def idempotency_scope(policy: str, tenant: str, key: str) -> str:
    """Keys are per policy and tenant: equal strings from two tenants never collide."""
    return f"{policy}\x1f{tenant}\x1f{key}"
