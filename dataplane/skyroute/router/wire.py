"""Shared helpers for the router's two front doors (HTTP and gRPC).

Both front doors turn a served request into the same facts: an HTTP-ish
status for a failure, and the attempt trail. Keeping them here means the
OpenAI-compatible API and the gRPC API can never disagree about them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Literal

import orjson

from skyroute.router.engine import CANCELLED, NO_CANDIDATE, AttemptRecord, Served
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
    """``model;class;status;ms`` per attempt, comma-separated, ``ok`` for success.

    A model with several endpoints shows as ``model@endpoint`` (model names never hold ``@``).
    """
    return ", ".join(
        f"{a.label};{a.error_class or 'ok'};{a.status};{a.duration_ms:.0f}ms" for a in attempts
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
        "thinking": r.thinking,
    }


def idempotency_scope(policy: str, tenant: str, key: str) -> str:
    """Keys are per policy and tenant: equal strings from two tenants never collide."""
    return f"{policy}\x1f{tenant}\x1f{key}"


def request_fingerprint(req: t.ChatRequest) -> str:
    """What must match for a repeated Idempotency-Key: every field of the request.

    Messages, tools and parameters, canonically serialized (sorted keys) and
    hashed; streaming or not is not part of it (a stored answer replays either way).
    """
    body = {f.name: getattr(req, f.name) for f in dataclasses.fields(req)}
    raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


Settlement = Literal["complete", "fail", "release"]


def settlement(served: Served | None) -> Settlement:
    """What becomes of an Idempotency-Key once its first request is over.

    ``complete``: store the answer. ``fail``: store the failure, because an
    attempt may have reached an upstream (a timeout, a cut stream, a cancelled
    attempt, or the request was interrupted before its outcome was known): a
    retry must not run it again. ``release``: no upstream can have acted (no
    attempt, or every attempt was answered with an error), so a retry runs it.
    """
    if served is None:
        return "fail"
    if served.error is None and served.result is not None:
        return "complete"
    if any(a.error_class in t.AMBIGUOUS or a.error_class == CANCELLED for a in served.attempts):
        return "fail"
    return "release"


def failure_record(status: int, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """A failure as stored for Idempotency-Key replays (JSON-safe)."""
    return {"error": {"status": status, "body": body}, "headers": headers}
