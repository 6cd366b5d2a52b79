"""The rollout controller on a cluster: status in, actions, analysis and history out.

``skyroute.control.rollout.controller`` decides (states, steps, analysis, the snapshot
routers get) and knows nothing of Kubernetes. This module is what a cluster
adds around it, on the operator's one event loop:

* **State from status.** A replica that does not lead (and the leader while
  it starts) adopts each policy's ``status.rollout`` and ``status.history``
  as the watch delivers them, so followers serve the leader's canary and a
  new leader carries on where the last one stopped.
* **Manual actions.** ``skyroute.io/rollout-action=promote|abort`` on a
  policy is acted on by the leader, once, and removed. Only objects that
  carry the annotation *now* are acted on, so a replica that becomes leader
  later never replays an action another leader already took.
* **Ticks.** The leader runs due analyses every ``tick_s`` and republishes
  when a step, a promotion or a rollback changes what routers get.
* **History.** Every newly seen spec is written to the policy's history
  ConfigMap (``history.py``), retried a few times on its own; the stable,
  candidate and pinned specs are never trimmed from it.
* **The webhook's pin check.** A ``pinVersion`` that is not recorded is
  refused at admission, naming the versions that are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from skyroute.control.kube.admission import Verdict
from skyroute.control.kube.api import KubeApi
from skyroute.control.kube.history import HistoryStore
from skyroute.control.kube.world import Key, World
from skyroute.control.kube.writer import StatusWriter
from skyroute.control.logs import event
from skyroute.control.policy.model import KIND_POLICY, ROLLOUT_ACTION_ANNOTATION
from skyroute.control.rollout.controller import PolicyRef, RolloutController
from skyroute.control.rollout.state import RolloutState

log = logging.getLogger("skyroute.control.kube.rollouts")
_SAVE_TRIES = 5


def _same(a: RolloutState, b: RolloutState) -> bool:
    """Same serving shape (what a follower must mirror), analysis details aside."""
    fields = ("phase", "weight", "stable_hash", "candidate_hash", "pinned_hash", "failed_hash")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


class ClusterRollouts:
    """Wraps a RolloutController with status, annotations, the Lease and ConfigMaps."""

    def __init__(
        self,
        api: KubeApi,
        world: World,
        writer: StatusWriter,
        history: HistoryStore,
        serve: Callable[[], bool],
    ) -> None:
        self.controller = RolloutController()
        self.api = api
        self.world = world
        self.writer = writer
        self.history = history
        self.serve = serve
        writer.rollouts = self.controller
        self._annotated: dict[Key, str] = {}
        self._save_failures: dict[tuple[PolicyRef, str], int] = {}

    # --- input -------------------------------------------------------------------

    def observed(self, key: Key, body: Mapping[str, Any], status: Any) -> bool:
        """Note a pending action; adopt status.rollout unless leading. True if adopted."""
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        action = annotations.get(ROLLOUT_ACTION_ANNOTATION)
        if action:
            self._annotated[key] = str(action)
        else:
            self._annotated.pop(key, None)
        if self.writer.active:
            return False
        restored = RolloutState.from_status(status, time.time())
        ref = (key.namespace, key.name)
        current = self.controller.states.get(ref)
        if restored is None or (current is not None and _same(current, restored)):
            return False
        self.controller.restore(ref, restored)
        return True

    async def load_history(self) -> None:
        try:
            for rec in await self.history.load():
                self.controller.remember(
                    (rec.namespace, rec.policy), rec.spec_hash, rec.version, rec.spec_json
                )
        except Exception as exc:  # no history: rollouts start from the specs as they are
            event(log, "history_load_failed", logging.WARNING, error=repr(exc))

    def review(self, key: Key, body: Mapping[str, Any], verdict: Verdict) -> Verdict:
        """Refuse a ``pinVersion`` that is not a recorded version of the policy."""
        spec = body.get("spec")
        pin = spec.get("pinVersion") if isinstance(spec, Mapping) else None
        ref = (key.namespace, key.name)
        if (
            not verdict.allowed
            or not isinstance(pin, str)
            or not pin
            or key.kind != KIND_POLICY
            or self.controller.spec_of(ref, pin) is not None
        ):
            return verdict
        known = self.controller.versions(ref)
        return Verdict(
            denied=(
                f"spec.pinVersion: {pin} is not a recorded version of {key.ref} (recorded: "
                f"{', '.join(known[-10:]) or 'none'}; see status.history)",
            ),
            warnings=verdict.warnings,
        )

    # --- the leader's work ----------------------------------------------------------

    async def run(self, stop: asyncio.Event, tick_s: float = 0.5) -> None:
        """Leader only: manual actions, due analyses, history writes; republish on change."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick_s)
            if not self.writer.active:
                continue
            try:
                changed = await self._take_actions()
                changed = self.controller.tick() or changed
                if changed:
                    self.serve()
                await self._save_history()
                self.writer.wake()
            except Exception:  # a bug or an API hiccup must not stop serving
                log.exception("rollout tick failed")

    async def _take_actions(self) -> bool:
        acted = False
        for key, action in list(self._annotated.items()):
            del self._annotated[key]  # until the watch shows it removed: not twice
            done, message = self.controller.action((key.namespace, key.name), action)
            acted = acted or done
            event(log, "rollout_action", object=key.ref, action=action, acted=done, result=message)
            try:
                await self.api.remove_annotation(
                    key.kind, key.namespace, key.name, ROLLOUT_ACTION_ANNOTATION
                )
            except Exception as exc:  # acted already; routers must still get the result
                event(
                    log,
                    "annotation_remove_failed",
                    logging.WARNING,
                    object=key.ref,
                    error=repr(exc),
                )
        return acted

    async def admin_action(self, namespace: str, name: str, action: str) -> tuple[bool, str]:
        """``POST /rollouts/...`` on the admin port; only the leader acts."""
        if not self.writer.active:
            return False, (
                f"{self.writer.identity} is not the leader; ask the leader, or "
                f"annotate the RoutingPolicy with {ROLLOUT_ACTION_ANNOTATION}="
                f"{action}"
            )
        done, message = self.controller.action((namespace, name), action, "admin API")
        event(
            log,
            "rollout_action",
            object=f"{KIND_POLICY} {namespace}/{name}",
            action=action,
            acted=done,
            result=message,
        )
        if done:
            self.serve()
            self.writer.wake()
        return done, message

    async def _save_history(self) -> None:
        """Persist newly seen specs; each is retried a few times on its own, then dropped."""
        pending, self.controller.unsaved = self.controller.unsaved, []
        for ref, spec, version in pending:
            state = self.world.state(Key(KIND_POLICY, ref[0], ref[1]))
            st = self.controller.states.get(ref)
            keep = frozenset(
                {st.stable_hash, st.candidate_hash, st.pinned_hash} if st is not None else ()
            )
            try:
                await self.history.save(
                    ref[0],
                    ref[1],
                    state.uid if state else "",
                    spec,
                    version,
                    time.time(),
                    self.controller.specs[spec],
                    keep,
                )
                self._save_failures.pop((ref, spec), None)
            except Exception as exc:
                tries = self._save_failures.get((ref, spec), 0) + 1
                self._save_failures[(ref, spec)] = tries
                event(
                    log,
                    "history_save_failed",
                    logging.WARNING,
                    policy=f"{ref[0]}/{ref[1]}",
                    spec=spec,
                    tries=tries,
                    error=repr(exc),
                )
                if tries < _SAVE_TRIES:
                    self.controller.unsaved.append((ref, spec, version))
