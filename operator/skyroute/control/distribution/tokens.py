"""Bearer tokens on the control plane's gRPC link: how a call's token is read and refused.

On a cluster routers prove who they are with a projected ServiceAccount token
sent as ``authorization: Bearer <token>`` call metadata (no client
certificate). This module is the transport's half, with no Kubernetes in
it: reading the token off a call, and the refusal an authenticator raises.
The Kubernetes half (TokenReview, which ServiceAccounts are routers) is
``kube/linkauth.py``; ``service.py`` asks an authenticator when it has one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import grpc

from skyroute.control.distribution.tls import Identity

#: A projected token is a few KB; a header much larger is refused unread.
MAX_TOKEN_CHARS = 16_384


class TokenRefused(Exception):
    """A token that does not authenticate (``unauthenticated``) or is not allowed here."""

    def __init__(self, reason: str, message: str, *, denied: bool = False) -> None:
        super().__init__(message)
        self.reason = reason  # the ``rejected`` counter it adds to
        self.message = message
        self.code = grpc.StatusCode.PERMISSION_DENIED if denied else grpc.StatusCode.UNAUTHENTICATED


class TokenAuthenticator(Protocol):
    """Turns a bearer token into the caller's identity, or raises TokenRefused."""

    async def authenticate(self, token: str) -> Identity: ...


def bearer(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The bearer token of a call's metadata ('' when there is none); TokenRefused if odd."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        scheme, _, token = text.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRefused("unauthenticated", "authorization metadata is not a Bearer token")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenRefused("unauthenticated", f"bearer token over {MAX_TOKEN_CHARS} characters")
        return token.strip()
    return ""
