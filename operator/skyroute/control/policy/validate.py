"""Validation in two passes: each object alone, then the objects together.

The first pass is the CRD's job on a cluster: the pydantic models in
``model.py`` check every object by itself, and pydantic's errors are rewritten
into problems that read like the API server's (field path in kubectl style,
the offending value quoted, the line in the file added).

The second pass covers what no CRD schema can express because it spans
objects or needs Python semantics: a rule's pool must exist in the policy's
own namespace; every intent glob must match at least one intent the policy
defines (a glob that matches nothing is a rule that never fires, which is a
bug, not a configuration); quality globs must match an intent of some policy
in the namespace; names must be unique across namespaces (routers address
pools and policies by bare name); and at most one policy may be the default.
On a cluster this pass runs in the operator and lands in the objects' status;
off-cluster it rejects the folder. Both passes collect every problem before
failing, so one run reports everything that is wrong.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from skyroute.control.policy import globs
from skyroute.control.policy.errors import PolicyError, Problem
from skyroute.control.policy.loader import PathKey, SourceDocument
from skyroute.control.policy.model import (
    FIELD_ALIASES,
    KIND_POOL,
    MODELS,
    ApiKeyRef,
    ModelPool,
    RoutingPolicy,
    TenantResource,
)
from skyroute.keyrefs import env_refusal

_MAX_KNOWN = 20


@dataclass(frozen=True, slots=True)
class Parsed:
    """A validated object and the document it came from (for locating later problems)."""

    doc: SourceDocument
    obj: ModelPool | RoutingPolicy | TenantResource


@dataclass(frozen=True, slots=True)
class Objects:
    """All objects of a folder that passed both passes."""

    pools: tuple[Parsed, ...]
    policies: tuple[Parsed, ...]
    tenants: tuple[Parsed, ...] = ()


def validate(docs: Sequence[SourceDocument], env_prefixes: Sequence[str] = ()) -> Objects:
    """Both passes over all documents; raises PolicyError listing every problem.

    ``env_prefixes`` are the routers' ``--secret-env-prefix`` values: a pool's
    ``apiKey.env`` naming a variable they may not read is a problem here (keyrefs.py).
    """
    problems: list[Problem] = []
    parsed: list[Parsed] = []
    failed: list[SourceDocument] = []
    for doc in docs:
        result = _parse(doc, problems)
        if result is None:
            failed.append(doc)
        else:
            parsed.append(result)
    problems.extend(check_references(parsed, failed))
    problems.extend(check_key_refs(parsed, env_prefixes))
    if problems:
        raise PolicyError(problems)
    pools = tuple(p for p in parsed if isinstance(p.obj, ModelPool))
    policies = tuple(p for p in parsed if isinstance(p.obj, RoutingPolicy))
    tenants = tuple(p for p in parsed if isinstance(p.obj, TenantResource))
    return Objects(pools=pools, policies=policies, tenants=tenants)


def parse_document(doc: SourceDocument) -> tuple[Parsed | None, list[Problem]]:
    """The first pass for one document: the parsed object, or None and its problems."""
    problems: list[Problem] = []
    return _parse(doc, problems), problems


def _parse(doc: SourceDocument, problems: list[Problem]) -> Parsed | None:
    model = MODELS.get(doc.kind)
    if model is None:
        kinds = " or ".join(sorted(MODELS))
        problems.append(doc.problem(("kind",), f'unknown kind "{doc.kind}" (expected {kinds})'))
        return None
    try:
        return Parsed(doc=doc, obj=model.model_validate(doc.data))
    except ValidationError as exc:
        problems.extend(_problems_from(doc, exc))
        return None


def _problems_from(doc: SourceDocument, exc: ValidationError) -> Iterable[Problem]:
    for err in exc.errors(include_url=False):
        loc: list[str | int] = []
        key_error = False
        for part in err["loc"]:
            if part == "[key]":
                key_error = True
            elif isinstance(part, str) and loc[-1:] != ["quality"]:
                loc.append(FIELD_ALIASES.get(part, part))
            else:
                loc.append(part)
        message = _message(err["type"], err["msg"], err.get("input"))
        if key_error:
            message = f"map key: {message}"
        yield doc.problem(tuple(loc), message)


def _message(kind: str, msg: str, value: object) -> str:
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind.startswith("skyroute_"):
        return msg
    if isinstance(value, str | int | float | bool) and len(repr(value)) <= 80:
        shown = f'"{value}"' if isinstance(value, str) else repr(value).lower()
        return f"{msg} (got {shown})"
    return msg


def _known(names: Iterable[str]) -> str:
    ordered = sorted(set(names))
    if not ordered:
        return "none defined"
    shown = ", ".join(ordered[:_MAX_KNOWN])
    extra = len(ordered) - _MAX_KNOWN
    return f"{shown}, and {extra} more" if extra > 0 else shown


def check_references(
    parsed: Sequence[Parsed], failed: Sequence[SourceDocument] = ()
) -> list[Problem]:
    """The second pass: references, globs, name clashes and the default policy.

    Objects that failed the first pass (``failed``) already have their problems
    reported; a reference to one of them is not reported again as "not found",
    and quality globs are only checked in a namespace whose policies all parsed and
    define at least one intent (a pool may be prepared before the policy using it).
    """
    problems: list[Problem] = []
    problems.extend(_check_names(parsed))
    pools_by_ns: dict[str, dict[str, Parsed]] = defaultdict(dict)
    intents_by_ns: dict[str, set[str]] = defaultdict(set)
    unparsed_pools = {(d.namespace, d.name) for d in failed if d.kind == KIND_POOL}
    unsure_ns = {d.namespace for d in failed if d.kind != KIND_POOL}
    for p in parsed:
        if isinstance(p.obj, ModelPool):
            pools_by_ns[p.obj.metadata.namespace][p.obj.metadata.name] = p
        elif isinstance(p.obj, RoutingPolicy):
            intents_by_ns[p.obj.metadata.namespace].update(p.obj.spec.intent_names)
    defaults: list[Parsed] = []
    for p in parsed:
        if isinstance(p.obj, RoutingPolicy):
            problems.extend(_check_policy(p, p.obj, pools_by_ns, unparsed_pools))
            if p.obj.spec.default:
                defaults.append(p)
        elif isinstance(p.obj, ModelPool):
            ns = p.obj.metadata.namespace
            if intents_by_ns.get(ns) and ns not in unsure_ns:
                problems.extend(_check_quality(p, p.obj, intents_by_ns[ns]))
    problems.extend(check_tenants(parsed, failed))
    if len(defaults) > 1:
        refs = ", ".join(d.obj.ref for d in defaults)
        for d in defaults:
            problems.append(
                d.doc.problem(("spec", "default"), f"more than one default policy: {refs}")
            )
    return problems


def _check_names(parsed: Sequence[Parsed]) -> Iterable[Problem]:
    first: dict[tuple[str, str], Parsed] = {}
    # Namespace first, then file order: which object gets the problem must not depend on
    # how the files happen to be named.
    ordered = sorted(parsed, key=lambda q: (q.obj.metadata.namespace, q.doc.file, q.doc.index))
    for p in ordered:
        meta = p.obj.metadata
        key = (p.obj.kind, meta.name)
        other = first.get(key)
        if other is None:
            first[key] = p
            continue
        where = f"{other.doc.file}"
        line = other.doc.line_of(())
        where += f":{line}" if line is not None else ""
        if other.obj.metadata.namespace == meta.namespace:
            message = f"duplicate {p.obj.kind} {p.obj.ref} (first defined in {where})"
        else:
            message = (
                f'{p.obj.kind} name "{meta.name}" is also used in namespace '
                f'"{other.obj.metadata.namespace}" ({where}); routers address '
                f"{p.obj.kind} objects by name, so names must be unique across namespaces"
            )
        yield p.doc.problem(("metadata", "name"), message)


def _check_policy(
    p: Parsed,
    policy: RoutingPolicy,
    pools_by_ns: dict[str, dict[str, Parsed]],
    unparsed_pools: set[tuple[str, str]],
) -> Iterable[Problem]:
    spec = policy.spec
    ns = policy.metadata.namespace
    pools = pools_by_ns.get(ns, {})
    intents = spec.intent_names

    def pool_problem(path: PathKey, pool: str) -> Problem | None:
        if pool in pools or (ns, pool) in unparsed_pools:
            return None
        msg = f'pool "{pool}" not found (known: {_known(pools)})'
        elsewhere = sorted(other_ns for other_ns, ps in pools_by_ns.items() if pool in ps)
        if elsewhere:
            msg += f"; it exists in namespace {', '.join(elsewhere)}, but a policy can only"
            msg += " use pools of its own namespace"
        return p.doc.problem(path, msg)

    for i, rule in enumerate(spec.rules):
        found = pool_problem(("spec", "rules", i, "pool"), rule.pool)
        if found is not None:
            yield found
        path = ("spec", "rules", i, "match", "intents")
        yield from _check_globs(p, path, rule.match.intents, intents)
    found = pool_problem(("spec", "defaultPool"), spec.default_pool)
    if found is not None:
        yield found
    yield from _check_globs(p, ("spec", "cache", "intents"), spec.cache.intents, intents)
    yield from _check_learned(p, policy, pools)


def _check_learned(p: Parsed, policy: RoutingPolicy, pools: dict[str, Parsed]) -> Iterable[Problem]:
    """spec.learnedSignal: its models are in the policy's pools; the loop that fits it is on."""
    spec = policy.spec
    ls = spec.learned_signal
    if ls is None:
        return
    if not spec.adaptation.enabled:
        yield p.doc.problem(
            ("spec", "learnedSignal"),
            "learnedSignal is fitted by the learning loop: set spec.adaptation.enabled: true",
        )
    used = {r.pool for r in spec.rules} | {spec.default_pool}
    models = {
        m.name
        for name in used
        if name in pools
        for obj in (pools[name].obj,)
        if isinstance(obj, ModelPool)
        for m in obj.spec.models
    }
    for field in ("strong", "weak"):
        model = getattr(ls, field)
        if models and model not in models:
            yield p.doc.problem(
                ("spec", "learnedSignal", field),
                f'model "{model}" is in none of the pools this policy uses '
                f"(known: {_known(models)})",
            )


