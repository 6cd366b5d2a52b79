"""The admin bearer token, shared by the control plane's and the router's admin ports.

One token file (``skyroute certs create`` writes ``DIR/admin.token``) guards
the admin writes of both planes; both read it and compare it the same way:
at least 16 characters, ``Authorization: Bearer <token>``, compared in
constant time.
"""

from __future__ import annotations

import hmac
from pathlib import Path


def read_token(path: Path) -> str:
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise ValueError(f"admin token in {path} is shorter than 16 characters")
    return token


def token_ok(expected: str, header: str) -> bool:
    """``Authorization: Bearer <token>`` matches, compared in constant time."""
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), expected)
