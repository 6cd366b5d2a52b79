"""Feedback ids: what an answer is, signed, so feedback on it needs no state anywhere.

Every served answer carries a feedback id (the ``x-skyroute-feedback-id``
fact, ``CompletionResponse.feedback_id``). It holds what the learning loop
joins feedback to (request id, tenant, policy and its version, pool, model,
intent, when it was served), MAC-signed with HMAC-SHA256 under the fleet's
feedback key. Feedback arriving at any router of the fleet, hours later, is
verified there and forwarded with the outcome stream already joined: routers
stay stateless, the control plane needs no join table, and an id the fleet
never issued (or altered, or from another tenant) is refused at once with a
clear error rather than silently dropped later.

The key comes from ``SKYROUTE_FEEDBACK_KEY`` (the same Secret mounted in
every router; at least 16 bytes). Without it each process draws its own, so
feedback is accepted only by the router process that served the answer (and
not after a restart): fine for one router, a deployment sets the key.

An id is accepted for :data:`MAX_AGE_S` after it was minted. Ids are labels
with integrity, not secrets: they reveal the routing facts the
``x-skyroute-*`` headers already show to the same caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from skyroute.v1 import distribution_pb2

_VERSION = "fb1"
_MAC_BYTES = 16
#: Longest feedback id accepted (the fields are names bounded by the snapshot's limits).
MAX_ID_CHARS = 1024
#: Feedback is accepted this long after the answer (30 days).
MAX_AGE_S = 30 * 86_400
#: Who may give feedback.
SOURCES = ("user", "evaluator", "downstream")
#: Longest comment kept (characters).
MAX_COMMENT_CHARS = 4096
KEY_ENV = "SKYROUTE_FEEDBACK_KEY"


class BadFeedbackId(ValueError):
    """An id this fleet did not issue, altered, expired or malformed (the message says which)."""


@dataclass(frozen=True, slots=True)
class Served:
    """What a feedback id names."""

    request_id: str
    tenant: str
    policy: str
    policy_version: str
    pool: str
    model: str
    intent: str
    served_unix_ms: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key_from_env() -> bytes:
    raw = os.environ.get(KEY_ENV, "").encode()
    if raw and len(raw) < 16:
        raise ValueError(f"{KEY_ENV} must hold at least 16 bytes")
    return raw or os.urandom(32)


@dataclass(slots=True)
class FeedbackDesk:
    """Mints and verifies feedback ids; hands verified feedback to ``forward``."""

    key: bytes = field(default_factory=_key_from_env)
    # Where verified feedback goes (the outcome reporter); dropped when unset.
    forward: Callable[[distribution_pb2.Feedback], None] | None = None
    clock: Callable[[], float] = time.time
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self.key, body.encode(), hashlib.sha256).digest()[:_MAC_BYTES])

    def mint(self, s: Served) -> str:
        fields = [
            s.request_id,
            s.tenant,
            s.policy,
            s.policy_version,
            s.pool,
            s.model,
            s.intent,
            s.served_unix_ms,
        ]
        body = f"{_VERSION}.{_b64(orjson.dumps(fields))}"
        return f"{body}.{self._mac(body)}"

    def verify(self, token: str) -> Served:
        """What ``token`` names, or :class:`BadFeedbackId` saying why not."""
        if len(token) > MAX_ID_CHARS:
            raise BadFeedbackId(f"request_id is longer than {MAX_ID_CHARS} characters")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _VERSION:
            raise BadFeedbackId(
                "request_id is not a feedback id (use the x-skyroute-feedback-id header or "
                "the feedback_id field of the answer)"
            )
        body = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._mac(body), parts[2]):
            raise BadFeedbackId("request_id was not issued by this router fleet (unknown id)")
        try:
            f = orjson.loads(_unb64(parts[1]))
            if not isinstance(f, list) or len(f) != 8 or not isinstance(f[7], int):
                raise ValueError("fields")
            rid, tenant, policy, version, pool, model, intent = (str(x) for x in f[:7])
            s = Served(rid, tenant, policy, version, pool, model, intent, f[7])
        except (ValueError, TypeError, IndexError, binascii.Error):
            raise BadFeedbackId("request_id is malformed") from None
        age_s = self.clock() - s.served_unix_ms / 1000.0
        if age_s > MAX_AGE_S:
            raise BadFeedbackId(f"request_id is older than {MAX_AGE_S // 86_400} days")
        return s

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def joined(self, s: Served, source: str) -> distribution_pb2.Feedback:
        """The forwarded form of feedback on ``s`` (its value still to set)."""
        return distribution_pb2.Feedback(
            request_id=s.request_id,
            tenant=s.tenant,
            policy=s.policy,
            policy_version=s.policy_version,
            pool=s.pool,
            model=s.model,
            intent=s.intent,
            served_unix_ms=s.served_unix_ms,
            unix_ms=int(self.clock() * 1000),
            source=source,
        )

    def send(self, fb: distribution_pb2.Feedback) -> None:
        self.accepted += 1
        if self.forward is not None:
            self.forward(fb)