def _check_globs(
    p: Parsed, path: PathKey, patterns: Sequence[str], intents: Sequence[str]
) -> Iterable[Problem]:
    for j, pattern in enumerate(patterns):
        if not globs.expand([pattern], intents):
            yield p.doc.problem(
                (*path, j), f'"{pattern}" matches no intent (known: {_known(intents)})'
            )


def _check_quality(p: Parsed, pool: ModelPool, intents: set[str]) -> Iterable[Problem]:
    names = sorted(intents)
    for i, model in enumerate(pool.spec.models):
        for key in model.quality:
            if key != "*" and not globs.expand([key], names):
                yield p.doc.problem(
                    ("spec", "models", i, "quality", key),
                    f'"{key}" matches no intent of any policy in namespace '
                    f'"{pool.metadata.namespace}" (known: {_known(names)})',
                )


def check_key_refs(parsed: Sequence[Parsed], env_prefixes: Sequence[str] = ()) -> Iterable[Problem]:
    """Each pool's ``apiKey.env`` names a variable routers may read (keyrefs.py)."""
    for p in parsed:
        if not isinstance(p.obj, ModelPool):
            continue
        for i, model in enumerate(p.obj.spec.models):
            refs: list[tuple[PathKey, ApiKeyRef | None]] = [(("spec", "models", i), model.api_key)]
            refs += [
                (("spec", "models", i, "endpoints", j), e.api_key)
                for j, e in enumerate(model.endpoints or ())
            ]
            for where, ref in refs:
                name = ref.env if ref else None
                why = env_refusal(name, env_prefixes) if name else None
                if why is not None:
                    yield p.doc.problem((*where, "apiKey", "env"), f'"{name}" refused: {why}')


