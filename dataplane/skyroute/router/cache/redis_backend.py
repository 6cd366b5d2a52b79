"""The Redis backend: one cache shared by every router pod, degrading to misses.

Layout, per partition ``P`` (the probe's partition hash) under a prefix:

- ``{prefix}{P}:e:{K}``: the answer for the question whose exact-text hash is
  ``K``, with the partition label inside (checked on every read), expiring
  with the rule's TTL (``SET PX``);
- ``{prefix}{P}:log``: a stream of the partition's entries (key, float16
  vector, meaning signature, expiry), capped at the rule's ``max_entries``
  (``XADD MAXLEN ~``) and expiring with the last write.

Two indexes make invalidation possible without scanning the keyspace: the
sorted set ``{prefix}partitions`` holds ``P`` and its label (to select by
tenant or intent), ``{prefix}pv:{V}`` the entry ids stored under policy
version ``V``; both scored by expiry (ms) and pruned on every write, by a
small Lua script that only ever raises a score or a key's lifetime (any Redis
version). :meth:`RedisBackend.invalidate` deletes what is named in Redis
itself, so every replica sharing it misses from the next lookup on (its
mirror drops the dead vectors when their answers are not found).

Vectors are not searched in Redis. Each router keeps a *mirror* of the
partitions it serves: a local :class:`VectorIndex` fed incrementally from
the log (``XRANGE`` after the last id seen). A lookup is one pipelined round
trip (``GET`` the exact key and read up to 64 new log entries), then a local
SimHash search, then one ``GET`` of the winning answer. A longer backlog (a
new pod, a partition not seen for a while) is read by a background
catch-up in batches, so lookups stay short. So an answer stored by one
router is found by every other one on its next lookup in that partition,
and search cost stays that of the in-process index.

Failure is a miss, never an error: every call has a short timeout (50 ms by
default, no client retries), and after a failure the backend stops calling
Redis for a back-off period (0.5 s doubling to 5 s) so that an outage costs
requests nothing but their cache hits. Writes happen in background tasks,
at most :data:`_MAX_PENDING` at once, and at most :data:`_MAX_LOOKUPS`
lookups are in flight; beyond that they are dropped or missed (saturation
is not an outage, so it does not trip the back-off), which keeps the
connection pool (:data:`_POOL_SIZE`) from ever being exhausted. Mirrors are
bounded in entries across partitions (LRU partitions first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from skyroute.router.cache.backend import (
    EXACT,
    SEMANTIC,
    Answer,
    CacheHit,
    InvalidationFailed,
    entry_id,
)
from skyroute.router.cache.index import VectorIndex
from skyroute.router.cache.invalidate import Selector
from skyroute.router.cache.keys import Probe
from skyroute.router.cache.rules import CacheRule
from skyroute.router.embed.text import Signature
from skyroute.router.logs import event

log = logging.getLogger("skyroute.router.cache")

_MAX_PENDING = 32  # background writes in flight; more are dropped
_MAX_LOOKUPS = 96  # lookups in flight; more are misses (the pool has 128 connections)
_POOL_SIZE = 128
_LOOKUP_SYNC = 64  # log entries a lookup reads; a longer backlog is read in the background
_SWEEP_EVERY = 256
_BACKOFF_MIN_S = 0.5
_BACKOFF_MAX_S = 5.0
_DEL_BATCH = 500
_LABEL_SEP = "\x1e"  # between a partition hash and its label in the partitions index
# Raise each index member's expiry score (never lower it), prune what expired, and keep
# the version index alive as long as its longest-lived entry.
_INDEX_SCRIPT = """
local function bump(key, member, score)
  local old = redis.call('ZSCORE', key, member)
  if (not old) or tonumber(old) < score then redis.call('ZADD', key, score, member) end
