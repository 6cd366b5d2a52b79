"""Policy rollouts: stable and candidate versions, canary steps, promotion, rollback.

The minimal core of Flagger and Argo Rollouts, for routing policies. A
RoutingPolicy with ``spec.rollout`` does not go live when its spec changes:
the new version becomes a *candidate* that serves the first step's weight of
the policy's traffic (sticky per user, session or tenant; see the router's
``canary.py``) while the previous version, *stable*, serves the rest. Every
``analysis.intervalSeconds`` the candidate's outcomes are judged against
stable's over the same interval (``analysis.judge``; quality, when listed,
over the feedback since the rollout began): a pass lets the step
advance once its pause is over, the last step's pass promotes; a fail counts
toward ``failureLimit``, which rolls back; too few requests holds. A
``kubectl annotate ... skyroute.io/rollout-action=promote|abort`` (or
``skyroute policy promote/abort``) does the same by hand.

This module never talks to an API server. It keeps each policy's
``RolloutState`` and the specs of every version it has seen (by spec hash),
and does two things:

* ``apply(snapshot, policies)``: given what the sources accepted (the
  desired spec of each policy, compiled into ``snapshot``), decide each
  policy's state (start, restart, cancel a rollout; pin; remember history)
  and return the snapshot routers should get: the stable version under the
  policy's name with a ``Canary`` pointing at the candidate's hidden entry,
  or the stable or pinned version alone. Stable and pinned specs are
  compiled here against the current pools (pool edits apply to both sides
  at once; only a policy's own spec is canaried).
* ``tick(now)``: run the analyses that are due; True when the served
  snapshot must change (a step, a promotion, a rollback).

Both only ever degrade to serving *something*: a stable spec that cannot be
compiled (its pool is gone) leaves the candidate serving all traffic, with
the reason in the message; a ``pinVersion`` that is not in the history
keeps what served before. Events (one per transition) are queued in
``events`` for whoever writes them (the operator's status writer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from skyroute.control.logs import event
from skyroute.control.policy.compiler import (
    compile_policy,
    digest,
    policy_version,
    referenced_pools,
    snapshot_version,
)
from skyroute.control.policy.model import RolloutSpec, RoutingPolicy
from skyroute.control.rollout.analysis import FAIL, INCONCLUSIVE, OutcomeWindows, judge
from skyroute.control.rollout.state import (
    HOLDING,
    IN_FLIGHT,
    PINNED,
    PROGRESSING,
    PROMOTED,
    ROLLED_BACK,
    STABLE,
    RolloutState,
    rfc3339,
)
from skyroute.control.telemetry import RolloutMetrics
from skyroute.v1 import snapshot_pb2

log = logging.getLogger("skyroute.control.rollout")

PolicyRef = tuple[str, str]  # (namespace, name)
CANDIDATE_SUFFIX = "~candidate"
_LIFECYCLE_FIELDS = {"tests", "rollout", "pin_version"}
_STICKINESS = {
    "user": snapshot_pb2.STICKINESS_USER,
    "session": snapshot_pb2.STICKINESS_SESSION,
    "tenant": snapshot_pb2.STICKINESS_TENANT,
}


def spec_hash(obj: RoutingPolicy) -> str:
    """What makes an edit a new candidate: the spec without tests, rollout and pin."""
    body = obj.spec.model_dump_json(by_alias=True, exclude=_LIFECYCLE_FIELDS)
    return digest(obj.metadata.name.encode(), body.encode())


@dataclass(frozen=True, slots=True)
class RolloutEvent:
    ref: PolicyRef
    type: str  # Normal or Warning
    reason: str
    message: str


class RolloutController:
    """Rollout state per policy; the snapshot routers get; analysis ticks."""

    def __init__(
        self,
        windows: OutcomeWindows | None = None,
        clock: Callable[[], float] = time.time,
        metrics: RolloutMetrics | None = None,
    ) -> None:
        self.windows = windows or OutcomeWindows(clock=clock)
        self.metrics = metrics or RolloutMetrics()
        self.metrics.observe(
            lambda: [(ref[1], st.phase, st.weight) for ref, st in sorted(self.states.items())]
        )
        self.clock = clock
        self.states: dict[PolicyRef, RolloutState] = {}
        self.specs: dict[str, str] = {}  # spec hash -> RoutingPolicy JSON
        self.unsaved: list[tuple[PolicyRef, str, str]] = []  # (ref, spec hash, version)
        self.events: list[RolloutEvent] = []
        self._rollouts: dict[PolicyRef, RolloutSpec] = {}
        # Versions older than status.history shows, from the persisted history.
        self.archive: dict[PolicyRef, dict[str, str]] = {}

    # --- state from outside ------------------------------------------------------

    def restore(self, ref: PolicyRef, state: RolloutState) -> None:
        """Adopt state read from the object's status (start-up, or a follower mirroring)."""
        self.states[ref] = state

    def remember(self, ref: PolicyRef, spec: str, version: str, obj_json: str) -> None:
        """A version from the persisted history (start-up): pinnable, servable again."""
        self.specs.setdefault(spec, obj_json)
        if version:
            self.archive.setdefault(ref, {})[version] = spec

    def _emit(self, ref: PolicyRef, type_: str, reason: str, message: str) -> None:
        self.events.append(RolloutEvent(ref, type_, reason, message))
        self.metrics.transition(ref[1], reason)
        event(log, "rollout", policy=f"{ref[0]}/{ref[1]}", reason=reason, message=message)

    # --- desired state in --------------------------------------------------------

    def apply(
        self, snapshot: snapshot_pb2.Snapshot, policies: Mapping[PolicyRef, RoutingPolicy]
    ) -> snapshot_pb2.Snapshot:
        now = self.clock()
        versions = {p.name: p.version for p in snapshot.policies}
        for ref, obj in sorted(policies.items()):
            h = spec_hash(obj)
            if h not in self.specs:
                self.specs[h] = obj.model_dump_json(by_alias=True, exclude={"status"})
                self.unsaved.append((ref, h, versions.get(ref[1], "")))
            st = self.states.setdefault(ref, RolloutState())
            self._reconcile(ref, st, obj, h, versions.get(ref[1], ""), now)
        for ref in [r for r in self.states if r not in policies]:
            del self.states[ref]
            self._rollouts.pop(ref, None)
        return self.served(snapshot, policies)

    def _reconcile(
        self, ref: PolicyRef, st: RolloutState, obj: RoutingPolicy, h: str, v: str, now: float
    ) -> None:
        spec = obj.spec
        if spec.rollout is not None:
            self._rollouts[ref] = spec.rollout
        if spec.pin_version:
            self._pin(ref, st, spec.pin_version, h, v, now)
            return
        if st.phase == PINNED:
            st.phase, st.pinned_hash, st.pinned_version = STABLE, "", ""
            self._emit(ref, "Normal", "Unpinned", f"pin removed; {st.stable_version or v} serves")
        if not st.stable_hash:
            st.stable_hash, st.stable_version, st.phase = h, v, STABLE
            st.record(v, h, "serving", now)
            return
        if spec.rollout is None or h == st.stable_hash:
            if st.phase in IN_FLIGHT:
                why = (
                    "rollout removed from the spec"
                    if spec.rollout is None
                    else "spec is back to the stable version"
                )
                st.mark(st.candidate_hash, "superseded")
                self._emit(
                    ref,
                    "Normal",
                    "RolloutCancelled",
                    f"{why}; candidate {st.candidate_version} withdrawn",
                )
                st.clear_candidate()
                st.phase = STABLE
            if h != st.stable_hash:
                st.mark(st.stable_hash, "superseded")
                st.stable_hash, st.phase, st.failed_hash, st.failed_version = h, STABLE, "", ""
            st.stable_version = v
            if st.find(v) is None:
                st.record(v, h, "serving", now)
            if st.phase == STABLE:
                st.message = f"version {v} serves all traffic"
            return
        if st.phase in IN_FLIGHT and h == st.candidate_hash:
            st.candidate_version = v
            steps = spec.rollout.steps
            st.steps = len(steps)
            st.step = min(st.step, len(steps) - 1)  # the steps may have been edited
            st.weight = steps[st.step].weight
            return
        if h == st.failed_hash:
            st.failed_version = v
            return
        if st.phase in IN_FLIGHT:
            st.mark(st.candidate_hash, "superseded")
            self._emit(
                ref,
                "Normal",
                "RolloutRestarted",
                f"candidate {st.candidate_version} superseded by {v}",
            )
        first = spec.rollout.steps[0]
        st.clear_candidate()
        st.candidate_hash, st.candidate_version = h, v
        st.failed_hash = st.failed_version = ""
        st.phase, st.weight, st.steps = PROGRESSING, first.weight, len(spec.rollout.steps)
        st.step_started = st.last_check = now
        st.last_analysis = None
        st.record(v, h, "candidate", now)
        st.message = f"step 1/{st.steps}: candidate {v} on {first.weight:g}%"
        self._emit(
            ref,
            "Normal",
            "RolloutStarted",
            f"candidate {v} on {first.weight:g}% of traffic (stable {st.stable_version}, "
            f"{st.steps} steps, sticky by {spec.rollout.stickiness})",
        )

    def _pin(self, ref: PolicyRef, st: RolloutState, pin: str, h: str, v: str, now: float) -> None:
        entry = st.find(pin)
        if entry is None and pin in self.archive.get(ref, {}):
            st.record(pin, self.archive[ref][pin], "recorded", now)
            entry = st.find(pin)
        if entry is None or entry.spec_hash not in self.specs:
            message = (
                f"spec.pinVersion {pin} is not a recorded version of this policy "
                "(see status.history); the previous version keeps serving"
            )
            if st.message != message:
                self._emit(ref, "Warning", "PinNotFound", message)
            st.message = message
            if not st.stable_hash:
                st.stable_hash, st.stable_version = h, v
            return
        if st.phase in IN_FLIGHT:
            st.mark(st.candidate_hash, "superseded")
            st.clear_candidate()
        if st.phase != PINNED or st.pinned_hash != entry.spec_hash:
            self._emit(ref, "Normal", "Pinned", f"serving recorded version {pin} (spec.pinVersion)")
        st.phase, st.pinned_hash, st.pinned_version = PINNED, entry.spec_hash, pin
        st.message = f"pinned to {pin}"

    def _watch(self) -> None:
        keep = {
            (ref[1], v)
            for ref, st in self.states.items()
            if st.phase in IN_FLIGHT
            for v in (st.stable_version, st.candidate_version)
        }
        for policy, version in keep:
            self.windows.watch(policy, version)
        self.windows.unwatch_except(keep)

    # --- snapshot out ------------------------------------------------------------

    def _compile(self, spec: str, pools: Mapping[str, snapshot_pb2.Pool]) -> snapshot_pb2.Policy:
        text = self.specs.get(spec)
        if text is None:
            raise LookupError(f"the spec of {spec} is not recorded")
        compiled = compile_policy(RoutingPolicy.model_validate_json(text))
        missing = sorted(referenced_pools(compiled) - pools.keys())
        if missing:
            raise LookupError(f"it uses pools that no longer exist: {', '.join(missing)}")
        compiled.version = policy_version(
            compiled, (pools[n] for n in sorted(referenced_pools(compiled)))
        )
        return compiled

    def served(
        self, snapshot: snapshot_pb2.Snapshot, policies: Mapping[PolicyRef, RoutingPolicy]
    ) -> snapshot_pb2.Snapshot:
        """The snapshot routers get: stable, pinned or canary entries in place of desired ones."""
        out = snapshot_pb2.Snapshot()
        out.CopyFrom(snapshot)
        pools = {p.name: p for p in out.pools}
        changed = False
        for ref, st in sorted(self.states.items()):
            index = next((i for i, p in enumerate(out.policies) if p.name == ref[1]), None)
            if index is None or ref not in policies:
                continue
            desired = out.policies[index]
            serve = st.pinned_hash if st.phase == PINNED else st.stable_hash
            if not serve or (serve == spec_hash(policies[ref]) and st.phase not in IN_FLIGHT):
                continue
            try:
                stable = self._compile(serve, pools)
            except (LookupError, ValueError) as exc:
                st.message = (
                    f"cannot serve {'pinned' if st.phase == PINNED else 'stable'} "
                    f"version: {exc}; the spec's version serves all traffic"
                )
                continue
            if st.phase == PINNED:
                st.pinned_version = stable.version
            else:
                st.stable_version = stable.version
            if st.phase in IN_FLIGHT:
                candidate = snapshot_pb2.Policy()
                candidate.CopyFrom(desired)
                candidate.name = desired.name + CANDIDATE_SUFFIX
                candidate.candidate_of = desired.name
                stable.canary.CopyFrom(
                    snapshot_pb2.Canary(
                        policy=candidate.name,
                        weight_bp=round(st.weight * 100),
                        stickiness=_STICKINESS[self._rollouts[ref].stickiness]
                        if ref in self._rollouts
                        else snapshot_pb2.STICKINESS_USER,
                        # The spec hash, not the version: a pool edit re-versions the
                        # candidate but must not move users between the two sides.
                        salt=st.candidate_hash,
                    )
                )
                out.policies.append(candidate)
            out.policies[index].CopyFrom(stable)
            changed = True
        if changed:
            out.version = snapshot_version(out)
        self._watch()  # stable's version is known only now (compiled against today's pools)
        return out

    # --- analysis and transitions -----------------------------------------------

    def tick(self, now: float | None = None) -> bool:
        """Run due analyses; True when the served snapshot must change."""
        now = self.clock() if now is None else now
        changed = False
        for ref, st in sorted(self.states.items()):
            rollout = self._rollouts.get(ref)
            if st.phase not in IN_FLIGHT or rollout is None:
                continue
            spec = rollout.analysis
            if now - st.last_check < spec.interval_seconds:
                continue
            stable = self.windows.window(ref[1], st.stable_version, st.last_check, now)
            candidate = self.windows.window(ref[1], st.candidate_version, st.last_check, now)
            quality = None
            if any(m.name == "quality" for m in spec.checks):
                quality = (
                    self.windows.quality(ref[1], st.stable_version),
                    self.windows.quality(ref[1], st.candidate_version),
                )
            verdict = judge(spec, stable, candidate, quality)
            st.last_check = now
            st.last_analysis = {**verdict.as_dict(), "at": rfc3339(now)}
            if verdict.result == FAIL:
                st.failed_checks += 1
                self._emit(
                    ref,
                    "Warning",
                    "AnalysisFailed",
                    f"check {st.failed_checks}/{spec.failure_limit} failed: {verdict.summary()}",
                )
                if st.failed_checks >= spec.failure_limit:
                    self._roll_back(
                        ref, st, f"failure limit {spec.failure_limit} reached: {verdict.summary()}"
                    )
                    changed = True
                continue
            if verdict.result == INCONCLUSIVE:
                if st.phase != HOLDING:
                    self._emit(ref, "Normal", "Holding", verdict.summary())
                st.phase, st.message = HOLDING, f"holding at {st.weight:g}%: {verdict.summary()}"
                continue
            st.phase, st.step_passed = PROGRESSING, True
            st.step = min(st.step, len(rollout.steps) - 1)
            st.message = f"step {st.step + 1}/{st.steps} at {st.weight:g}%: analysis passed"
            if now - st.step_started < rollout.steps[st.step].pause_seconds:
                continue
            if st.step + 1 < len(rollout.steps):
                st.step += 1
                st.weight = rollout.steps[st.step].weight
                st.step_started, st.step_passed = now, False
                st.message = f"step {st.step + 1}/{st.steps}: candidate on {st.weight:g}%"
                self._emit(
                    ref,
                    "Normal",
                    "StepAdvanced",
                    f"candidate {st.candidate_version} now on {st.weight:g}% "
                    f"(step {st.step + 1}/{st.steps})",
                )
            else:
                self._promote(ref, st, f"analysis passed all {st.steps} steps")
            changed = True
        return changed

    def _promote(self, ref: PolicyRef, st: RolloutState, why: str) -> None:
        st.mark(st.stable_hash, "superseded")
        st.record(st.candidate_version, st.candidate_hash, "promoted")
        old = st.stable_version
        st.stable_hash, st.stable_version = st.candidate_hash, st.candidate_version
        st.clear_candidate()
        st.phase, st.message = PROMOTED, f"{st.stable_version} promoted: {why}"
        self._emit(
            ref, "Normal", "Promoted", f"candidate {st.stable_version} promoted over {old}: {why}"
        )

    def _roll_back(self, ref: PolicyRef, st: RolloutState, why: str) -> None:
        st.record(st.candidate_version, st.candidate_hash, "rolledBack")
        st.failed_hash, st.failed_version = st.candidate_hash, st.candidate_version
        checks = st.failed_checks
        st.clear_candidate()
        st.failed_checks = checks  # status keeps what the rollback was based on
        st.phase = ROLLED_BACK
        st.message = (
            f"{st.failed_version} rolled back: {why}; {st.stable_version} serves all "
            "traffic (change the spec to try another version)"
        )
        self._emit(
            ref,
            "Warning",
            "RolledBack",
            f"candidate {st.failed_version} rolled back, stable {st.stable_version} "
            f"serves all traffic: {why}",
        )

    def action(self, ref: PolicyRef, action: str, source: str = "annotation") -> tuple[bool, str]:
        """A manual ``promote`` or ``abort``: (acted, what happened) for logs and the CLI."""
        st = self.states.get(ref)
        if st is None or st.phase not in IN_FLIGHT:
            return False, f"no rollout in progress for {ref[0]}/{ref[1]}; {action} ignored"
        if action == "promote":
            self._promote(ref, st, f"manual promote ({source})")
        elif action == "abort":
            self._roll_back(ref, st, f"manual abort ({source})")
        else:
            return False, f"unknown rollout action {action!r} (promote or abort)"
        return True, st.message

    def versions(self, ref: PolicyRef) -> list[str]:
        """Every recorded version of ``ref`` (status history and persisted archive)."""
        st = self.states.get(ref)
        seen = [e.version for e in st.history] if st is not None else []
        seen += [v for v in self.archive.get(ref, {}) if v not in seen]
        return seen

    def spec_of(self, ref: PolicyRef, version: str) -> str | None:
        """The recorded RoutingPolicy (JSON) of one version of ``ref``, if known."""
        st = self.states.get(ref)
        entry = st.find(version) if st is not None else None
        spec = entry.spec_hash if entry is not None else self.archive.get(ref, {}).get(version)
        return self.specs.get(spec) if spec else None

    def status(self, ref: PolicyRef) -> tuple[dict[str, object], list[dict[str, str]]] | None:
        st = self.states.get(ref)
        if st is None:
            return None
        return st.as_status(), st.history_status()
