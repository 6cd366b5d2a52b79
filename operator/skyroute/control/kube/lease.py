"""Leader election over a ``coordination.k8s.io/v1`` Lease.

The HA model: every replica watches, compiles and serves. Snapshots are
content-hashed, so replicas that see the same objects compute the same
versions byte for byte, and a router may connect to any of them. What must
not be done twice is *writing*: two replicas patching status and posting
events would fight over ``lastTransitionTime`` and double every event. So
writing belongs to the holder of one Lease, the same primitive
controller-runtime and client-go use; kopf's peering was not chosen because
it pauses the non-leading replicas' watches entirely, and a paused replica
could neither serve routers current snapshots nor answer the webhook.

The leader also labels its own Pod ``skyroute.io/leader=true`` (when it
runs in one) so the routers' Service can select the leader: the synced and
stale counts in status then cover every router, not only the leader's share.
Standby replicas keep serving whoever is connected to them.

The algorithm is client-go's, with its three durations (defaults 15 s,
10 s, 2 s): a replica takes the Lease when it is free or when its record has
not changed for ``duration`` seconds *as measured by the replica's own
monotonic clock* (no trust in clock sync between nodes); the leader renews
every ``retry_period``, and leads only until ``renew_deadline`` (shorter
than the lease) after the start of its last successful renew. Writes use
the Lease's resourceVersion, so of two replicas racing, one gets a conflict
and stays standby. On shutdown the leader releases the Lease so a standby
takes over at once.

The renew deadline is what keeps two replicas from both writing: it is
checked on every round (a leader past it steps down before anything else)
and, through :meth:`LeaseElector.may_write`, before every leader write the
operator makes (``KubeApi`` refuses them otherwise). A leader that was
frozen (SIGSTOP, a stalled node, a long pause) wakes up past its deadline
and writes nothing, while a standby can only have taken over after the
longer lease duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from skyroute.control.kube.api import KubeApi
from skyroute.control.logs import event

log = logging.getLogger("skyroute.control.kube.lease")
ADDRESS_ANNOTATION = "skyroute.io/grpc-address"


def _micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Holds (or waits for) one Lease; calls ``on_change(is_leader)`` on every flip."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        on_change: Callable[[bool], Awaitable[None]] | None = None,
        renew_deadline: float | None = None,
        retry_period: float | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = max(1.0, duration)
        # client-go's defaults are 15 s / 10 s / 2 s: the same proportions by default.
        self.renew_deadline = renew_deadline or self.duration * 2 / 3
        self.retry_period = retry_period or self.duration / 7.5
        if not self.retry_period * 1.2 < self.renew_deadline < self.duration:
            raise ValueError(
                f"lease: need retry period x 1.2 < renew deadline < duration, got "
                f"{self.retry_period:g} / {self.renew_deadline:g} / {self.duration:g} s"
            )
        self.on_change = on_change
        self.is_leader = False
        self.transitions = 0
        # The leader's gRPC address, as it advertises it on the Lease (followers forward
        # rollout outcomes there); what this replica advertises when it leads.
        self.advertise = ""
        self.leader_address = ""
        self._record: tuple[str, str] | None = None
        self._record_seen = time.monotonic()
        self._renewed = 0.0

    def _spec(self, acquire: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": round(self.duration),
            "acquireTime": acquire,
            "renewTime": _micro_now(),
            "leaseTransitions": transitions,
        }

    async def try_acquire_or_renew(self) -> bool:
        """One round of the algorithm; returns whether this replica leads now."""
        lease = await self.api.get_lease(self.namespace, self.name)
        now = time.monotonic()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "annotations": {ADDRESS_ANNOTATION: self.advertise},
                },
                "spec": self._spec(_micro_now(), 0),
            }
            return await self.api.create_lease(self.namespace, body)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        meta = lease.setdefault("metadata", {})
        annotations = meta.get("annotations") or {}
        self.leader_address = (
            str(annotations.get(ADDRESS_ANNOTATION, ""))
            if holder and holder != self.identity
            else ""
        )
        if holder != self.identity or annotations.get(ADDRESS_ANNOTATION) != self.advertise:
            # Written with every acquire or renew of ours; a follower's write below only
            # happens when it takes the Lease over.
            meta["annotations"] = {**annotations, ADDRESS_ANNOTATION: self.advertise}
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._record:
            self._record, self._record_seen = record, now
        if holder == self.identity:
            lease["spec"] = {
                **spec,
                **self._spec(
                    spec.get("acquireTime") or _micro_now(), int(spec.get("leaseTransitions") or 0)
                ),
            }
            return await self.api.replace_lease(self.namespace, self.name, lease)
        expired = now - self._record_seen > float(spec.get("leaseDurationSeconds") or 15)
        if holder and not expired:
            return False
        lease["spec"] = self._spec(_micro_now(), int(spec.get("leaseTransitions") or 0) + 1)
        return await self.api.replace_lease(self.namespace, self.name, lease)

    async def _set(self, leader: bool) -> None:
        if leader == self.is_leader:
            return
        self.is_leader = leader
        self.transitions += 1
        event(
            log,
            "leader" if leader else "standby",
            lease=f"{self.namespace}/{self.name}",
            identity=self.identity,
        )
        if self.on_change is not None:
            await self.on_change(leader)

    def may_write(self) -> bool:
        """Leading, and still within the renew deadline of the last successful renew."""
        return self.is_leader and time.monotonic() - self._renewed < self.renew_deadline

    async def round(self) -> None:
        """One acquire-or-renew, with the renew deadline checked before and after it."""
        if self.is_leader and not self.may_write():
            event(
                log,
                "renew_deadline_passed",
                logging.WARNING,
                lease=f"{self.namespace}/{self.name}",
                since_renew_s=round(time.monotonic() - self._renewed, 3),
            )
            await self._set(False)
        started = time.monotonic()
        try:
            leading = await asyncio.wait_for(
                self.try_acquire_or_renew(), timeout=self.renew_deadline
            )
        except Exception as exc:
            event(log, "lease_error", logging.WARNING, error=repr(exc))
            leading = False
            if self.is_leader and self.may_write():
                return  # a failed renew: try again until the deadline
        if leading:
            # Counted from before the request: the API server may have stored it any time after.
            self._renewed = started
            if time.monotonic() - started >= self.renew_deadline:
                leading = False  # the renew itself took longer than the deadline
        await self._set(leading)

    async def run(self, stop: asyncio.Event) -> None:
        """Acquire and renew until ``stop``; then release if held."""
        while not stop.is_set():
            await self.round()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.retry_period)
        await self.release()

    async def release(self) -> None:
        """Give the Lease up (a standby takes it on its next round)."""
        if not self.is_leader:
            return
        with contextlib.suppress(Exception):
            lease = await self.api.get_lease(self.namespace, self.name)
            spec = (lease or {}).get("spec") or {}
            if lease is not None and spec.get("holderIdentity") == self.identity:
                lease["spec"] = {**spec, "holderIdentity": None, "leaseDurationSeconds": 1}
                await self.api.replace_lease(self.namespace, self.name, lease)
        await self._set(False)
