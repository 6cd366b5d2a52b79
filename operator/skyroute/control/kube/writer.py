"""Status patches and events, for every object, from one place.

Status is not written by the handler of the object that changed, because
the object that changed is often not the one whose status changes: a pool
edit re-versions every policy that uses it, a router ACK changes sync counts
of everything, a new pool lets a waiting policy compile. So one writer
computes every object's desired status from the world and the fleet
(``conditions.build_status``) and patches only the ones that differ from
what the object already says. Comparing against the object's own status
(seen on the watch) is what makes a restart or a leader change silent: the
new writer computes the same statuses the old one wrote and patches nothing.

Events are derived from the same comparison, so each is emitted once per
transition and never again on restart: ``NewVersion`` (Normal) when an
object's serving version changes, ``Invalid``/``PoolNotFound``/``Rejected``
(Warning) when a generation cannot compile, ``PoolDeleted`` (Warning) when a
pool a policy uses is deleted under it; ``LatencyDrift``/``CostDrift``
(Warning) on a ModelPool when one of its models drifts from its baseline,
and ``LatencyDriftRecovered``/``CostDriftRecovered`` (Normal) when it is back.
Drift reaches the writer through ``drift``, the learner's ``on_drift`` hook,
which only records it and wakes the writer: like every other status, it is
written by the leader alone, and a replica that becomes leader writes the
drift it has seen. Messages carry field paths and
versions, never spec values beyond what validation quotes, and never a
secret: the operator reads no provider Secret (``secretKeyRef`` is turned
into a mount path, see ``model.ApiKeyRef.secret_path``), and of API keys only
public ids and digests ever reach it (``keysecrets.py``). A Tenant's status
says how many keys serve (``keys``) and what it does with Redis down
(``redisDown``) and what it spent (``spend``: USD in its first budget's
period, ``budgetLeftUsd``, ``period``, ``totalUsd``, ``requests``; from the
leader's spend ledger, ``kube/spendmap.py``), refreshed at most every
``spend_every`` seconds so a busy tenant does not cost a patch per tick.

Only the leader writes (``active``, driven by the Lease); every replica
computes. The first write waits for routers that were connected to a
previous operator to reconnect, so that the sync
counts are real, not a burst of zeros: it waits until as many routers are
connected as the statuses last counted, or ``settle`` seconds at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from skyroute.control.kube.api import KubeApi
from skyroute.control.kube.conditions import (
    DRIFT_TYPES,
    build_status,
    condition,
    drift_conditions,
    now_rfc3339,
    ours,
)
from skyroute.control.kube.fleet import Fleet
from skyroute.control.kube.world import Key, ObjectState, World
from skyroute.control.logs import event
from skyroute.control.policy.model import (
    API_VERSION,
    KIND_POLICY,
    KIND_POOL,
    KIND_TENANT,
    TenantResource,
)
from skyroute.control.rollout.controller import RolloutController

log = logging.getLogger("skyroute.control.kube.writer")

COMPONENT = "skyroute-operator"
_REJECTED = ("Invalid", "PoolNotFound", "Rejected")
MAX_EVENT_MESSAGE = 1024


def events_for(
    state: ObjectState, before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the events a status change deserves."""
    out: list[tuple[str, str, str]] = []
    version = after.get("version") or ""
    if version and version != before.get("version"):
        if before.get("version") and before.get("observedGeneration") == state.generation:
            out.append(
                (
                    "Normal",
                    "NewVersion",
                    f"serving {version}: re-versioned because an object it uses changed",
                )
            )
        else:
            out.append(
                ("Normal", "NewVersion", f"serving {version} (generation {state.generation})")
            )
    new_c, old_c = condition(after, "Compiled"), condition(before, "Compiled")
    if (
        new_c is not None
        and new_c.get("reason") in _REJECTED
        and (
            old_c is None
            or (old_c.get("reason"), old_c.get("message"))
            != (new_c.get("reason"), new_c.get("message"))
        )
    ):
        out.append(("Warning", str(new_c["reason"]), str(new_c.get("message", ""))))
    new_r, old_r = condition(after, "Ready"), condition(before, "Ready")
    if (
        new_r is not None
        and new_r.get("reason") == "PoolDeleted"
        and (old_r is None or old_r.get("reason") != "PoolDeleted")
    ):
        out.append(("Warning", "PoolDeleted", str(new_r.get("message", ""))))
    for type_ in DRIFT_TYPES.values():
        new_d, old_d = condition(after, type_), condition(before, type_)
        if new_d is None:
            continue
        was = (old_d.get("status"), old_d.get("message")) if old_d is not None else (None, None)
        if new_d["status"] == "True" and was != ("True", new_d.get("message")):
            out.append(("Warning", type_, str(new_d.get("message", ""))))
        elif new_d["status"] == "False" and was[0] == "True":
            out.append(("Normal", f"{type_}Recovered", str(new_d.get("message", ""))))
    return out


