"""API keys: ``sk-sr-<id>-<secret>``, verified against digests in constant time.

A key is 12 lower-case hex characters of public id and 43 characters of
base62 secret (256 bits from ``secrets``). Only the SHA-256
digest of the whole key (``sha256:<hex>``) is ever stored: in a Secret, a
tenant file, a snapshot or a router. A plain hash is enough because keys are
high-entropy random strings (no dictionary to attack), and it keeps the check
cheap: one SHA-256 and one ``hmac.compare_digest`` per request.

The public id is what logs, errors, metrics and status name; the secret never
leaves this module except in :func:`generate` (printed once by the CLI).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

from skyroute.router.ingress.guards.errors import invalid_key

PREFIX = "sk-sr-"
_ALPHABET = string.ascii_letters + string.digits
_SECRET_LEN = 43  # 43 base62 characters: 256 bits
_KEY_RE = re.compile(r"^sk-sr-([0-9a-f]{12})-([A-Za-z0-9]{43})$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_KEY_CHARS = 128


def digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewKey:
    key: str  # shown once, never stored
    key_id: str
    digest: str


def generate() -> NewKey:
    key_id = secrets.token_hex(6)
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LEN))
    key = f"{PREFIX}{key_id}-{secret}"
    return NewKey(key, key_id, digest(key))


def public_id(presented: str) -> str | None:
    """The public id of a well-formed key, else None (never echoes a malformed string)."""
    m = _KEY_RE.match(presented) if len(presented) <= MAX_KEY_CHARS else None
    return m.group(1) if m else None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    digest: str
    tenant: str
    # Unix seconds; 0 = never.
    expires_at: float = 0.0
    revoked: bool = False


class KeyRing:
    """Key records by public id, rebuilt once per snapshot; :meth:`verify` per request."""

    def __init__(self, records: list[KeyRecord]) -> None:
        self._by_id = {r.key_id: r for r in records}

    def __len__(self) -> int:
        return len(self._by_id)

    def revoked(self) -> int:
        return sum(r.revoked for r in self._by_id.values())

    def verify(self, presented: str, now: float) -> KeyRecord:
        """The key's record, or a 401 :class:`GuardError` naming at most its public id."""
        key_id = public_id(presented)
        if key_id is None:
            raise invalid_key("Incorrect API key provided: not a skyroute key (sk-sr-...).")
        rec = self._by_id.get(key_id)
        # Compare digests in constant time; an unknown id is compared against a dummy
        # so that timing does not tell which ids exist.
        expected = rec.digest if rec is not None else _DUMMY
        ok = hmac.compare_digest(digest(presented).encode(), expected.encode())
        if rec is None or not ok:
            raise invalid_key(f"Incorrect API key provided: key {key_id} is not valid.")
        if rec.revoked:
            raise invalid_key(f"API key {key_id} has been revoked.")
        if rec.expires_at and now >= rec.expires_at:
            raise invalid_key(f"API key {key_id} has expired.")
        return rec


_DUMMY = "sha256:" + "0" * 64
