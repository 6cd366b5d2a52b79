"""Which connected router serves which version of each object.

Routers ACK whole snapshots, not objects, yet a RoutingPolicy's status must
say how many routers serve *its* version: after a change to one pool, a
router still on the previous snapshot already serves every policy that does
not use that pool. So each published snapshot's per-object versions are kept
(a bounded history, newest last), and a router counts as synced for an
object when the snapshot it ACKed holds the object's current version. A
router on a snapshot the history no longer knows (older than the history,
or from before a restart) counts as stale until it takes the current one,
which is the conservative answer and, since it is also about to be pushed
the current snapshot, a short-lived one.

Counts are Istio's proxy-status in aggregate: synced routers ACKed the
version; stale ones were pushed something else or NACKed it and kept their
last good snapshot.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from skyroute.control.distribution.routers import RouterRegistry
from skyroute.control.kube.world import Key, object_versions
from skyroute.v1 import snapshot_pb2


@dataclass(frozen=True, slots=True)
class SyncCount:
    synced: int
    stale: int

    @property
    def connected(self) -> int:
        return self.synced + self.stale


class Fleet:
    """Per-object sync counts over the registry's connected routers."""

    def __init__(self, registry: RouterRegistry, history: int = 64) -> None:
        self.registry = registry
        self._history: OrderedDict[str, dict[Key, str]] = OrderedDict()
        self._limit = history

    def record(self, snapshot: snapshot_pb2.Snapshot, served: str | None = None) -> None:
        """Remember what ``snapshot`` holds (call for every published snapshot).

        ``served``: the version routers ACK when it differs from the compiled one (the
        learner re-versions a snapshot with its priors); its objects count as the
        compiled ``snapshot``'s, so learned priors do not make every router stale.
        """
        version = served or snapshot.version
        self._history[version] = object_versions(snapshot)
        self._history.move_to_end(version)
        while len(self._history) > self._limit:
            self._history.popitem(last=False)

    def held(self, snapshot_version: str) -> dict[Key, str] | None:
        return self._history.get(snapshot_version)

    def count(self, key: Key, version: str) -> SyncCount:
        """Connected routers whose ACKed snapshot holds ``key`` at ``version``, and the rest."""
        synced = stale = 0
        for record in self.registry.connected():
            held = self._history.get(record.acked_version)
            if version and held is not None and held.get(key) == version:
                synced += 1
            else:
                stale += 1
        return SyncCount(synced, stale)
