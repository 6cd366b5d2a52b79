"""Where stored responses live: in process, or in Redis shared by every router.

The Responses API keeps a response (``store``, true unless the request says
``false``) so that ``GET``/``DELETE /v1/responses/{id}`` and a later
``previous_response_id`` find it. This module is only the key-value part:
an entry is opaque bytes (its schema is :mod:`skyroute.router.ingress.stored`'s)
under a key scoped to the authenticated tenant, so one tenant's id never
reaches another tenant's entry: there is no lookup by id alone.

Two backends share one interface. :class:`MemoryResponses` (the default: one
router, or one worker) bounds its entries by count and total bytes, oldest
dropped first; :class:`RedisResponses` (``--redis URL``: every replica sees
every stored response) sets each entry with ``PX`` so Redis expires it, and
bounds memory as the Redis deployment is configured (``maxmemory``). Every
entry has the same TTL (``--responses-ttl``, :data:`DEFAULT_TTL_S`, at most
:data:`MAX_TTL_S`) and is at most :data:`MAX_ENTRY_BYTES`; a larger one is
not stored. When Redis cannot be reached, a read or delete raises
:class:`StoreUnavailable` (the door answers 503) and a write reports
failure (the answer then says ``store: false``).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Protocol

from skyroute.router.logs import event

log = logging.getLogger("skyroute.router.responses")

MiB = 1024 * 1024
#: Thirty days, what OpenAI keeps a stored response for: the default and the cap.
MAX_TTL_S = 30 * 24 * 3600.0
DEFAULT_TTL_S = MAX_TTL_S
#: The largest stored entry (a conversation and its answer); larger ones are not kept.
MAX_ENTRY_BYTES = 8 * MiB


class StoreUnavailable(Exception):
    """The shared store could not be reached."""


def _key(tenant: str, rid: str) -> str:
    # The tenant first: a key names one tenant's entry, never an id on its own.
    return f"{tenant}\x1f{rid}"


def checked_ttl(ttl_s: float) -> float:
    """A TTL in seconds, above zero and at most :data:`MAX_TTL_S` (ValueError otherwise)."""
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"responses TTL must be above 0 and at most {MAX_TTL_S:g} s, got {ttl_s}")
    return ttl_s


class ResponseStore(Protocol):
    ttl_s: float

    async def put(self, tenant: str, rid: str, entry: bytes) -> bool:
        """Keep ``entry`` for ``ttl_s``; False when it was not kept (too big, store down)."""
        ...

    async def get(self, tenant: str, rid: str) -> bytes | None: ...

    async def delete(self, tenant: str, rid: str) -> bool:
        """True when the entry existed (and is gone)."""
        ...

    def stats(self) -> dict[str, int]: ...


class _Counts:
    """What every backend counts, for ``/debug/status``."""

    __slots__ = ("deleted", "expired", "too_big", "unavailable", "written")

    def __init__(self) -> None:
        self.written = 0
        self.too_big = 0
        self.deleted = 0
        self.expired = 0
        self.unavailable = 0

    def fits(self, entry: bytes) -> bool:
        if len(entry) <= MAX_ENTRY_BYTES:
            return True
        self.too_big += 1
        event(log, "response_not_stored", logging.WARNING, bytes=len(entry), cause="too_big")
        return False

    def as_dict(self) -> dict[str, int]:
        return {s: getattr(self, s) for s in self.__slots__}


class MemoryResponses:
    """In-process entries with expiry, bounded by count and bytes (oldest out first)."""

    def __init__(
        self,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = 10_000,
        max_bytes: int = 256 * MiB,
    ) -> None:
        self.ttl_s = checked_ttl(ttl_s)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self.counts = _Counts()
        self.evicted = 0

    def _drop(self, key: str) -> None:
        _, entry = self._entries.pop(key)
        self._bytes -= len(entry)

    async def put(self, tenant: str, rid: str, entry: bytes) -> bool:
        if not self.counts.fits(entry):
            return False
        key = _key(tenant, rid)
        if key in self._entries:
            self._drop(key)
        while self._entries and (
            len(self._entries) >= self.max_entries or self._bytes + len(entry) > self.max_bytes
        ):
            self._drop(next(iter(self._entries)))  # insertion order: the oldest first
            self.evicted += 1
        self._entries[key] = (time.monotonic() + self.ttl_s, entry)
        self._bytes += len(entry)
        self.counts.written += 1
        return True

    async def get(self, tenant: str, rid: str) -> bytes | None:
        key = _key(tenant, rid)
        held = self._entries.get(key)
        if held is None:
            return None
        if held[0] <= time.monotonic():
            self._drop(key)
            self.counts.expired += 1
            return None
        return held[1]

    async def delete(self, tenant: str, rid: str) -> bool:
        if await self.get(tenant, rid) is None:
            return False
        self._drop(_key(tenant, rid))
        self.counts.deleted += 1
        return True

    def stats(self) -> dict[str, int]:
        return {
            **self.counts.as_dict(),
            "entries": len(self._entries),
            "bytes": self._bytes,
            "evicted": self.evicted,
        }


class RedisResponses:
    """Entries in Redis (``SET ... PX``), seen by every router sharing it."""

    def __init__(
        self, url: str, ttl_s: float = DEFAULT_TTL_S, prefix: str = "skyroute:resp:"
    ) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.ttl_s = checked_ttl(ttl_s)
        self.prefix = prefix
        self.counts = _Counts()

    def _down(self, op: str, e: Exception) -> None:
        self.counts.unavailable += 1
        event(log, "response_store_unavailable", logging.WARNING, op=op, error=repr(e))

    async def put(self, tenant: str, rid: str, entry: bytes) -> bool:
        if not self.counts.fits(entry):
            return False
        px = max(1, int(self.ttl_s * 1000))
        try:
            await self._redis.set(self.prefix + _key(tenant, rid), entry, px=px)
        except Exception as e:
            self._down("put", e)
            return False
        self.counts.written += 1
        return True

    async def get(self, tenant: str, rid: str) -> bytes | None:
        try:
            value = await self._redis.get(self.prefix + _key(tenant, rid))
        except Exception as e:
            self._down("get", e)
            raise StoreUnavailable(str(e)) from None
        return value if isinstance(value, bytes) else None

    async def delete(self, tenant: str, rid: str) -> bool:
        try:
            n = await self._redis.delete(self.prefix + _key(tenant, rid))
        except Exception as e:
            self._down("delete", e)
            raise StoreUnavailable(str(e)) from None
        if n:
            self.counts.deleted += 1
        return bool(n)

    def stats(self) -> dict[str, int]:
        return self.counts.as_dict()
