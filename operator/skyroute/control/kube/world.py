"""The cluster's objects in, the accepted set and its snapshot out.

Off-cluster a folder is compiled whole or not at all: one bad file blocks the
rollout, which is right for a Git checkout that is reviewed as one change.
On a cluster every object is applied on its own, by different people and
pipelines, in any order, so one bad object must not hold back the others,
and an object that turns bad must not take down what already serves. So the
operator keeps two sets:

* ``observed``: the newest generation of every object, as the API server
  has it (parsed once per generation, with its first-pass problems);
* ``accepted``: the generations that are compiled into the serving
  snapshot. It only ever changes by whole objects, and only if the change
  adds no new cross-object problem (a pool that does not exist, a second
  default policy, a name used in two namespaces, a quality glob that matches
  no intent), so routers always get a consistent snapshot.

``reconcile`` moves pending changes from one to the other: first all of them
at once (the common case, and what a restart does, so a restarted operator
compiles exactly what it compiled before and nothing is pushed), and if that
adds problems, one at a time in a fixed order until no more fit. An invalid
or rejected generation leaves the object's previous generation serving (the
xDS "last known good" rule, per object) and its problems are reported in
its status. A deleted policy always leaves the snapshot. A deleted pool that
accepted policies still reference stays serving ("retained") until they stop
referring to it, because dropping it would leave those policies without
candidates; the policies' status says so.

A policy's ``spec.tests`` are checked the same way, as one more cross-object
problem (``spec.tests[i]``, on the policy): a change is accepted only if every
test of every policy in the resulting set still passes, decided by the
router's own code against the compiled candidate set. A policy generation
whose tests fail waits, like one naming a missing pool, and so does a pool
change that would break an accepted policy's tests, until a change to the
policy makes them agree (changes pending together are tried together first,
so "new model in the pool, test updated in the policy" goes through in either
order of arrival; only if a third pending change fails at the same moment does
the pair wait for it to be fixed or withdrawn). Test results are cached by
policy version and tests, so re-checking unchanged objects costs a compile of
the candidate set only.

Tenants are objects like the others (a Tenant naming a RoutingPolicy that does
not exist waits, the previous generation serving). Their API keys come from
``spec.keys`` and from key Secrets (``keysecrets.py``), merged in at compile
time: a key id already used by another key is skipped, so a copied Secret can
never make routers refuse a snapshot.

Problems are compared by object and field path only, never by message,
because messages list the known names and change with unrelated objects.
Everything here is synchronous and in memory; the operator calls it from its
one event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from skyroute.control.kube.keysecrets import KeySecrets
from skyroute.control.policy.compiler import compile_objects, digest
from skyroute.control.policy.errors import PolicyError, Problem
from skyroute.control.policy.loader import SourceDocument
from skyroute.control.policy.model import (
    KIND_POLICY,
    KIND_POOL,
    KIND_TENANT,
    RoutingPolicy,
    TenantResource,
)
from skyroute.control.policy.policytests import ResultCache, run_policy_tests
from skyroute.control.policy.validate import (
    Objects,
    Parsed,
    check_key_refs,
    check_references,
    parse_document,
)
from skyroute.v1 import snapshot_pb2

log = logging.getLogger("skyroute.control.kube.world")


class Key(NamedTuple):
    """An object's identity; sorts pools before policies (``M`` < ``R``)."""

    kind: str
    namespace: str
    name: str

    @property
    def ref(self) -> str:
        """``Kind namespace/name``, exactly as problems name objects."""
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Observed:
    """One generation of one object as the API server has it, parsed once."""

    key: Key
    uid: str
    generation: int
    parsed: Parsed | None
    invalid: tuple[Problem, ...]


@dataclass(frozen=True, slots=True)
class Accepted:
    parsed: Parsed
    uid: str
    generation: int


@dataclass(frozen=True, slots=True)
class ObjectState:
    """What the status of one observed object must say."""

    key: Key
    uid: str
    generation: int
    invalid: tuple[Problem, ...]
    """First-pass problems of this generation (schema, regex): it can never serve."""
    rejected: tuple[Problem, ...]
    """Cross-object problems this generation would cause; it waits until they go."""
    serving_generation: int | None
    version: str
    """Version of the serving generation in the snapshot ('' when none serves)."""
    dangling: tuple[Problem, ...]
    """Problems the deletion of a retained object would cause to this one."""

    @property
    def current(self) -> bool:
        return self.serving_generation == self.generation


