"""Checking what routers report before anything counts it.

An outcome batch carries outcomes, stats windows (with latency sketches) and
endpoint health, all written by a process the control plane does not run.
Every field is checked against ``limits.py`` (lengths, ranges, finite
numbers) and every name against the snapshot: the model, pool, intent,
policy and policy version an outcome names must exist in the snapshot
version it says it was served with (``Outcome.snapshot_version``), or, when
that version is no longer remembered, in one of the last
``REMEMBERED_VERSIONS`` versions served. So must the tenant an outcome
bills (``account``; its ``tenant`` is that account or ``<account>/<sub>``)
and the key (that tenant's, by public id): a router cannot charge a
tenant or key the snapshot never had. A stats window's model and intent
are checked the same way, and its sketch is decoded once here
(``fleet.read_sketch``) so the learning loop never sees a malformed one.

Whatever fails is dropped, one outcome or one window at a time (the rest of
the batch counts), and counted by reason in ``rejected``: ``skyroute
status`` shows the counts, and the first of each reason is logged. Nothing
here raises into the RPC handler or the learning loop.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from skyroute.control.learning.fleet import BadSketch, read_sketch
from skyroute.control.limits import (
    MAX_COST_USD,
    MAX_DEPTH,
    MAX_ENDPOINTS,
    MAX_LATENCY_MS,
    MAX_NAME,
    MAX_TEXT,
    MAX_TOKENS,
    MAX_WINDOW_REQUESTS,
)
from skyroute.control.logs import event
from skyroute.learned import MAX_EMBEDDING_BYTES
from skyroute.reports import UNKNOWN_INTENT
from skyroute.v1 import distribution_pb2, snapshot_pb2

log = logging.getLogger("skyroute.control.reports")

REMEMBERED_VERSIONS = 16
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The names one snapshot version declares (and "" for a field left empty)."""

    models: frozenset[str]
    pools: frozenset[str]
    intents: frozenset[str]
    policies: frozenset[str]
    policy_versions: frozenset[str]
    # Tenants and (tenant, key id) pairs: who an outcome may bill ("" anonymous).
    accounts: frozenset[str] = frozenset({""})
    keys: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(cls, snapshot: snapshot_pb2.Snapshot) -> Vocabulary:
        return cls(
            models=frozenset({"", *(c.model for p in snapshot.pools for c in p.candidates)}),
            pools=frozenset({"", *(p.name for p in snapshot.pools)}),
            intents=frozenset(
                {"", UNKNOWN_INTENT, *(i.name for p in snapshot.policies for i in p.intents)}
            ),
            policies=frozenset({"", *(p.name for p in snapshot.policies)}),
            policy_versions=frozenset({"", *(p.version for p in snapshot.policies)}),
            accounts=frozenset({"", *(t.name for t in snapshot.tenants)}),
            keys=frozenset((t.name, k.id) for t in snapshot.tenants for k in t.keys),
        )

    def union(self, other: Vocabulary) -> Vocabulary:
        return Vocabulary(
            self.models | other.models,
            self.pools | other.pools,
            self.intents | other.intents,
            self.policies | other.policies,
            self.policy_versions | other.policy_versions,
            self.accounts | other.accounts,
            self.keys | other.keys,
        )


EMPTY = Vocabulary(frozenset({""}), frozenset({""}), frozenset({""}), frozenset({""}), frozenset())


def _within(x: float, high: float) -> bool:
    return math.isfinite(x) and 0.0 <= x <= high


def outcome_problem(o: distribution_pb2.Outcome, names: Vocabulary) -> str | None:
    """Why ``o`` must be dropped (a reason word), or None when it is fine."""
    texts = (o.request_id, o.snapshot_version, o.intent_source, o.locale, o.user_tier, o.tenant)
    short = (o.policy, o.policy_version, o.pool, o.model, o.intent, o.account, o.key_id)
    if any(len(t) > MAX_NAME for t in short):
        return "name_too_long"
    if any(len(t) > MAX_TEXT for t in (*texts, o.error_class, o.charge_id)):
        return "text_too_long"
    if not (_within(o.latency_ms, MAX_LATENCY_MS) and _within(o.ttft_ms, MAX_LATENCY_MS)):
        return "latency_out_of_range"
    if not _within(o.cost_usd, MAX_COST_USD):
        return "cost_out_of_range"
    tokens = (o.prompt_tokens, o.completion_tokens, o.prompt_tokens_estimate)
    if not all(0 <= t <= MAX_TOKENS for t in tokens):
        return "tokens_out_of_range"
    if not (0 <= o.fallback_depth <= MAX_DEPTH and 0 <= o.attempts <= MAX_DEPTH):
        return "depth_out_of_range"
    if len(o.prompt_embedding) > MAX_EMBEDDING_BYTES:
        return "features_too_long"
    shares = (o.intent_confidence, o.predicted_tool_use, o.cache_similarity, o.win_probability)
    if not all(_within(abs(x), 1.0 + 1e-6) for x in shares):  # cosines, with rounding
        return "share_out_of_range"
    if o.model not in names.models:
        return "unknown_model"
    if o.pool not in names.pools:
        return "unknown_pool"
    if o.intent not in names.intents:
        return "unknown_intent"
    if o.policy not in names.policies or o.policy_version not in names.policy_versions:
        return "unknown_policy"
    if o.account not in names.accounts:
        return "unknown_tenant"
    if o.account and o.tenant != o.account and not o.tenant.startswith(o.account + "/"):
        return "tenant_mismatch"  # a sub-tenant is always "<account>/<sub>"
    if o.key_id and (not o.account or (o.account, o.key_id) not in names.keys):
        return "unknown_key"
    return None


