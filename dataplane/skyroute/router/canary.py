"""Which version of a policy decides a request while a rollout is in progress.

During a canary the snapshot carries two entries for one RoutingPolicy: the
stable version under the policy's own name, and the candidate under a hidden
name that only the stable entry's ``Canary`` message points to. The control
plane moves the weight (the rollout's steps, promotion, rollback); routers
only split, the same way on every router, with no state of their own:

* The split is a hash, not a coin. ``blake2b(sticky key, key=salt)`` gives 64
  uniform bits; the request goes to the candidate when they fall below
  ``weight_bp / 10000`` of the range. Every router computes the same answer,
  so a user keeps one version whichever pod the load balancer picks, and a
  restart changes nothing.
* A key on the candidate stays there as the weight grows (the threshold only
  rises), so a conversation never flips from candidate back to stable in the
  middle of a rollout; promotion moves everyone to the candidate at once,
  rollback everyone to stable.
* The salt is the candidate's version: each rollout samples another share of
  users, so the same 5% do not test every change.
* The sticky key is what the policy names (user, session or tenant). A
  request without one is keyed by its first messages (the system prompt and
  the first user turn), which every later turn of a conversation repeats, so
  even anonymous conversations stay on one side.

Everything but the hash is prepared when the table is built; per request this
costs one blake2b of a short string (about a microsecond). This module knows
nothing of the table: a split holds whatever the table builder hands it as the
candidate, and :func:`choose` works on anything that carries a split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypeVar

from skyroute.v1 import snapshot_pb2

USER, SESSION, TENANT = "user", "session", "tenant"
_STICKINESS = {
    snapshot_pb2.STICKINESS_USER: USER,
    snapshot_pb2.STICKINESS_SESSION: SESSION,
    snapshot_pb2.STICKINESS_TENANT: TENANT,
}
_RANGE = 1 << 64
_FIRST_MESSAGES = 2  # system prompt and first user turn
_PART = 512  # characters kept from each end of an opening message


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CanarySplit(Generic[T]):
    """A prepared split: the candidate's table and the hash threshold."""

    candidate: T
    weight_bp: int
    threshold: int
    stickiness: str
    salt: bytes


class Split(Protocol):
    """A policy's table as :func:`choose` sees it: maybe under a canary split."""

    @property
    def canary(self) -> CanarySplit[Self] | None: ...


P = TypeVar("P", bound=Split)


def prepare(canary: snapshot_pb2.Canary, candidate: T) -> CanarySplit[T]:
    weight = max(0, min(10_000, canary.weight_bp))
    return CanarySplit(
        candidate=candidate,
        weight_bp=weight,
        threshold=_RANGE * weight // 10_000,
        stickiness=_STICKINESS.get(canary.stickiness, USER),
        salt=canary.salt.encode()[:64],
    )


def _conversation_key(messages: Sequence[Any]) -> str:
    # The start and end of each opening message are enough to tell conversations
    # apart, and bound the hash's cost whatever the size of a RAG system prompt.
    parts: list[str] = []
    for m in messages[:_FIRST_MESSAGES]:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):  # OpenAI content parts
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        if isinstance(content, str):
            parts.append(
                content if len(content) <= 2 * _PART else content[:_PART] + content[-_PART:]
            )
    return "\x1f".join(parts)


def sticky_key(
    split: CanarySplit[Any], user: str, session: str, tenant: str, messages: Sequence[Any]
) -> str:
    """The key the split hashes: the configured one, else the conversation's opening."""
    mode = split.stickiness
    key = user if mode == USER else session if mode == SESSION else tenant
    return key or "m:" + _conversation_key(messages)


def on_candidate(split: CanarySplit[Any], key: str) -> bool:
    if split.threshold <= 0:
        return False
    if split.threshold >= _RANGE:
        return True
    h = hashlib.blake2b(key.encode(), digest_size=8, key=split.salt).digest()
    return int.from_bytes(h, "big") < split.threshold


def choose(
    policy: P,
    user: str = "",
    session: str = "",
    tenant: str = "",
    messages: Sequence[Any] = (),
) -> P:
    """The table that decides this request: ``policy`` or its canary candidate."""
    split = policy.canary
    if split is None:
        return policy
    key = sticky_key(split, user, session, tenant, messages)
    return split.candidate if on_candidate(split, key) else policy