def plain(value: Any) -> Any:
    """kopf bodies and API client results as plain JSON-like Python data."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return Key(
        str(body.get("kind", "")),
        str(meta.get("namespace") or "default"),
        str(meta.get("name", "")),
    )


def observe_body(body: Mapping[str, Any], env_prefixes: Sequence[str] = ()) -> Observed:
    """Parse one object (first pass only); status and server-side metadata are dropped.

    A pool's ``apiKey.env`` naming a variable routers may not read (``keyrefs.py``, the
    operator's ``--secret-env-prefix``) is a first-pass problem: that generation never
    serves, as in folder mode, and the webhook refuses it.
    """
    key = key_of(body)
    meta = body.get("metadata") or {}
    data = {
        "apiVersion": body.get("apiVersion"),
        "kind": key.kind,
        "metadata": {"name": key.name, "namespace": key.namespace},
        "spec": plain(body.get("spec")),
    }
    if data["spec"] is None:
        del data["spec"]
    doc = SourceDocument(file=key.ref, index=0, data=data)
    parsed, problems = parse_document(doc)
    if parsed is not None:
        problems = list(check_key_refs([parsed], env_prefixes))
        parsed = None if problems else parsed
    generation = meta.get("generation")
    return Observed(
        key=key,
        uid=str(meta.get("uid", "")),
        generation=generation if isinstance(generation, int) else 0,
        parsed=parsed,
        invalid=tuple(problems),
    )


def problem_keys(parsed: Iterable[Parsed]) -> tuple[list[Problem], frozenset[tuple[str, str]]]:
    problems = check_references(list(parsed))
    return problems, frozenset((p.obj, p.path) for p in problems)


def objects_of(parsed: Iterable[Parsed]) -> Objects:
    items = list(parsed)
    return Objects(
        pools=tuple(p for p in items if p.obj.kind == KIND_POOL),
        policies=tuple(p for p in items if p.obj.kind == KIND_POLICY),
        tenants=tuple(p for p in items if p.obj.kind == KIND_TENANT),
    )


def with_secret_keys(parsed: Iterable[Parsed], secrets: KeySecrets) -> list[Parsed]:
    """Tenants with their key Secrets' keys added; a key id seen before is skipped."""
    items = list(parsed)
    seen = {k.id for p in items if isinstance(p.obj, TenantResource) for k in p.obj.spec.keys}
    out: list[Parsed] = []
    for p in sorted(items, key=lambda q: (q.obj.kind, q.obj.ref)):
        obj = p.obj
        if not isinstance(obj, TenantResource):
            out.append(p)
            continue
        extra = []
        for key in secrets.keys((obj.metadata.namespace, obj.metadata.name)):
            if key.id in seen:
                log.warning("key %s of Tenant %s skipped: id used by another key", key.id, obj.ref)
                continue
            seen.add(key.id)
            extra.append(key)
        if extra:
            spec = obj.spec.model_copy(update={"keys": [*obj.spec.keys, *extra]})
            obj = obj.model_copy(update={"spec": spec})
        out.append(Parsed(doc=p.doc, obj=obj))
    return out


def is_test_problem(problem: Problem) -> bool:
    """A failing ``spec.tests`` case (or tests that could not run) of some policy."""
    return problem.path.startswith("spec.tests")


def object_versions(snapshot: snapshot_pb2.Snapshot) -> dict[Key, str]:
    """Each object's version in ``snapshot``: a policy's own, a pool's content hash."""
    versions = {Key(KIND_POLICY, p.namespace, p.name): p.version for p in snapshot.policies}
    for tenant in snapshot.tenants:
        versions[Key(KIND_TENANT, tenant.namespace, tenant.name)] = digest(
            tenant.SerializeToString(deterministic=True)
        )
    for pool in snapshot.pools:
        versions[Key(KIND_POOL, pool.namespace, pool.name)] = digest(
            pool.SerializeToString(deterministic=True)
        )
    return versions


