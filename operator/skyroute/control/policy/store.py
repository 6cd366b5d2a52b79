"""The one current snapshot, and the last reason a new one was refused.

A snapshot is only ever replaced whole, by a newer one that compiled without
a single problem; a folder that fails to compile leaves the previous snapshot
serving and only sets ``last_error`` (the xDS "last known good" rule, applied
on the control-plane side as well). Publishing a snapshot whose version equals
the current one changes nothing and notifies nobody, which is what makes
saving a file without changes, or touching it, free for the whole fleet.

Subscribers are plain callbacks run on the event loop thread: distribution
streams use them to wake up and push, without polling.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from skyroute.control.policy.errors import PolicyError
from skyroute.v1 import snapshot_pb2

log = logging.getLogger("skyroute.control.store")


class SnapshotStore:
    """Holds the serving snapshot; notifies subscribers when its version changes."""

    def __init__(self, source: str = "") -> None:
        self.source = source
        self._snapshot: snapshot_pb2.Snapshot | None = None
        self.last_error = ""
        self.last_error_unix_ms = 0
        # Since when the source has been refused in a row (0 while it compiles).
        self.broken_since_unix_ms = 0
        self.published_unix_ms = 0
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._next_id = 0
        # Applied to every snapshot before it is compared and served: the learning
        # loop writes its fleet priors in here, so a recompiled folder keeps them.
        self.prepare: Callable[[snapshot_pb2.Snapshot], snapshot_pb2.Snapshot] | None = None

    @property
    def snapshot(self) -> snapshot_pb2.Snapshot | None:
        """The serving snapshot (treat as read-only), or None before the first good compile."""
        return self._snapshot

    @property
    def version(self) -> str:
        return self._snapshot.version if self._snapshot is not None else ""

    def policies(self) -> dict[str, str]:
        """Serving policies, name to version."""
        if self._snapshot is None:
            return {}
        return {p.name: p.version for p in self._snapshot.policies}

    def publish(self, snapshot: snapshot_pb2.Snapshot, *, compiled: bool = True) -> bool:
        """Serve ``snapshot``; True (and subscribers notified) only if the version changed.

        ``compiled`` says the source just compiled (which clears ``last_error``); a
        republish of the last good input (new priors, a rollout step) says False and
        leaves a broken source reported as broken.
        """
        if compiled:
            self.last_error = ""
            self.broken_since_unix_ms = 0
        if self.prepare is not None:
            snapshot = self.prepare(snapshot)
        if self._snapshot is not None and snapshot.version == self._snapshot.version:
            return False
        self._snapshot = snapshot
        self.published_unix_ms = int(time.time() * 1000)
        for callback in list(self._subscribers.values()):
            try:
                callback()
            except Exception:  # one broken stream must not stop the others hearing of it
                log.exception("snapshot subscriber failed")
        return True

    def reject(self, error: PolicyError) -> None:
        """Record why the source was refused; the serving snapshot stays."""
        self.last_error = str(error)
        self.last_error_unix_ms = int(time.time() * 1000)
        if not self.broken_since_unix_ms:
            self.broken_since_unix_ms = self.last_error_unix_ms

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after each version change; returns the unsubscribe function."""
        key = self._next_id
        self._next_id += 1
        self._subscribers[key] = callback

        def unsubscribe() -> None:
            self._subscribers.pop(key, None)

        return unsubscribe