end
local expires = tonumber(ARGV[3])
bump(KEYS[1], ARGV[1], expires)
bump(KEYS[2], ARGV[2], expires)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return 1
"""


@dataclass(slots=True)
class _Mirror:
    label: str
    index: VectorIndex[None]
    last_id: str = ""  # last stream id applied; "" = nothing read yet
    last: tuple[int, int] = (-1, -1)  # last_id parsed, to drop replays of older reads
    syncing: bool = False  # a background catch-up is running
    lookups: int = 0


class RedisBackend:
    """Shared cache in Redis with local vector mirrors (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "skyroute:cache:",
        timeout_s: float = 0.05,
        store_timeout_s: float = 2.0,
        mirror_max_entries: int = 200_000,
        sync_batch: int = 500,
        clock: Callable[[], float] = time.time,
        client: aioredis.Redis | None = None,
    ) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"cache Redis URL {url!r} must start with redis://, rediss:// or unix://"
            )
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.store_timeout_s = store_timeout_s
        self.mirror_max_entries = mirror_max_entries
        self.sync_batch = sync_batch
        self._clock = clock
        # Two clients: lookups fail fast; background writes and catch-up reads
        # (bigger, off the request path) get the longer timeout.
        self._redis = client or self._client(timeout_s, _POOL_SIZE)
        self._background = client or self._client(store_timeout_s, _MAX_PENDING + 2)
        self._lookups = 0
        self._mirrors: OrderedDict[str, _Mirror] = OrderedDict()
        self._mirrored = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._down_until = 0.0
        self._backoff = _BACKOFF_MIN_S
        self.errors = 0
        self.skipped = 0  # calls not made because Redis was marked down
        self.busy = 0  # lookups not made because too many were in flight
        self.dropped_writes = 0
        self.sync_errors = 0
        self.last_error = ""

    def _client(self, timeout_s: float, connections: int) -> aioredis.Redis:
        # A blocking pool: when every connection is busy a call waits (within its
        # timeout) instead of failing with "too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=0,
        )
        return aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))

    @property
    def kind(self) -> str:
        return "redis"

    def __len__(self) -> int:
        return self._mirrored

    # -- health -----------------------------------------------------------------
    def _available(self) -> bool:
        if time.monotonic() < self._down_until:
            self.skipped += 1
            return False
        return True

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        if time.monotonic() >= self._down_until:
            event(
                log,
                "cache_backend_degraded",
                logging.WARNING,
                backend="redis",
                op=what,
                error=self.last_error,
                misses_for_s=round(self._backoff, 1),
            )
        self._down_until = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX_S)

    def _ok(self) -> None:
        self._backoff = _BACKOFF_MIN_S

    # -- keys -------------------------------------------------------------------
    def _entry_key(self, partition: str, text_key: str) -> str:
        return f"{self.prefix}{partition}:e:{text_key}"

    def _log_key(self, partition: str) -> str:
        return f"{self.prefix}{partition}:log"

    def _partitions_key(self) -> str:
        return f"{self.prefix}partitions"

    def _version_key(self, version: str) -> str:
        return f"{self.prefix}pv:{version}"

    # -- lookup -----------------------------------------------------------------
    async def lookup(self, probe: Probe, rule: CacheRule) -> CacheHit | None:
        if not self._available():
            return None
        if self._lookups >= _MAX_LOOKUPS:
            self.busy += 1  # saturated: a miss, but not a sign that Redis is down
            return None
        self._lookups += 1
        try:
            return await self._lookup(probe, rule)
        finally:
            self._lookups -= 1

    async def _lookup(self, probe: Probe, rule: CacheRule) -> CacheHit | None:
        mirror = self._mirror(probe)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(self._entry_key(probe.partition, probe.text_key))
            start = f"({mirror.last_id}" if mirror.last_id else "-"
            pipe.xrange(self._log_key(probe.partition), min=start, max="+", count=_LOOKUP_SYNC)
            exact, entries = await asyncio.wait_for(pipe.execute(), self.timeout_s)
        except Exception as e:  # timeouts included; a cancelled request still propagates
            self._failed("lookup", e)
            return None
        self._ok()
        if isinstance(exact, bytes):
            answer = Answer.decode(exact, probe.label)
            if answer is not None:
                return CacheHit(answer, 1.0, EXACT, entry_id(probe.partition, probe.text_key))
        self._apply(mirror, entries)
        if len(entries) == _LOOKUP_SYNC and not mirror.syncing:
            self._catch_up_later(probe)
        found = mirror.index.search(probe.vector(), probe.signature, rule.threshold, self._clock())
        if found is None:
            return None
        key, similarity, _ = found
        try:
            blob = await asyncio.wait_for(
                self._redis.get(self._entry_key(probe.partition, key)), self.timeout_s
            )
        except Exception as e:
            self._failed("fetch", e)
            return None
        if isinstance(blob, str):
            blob = blob.encode()
        answer = Answer.decode(blob, probe.label) if blob is not None else None
        if answer is None:  # expired or evicted in Redis since it was mirrored
            mirror.index.remove(key)
            self._mirrored -= 1
            return None
        return CacheHit(answer, similarity, SEMANTIC, entry_id(probe.partition, key))

    def _mirror(self, probe: Probe) -> _Mirror:
        mirror = self._mirrors.get(probe.partition)
        if mirror is None or mirror.label != probe.label:
            if mirror is not None:
                self._mirrored -= len(mirror.index)
            mirror = _Mirror(probe.label, VectorIndex(probe.embedder.dim))
            self._mirrors[probe.partition] = mirror
        self._mirrors.move_to_end(probe.partition)
        return mirror

    def _apply(self, mirror: _Mirror, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        index = mirror.index
        before = len(index)
        mirror.lookups += 1
        if mirror.lookups % _SWEEP_EVERY == 0:
            index.expire(self._clock())
        for stream_id, fields in entries:
            sid = stream_id.decode()
            ms, _, seq = sid.partition("-")
            order = (int(ms), int(seq or 0))
            if order <= mirror.last:
                continue  # already applied (a lookup and a catch-up read overlapped)
            mirror.last_id, mirror.last = sid, order
            try:
                vec = np.frombuffer(fields[b"v"], dtype=np.float16).astype(np.float32)
                sig = Signature.decode(fields[b"s"].decode())
                expires = int(fields[b"e"]) / 1000.0
                key = fields[b"k"].decode()
            except (KeyError, ValueError) as e:
                event(
                    log,
                    "cache_entry_skipped",
                    logging.WARNING,
                    backend="redis",
                    entry=sid,
                    error=type(e).__name__,
                )
                continue
            if vec.shape == (index.dim,):
                index.add(key, vec, sig, expires, None)
        self._mirrored += len(index) - before
        while self._mirrored > self.mirror_max_entries:
            pkey, oldest = next(iter(self._mirrors.items()))
            if oldest is not mirror:  # drop whole least recently used mirrors first
                self._mirrored -= len(oldest.index)
                del self._mirrors[pkey]
                continue
            victim = index.oldest()
            if victim is None:
                break
            index.remove(victim)
            self._mirrored -= 1

    def _catch_up_later(self, probe: Probe) -> None:
        try:
            task = asyncio.get_running_loop().create_task(self._catch_up_quietly(probe))
        except RuntimeError:
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _catch_up_quietly(self, probe: Probe) -> None:
        await self.catch_up(probe)

    async def catch_up(self, probe: Probe) -> int:
        """Read the partition's log into the mirror until it is current; entries applied.

        Runs in the background when a lookup finds a backlog (a new router, a
        partition not seen for a while), in batches of ``sync_batch`` with the
        write timeout, so that lookups stay one short round trip. Its failures
        are counted but do not mark Redis down: lookups decide that.
        """
        mirror = self._mirror(probe)
        if mirror.syncing:
            return 0
        mirror.syncing = True
        applied = failures = 0
        try:
            while True:
                start = f"({mirror.last_id}" if mirror.last_id else "-"
                try:
                    read = await asyncio.wait_for(
                        self._background.xrange(
                            self._log_key(probe.partition),
                            min=start,
                            max="+",
                            count=self.sync_batch,
                        ),
                        self.store_timeout_s,
                    )
                except Exception as e:
                    self.sync_errors += 1
                    self.last_error = f"catch-up: {type(e).__name__}: {e}"
                    failures += 1
                    if failures >= 3:
                        log.debug("cache redis catch-up of a partition stopped: %s", e)
                        return applied
                    continue
                failures = 0
                entries = cast(list[tuple[bytes, dict[bytes, bytes]]], read or [])
                before = len(mirror.index)
                self._apply(mirror, entries)
                applied += len(mirror.index) - before
                if len(entries) < self.sync_batch:
                    return applied
        finally:
            mirror.syncing = False

    # -- store ------------------------------------------------------------------
    def store(self, probe: Probe, rule: CacheRule, answer: Answer) -> None:
        if not self._available():
            self.dropped_writes += 1
            return
        if len(self._pending) >= _MAX_PENDING:
            self.dropped_writes += 1
            return
        try:
            task = asyncio.get_running_loop().create_task(self._write(probe, rule, answer))
        except RuntimeError:  # no running loop: nothing to write with
            self.dropped_writes += 1
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, probe: Probe, rule: CacheRule, answer: Answer) -> None:
        ttl_ms = max(1, int(rule.ttl_s * 1000))
        expires_ms = int(self._clock() * 1000) + ttl_ms
        log_key = self._log_key(probe.partition)
        fields: dict[Any, Any] = {
            "k": probe.text_key,
            "v": probe.vector().astype(np.float16).tobytes(),
            "s": probe.signature.encode(),
            "e": expires_ms,
        }
        try:
            pipe = self._background.pipeline(transaction=False)
            pipe.set(
                self._entry_key(probe.partition, probe.text_key),
                answer.encode(probe.label),
                px=ttl_ms,
            )
            pipe.xadd(log_key, fields, maxlen=rule.max_entries, approximate=True)
            pipe.pexpire(log_key, ttl_ms)
            pipe.eval(
                _INDEX_SCRIPT,
                2,
                self._partitions_key(),
                self._version_key(answer.policy_version),
                f"{probe.partition}{_LABEL_SEP}{probe.label}",
                entry_id(probe.partition, probe.text_key),
                expires_ms,
                expires_ms - ttl_ms,
                ttl_ms,
            )
            await asyncio.wait_for(pipe.execute(), self.store_timeout_s)
        except Exception as e:
            self._failed("store", e)
            self.dropped_writes += 1
            return
        self._ok()

    # -- invalidation -------------------------------------------------------------
    async def invalidate(self, selector: Selector) -> int:
        """Delete the named entries in Redis (every replica then misses them); how many.

        Raises :class:`InvalidationFailed` if Redis cannot be read or written: the
        caller must not report entries as gone that may still be served.
        """
        try:
            return await asyncio.wait_for(self._invalidate(selector), 30.0)
        except Exception as e:
            self.last_error = f"invalidate: {type(e).__name__}: {e}"
            raise InvalidationFailed(self.last_error) from e

    async def _invalidate(self, selector: Selector) -> int:
        r = self._background
        labels: dict[str, str] = {}
        for member in await r.zrange(self._partitions_key(), 0, -1):
            text = member.decode() if isinstance(member, bytes) else str(member)
            part, _, label = text.partition(_LABEL_SEP)
            labels[part] = label
        entries: list[tuple[str, str]] = []  # (partition, key)
        whole: list[str] = []  # partitions removed entirely
        if selector.policy_version is not None:
            for member in await r.zrange(self._version_key(selector.policy_version), 0, -1):
                text = member.decode() if isinstance(member, bytes) else str(member)
                part, _, key = text.partition(".")
                entries.append((part, key))
            if selector.entry is not None:
                entries = [e for e in entries if e == (selector.partition, selector.key)]
        elif selector.entry is not None:
            entries = [(str(selector.partition), str(selector.key))]
        else:
            whole = [p for p, label in labels.items() if selector.matches_label(label)]
        if selector.intent is not None or selector.tenant is not None:
            entries = [(p, k) for p, k in entries if selector.matches_label(labels.get(p, ""))]
        if selector.policy_version is not None and entries:
            entries = await self._of_version(entries, selector.policy_version)
        for part in whole:
            read = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                await r.xrange(self._log_key(part), min="-", max="+") or [],
            )
            keys = {fields[b"k"].decode() for _, fields in read if b"k" in fields}
            entries += [(part, k) for k in sorted(keys)]
        removed = 0
        for i in range(0, len(entries), _DEL_BATCH):
            batch = entries[i : i + _DEL_BATCH]
            removed += int(await r.delete(*(self._entry_key(p, k) for p, k in batch)))
        if whole:
            pipe = r.pipeline(transaction=False)
            for part in whole:
                pipe.delete(self._log_key(part))
                pipe.zrem(self._partitions_key(), f"{part}{_LABEL_SEP}{labels[part]}")
            await pipe.execute()
        if selector.policy_version is not None and not (
            selector.entry or selector.intent or selector.tenant
        ):
            await r.delete(self._version_key(selector.policy_version))
        self._forget(whole, entries)
        return removed

    async def _of_version(
        self, entries: list[tuple[str, str]], version: str
    ) -> list[tuple[str, str]]:
        """Those of ``entries`` whose stored answer is still the one ``version`` stored (the
        index keeps an id after a later version answered the same question again)."""
        keep: list[tuple[str, str]] = []
        for i in range(0, len(entries), _DEL_BATCH):
            batch = entries[i : i + _DEL_BATCH]
            blobs = await self._background.mget([self._entry_key(p, k) for p, k in batch])
            for entry, blob in zip(batch, blobs, strict=True):
                if blob is None:
                    continue
                try:
                    data = orjson.loads(blob)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(data, dict) and data.get("pv", "") == version:
                    keep.append(entry)
        return keep

    def _forget(self, whole: list[str], entries: list[tuple[str, str]]) -> None:
        """Drop this router's mirrored vectors of what was just deleted."""
        for part in whole:
            mirror = self._mirrors.pop(part, None)
            if mirror is not None:
                self._mirrored -= len(mirror.index)
        for part, key in entries:
            mirror = self._mirrors.get(part)
            if mirror is not None and key in mirror.index:
                mirror.index.remove(key)
                self._mirrored -= 1

    # -- the rest -----------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.kind,
            "mirrored_entries": self._mirrored,
            "mirrored_partitions": len(self._mirrors),
            "errors": self.errors,
            "skipped_while_down": self.skipped,
            "busy_misses": self.busy,
            "dropped_writes": self.dropped_writes,
            "sync_errors": self.sync_errors,
            "pending_writes": len(self._pending),
            "down": time.monotonic() < self._down_until,
            "last_error": self.last_error,
        }

    async def drain(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.drain(), 1.0)
        with contextlib.suppress(Exception):
            await self._redis.aclose()
        with contextlib.suppress(Exception):
            await self._background.aclose()
