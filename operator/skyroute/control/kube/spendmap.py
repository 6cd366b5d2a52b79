"""The spend ledger on a cluster: kept by the leader, in a ConfigMap, fenced.

Every operator replica serves routers, but one ledger counts: the Lease
holder's. A follower counts nothing itself; it forwards every charge its
routers report to the leader (``forward.py``, the same ``ReportOutcomes``
path as rollout outcomes), where the charge ids keep a forwarded charge
from being counted twice. The leader saves the ledger every
``interval`` seconds when it changed, into the ConfigMap
``skyroute-spend-ledger`` of its own namespace (``jsonmap.py``: gzip JSON,
written through the leader fence, so a replica past its renew deadline
cannot overwrite its successor's ledger). A replica that becomes leader
reads the ConfigMap before it counts anything (``keeping`` is False until
then), so it continues the ledger instead of starting one; charges its own
routers reported while it was not leading (kept in ``pending``) are counted
then, and those the previous leader had saved are dropped by their ids.

A cluster ledger is smaller than a folder's (``MAX_SEEN``, ``MAX_ROWS``), so
it fits the ConfigMap's 1 MiB once compressed; a ledger that still would not
fit is not written (``too_large``, logged). Between the old leader's last
save and its end, charges can be missed (at most ``interval`` seconds of
them), never counted twice while the charge ids are remembered
(``MAX_SEEN``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Sequence

from skyroute.control.kube.api import KubeApi
from skyroute.control.kube.jsonmap import JsonMap
from skyroute.control.logs import event
from skyroute.control.spend.ledger import Ledger
from skyroute.control.spend.persist import Restored, dump, restore
from skyroute.v1 import distribution_pb2

log = logging.getLogger("skyroute.control.kube.spend")

NAME = "skyroute-spend-ledger"
KEY = "spend.json.gz"
MAX_SEEN = 10_000
MAX_ROWS = 20_000
MAX_PENDING = 50_000


def cluster_ledger() -> Ledger:
    return Ledger(max_seen=MAX_SEEN, max_rows=MAX_ROWS)


class SpendKeeper:
    """Loads, counts and saves the ledger while this replica leads."""

    def __init__(self, api: KubeApi, namespace: str, interval: float = 2.0) -> None:
        self.map = JsonMap(api, namespace, NAME, KEY)
        self.ledger = cluster_ledger()
        self.interval = interval
        self.keeping = False
        self.restored = Restored(where=self.map.where)
        self._saved_at = -1
        # Charges seen while not leading (also forwarded to the leader, if there is
        # one): counted if this replica takes over, where the charge ids drop those
        # the previous leader had already saved.
        self.pending: collections.deque[distribution_pb2.Outcome] = collections.deque(
            maxlen=MAX_PENDING
        )

    def record(self, outcomes: Sequence[distribution_pb2.Outcome]) -> None:
        """The service's ``charge``: count while leading, else keep for a takeover."""
        if self.keeping:
            self.ledger.record(outcomes)
        else:
            self.pending.extend(o for o in outcomes if o.account)

    async def load(self) -> Restored:
        """The ConfigMap's ledger in place of this one (a bad one: an empty ledger)."""
        fresh = cluster_ledger()
        out = Restored(where=self.map.where)
        doc, out.error = await self.map.read()
        if doc is not None:
            out = restore(fresh, doc, self.map.where)
        if out.error:
            event(log, "spend_ledger_refused", logging.WARNING, configmap=NAME, error=out.error)
        elif doc is not None:
            event(log, "spend_ledger_restored", configmap=NAME, rows=out.rows)
        self.ledger.rows, self.ledger.seen = fresh.rows, fresh.seen
        self.ledger.charges, self.ledger.duplicates = fresh.charges, fresh.duplicates
        self._saved_at = self.ledger.changes
        self.restored = out
        return out

    async def lead(self, leader: bool) -> None:
        """Leadership changed: a new leader loads before counting; a follower stops."""
        self.keeping = False
        if leader:
            await self.load()
            self.keeping = True
            pending, self.pending = list(self.pending), collections.deque(maxlen=MAX_PENDING)
            self.ledger.record(pending)

    async def save(self, force: bool = False) -> bool:
        if not self.keeping or (not force and self.ledger.changes == self._saved_at):
            return False
        changes = self.ledger.changes
        try:
            ok = await self.map.write(dump(self.ledger))
        except Exception as exc:  # NotLeader past the deadline, or the API server
            event(log, "spend_ledger_unsaved", logging.WARNING, error=repr(exc))
            return False
        if ok:
            self._saved_at = changes
        return ok

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            await self.save()
