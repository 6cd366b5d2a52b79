"""An object's status, written the way the Kubernetes API conventions ask.

``status.conditions`` is a list keyed by ``type``, each entry shaped like
``metav1.Condition`` (status ``True``/``False``/``Unknown``, a CamelCase
``reason`` for machines, a ``message`` for people, ``observedGeneration``
and ``lastTransitionTime``), because that is what ``kubectl wait
--for=condition=Ready``, Argo CD health checks and every dashboard read.
There is no ``phase``: the API conventions deprecate it.

The four types answer the questions in the order people ask them:

* ``Accepted``: is this generation well-formed (schema, regexes)?
* ``Compiled``: is this generation in the serving snapshot? If not, why not
  (``Invalid``, ``PoolNotFound``, ``Rejected``), and which older generation
  routers keep serving meanwhile.
* ``Synced``: do all connected routers serve this object's version?
* ``Ready``: all of the above, and nothing it needs was deleted under it:
  ``kubectl wait --for=condition=Ready`` returns once a change is live on
  every connected router.

A ModelPool may carry two more, only once the learning loop has something
to say: ``LatencyDrift``, ``CostDrift`` and ``QualityDrift`` (a quality
posterior learned from feedback fell below the offline eval). They are ``True`` (reason
``AboveBaseline``) while any model of the pool has drifted beyond the
policy's ratio of its baseline, and ``False`` (reason ``Recovered``) once
all have recovered; they are not removed afterwards, so ``kubectl describe``
keeps the last episode. A restarted operator has no drift state of its own
(the learner needs a new baseline first), so it carries these two over from
what the object says rather than guessing: a restart patches nothing.

``lastTransitionTime`` only moves when a condition's status flips, so
rewriting the same status is a no-op the writer can detect by comparing
dictionaries, which is what keeps a restarted operator from patching (and
from emitting events for) objects whose state did not change.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from skyroute.control.kube.fleet import SyncCount
from skyroute.control.kube.world import ObjectState
from skyroute.control.policy.errors import Problem

TYPES = ("Accepted", "Compiled", "Synced", "Ready")
DRIFT_TYPES = {"latency": "LatencyDrift", "cost": "CostDrift", "quality": "QualityDrift"}
STATUS_KEYS = (
    "observedGeneration",
    "version",
    "routers",
    "conditions",
    "rollout",
    "history",
    "keys",
    "redisDown",
    "spend",
)
MAX_LISTED = 10


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def describe(problem: Problem, ref: str) -> str:
    """A problem as seen from object ``ref``: its own field path, or the other object too."""
    if problem.obj == ref:
        where = problem.path
    else:
        where = " ".join(x for x in (problem.obj, problem.path) if x)
    return f"{where}: {problem.message}" if where else problem.message


def summary(problems: Sequence[Problem], ref: str) -> str:
    shown = [describe(p, ref) for p in problems[:MAX_LISTED]]
    extra = len(problems) - len(shown)
    return "; ".join(shown) + (f" (and {extra} more)" if extra > 0 else "")


def is_missing_pool(problem: Problem) -> bool:
    """A rule or defaultPool naming a pool that does not exist (validate.py's wording)."""
    return problem.message.startswith('pool "') and '" not found' in problem.message


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def _serving_note(state: ObjectState) -> str:
    if state.serving_generation is None:
        return "nothing of this object serves"
    return f"routers keep serving generation {state.serving_generation} ({state.version})"


def _compiled(state: ObjectState) -> dict[str, Any]:
    ref = state.key.ref
    if state.invalid:
        return _condition(
            "Compiled",
            "False",
            "Invalid",
            f"generation {state.generation} is invalid; {_serving_note(state)}",
        )
    if state.rejected:
        own = [p for p in state.rejected if p.obj == ref]
        reason = "PoolNotFound" if any(is_missing_pool(p) for p in own) else "Rejected"
        return _condition(
            "Compiled", "False", reason, f"{summary(state.rejected, ref)}; {_serving_note(state)}"
        )
    if state.current:
        return _condition(
            "Compiled",
            "True",
            "Compiled",
            f"generation {state.generation} compiled as {state.version}",
        )
    return _condition(
        "Compiled", "Unknown", "Pending", f"generation {state.generation} is waiting to be compiled"
    )


def _synced(state: ObjectState, sync: SyncCount) -> dict[str, Any]:
    if not state.version:
        return _condition("Synced", "False", "NotServing", "no version of this object serves")
    if sync.connected == 0:
        return _condition("Synced", "Unknown", "NoRouters", "no routers are connected")
    if sync.stale == 0:
        return _condition(
            "Synced",
            "True",
            "Synced",
            f"all {sync.connected} connected routers serve {state.version}",
        )
    return _condition(
        "Synced",
        "False",
        "RoutersStale",
        f"{sync.stale} of {sync.connected} connected routers do not serve {state.version} yet",
    )


def _ready(
    state: ObjectState, compiled: Mapping[str, Any], synced: Mapping[str, Any]
) -> dict[str, Any]:
    if compiled["status"] != "True":
        return _condition("Ready", "False", compiled["reason"], compiled["message"])
    if state.dangling:
        reason = (
            "PoolDeleted"
            if all(is_missing_pool(p) for p in state.dangling)
            else ("DependencyDeleted")
        )
        return _condition(
            "Ready",
            "False",
            reason,
            f"{summary(state.dangling, state.key.ref)}; the deleted object keeps serving until "
            "this reference is removed or the object is recreated",
        )
    if synced["status"] == "False":
        return _condition("Ready", "False", synced["reason"], synced["message"])
    return _condition("Ready", "True", "Ready", f"version {state.version} serves")


def drift_conditions(
    models: Iterable[str], drift: Mapping[tuple[str, str], tuple[bool, str]]
) -> list[dict[str, Any]]:
    """A pool's drift conditions from ``(model, kind) -> (raised, message)`` of its models.

    Only kinds the learner has reported for one of ``models`` get a condition; the
    others are left to ``build_status``, which carries over what the object says.
    """
    out = []
    for kind, type_ in DRIFT_TYPES.items():
        seen = [drift[(m, kind)] for m in sorted(set(models)) if (m, kind) in drift]
        if not seen:
            continue
        raised = [msg for up, msg in seen if up]
        if raised:
            out.append(_condition(type_, "True", "AboveBaseline", "; ".join(raised)))
        else:
            out.append(_condition(type_, "False", "Recovered", "; ".join(m for _, m in seen)))
    return out


_NOT_SERVING = ("Progressing", "Holding", "RolledBack")


def rollout_condition(rollout: Mapping[str, Any]) -> dict[str, Any]:
    """``Rollout``: True while a candidate is on traffic; the reason is the phase."""
    phase = str(rollout.get("phase", "Stable"))
    active = "True" if phase in ("Progressing", "Holding") else "False"
    return _condition("Rollout", active, phase, str(rollout.get("message", "")) or phase)


def build_status(
    state: ObjectState,
    sync: SyncCount,
    previous: Mapping[str, Any] | None,
    now: str,
    drift: Sequence[dict[str, Any]] = (),
    rollout: tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The complete status for ``state``; unchanged conditions keep their transition time.

    ``drift`` is ``drift_conditions`` for a ModelPool; drift conditions it lacks are
    carried over from ``previous``. ``extra``: fields of one kind (a Tenant's ``keys``,
    ``redisDown`` and ``spend``).
    """
    accepted = (
        _condition("Accepted", "False", "Invalid", summary(state.invalid, state.key.ref))
        if state.invalid
        else _condition("Accepted", "True", "Valid", "schema and field checks passed")
    )
    compiled = _compiled(state)
    synced = _synced(state, sync)
    conditions = [accepted, compiled, synced, _ready(state, compiled, synced)]
    if rollout is not None:
        r = rollout[0]
        phase = str(r.get("phase", ""))
        if phase in _NOT_SERVING and conditions[3]["status"] == "True":
            # This generation's version is compiled and on every router, but it does not
            # serve all traffic (a canary share) or at all (rolled back): not Ready, so
            # `kubectl wait --for=condition=Ready` waits for the promotion.
            conditions[3] = _condition("Ready", "False", phase, str(r.get("message", "")) or phase)
        conditions.append(rollout_condition(r))
    before = {
        c.get("type"): c for c in (previous or {}).get("conditions") or [] if isinstance(c, Mapping)
    }
    fresh = {c["type"]: c for c in drift}
    for type_ in DRIFT_TYPES.values():
        old = before.get(type_)
        if type_ in fresh:
            conditions.append(dict(fresh[type_]))
        elif old is not None:
            conditions.append(dict(old))
    for cond in conditions:
        cond["observedGeneration"] = state.generation
        old = before.get(cond["type"])
        same = old is not None and old.get("status") == cond["status"]
        cond["lastTransitionTime"] = old.get("lastTransitionTime", now) if same and old else now
    out = {
        "observedGeneration": state.generation,
        "version": state.version,
        "routers": {"synced": sync.synced, "stale": sync.stale},
        "conditions": conditions,
    }
    out.update(extra or {})
    if rollout is not None:
        out["rollout"] = dict(rollout[0])
        out["history"] = [dict(h) for h in rollout[1]]
    return out


def ours(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a status this operator owns (kopf or others may keep more)."""
    status = status or {}
    return {k: status[k] for k in STATUS_KEYS if k in status}


def condition(status: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    for cond in (status or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return None
