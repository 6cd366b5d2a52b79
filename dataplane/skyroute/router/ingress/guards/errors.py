"""Errors a guard answers with: OpenAI's JSON shape and the matching gRPC status.

A guard error never carries a secret: messages name a key by its public id
only (``tests/router/guards`` scans every error path for the secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# gRPC status code numbers (grpc.StatusCode values), kept here so the guards do
# not import grpc: UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAVAILABLE.
GRPC_UNAUTHENTICATED = 16
GRPC_PERMISSION_DENIED = 7
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_UNAVAILABLE = 14


# Not frozen: the interpreter and contextlib set __traceback__ on a raised exception.
@dataclass(eq=False)
class GuardError(Exception):
    """A refusal at the door: HTTP status, OpenAI error type/code, gRPC code."""

    status: int
    type: str
    code: str
    message: str
    grpc_code: int
    param: str | None = None
    retry_after_s: float | None = None
    # More response headers (the x-ratelimit-* set of a refused request).
    extra: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        out = dict(self.extra)
        if self.retry_after_s is not None:
            # Retry-After is whole seconds (RFC 9110); never 0 for a refusal.
            out["retry-after"] = str(max(1, int(self.retry_after_s + 0.999)))
        return out


def invalid_key(message: str) -> GuardError:
    return GuardError(
        401, "invalid_request_error", "invalid_api_key", message, GRPC_UNAUTHENTICATED
    )


def forbidden(message: str, param: str | None = None) -> GuardError:
    return GuardError(
        403, "invalid_request_error", "permission_denied", message, GRPC_PERMISSION_DENIED, param
    )


def rate_limited(
    message: str, retry_after_s: float, extra: dict[str, str] | None = None, type_: str = "requests"
) -> GuardError:
    return GuardError(
        429,
        type_,
        "rate_limit_exceeded",
        message,
        GRPC_RESOURCE_EXHAUSTED,
        retry_after_s=retry_after_s,
        extra=tuple((extra or {}).items()),
    )


def insufficient_quota(message: str, retry_after_s: float | None) -> GuardError:
    return GuardError(
        429,
        "insufficient_quota",
        "insufficient_quota",
        message,
        GRPC_RESOURCE_EXHAUSTED,
        retry_after_s=retry_after_s,
    )


def limits_unavailable(message: str) -> GuardError:
    return GuardError(
        503, "server_error", "limits_unavailable", message, GRPC_UNAVAILABLE, retry_after_s=1.0
    )
