"""Watching the policy folder and turning each change into at most one new snapshot.

Off-cluster, the folder is the API server: ``watchfiles`` reports changes
(inotify, falling back to polling), a short debounce folds an editor's
write-rename-chmod burst into one event (Istio batches pushes the same way,
with a quiet period), and each event recompiles the whole folder. Whole,
because snapshots are states of the world: compiling everything from scratch
is a few milliseconds for hundreds of objects and can never drift from what
a fresh start would produce.

A compile that fails is logged with every problem and changes nothing else:
the previous snapshot keeps serving, and nothing is pushed. A compile that
yields the current version (a file saved unchanged, a comment edited) is
logged and pushes nothing either.

The watcher never dies of its input: any exception a compile raises (a
MemoryError or RecursionError included, should a limit in the loader be
missed) is a rejection like a PolicyError, naming the folder; a failing
watch is retried every second. While the source is broken it is recompiled
every ``retry_s`` as well, so a transient failure (a file briefly
unreadable) heals without an edit. ``store.broken_since_unix_ms`` and
``last_error`` say since when and why (``/healthz``, ``skyroute status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import watchfiles

from skyroute.control.logs import event
from skyroute.control.policy.compiler import compile_objects
from skyroute.control.policy.errors import PolicyError, Problem
from skyroute.control.policy.loader import load_folder
from skyroute.control.policy.store import SnapshotStore
from skyroute.control.policy.validate import Objects, validate
from skyroute.v1 import snapshot_pb2

# What the compiled folder goes through before it is served (the rollouts).
Shape = Callable[[snapshot_pb2.Snapshot, Objects], snapshot_pb2.Snapshot]

log = logging.getLogger("skyroute.control.source")


class SourceWatcher:
    """Compiles ``folder`` into ``store`` now and after every change."""

    def __init__(
        self,
        folder: str,
        store: SnapshotStore,
        debounce_ms: int = 50,
        retry_s: float = 30.0,
        env_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.folder = folder
        # The routers' --secret-env-prefix: which apiKey {env: ...} names validate.
        self.env_prefixes = env_prefixes
        self.store = store
        self.debounce_ms = debounce_ms
        self.retry_s = retry_s
        self.compiles = 0
        self.rejections = 0
        self.shape: Shape | None = None

    def reload(self) -> bool:
        """Compile the folder; publish if valid. True when the serving version changed."""
        started = time.perf_counter()
        try:
            try:
                objects = validate(load_folder(self.folder), self.env_prefixes)
                snapshot = compile_objects(objects)
            except PolicyError:
                raise
            except Exception as exc:  # MemoryError, RecursionError, a bug: still one input
                raise PolicyError(
                    [Problem(file=self.folder, message=f"cannot compile the folder: {exc!r}")]
                ) from exc
        except PolicyError as exc:
            self.rejections += 1
            self.store.reject(exc)
            event(
                log,
                "rejected",
                logging.ERROR,
                source=self.folder,
                problems=len(exc.problems),
                serving=self.store.version or "-",
                error=str(exc),
            )
            return False
        self.compiles += 1
        if self.shape is not None:
            snapshot = self.shape(snapshot, objects)
        changed = self.store.publish(snapshot)
        event(
            log,
            "compiled",
            source=self.folder,
            version=snapshot.version,
            changed=changed,
            policies=_names(snapshot.policies),
            pools=_names(snapshot.pools),
            default_policy=snapshot.default_policy or "-",
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return changed

    async def run(
        self, stop: asyncio.Event, health: Callable[[BaseException | None], None] | None = None
    ) -> None:
        """Recompile on every change under the folder until ``stop`` is set.

        If watching fails (the folder was removed or replaced), the serving snapshot
        stays and watching resumes, with a recompile, once the folder is back.
        ``health`` hears of each round (a failed watch, or a good one).
        """
        while not stop.is_set():
            try:
                async for changes in watchfiles.awatch(
                    self.folder,
                    debounce=self.debounce_ms,
                    step=min(self.debounce_ms, 50),
                    stop_event=stop,
                    recursive=True,
                    rust_timeout=int(self.retry_s * 1000),
                    yield_on_timeout=True,
                ):
                    if not changes:  # quiet for retry_s: retry only a broken source
                        if self.store.broken_since_unix_ms:
                            self.reload()
                        continue
                    files = sorted({Path(p).name for _, p in changes})
                    event(log, "source_changed", logging.DEBUG, files=",".join(files))
                    self.reload()
                    if health is not None:
                        health(None)
            except Exception as exc:
                if health is not None:
                    health(exc)
                event(log, "watch_failed", logging.WARNING, source=self.folder, error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                if not stop.is_set() and Path(self.folder).is_dir():
                    self.reload()


def _names(items: Iterable[snapshot_pb2.Policy] | Iterable[snapshot_pb2.Pool]) -> str:
    return ",".join(item.name for item in items) or "-"