class StatusWriter:
    """Keeps every object's status equal to what the world says; emits events."""

    def __init__(
        self,
        api: KubeApi,
        world: World,
        fleet: Fleet,
        identity: str,
        interval: float = 0.5,
        settle: float = 10.0,
    ) -> None:
        self.api = api
        self.world = world
        self.fleet = fleet
        self.identity = identity
        self.interval = interval
        self.settle = settle
        self.active = False
        self.patches = 0
        self.events = 0
        self._seen: dict[Key, dict[str, Any]] = {}
        self._written: dict[Key, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._drift: dict[tuple[str, str], tuple[bool, str]] = {}
        # The rollout controller: status.rollout/history per policy, and its events.
        self.rollouts: RolloutController | None = None
        # A Tenant's status.spend by name (None: not known here, keep what it says).
        self.spend: Callable[[str], dict[str, Any] | None] | None = None
        self.spend_every = 5.0
        self._spend: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def seen(self, key: Key, status: Mapping[str, Any] | None) -> None:
        """The object's status as the watch (or the initial list) delivered it."""
        self._seen[key] = ours(status)

    def forget(self, key: Key) -> None:
        self._seen.pop(key, None)
        self._written.pop(key, None)

    def set_active(self, active: bool) -> None:
        """Leader or not; a new leader trusts only what the objects say, not its memory."""
        if active and not self.active:
            self._written.clear()
        self.active = active
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def drift(self, model: str, kind: str, raised: bool, message: str) -> None:
        """The learner's ``on_drift`` hook: every ModelPool holding ``model`` says so."""
        self._drift[(model, kind)] = (raised, message)
        self.wake()

    def _expected_routers(self) -> int:
        """How many routers the objects' statuses say were connected before this process."""
        counts = [
            int(s.get("routers", {}).get("synced", 0)) + int(s.get("routers", {}).get("stale", 0))
            for s in self._seen.values()
            if isinstance(s.get("routers"), dict)
        ]
        return max(counts, default=0)

    async def _settle(self, stop: asyncio.Event) -> None:
        """Until as many routers are back as statuses last counted, at most ``settle`` s."""
        deadline = time.monotonic() + self.settle
        while not stop.is_set() and time.monotonic() < deadline:
            if len(self.fleet.registry.connected()) >= self._expected_routers():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.1)

    async def run(self, stop: asyncio.Event) -> None:
        await self._settle(stop)
        while not stop.is_set():
            if not self.active and self.rollouts is not None:
                self.rollouts.events.clear()  # the leader writes transitions, not followers
            if self.active:
                try:
                    await self.write_all()
                except Exception as exc:  # API hiccups: try again on the next tick
                    event(log, "status_write_failed", logging.WARNING, error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            self._wake.clear()

    async def write_all(self) -> int:
        """Patch every object whose status differs; the number patched."""
        written = 0
        now = now_rfc3339()
        pools = self.world.pool_models()
        keys = self.world.tenant_keys()
        tenants = self.world.observed_objects(KIND_TENANT)
        for key in self.world.object_keys():
            state = self.world.state(key)
            if state is None:
                continue
            before = self._written.get(key, self._seen.get(key, {}))
            sync = self.fleet.count(key, state.version)
            drift = (
                drift_conditions(pools.get(key, ()), self._drift) if key.kind == KIND_POOL else []
            )
            rollout = (
                self.rollouts.status((key.namespace, key.name))
                if self.rollouts is not None and key.kind == KIND_POLICY
                else None
            )
            extra: dict[str, Any] | None = None
            if key.kind == KIND_TENANT:
                obj = tenants[key].obj if key in tenants else None
                extra = {"keys": keys.get(key, 0)}
                if isinstance(obj, TenantResource):
                    extra["redisDown"] = obj.spec.redis_down
                spend = self._tenant_spend(key.name) or before.get("spend")
                if spend is not None:
                    extra["spend"] = spend
            after = build_status(state, sync, before, now, drift, rollout, extra)
            if after == before:
                continue
            result = await self.api.patch_status(key.kind, key.namespace, key.name, after)
            if result is None:  # deleted meanwhile
                continue
            self.patches += 1
            written += 1
            ready = condition(after, "Ready") or {}
            event(
                log,
                "status",
                object=key.ref,
                generation=state.generation,
                version=after["version"] or "-",
                ready=ready.get("status", "-"),
                reason=ready.get("reason", "-"),
                synced=after["routers"]["synced"],
                stale=after["routers"]["stale"],
            )
            self._written[key] = ours(result.get("status"))
            for kind, reason, message in events_for(state, before, after):
                await self._event(state, kind, reason, message)
        await self._rollout_events()
        return written

    def _tenant_spend(self, name: str) -> dict[str, Any] | None:
        if self.spend is None:
            return None
        now = time.monotonic()
        cached = self._spend.get(name)
        if cached is None or now - cached[0] >= self.spend_every:
            cached = self._spend[name] = (now, self.spend(name))
        return cached[1]

    async def _rollout_events(self) -> None:
        """Write the rollout controller's transitions as events on their policies."""
        if self.rollouts is None:
            return
        pending, self.rollouts.events = self.rollouts.events, []
        for ev in pending:
            state = self.world.state(Key(KIND_POLICY, ev.ref[0], ev.ref[1]))
            if state is not None:
                await self._event(state, ev.type, ev.reason, ev.message)

    async def _event(self, state: ObjectState, kind: str, reason: str, message: str) -> None:
        key = state.key
        now = now_rfc3339()
        body = {
            "metadata": {"generateName": f"{key.name}.", "namespace": key.namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": key.kind,
                "name": key.name,
                "namespace": key.namespace,
                "uid": state.uid,
            },
            "type": kind,
            "reason": reason,
            "message": message[:MAX_EVENT_MESSAGE],
            "source": {"component": COMPONENT},
            "reportingComponent": f"skyroute.io/{COMPONENT}",
            "reportingInstance": self.identity[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.api.create_event(key.namespace, body)
        except Exception as exc:  # events are best effort; status already says it
            event(
                log, "event_failed", logging.WARNING, object=key.ref, reason=reason, error=repr(exc)
            )
            return
        self.events += 1
        event(log, "k8s_event", object=key.ref, type=kind, reason=reason)