def stats_problem(s: distribution_pb2.ModelStats, names: Vocabulary) -> str | None:
    """Why a stats window must be dropped, or None (its sketch is decoded to check it)."""
    if len(s.model) > MAX_NAME or len(s.intent) > MAX_NAME:
        return "name_too_long"
    if s.requests > MAX_WINDOW_REQUESTS or s.failures > s.requests:
        return "requests_out_of_range"
    if s.completion_tokens > MAX_TOKENS * 1000 or not _within(s.cost_usd, MAX_COST_USD):
        return "window_out_of_range"
    if s.model not in names.models or s.intent not in names.intents:
        return "unknown_model" if s.model not in names.models else "unknown_intent"
    if s.latency_sketch:
        try:
            read_sketch(s.latency_sketch)
        except BadSketch:
            return "bad_sketch"
    return None


class ReportChecker:
    """The names of the versions served lately, and the counts of what was dropped."""

    def __init__(self) -> None:
        self._versions: OrderedDict[str, Vocabulary] = OrderedDict()
        self._any = EMPTY
        self.rejected: Counter[str] = Counter()

    def learn(self, snapshot: snapshot_pb2.Snapshot | None) -> None:
        """Remember ``snapshot``'s names (the store's subscriber calls this on each change)."""
        if snapshot is None or snapshot.version in self._versions:
            return
        self._versions[snapshot.version] = Vocabulary.of(snapshot)
        while len(self._versions) > REMEMBERED_VERSIONS:
            self._versions.popitem(last=False)
        union = EMPTY
        for names in self._versions.values():
            union = union.union(names)
        self._any = union

    def reject(self, reason: str, router: str, n: int = 1) -> None:
        """Count ``n`` dropped items for ``reason``; the first of each reason is logged."""
        if not self.rejected[reason]:
            event(log, "report_rejected", logging.WARNING, router=router, reason=reason)
        self.rejected[reason] += n

    def _keep(self, router: str, items: Iterable[T], problem: Callable[[T], str | None]) -> list[T]:
        kept = []
        for item in items:
            reason = problem(item)
            if reason is None:
                kept.append(item)
            else:
                self.reject(reason, router)
        return kept

    def outcomes(
        self, router: str, outcomes: Iterable[distribution_pb2.Outcome]
    ) -> list[distribution_pb2.Outcome]:
        """The outcomes that pass, each checked against the version it names."""

        def problem(o: distribution_pb2.Outcome) -> str | None:
            return outcome_problem(o, self._versions.get(o.snapshot_version, self._any))

        return self._keep(router, outcomes, problem)

    def stats(
        self, router: str, stats: Iterable[distribution_pb2.ModelStats]
    ) -> list[distribution_pb2.ModelStats]:
        """The stats windows that pass (their sketches decoded once to check them)."""
        return self._keep(router, stats, lambda s: stats_problem(s, self._any))

    def endpoints(
        self, router: str, endpoints: Iterable[distribution_pb2.EndpointHealth]
    ) -> list[distribution_pb2.EndpointHealth]:
        given = list(endpoints)
        kept = [
            e
            for e in given
            if len(e.model) <= MAX_NAME
            and len(e.endpoint) <= MAX_TEXT
            and e.model in self._any.models
        ]
        if len(kept) < len(given):
            self.reject("bad_endpoint", router, len(given) - len(kept))
        if len(kept) > MAX_ENDPOINTS:
            self.reject("too_many_endpoints", router, len(kept) - MAX_ENDPOINTS)
            kept = kept[:MAX_ENDPOINTS]
        return kept