def check_tenants(
    parsed: Sequence[Parsed], failed: Sequence[SourceDocument] = ()
) -> Iterable[Problem]:
    """Tenants name existing policies and pools; key ids and ServiceAccounts are unique."""
    unsure = {d.name for d in failed if d.kind != KIND_POOL}
    policies = {p.obj.metadata.name for p in parsed if isinstance(p.obj, RoutingPolicy)}
    pools = {p.obj.metadata.name for p in parsed if isinstance(p.obj, ModelPool)}
    pools |= {d.name for d in failed if d.kind == KIND_POOL}
    keys: dict[str, str] = {}
    accounts: dict[tuple[str, str], str] = {}
    for p in parsed:
        if not isinstance(p.obj, TenantResource):
            continue
        spec, ref = p.obj.spec, p.obj.ref
        for i, name in enumerate(spec.policies):
            if name != "*" and name not in policies and name not in unsure:
                yield p.doc.problem(
                    ("spec", "policies", i),
                    f'RoutingPolicy "{name}" not found (known: {_known(policies)})',
                )
        for i, budget in enumerate(spec.budgets):
            if budget.action == "route" and not budget.pool:
                yield p.doc.problem(("spec", "budgets", i, "pool"), 'action "route" needs a pool')
            elif budget.pool and budget.pool not in pools:
                yield p.doc.problem(
                    ("spec", "budgets", i, "pool"),
                    f'pool "{budget.pool}" not found (known: {_known(pools)})',
                )
        names = [b.name for b in spec.budgets]
        for i, name in enumerate(names):
            if name in names[:i]:
                yield p.doc.problem(("spec", "budgets", i, "name"), f'duplicate budget "{name}"')
        for i, key in enumerate(spec.keys):
            other = keys.setdefault(key.id, ref)
            if other != ref or [k.id for k in spec.keys].index(key.id) != i:
                yield p.doc.problem(
                    ("spec", "keys", i, "id"), f'key id "{key.id}" is also used by {other}'
                )
        for i, sa in enumerate(spec.service_accounts):
            acct = (sa.namespace, sa.name)
            bound = accounts.setdefault(acct, ref)
            if bound != ref:
                yield p.doc.problem(
                    ("spec", "serviceAccounts", i),
                    f"ServiceAccount {sa.namespace}/{sa.name} is already bound to {bound}",
                )
