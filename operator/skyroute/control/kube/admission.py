"""The admission webhook's verdict: the operator's own checks, before the write.

The API server already enforces the CRD schema and its CEL rules; what it
cannot check is what needs Python (an intent pattern that is not a valid
regular expression, a pool's ``apiKey.env`` naming a variable outside the
operator's ``--secret-env-prefix`` rule) or other objects (a second default policy, a name used
in another namespace, a rule glob that matches none of the policy's
intents). The webhook runs exactly the validation the operator runs after
the write (``World.observe`` and the cross-object pass against the accepted
set), so ``kubectl apply`` fails at once, naming the field, instead of the
object being stored and then sitting in a ``Compiled=False`` condition.

Problems that depend on *order* only warn: a rule naming a pool that does
not exist yet, or a quality glob matching no intent yet. ``kubectl apply -f
dir/`` applies ``policy.yaml`` before ``pools.yaml``, and GitOps tools apply
in any order, so refusing those would make correct sets of manifests fail
depending on file names. They are accepted with a warning (kubectl prints
it), the new generation waits with ``Compiled=False, reason PoolNotFound``,
and routers keep what they serve until the pool arrives. This is how
Kubernetes treats references everywhere (a Pod naming a missing ConfigMap
is admitted and waits).

A RoutingPolicy whose own ``spec.tests`` fail is refused, the message naming
the failing case (``spec.tests[2]: test "..." failed: expected pool "cost",
got pool "balanced" (...)``): the tests run, with the router's decision code,
against the pools that serve now. One exception keeps the order of apply
free here too: if the tests pass against the newest observed generation of
the pools (a pool change admitted a moment ago, waiting for this very
policy), the policy is admitted with a warning and the two are accepted
together. For the same reason a ModelPool change that would break some
policy's tests only warns: the operator holds it back (``Rejected``, naming
the case) until the policy's tests are updated to match.

Deletions are never refused (a namespace being deleted must not get stuck);
see ``world.py`` for how a still-referenced pool is retained instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skyroute.control.kube.conditions import describe, is_missing_pool
from skyroute.control.kube.world import World, is_test_problem, observe_body, problem_keys
from skyroute.control.policy.errors import Problem
from skyroute.control.policy.model import KIND_POLICY, KIND_POOL

_ORDER_DEPENDENT = ("matches no intent of any policy",)


@dataclass(frozen=True, slots=True)
class Verdict:
    denied: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return not self.denied

    def message(self) -> str:
        return "; ".join(self.denied)


def order_dependent(problem: Problem) -> bool:
    """A problem that another object, applied later, may resolve."""
    missing_policy = problem.message.startswith('RoutingPolicy "') and '" not found' in (
        problem.message
    )
    return (
        is_missing_pool(problem)
        or missing_policy
        or any(s in problem.message for s in _ORDER_DEPENDENT)
    )


def review(world: World, body: Mapping[str, Any]) -> Verdict:
    """What the webhook answers for ``body`` (a CREATE or UPDATE), given what serves now."""
    obs = observe_body(body, world.env_prefixes)
    ref = obs.key.ref
    if obs.parsed is None:
        return Verdict(tuple(describe(p, ref) for p in obs.invalid), ())
    current = world.accepted_objects()
    _, baseline = problem_keys(current.values())
    candidate = dict(current)
    candidate[obs.key] = obs.parsed
    found = world.new_problems(candidate, baseline)
    waiting: set[tuple[str, str]] = set()
    own_tests = [p for p in found if is_test_problem(p) and p.obj == ref]
    if own_tests and obs.key.kind == KIND_POLICY:
        # Against the newest pools instead of the serving ones: do the tests pass there?
        newest = {**current, **world.observed_objects(KIND_POOL), obs.key: obs.parsed}
        still = world.run_tests(newest)
        if still is not None:
            failing = {(p.obj, p.path) for p in still}
            waiting = {(p.obj, p.path) for p in own_tests if (p.obj, p.path) not in failing}

    def warns(p: Problem) -> bool:
        return (
            order_dependent(p)
            or (p.obj, p.path) in waiting
            or (is_test_problem(p) and p.obj != ref)
        )

    denied = tuple(describe(p, ref) for p in found if not warns(p))
    warnings = [describe(p, ref) for p in found if warns(p)]
    if waiting:
        warnings.append(
            "these tests pass with the newest ModelPool generations, which do not "
            "serve yet: this policy waits for them"
        )
    return Verdict(denied=denied, warnings=tuple(warnings))
