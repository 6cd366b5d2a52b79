"""Validated objects in, one immutable ``skyroute.v1.Snapshot`` out.

Everything a router would otherwise work out per request is worked out here,
once per change: intent globs become concrete intent names (in the order the
policy declares its intents, which is the classifier's order), pools and
candidates get their defaults filled in, quality globs are resolved to one
score per intent (the most specific glob wins), and API keys are reduced to
references (an environment variable name, a file path). Nothing in a
snapshot is secret, so it can be logged, served on /debug/snapshot and
diffed.

Versions are content hashes, never counters or timestamps: a policy's
version hashes the policy with the pools it references, and the snapshot's
version hashes the whole snapshot serialized deterministically with its
``version`` field empty. Objects are sorted by name and maps are serialized in
key order, so the order of files and of documents within them cannot change
a version, and a restarted control plane computes exactly the version its
routers already hold and has nothing to push.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from skyroute.control.policy import globs
from skyroute.control.policy.errors import PolicyError, Problem
from skyroute.control.policy.loader import SourceDocument, load_folder
from skyroute.control.policy.model import (
    CacheFamilySpec,
    CacheSpec,
    ModelPool,
    PoolModel,
    RoutingPolicy,
    SelectionSpec,
    TenantResource,
    WeightsSpec,
)
from skyroute.control.policy.policytests import run_policy_tests
from skyroute.control.policy.tenants import compile_tenants
from skyroute.control.policy.validate import Objects, validate
from skyroute.v1 import snapshot_pb2

_TOOLS = {
    "any": snapshot_pb2.TOOL_MATCH_ANY,
    "required": snapshot_pb2.TOOL_MATCH_REQUIRED,
    "absent": snapshot_pb2.TOOL_MATCH_ABSENT,
}


def digest(*parts: bytes) -> str:
    """``sha256:`` plus the first 16 hex digits; several parts are length-prefixed."""
    h = hashlib.sha256()
    if len(parts) == 1:
        h.update(parts[0])
    else:
        for part in parts:
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return "sha256:" + h.hexdigest()[:16]


def snapshot_version(snapshot: snapshot_pb2.Snapshot) -> str:
    """The content version of ``snapshot``, whatever its ``version`` field holds now.

    Exactly snapshot.proto's definition, so anyone can check it: sha256 over the
    deterministic serialization with ``version`` empty, first 16 hex digits.
    """
    unversioned = snapshot_pb2.Snapshot()
    unversioned.CopyFrom(snapshot)
    unversioned.version = ""
    return digest(unversioned.SerializeToString(deterministic=True))


def compile_folder(folder: str | Path) -> snapshot_pb2.Snapshot:
    """Load, validate and compile a folder; raises PolicyError with every problem."""
    return compile_documents(load_folder(folder))


def compile_documents(docs: Sequence[SourceDocument]) -> snapshot_pb2.Snapshot:
    return compile_objects(validate(docs))


def compile_objects(objects: Objects, *, run_tests: bool = True) -> snapshot_pb2.Snapshot:
    """The snapshot of ``objects``; with ``run_tests``, PolicyError if a policy test fails.

    Every ``spec.tests`` case runs through the router's own decision code (see
    ``policytests``), so a folder whose tests fail never becomes a snapshot and the
    previous one keeps serving. ``run_tests=False`` is for callers that run the tests
    themselves (``skyroute policy test`` reports them as a table, the operator checks
    them per object before accepting a change).
    """
    pool_objs = sorted(
        (p.obj for p in objects.pools if isinstance(p.obj, ModelPool)),
        key=lambda o: o.metadata.name,
    )
    policy_objs = sorted(
        (p.obj for p in objects.policies if isinstance(p.obj, RoutingPolicy)),
        key=lambda o: o.metadata.name,
    )
    intents_by_ns: dict[str, list[str]] = {}
    for policy in policy_objs:
        intents_by_ns.setdefault(policy.metadata.namespace, []).extend(policy.spec.intent_names)
    pools = {
        o.metadata.name: compile_pool(o, sorted(set(intents_by_ns.get(o.metadata.namespace, []))))
        for o in pool_objs
    }
    snapshot = snapshot_pb2.Snapshot()
    snapshot.pools.extend(pools[name] for name in sorted(pools))
    for obj in policy_objs:
        compiled = compile_policy(obj)
        used = sorted(referenced_pools(compiled))
        compiled.version = policy_version(compiled, (pools[name] for name in used))
        snapshot.policies.append(compiled)
    snapshot.default_policy = _default_policy(policy_objs)
    snapshot.tenants.extend(
        compile_tenants(p.obj for p in objects.tenants if isinstance(p.obj, TenantResource))
    )
    snapshot.version = snapshot_version(snapshot)
    if run_tests:
        failures = run_policy_tests(snapshot, objects.policies)
        if failures:
            raise PolicyError(failures)
    return snapshot


def _default_policy(policies: Sequence[RoutingPolicy]) -> str:
    marked = [p.metadata.name for p in policies if p.spec.default]
    if len(marked) > 1:  # validate() rejects this; guard direct callers
        problem = Problem(file="<objects>", message=f"several default policies: {marked}")
        raise PolicyError([problem])
    if marked:
        return marked[0]
    return policies[0].metadata.name if len(policies) == 1 else ""


def referenced_pools(policy: snapshot_pb2.Policy) -> set[str]:
    return {r.pool for r in policy.rules} | {policy.default_pool}


def policy_version(policy: snapshot_pb2.Policy, pools: Iterable[snapshot_pb2.Pool]) -> str:
    """Hash of the policy (version field empty) and the pools it references, in name order."""
    unversioned = snapshot_pb2.Policy()
    unversioned.CopyFrom(policy)
    unversioned.version = ""
    parts = [unversioned.SerializeToString(deterministic=True)]
    parts.extend(pool.SerializeToString(deterministic=True) for pool in pools)
    return digest(*parts)


def compile_policy(obj: RoutingPolicy) -> snapshot_pb2.Policy:
    spec = obj.spec
    names = spec.intent_names
    policy = snapshot_pb2.Policy(
        name=obj.metadata.name,
        namespace=obj.metadata.namespace,
        default_pool=spec.default_pool,
        trust_declared_intent=spec.trust_declared_intent,
        intent_min_similarity=spec.intent_min_similarity,
    )
    for intent in spec.intents:
        policy.intents.append(
            snapshot_pb2.Intent(
                name=intent.name,
                keywords=_dedupe(k.strip().lower() for k in intent.keywords),
                patterns=_dedupe(intent.patterns),
                examples=_dedupe(intent.examples),
                tool_use_probability=intent.tool_use,
            )
        )
    for rule in spec.rules:
        m = rule.match
        compiled = snapshot_pb2.Rule(
            name=rule.name,
            intents=globs.expand(m.intents, names),
            tools=_TOOLS[m.tools],
            min_prompt_tokens=m.min_prompt_tokens,
            max_prompt_tokens=m.max_prompt_tokens,
            user_tiers=m.user_tiers,
            locales=m.locales,
            tenants=m.tenants,
            pool=rule.pool,
            min_win_probability=m.min_win_probability,
            max_win_probability=m.max_win_probability,
        )
        if rule.selection is not None or rule.weights is not None:
            compiled.selection.CopyFrom(_selection(rule.selection or spec.selection))
            compiled.weights.CopyFrom(_weights(rule.weights or spec.weights))
        policy.rules.append(compiled)
    cache = spec.cache
    policy.cache.CopyFrom(
        snapshot_pb2.CachePolicy(
            enabled=cache.enabled,
            intents=globs.expand(cache.intents, names),
            similarity_threshold=_cache_threshold(cache),
            max_false_hit_rate=cache.max_false_hit_rate,
            ttl_seconds=cache.ttl_seconds,
            max_entries=cache.max_entries,
            families={
                name: snapshot_pb2.CacheFamily(
                    similarity_threshold=_cache_threshold(f),
                    ttl_seconds=f.ttl_seconds,
                    max_false_hit_rate=f.max_false_hit_rate,
                )
                for name, f in cache.families.items()
            },
        )
    )
    lim = spec.limits
    policy.limits.CopyFrom(
        snapshot_pb2.Limits(
            max_attempts=lim.max_attempts,
            request_timeout_ms=lim.request_timeout_ms,
            first_token_timeout_ms=lim.first_token_timeout_ms,
            inter_token_timeout_ms=lim.inter_token_timeout_ms,
        )
    )
    rel = spec.reliability
    policy.reliability.CopyFrom(
        snapshot_pb2.Reliability(
            retry_budget_ratio=rel.retry_budget.ratio,
            retry_budget_min_concurrency=rel.retry_budget.min_concurrency,
            outlier_consecutive_failures=rel.outlier_detection.consecutive_failures,
            outlier_base_ejection_ms=rel.outlier_detection.base_ejection_ms,
            outlier_max_ejection_percent=rel.outlier_detection.max_ejection_percent,
            hedge_enabled=rel.hedging.enabled,
            hedge_after_ms=rel.hedging.after_ms,
            hedge_percentile=rel.hedging.percentile,
            content_filter_fallback=rel.content_filter == "fallback",
            non_idempotent_tools=sorted(set(rel.non_idempotent_tools)),
            non_idempotent_max_attempts=rel.non_idempotent_max_attempts,
            idempotency_ttl_seconds=rel.idempotency_ttl_seconds,
            idempotency_fail_open=rel.idempotency_unavailable == "failOpen",
        )
    )
    policy.selection.CopyFrom(_selection(spec.selection))
    ad = spec.adaptation
    policy.adaptation.CopyFrom(
        snapshot_pb2.Adaptation(
            enabled=ad.enabled,
            half_life_s=ad.half_life_s,
            exploration=ad.exploration,
            min_samples=ad.min_samples,
            interval_s=ad.interval_s,
            drift_latency_ratio=ad.drift_latency_ratio,
            drift_cost_ratio=ad.drift_cost_ratio,
            quality_prior_weight=ad.quality_prior_weight,
            drift_quality_drop=ad.drift_quality_drop,
            quality_sampling=ad.quality_sampling,
        )
    )
    policy.weights.CopyFrom(_weights(spec.weights))
    policy.outcome_prompt_text = spec.outcomes.prompt_text
    policy.drop_parameters.extend(sorted(n for n, a in spec.parameters.items() if a == "drop"))
    ls = spec.learned_signal
    if ls is not None:
        # The fitted weights are the learning loop's to add (learning.winmodel).
        policy.learned_signal.CopyFrom(
            snapshot_pb2.LearnedSignal(
                strong=ls.strong,
                weak=ls.weak,
                exploration=ls.exploration,
                min_feedback=ls.min_feedback,
                regularization=ls.regularization,
            )
        )
    return policy


def _cache_threshold(spec: CacheSpec | CacheFamilySpec) -> float:
    """The threshold to send: 0 (derive it from the bound) when only a bound is given."""
    if spec.max_false_hit_rate is not None and "similarity_threshold" not in spec.model_fields_set:
        return 0.0
    return spec.similarity_threshold


def _selection(sel: SelectionSpec) -> snapshot_pb2.Selection:
    return snapshot_pb2.Selection(
        scored=sel.mode != "ordered",
        mode=sel.mode,
        max_cost_per_1k=sel.constraints.max_cost_per1k,
        min_quality=sel.constraints.min_quality,
        max_p95_ms=sel.constraints.max_p95_ms,
        family_first=sel.fallback_order == "family",
        expected_completion_tokens=sel.expected_completion_tokens,
        objective_p95_ms=sel.objective.p95_ms,
    )


def _weights(w: WeightsSpec) -> snapshot_pb2.ScoringWeights:
    return snapshot_pb2.ScoringWeights(
        cost=w.cost, latency=w.latency, success=w.success, quality=w.quality
    )


def compile_pool(obj: ModelPool, intents: Sequence[str]) -> snapshot_pb2.Pool:
    """A pool with its candidates in declared order; ``intents`` resolve quality globs."""
    pool = snapshot_pb2.Pool(name=obj.metadata.name, namespace=obj.metadata.namespace)
    for model in obj.spec.models:
        pool.candidates.append(compile_candidate(model, intents))
    return pool


def compile_candidate(model: PoolModel, intents: Sequence[str]) -> snapshot_pb2.Candidate:
    upstream = model.upstream_model if model.upstream_model != model.name else None
    return snapshot_pb2.Candidate(
        model=model.name,
        provider=model.provider,
        endpoint=model.first_url.rstrip("/"),
        family=model.effective_family,
        input_price_per_mtok=model.pricing.input_per_m_tok,
        output_price_per_mtok=model.pricing.output_per_m_tok,
        context_window=model.context_window,
        supports_tools=model.supports_tools,
        max_output_tokens=model.max_output_tokens,
        timeout_ms=model.timeout_ms,
        api_key_env=(model.api_key.env or "") if model.api_key else "",
        api_key_file=model.api_key.secret_path if model.api_key else "",
        quality=resolve_quality(model.quality, intents),
        upstream_model=upstream or "",
        embedding_space=model.embedding_space or "",
        api_version=model.api_version or "",
        endpoints=[
            snapshot_pb2.CandidateEndpoint(
                url=e.url.rstrip("/"),
                weight=e.weight,
                name=e.name,
                region=e.region or "",
                api_key_env=(e.api_key.env or "") if e.api_key else "",
                api_key_file=e.api_key.secret_path if e.api_key else "",
                deployment=e.deployment or "",
            )
            for e in model.endpoints or ()
        ],
        auth=model.auth,
        region=model.region or "",
        project=model.project or "",
        # Sorted and once each: the snapshot (and its version hash) does not depend on order.
        quirks=sorted(set(model.quirks or ())),
    )


def resolve_quality(scores: dict[str, float], intents: Sequence[str]) -> dict[str, float]:
    """One score per concrete intent, the most specific matching glob winning; ``*`` kept.

    ``{"*": 0.8, "faq.*": 0.9, "faq.refund": 0.7}`` over intents ``faq.refund,
    faq.pricing, support.general`` gives ``faq.refund: 0.7, faq.pricing: 0.9,
    support.general: 0.8`` and ``*: 0.8`` for intents the router classifies as
    ``unknown``.
    """
    resolved: dict[str, float] = {}
    if "*" in scores:
        resolved["*"] = scores["*"]
    by_specificity = sorted(scores, key=globs.specificity, reverse=True)
    for intent in intents:
        for pattern in by_specificity:
            if globs.matches(pattern, intent):
                resolved[intent] = scores[pattern]
                break
    return resolved


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
