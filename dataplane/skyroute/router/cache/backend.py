"""What a cache backend is: the stored answer, a hit, and the backend protocol.

Backends only ever see one partition at a time (the probe's); how they
store partitions is their business, but a lookup must start from the
probe's partition key and must compare the stored label before returning
anything (see :mod:`skyroute.router.cache.keys`).

Contract every backend keeps:

- ``lookup`` never raises and never blocks for long: on any trouble it
  returns None (a miss) and counts the error;
- ``store`` never raises and never blocks the request: a shared backend
  writes in the background and drops the write if it is unhealthy;
- memory is bounded (entries and bytes), the least recently used entries go
  first, and TTLs are honoured on read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from skyroute.router.cache.invalidate import Selector
from skyroute.router.cache.keys import Probe
from skyroute.router.cache.rules import CacheRule
from skyroute.router.providers.types import ChatResult

EXACT = "exact"
SEMANTIC = "semantic"


@dataclass(slots=True, frozen=True)
class Answer:
    """A cached answer: what a hit replays, unary or as a stream.

    ``thinking`` keeps Anthropic thinking blocks as the upstream signed them, so a
    replayed stream carries them too; ``tool_calls`` is replayed as well, though the
    guard (:func:`~skyroute.router.cache.guard.answer_refusal`) stores none today.
    """

    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    question: str  # the question it answered, as sent (for debugging and audits)
    # The version of the policy that served it: ``policy_version`` invalidations match it.
    policy_version: str = ""
    thinking: tuple[dict[str, Any], ...] = ()
    tool_calls: tuple[dict[str, Any], ...] = ()

    def result(self) -> ChatResult:
        return ChatResult(
            self.content,
            [dict(c) for c in self.tool_calls],
            self.finish_reason,
            self.prompt_tokens,
            self.completion_tokens,
            thinking=[dict(b) for b in self.thinking],
        )

    def size(self) -> int:
        extra = len(orjson.dumps(self.thinking)) + len(orjson.dumps(self.tool_calls))
        return len(self.content) + len(self.question) + len(self.model) + 64 + extra

    def encode(self, label: str) -> bytes:
        return orjson.dumps(
            {
                "l": label,
                "c": self.content,
                "f": self.finish_reason,
                "pt": self.prompt_tokens,
                "ct": self.completion_tokens,
                "m": self.model,
                "q": self.question,
                "pv": self.policy_version,
                "th": self.thinking,
                "tc": self.tool_calls,
            }
        )

    @staticmethod
    def decode(blob: bytes, label: str) -> Answer | None:
        """The answer in ``blob`` if it belongs to partition ``label``; None otherwise."""
        data: Any = orjson.loads(blob)
        if not isinstance(data, dict) or data.get("l") != label:
            return None
        return Answer(
            str(data["c"]),
            str(data["f"]),
            int(data["pt"]),
            int(data["ct"]),
            str(data["m"]),
            str(data["q"]),
            str(data.get("pv", "")),
            _dicts(data.get("th")),
            _dicts(data.get("tc")),
        )


def _dicts(value: Any) -> tuple[dict[str, Any], ...]:
    """A stored list of JSON objects (anything else: none; old entries have none)."""
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, dict))


class InvalidationFailed(Exception):
    """A shared backend could not be reached to invalidate: nothing may be assumed removed."""


def entry_id(partition: str, key: str) -> str:
    """The id an entry is named by in headers and invalidations."""
    return f"{partition}.{key}"


@dataclass(slots=True, frozen=True)
class CacheHit:
    answer: Answer
    similarity: float  # 1.0 for an exact hit
    layer: str  # EXACT or SEMANTIC
    entry: str = ""  # the entry's id, ``<partition>.<key>`` (what invalidation names)


class CacheBackend(Protocol):
    """Where answers live; see the module docstring for the contract."""

    @property
    def kind(self) -> str: ...

    async def lookup(self, probe: Probe, rule: CacheRule) -> CacheHit | None: ...

    def store(self, probe: Probe, rule: CacheRule, answer: Answer) -> None: ...

    def __len__(self) -> int: ...

    async def invalidate(self, selector: Selector) -> int:
        """Remove the entries ``selector`` names; how many (never raises for a shared
        backend's trouble: it raises :class:`InvalidationFailed` so the caller can say so)."""
        ...

    def stats(self) -> dict[str, Any]: ...

    async def drain(self) -> None:
        """Wait for background writes (tests, benchmarks, shutdown)."""
        ...

    async def close(self) -> None: ...