_Change = tuple[Key, Parsed | None]  # None: delete


class World:
    """Observed objects, the accepted (serving) set, and the snapshot compiled from it."""

    def __init__(self, env_prefixes: Sequence[str] = ()) -> None:
        # The routers' --secret-env-prefix: which apiKey {env: ...} names are valid.
        self.env_prefixes = tuple(env_prefixes)
        self._observed: dict[Key, Observed] = {}
        self._accepted: dict[Key, Accepted] = {}
        self._rejected: dict[Key, tuple[Problem, ...]] = {}
        self._retained: dict[Key, tuple[Problem, ...]] = {}
        self.snapshot: snapshot_pb2.Snapshot | None = None
        self.versions: dict[Key, str] = {}
        self._test_results = ResultCache()
        self.key_secrets = KeySecrets()
        self._keys_dirty = False

    def keys_changed(self) -> None:
        """Key Secrets changed: the next reconcile recompiles even with no object change."""
        self._keys_dirty = True

    # --- input -------------------------------------------------------------

    def observe(self, body: Mapping[str, Any]) -> bool:
        """Record an object; True if it is a new object or a new generation of it."""
        obs = observe_body(body, self.env_prefixes)
        old = self._observed.get(obs.key)
        if old is not None and (old.uid, old.generation) == (obs.uid, obs.generation):
            return False
        self._observed[obs.key] = obs
        return True

    def forget(self, key: Key) -> bool:
        """The object was deleted; True if it was known."""
        return self._observed.pop(key, None) is not None

    def object_keys(self) -> list[Key]:
        return sorted(self._observed)

    def accepted_objects(self) -> dict[Key, Parsed]:
        return {k: a.parsed for k, a in self._accepted.items()}

    def observed_objects(self, kind: str = "") -> dict[Key, Parsed]:
        """The newest valid generation of every observed object (of ``kind``, if given)."""
        return {
            k: o.parsed
            for k, o in self._observed.items()
            if o.parsed is not None and kind in ("", k.kind)
        }

    # --- reconcile ---------------------------------------------------------

    def _pending(self) -> list[_Change]:
        changes: list[_Change] = []
        for key in sorted(self._observed.keys() | self._accepted.keys()):
            obs = self._observed.get(key)
            acc = self._accepted.get(key)
            if obs is None:
                changes.append((key, None))
            elif obs.parsed is None:
                self._rejected[key] = obs.invalid
            elif acc is None or (acc.uid, acc.generation) != (obs.uid, obs.generation):
                changes.append((key, obs.parsed))
            else:
                self._rejected.pop(key, None)
        for key in list(self._rejected):
            if key not in self._observed:
                del self._rejected[key]
        return changes

    def _apply(self, base: Mapping[Key, Parsed], changes: Sequence[_Change]) -> dict[Key, Parsed]:
        out = dict(base)
        for key, parsed in changes:
            if parsed is None:
                out.pop(key, None)
            else:
                out[key] = parsed
        return out

    def new_problems(
        self, candidate: Mapping[Key, Parsed], baseline: frozenset[tuple[str, str]]
    ) -> list[Problem]:
        """Cross-object problems of ``candidate`` not already present in ``baseline``.

        These include failing policy tests, run against ``candidate`` compiled.
        """
        problems, _ = problem_keys(candidate.values())
        problems.extend(self.test_problems(candidate))
        return [p for p in problems if (p.obj, p.path) not in baseline]

    def test_problems(self, candidate: Mapping[Key, Parsed]) -> list[Problem]:
        """The failing tests of every policy in ``candidate`` (none if it cannot compile).

        A set that does not compile (a rule naming a missing pool) already has the
        reference problem that explains why; its tests run once the pool is there.
        """
        return self.run_tests(candidate) or []

    def run_tests(self, candidate: Mapping[Key, Parsed]) -> list[Problem] | None:
        """Failing tests of ``candidate``'s policies; None when the set does not compile."""
        policies = [
            p for p in candidate.values() if isinstance(p.obj, RoutingPolicy) and p.obj.spec.tests
        ]
        if not policies:
            return []
        try:
            snapshot = compile_objects(objects_of(candidate.values()), run_tests=False)
        except (PolicyError, KeyError):
            return None
        return run_policy_tests(snapshot, policies, cache=self._test_results)

    def _commit(self, key: Key, parsed: Parsed | None) -> None:
        self._rejected.pop(key, None)
        self._retained.pop(key, None)
        if parsed is None:
            self._accepted.pop(key, None)
            return
        obs = self._observed[key]
        self._accepted[key] = Accepted(parsed, obs.uid, obs.generation)

    def reconcile(self) -> bool:
        """Accept what fits; recompile. True when the snapshot's version changed."""
        changes = self._pending()
        if not changes:
            return self._recompile() if self._keys_dirty else False
        # (a key Secret change recompiles even when every pending change waits)
        current = self.accepted_objects()
        _, baseline = problem_keys(current.values())
        committed = 0
        if not self.new_problems(self._apply(current, changes), baseline):
            for key, parsed in changes:
                self._commit(key, parsed)
            committed = len(changes)
        else:
            # Policy deletions are never held back; then pools (and their deletions)
            # before policies, each in name order, until nothing more fits.
            todo = sorted(
                changes, key=lambda c: (not (c[1] is None and c[0].kind == KIND_POLICY), c[0])
            )
            progress = True
            while todo and progress:
                progress = False
                for change in list(todo):
                    key, parsed = change
                    current = self.accepted_objects()
                    _, baseline = problem_keys(current.values())
                    found = self.new_problems(self._apply(current, [change]), baseline)
                    forced = parsed is None and key.kind == KIND_POLICY
                    if found and not forced:
                        target = self._retained if parsed is None else self._rejected
                        target[key] = tuple(found)
                        continue
                    self._commit(key, parsed)
                    todo.remove(change)
                    committed += 1
                    progress = True
        return self._recompile() if committed or self._keys_dirty else False

    def _recompile(self) -> bool:
        self._keys_dirty = False
        objects = objects_of(
            with_secret_keys((a.parsed for a in self._accepted.values()), self.key_secrets)
        )
        try:
            # Tests already passed for this set: reconcile accepts nothing that fails them.
            snapshot = compile_objects(objects, run_tests=False)
        except (PolicyError, KeyError) as exc:  # guarded by reconcile; never expected
            log.error("accepted set failed to compile, keeping the previous snapshot: %r", exc)
            return False
        previous = self.snapshot.version if self.snapshot is not None else ""
        self.snapshot = snapshot
        self.versions = object_versions(snapshot)
        return snapshot.version != previous

    # --- output ------------------------------------------------------------

    def state(self, key: Key) -> ObjectState | None:
        obs = self._observed.get(key)
        if obs is None:
            return None
        acc = self._accepted.get(key)
        serving = acc.generation if acc is not None and acc.uid == obs.uid else None
        dangling = tuple(
            p for problems in self._retained.values() for p in problems if p.obj == key.ref
        )
        return ObjectState(
            key=key,
            uid=obs.uid,
            generation=obs.generation,
            invalid=obs.invalid,
            rejected=() if obs.invalid else self._rejected.get(key, ()),
            serving_generation=serving,
            version=self.versions.get(key, "") if serving is not None else "",
            dangling=dangling,
        )

    def pool_models(self) -> dict[Key, frozenset[str]]:
        """The models each serving ModelPool offers (what the learner names in drift)."""
        pools = self.snapshot.pools if self.snapshot is not None else ()
        return {
            Key(KIND_POOL, p.namespace, p.name): frozenset(c.model for c in p.candidates)
            for p in pools
        }

    def tenant_keys(self) -> dict[Key, int]:
        """How many keys (spec and Secrets) each serving Tenant has in the snapshot."""
        tenants = self.snapshot.tenants if self.snapshot is not None else ()
        return {Key(KIND_TENANT, t.namespace, t.name): len(t.keys) for t in tenants}

    def retained(self) -> dict[Key, tuple[Problem, ...]]:
        """Deleted objects still serving, with the problems their removal would cause."""
        return dict(self._retained)

    def rejections(self) -> dict[Key, tuple[Problem, ...]]:
        """Observed objects whose newest generation does not serve, and why."""
        return {k: v for k, v in self._rejected.items() if v}
