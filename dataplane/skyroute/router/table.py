"""Routing tables: a snapshot turned into ready lookup structures.

The control plane already did the expensive, fallible work (validation,
glob expansion, pool resolution); what remains here is everything a router
can prepare once per snapshot version so that a request only does dictionary
lookups and a few comparisons:

- intent keywords lower-cased into tuples and patterns compiled,
- for every intent, the sub-list of rules that can match it (so a request
  never scans rules that name other intents),
- pools resolved to candidate objects that carry their upstream target
  (endpoint, model, API key read from the environment or a mounted file) and
  prices per token,
- cache and limit settings as plain attributes.

Building a table is also the router's check of a pushed snapshot: anything
it cannot use raises :class:`SnapshotError`, which the distribution client
turns into a NACK while the previous table keeps serving.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ahocorasick
import numpy as np
import re2

from skyroute.families import (
    DEFAULT_AUTH,
    FAMILY_AUTH,
    PROJECT_FAMILIES,
    QUIRK_FAMILIES,
    QUIRK_NAMES,
)
from skyroute.keyrefs import env_refusal
from skyroute.patterns import options as pattern_options
from skyroute.reports import UNKNOWN_INTENT as UNKNOWN_INTENT  # decide.py imports it from here
from skyroute.router import canary, sampling
from skyroute.router.canary import CanarySplit
from skyroute.router.embed import Embedder, HashingEmbedder
from skyroute.router.ingress.guards.from_snapshot import from_snapshot
from skyroute.router.ingress.guards.keys import KeyRing
from skyroute.router.ingress.guards.tenants import TenantRules
from skyroute.router.providers import registry
from skyroute.router.providers.types import Target
from skyroute.router.signals import RULE_SETS, attr_of
from skyroute.router.signals.learned import LearnedSignal, LearnedSignalError, compile_signal
from skyroute.v1 import snapshot_pb2

log = logging.getLogger("skyroute.router.table")

_EMBEDDER: list[Embedder] = []


def embedder() -> Embedder:
    """The embedding classifier's embedder: the built-in hashing one (no model, stable
    across processes, features memoized), one per router process."""
    if not _EMBEDDER:
        _EMBEDDER.append(HashingEmbedder())
    return _EMBEDDER[0]


class SnapshotError(ValueError):
    """A pushed snapshot this router cannot serve; the message says where."""


@dataclass(slots=True, frozen=True)
class Candidate:
    """One model of a pool, ready to call."""

    model: str
    provider: str
    family: str
    target: Target
    input_price: float  # USD per token
    output_price: float  # USD per token
    context_window: int
    supports_tools: bool
    max_output_tokens: int
    timeout_s: float
    # Offline quality evals: intent (or "*") -> score in [0, 1].
    quality: dict[str, float]
    # Fleet-wide priors from the control plane (0 = unknown).
    observed_p95_s: float
    observed_failure_rate: float
    observed_completion_tokens: float
    # The same per intent, where the fleet has enough samples: (p95 s, failure rate,
    # completion tokens), 0 = unknown.
    observed_by_intent: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    # Quality learned from feedback per intent: (offline prior, observations, posterior
    # mean, Beta alpha, Beta beta); alpha and beta are 0 when the snapshot had none.
    learned_quality: dict[str, tuple[float, float, float, float, float]] = field(
        default_factory=dict
    )
    # What this model's Thompson draws are offset by (sampling.model_key of its name).
    sample_key: int = 0
    # An embedding model's vector space ("" for a chat model): the Embeddings door's only.
    embedding_space: str = ""
    # Several endpoints (a model-level candidate): what the engine balances over.
    endpoints: Endpoints | None = None
    # One of those endpoints (a candidate the engine calls); None: the model's only one.
    site: Site | None = None

    @property
    def endpoint_key(self) -> str:
        """What health, retry budgets and load are kept per: the endpoint's URL (+ deployment)."""
        return self.site.key if self.site is not None else self.target.endpoint

    @property
    def label(self) -> str:
        """The model, and the endpoint's name when it has several (``gpt-4o@eastus``)."""
        return f"{self.model}@{self.site.name}" if self.site is not None else self.model

    def observed_for(self, intent: str) -> tuple[float, float, float]:
        """Fleet priors for ``intent``: its own figures where known, else the model's."""
        own = self.observed_by_intent.get(intent)
        if own is None:
            return self.observed_p95_s, self.observed_failure_rate, self.observed_completion_tokens
        return (
            own[0] or self.observed_p95_s,
            own[1] if own[0] else self.observed_failure_rate,
            own[2] or self.observed_completion_tokens,
        )

    def quality_for(self, intent: str) -> float:
        """The posterior learned from feedback where there is one, else the offline eval."""
        learned = self.learned_quality.get(intent)
        if learned is not None and learned[1] > 0:
            return learned[2]
        q = self.quality.get(intent)
        if q is None:
            q = self.quality.get("*", 0.5)
        return q

    def quality_beta(self, intent: str, weight: float) -> tuple[float, float]:
        """Beta(alpha, beta) of the quality for ``intent``: Thompson sampling's posterior.

        The control plane's pushed pseudo-counts where there is feedback; else the
        offline eval as a prior worth ``weight`` observations (the policy's
        ``qualityPriorWeight``), so a model without feedback is drawn around its eval.
        """
        learned = self.learned_quality.get(intent)
        if learned is not None and learned[1] > 0:
            if learned[3] > 0 and learned[4] > 0:
                return learned[3], learned[4]
            mean, n = learned[2], weight + learned[1]  # an older control plane's push
        else:
            mean, n = self.quality_for(intent), weight
        mean = min(max(mean, 1e-3), 1.0 - 1e-3)  # a Beta's parameters are positive
        return mean * n, (1.0 - mean) * n

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input_price + completion_tokens * self.output_price


@dataclass(slots=True, frozen=True)
class Site:
    """Which of its model's several endpoints a candidate calls."""

    name: str  # unique within the model: the attempt trail's ``model@name``
    key: str  # the URL, plus ``#deployment`` when the endpoint names one
    weight: int
    region: str
    group: str  # the model's endpoints together: where its model-level figures are kept


@dataclass(slots=True, frozen=True)
class Endpoints:
    """A model's endpoints, prepared for an O(1) weighted power-of-two-choices pick.

    ``rotations[i]`` is the failover order when endpoint ``i`` is picked: ``i``
    first, then the others in declared order from ``i + 1``, wrapping; ``prob``
    and ``alias`` are Vose's alias table of the weights (one draw in O(1)).
    """

    rotations: tuple[tuple[Candidate, ...], ...]
    prob: tuple[float, ...]
    alias: tuple[int, ...]
    group: str


def alias_table(weights: list[int]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Vose's alias method: draw ``i`` with probability ``weights[i] / sum(weights)``."""
    n, total = len(weights), sum(weights)
    scaled = [w * n / total for w in weights]
    prob, alias = [1.0] * n, list(range(n))
    small = [i for i, x in enumerate(scaled) if x < 1.0]
    large = [i for i, x in enumerate(scaled) if x >= 1.0]
    while small and large:
        lo, hi = small.pop(), large.pop()
        prob[lo], alias[lo] = scaled[lo], hi
        scaled[hi] -= 1.0 - scaled[lo]
        (small if scaled[hi] < 1.0 else large).append(hi)
    return tuple(prob), tuple(alias)


@dataclass(slots=True, frozen=True)
class IntentMatcher:
    name: str
    keywords: tuple[str, ...]
    pattern: re.Pattern[str] | None


@dataclass(slots=True, frozen=True)
class Rule:
    name: str
    pool: str
    tools: int  # snapshot_pb2.ToolMatch value
    min_tokens: int
    max_tokens: int  # 0 = unbounded
    # (Signals attribute, allowed values) per set condition the rule sets (registry's RULE_SETS).
    sets: tuple[tuple[str, frozenset[str]], ...]
    intents: frozenset[str]  # empty = any
    # The rule's own choice inside its pool (None: the policy's).
    selection: SelectionSettings | None = None
    # Bounds on the learned signal's win probability (0 = unbounded).
    min_win: float = 0.0
    max_win: float = 0.0


@dataclass(slots=True, frozen=True)
class CacheSettings:
    enabled: bool
    intents: frozenset[str]
    threshold: float
    ttl_s: float
    max_entries: int
    # (family, threshold, ttl_s) overrides, sorted: hashable for memoized rules.
    families: tuple[tuple[str, float, float], ...] = ()
    # maxFalseHitRate: the policy's (None: not declared) and per family (sorted).
    max_false_hit_rate: float | None = None
    family_bounds: tuple[tuple[str, float], ...] = ()


@dataclass(slots=True, frozen=True)
class ReliabilitySettings:
    """The policy's reliability knobs, with Envoy-like defaults when absent."""

    retry_budget_ratio: float = 0.2
    retry_budget_min_concurrency: int = 10
    outlier_consecutive_failures: int = 5
    outlier_base_ejection_s: float = 30.0
    outlier_max_ejection_share: float = 0.5
    hedge_enabled: bool = False
    hedge_after_s: float = 0.0  # 0: the primary's observed latency percentile
    hedge_percentile: float = 95.0
    content_filter_fallback: bool = False
    non_idempotent_tools: frozenset[str] = frozenset()
    non_idempotent_max_attempts: int = 2
    idempotency_ttl_s: float = 86_400.0
    idempotency_fail_open: bool = False


#: Selection modes, and the weights (cost, latency, success, quality) a mode imposes
#: (None: the configured weights).
SELECTION_MODES: dict[str, tuple[float, float, float, float] | None] = {
    "ordered": (0.0, 0.0, 0.0, 0.0),  # all ties: declared order
    "scored": None,
    "cheapest": (1.0, 0.0, 0.0, 0.0),
    "fastest": (0.0, 1.0, 0.0, 0.0),
}


@dataclass(slots=True, frozen=True)
class SelectionSettings:
    mode: str = "ordered"  # a key of SELECTION_MODES
    weights: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    max_cost_per_1k: float = 0.0
    min_quality: float = 0.0
    max_p95_s: float = 0.0
    family_first: bool = True
    expected_completion_tokens: int = 256
    # Adaptation (the learning loop): fleet priors win over this router's own
    # latency ring, and this share of scored requests tries the runner-up first.
    adaptive: bool = False
    exploration: float = 0.0
    # Latency objective (0 = none): candidates known to miss it go last.
    objective_p95_s: float = 0.0
    # adaptation.qualitySampling: thompson (the quality term uses a per-request draw
    # from each candidate's posterior), and the prior's weight where no feedback is.
    thompson: bool = False
    prior_weight: float = 10.0

    @property
    def scored(self) -> bool:
        return self.mode != "ordered"


@dataclass(slots=True)
class PolicyTable:
    name: str
    version: str
    snapshot_version: str
    intents: tuple[IntentMatcher, ...]
    # All keywords of all intents in one Aho-Corasick automaton: one pass over the
    # prompt finds every keyword hit; the earliest-declared intent among them wins.
    keywords: Any  # ahocorasick.Automaton, values (intent index, intent name, keyword)
    # All intents' patterns in one RE2 set: one linear-time pass says which match;
    # the earliest-declared matching intent wins. Names by set index.
    pattern_set: Any  # re2.Set, or None when the policy has no patterns
    pattern_names: tuple[str, ...]
    # Embedding classifier: one unit vector per example, and the intent of each row.
    embedder: Embedder
    example_vectors: np.ndarray[Any, np.dtype[np.float32]] | None
    example_intents: tuple[str, ...]
    intent_min_similarity: float
    # Predicted tool use per intent ("unknown" included).
    tool_use: dict[str, float]
    intent_names: frozenset[str]
    rules_by_intent: dict[str, tuple[Rule, ...]]
    default_pool: str
    pools: dict[str, tuple[Candidate, ...]]
    cache: CacheSettings
    max_attempts: int
    request_timeout_s: float
    first_token_timeout_s: float
    inter_token_timeout_s: float
    trust_declared_intent: bool
    weights: tuple[float, float, float, float]
    reliability: ReliabilitySettings
    selection: SelectionSettings
    # Rollouts: "stable" or "candidate" while one is in progress, else "". A
    # candidate's table carries the policy's own name (outcomes and metrics are
    # reported under it, told apart by version) and caches in its own partition.
    track: str = ""
    cache_scope: str = ""
    canary: CanarySplit[PolicyTable] | None = None
    # The learned per-request signal (spec.learnedSignal), compiled; None without one.
    learned: LearnedSignal | None = None
    # spec.outcomes.promptText: outcomes carry the last user message as written.
    prompt_text: bool = False
    # spec.parameters' ``drop``s: parameters a candidate whose family cannot honour them
    # is sent without (every other one it cannot honour skips it).
    drop_parameters: frozenset[str] = frozenset()


@dataclass(slots=True)
class RoutingTable:
    version: str
    policies: dict[str, PolicyTable]
    default_policy: str
    pool_names: tuple[str, ...] = field(default=())
    # Who may call (Snapshot.tenants): rules by tenant name and the key ring, built once.
    tenants: dict[str, TenantRules] = field(default_factory=dict)
    keys: KeyRing = field(default_factory=lambda: KeyRing([]))

    def policy(self, name: str) -> PolicyTable | None:
        if not name or name == "auto":
            name = self.default_policy
        return self.policies.get(name)


@dataclass(frozen=True, slots=True)
class KeyAccess:
    """Where a pool's key reference may be read from (the router's ``--secrets-dir`` flags).

    ``{file: ...}`` resolves only to a regular file (no FIFO, device or directory) of at
    most ``max_bytes`` whose real path is inside ``secrets_dir`` (where Kubernetes mounts
    the provider-key Secrets; None refuses every file); ``{env: ...}`` only a variable
    whose name starts with one of ``env_prefixes`` when any are given (``""`` allows
    every name, an explicit choice), else only a name that looks like a provider key:
    ``SKYROUTE_*`` or ``*_API_KEY``. So by default a pool cannot name, and send to its
    endpoint, the router's other secrets (``AWS_SECRET_ACCESS_KEY``, a Redis password,
    a database URL). A refused reference is logged and yields no key, never a read
    outside those bounds.
    """

    secrets_dir: Path | None = Path("/var/run/secrets/skyroute")
    env_prefixes: tuple[str, ...] = ()
    max_bytes: int = 64 * 1024

    def file(self, name: str) -> str | None:
        if self.secrets_dir is None:
            return _refused(name, "no --secrets-dir")
        real = Path(os.path.realpath(name))
        if not real.is_relative_to(os.path.realpath(self.secrets_dir)):
            return _refused(name, f"outside {self.secrets_dir}")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError:
            return None  # not there (yet): a Secret still being mounted
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                return _refused(name, "not a regular file")
            if info.st_size > self.max_bytes:
                return _refused(name, f"larger than {self.max_bytes} bytes")
            data = fh.read(self.max_bytes + 1)
        return data[: self.max_bytes].decode("utf-8", "replace").strip() or None

    def env(self, name: str) -> str | None:
        why = env_refusal(name, self.env_prefixes)
        if why is not None:
            return _refused(name, why)
        return os.environ.get(name) or None


# The router's CLI sets this once at start (``--secrets-dir``, ``--secret-env-prefix``).
KEY_ACCESS: list[KeyAccess] = [KeyAccess()]


def _refused(name: str, why: str) -> str | None:
    log.warning("provider key reference %r refused: %s", name, why)
    return None


def _read_key(env: str, file: str) -> str | None:
    # Mounted secret files win over the environment: they rotate without a restart
    # of the pod, and a new table is built for every snapshot version (off the event
    # loop: sync.py builds tables in a worker thread).
    access = KEY_ACCESS[0]
    if file:
        found = access.file(file)
        if found:
            return found
    if env:
        return access.env(env)
    return None


def _candidate(pool: str, c: snapshot_pb2.Candidate) -> Candidate:
    where = f"pool {pool!r} model {c.model!r}"
    family = registry.family(c.provider)
    if family is None:
        names = sorted(registry.FAMILIES)
        raise SnapshotError(f"{where}: provider {c.provider!r} is not one of {names}")
    auth = c.auth or DEFAULT_AUTH
    if auth not in FAMILY_AUTH.get(c.provider, ()):
        methods = list(FAMILY_AUTH.get(c.provider, ()))
        raise SnapshotError(f"{where}: auth {auth!r} is not one of {c.provider}'s {methods}")
    if c.provider in PROJECT_FAMILIES and not c.project:
        raise SnapshotError(f"{where}: provider {c.provider} needs a project")
    _check_quirks(where, c)
    sites = list(c.endpoints) or [snapshot_pb2.CandidateEndpoint(url=c.endpoint, weight=1)]
    if len(sites) > MAX_ENDPOINTS:
        raise SnapshotError(f"{where}: {len(sites)} endpoints, at most {MAX_ENDPOINTS}")
    targets = [_target(where, c, e, family.default_endpoint) for e in sites]
    model = Candidate(
        model=c.model,
        provider=c.provider,
        family=c.family or c.provider,
        target=targets[0],
        input_price=c.input_price_per_mtok / 1e6,
        output_price=c.output_price_per_mtok / 1e6,
        context_window=c.context_window,
        supports_tools=c.supports_tools and family.capabilities.tools,
        max_output_tokens=c.max_output_tokens,
        timeout_s=(c.timeout_ms or 10_000) / 1000.0,
        quality=dict(c.quality),
        observed_p95_s=c.observed_p95_ms / 1000.0,
        observed_failure_rate=c.observed_failure_rate,
        observed_completion_tokens=c.observed_completion_tokens,
        observed_by_intent={
            i: (o.p95_ms / 1000.0, o.failure_rate, o.completion_tokens)
            for i, o in c.observed_by_intent.items()
        },
        learned_quality={i: _learned(q) for i, q in c.learned_quality.items()},
        sample_key=sampling.model_key(c.model),
        embedding_space=c.embedding_space,
    )
    return model if len(sites) == 1 else _several(where, model, sites, targets)


MAX_ENDPOINTS = 16


def _learned(q: snapshot_pb2.LearnedQuality) -> tuple[float, float, float, float, float]:
    # Beta parameters that are not positive finite numbers are dropped (0): the draw
    # then derives them from the posterior mean and n.
    ok = all(math.isfinite(x) and x > 0 for x in (q.alpha, q.beta))
    return q.prior, q.n, q.posterior, q.alpha if ok else 0.0, q.beta if ok else 0.0


def _check_quirks(where: str, c: snapshot_pb2.Candidate) -> None:
    if not c.quirks:
        return
    if c.provider not in QUIRK_FAMILIES:
        raise SnapshotError(f"{where}: quirks are only for providers {list(QUIRK_FAMILIES)}")
    unknown = sorted(set(c.quirks) - set(QUIRK_NAMES))
    if unknown:
        raise SnapshotError(f"{where}: quirks {unknown} are not among {list(QUIRK_NAMES)}")


def _target(
    where: str, c: snapshot_pb2.Candidate, e: snapshot_pb2.CandidateEndpoint, default: str
) -> Target:
    """One endpoint's target: its URL, key and deployment, else the model's."""
    region = e.region or c.region or None
    # A regional family's default URL names its region (Bedrock's
    # https://bedrock-runtime.{region}.amazonaws.com): each endpoint's own.
    url = (e.url or default).replace("{region}", region) if region else e.url or default
    if not url.startswith(("http://", "https://")):
        raise SnapshotError(f"{where}: endpoint {url!r} is not an http(s) URL")
    own_key = e.api_key_env or e.api_key_file
    return Target(
        provider=c.provider,
        endpoint=url.rstrip("/"),
        model=e.deployment or c.upstream_model or c.model,
        api_key=_read_key(e.api_key_env, e.api_key_file)
        if own_key
        else _read_key(c.api_key_env, c.api_key_file),
        api_version=c.api_version or None,
        auth=c.auth or DEFAULT_AUTH,
        # An endpoint's region (a Bedrock region, a Vertex AI location) wins over the model's.
        region=region,
        project=c.project or None,
        quirks=frozenset(c.quirks),
    )


def _several(
    where: str,
    model: Candidate,
    sites: list[snapshot_pb2.CandidateEndpoint],
    targets: list[Target],
) -> Candidate:
    """A model-level candidate whose ``endpoints`` are its per-endpoint candidates."""
    keys = [
        t.endpoint + (f"#{e.deployment}" if e.deployment else "")
        for e, t in zip(sites, targets, strict=True)
    ]
    names = [e.name or e.region or str(i) for i, e in enumerate(sites)]
    for what, values in (("name", names), ("endpoint", keys)):
        if len(set(values)) != len(values):
            raise SnapshotError(f"{where}: endpoints with the same {what}: {values}")
    weights = [e.weight or 1 for e in sites]
    if max(weights) > 1000:
        raise SnapshotError(f"{where}: endpoint weights are 1..1000, got {max(weights)}")
    group = "|".join(keys)
    ones = [
        replace(model, target=t, site=Site(name, key, w, e.region, group))
        for e, t, name, key, w in zip(sites, targets, names, keys, weights, strict=True)
    ]
    prob, alias = alias_table(weights)
    n = len(ones)
    rotations = tuple(tuple(ones[(i + k) % n] for k in range(n)) for i in range(n))
    return replace(model, endpoints=Endpoints(rotations, prob, alias, group))


def _intent(policy: str, i: snapshot_pb2.Intent) -> IntentMatcher:
    pattern = None
    if i.patterns:
        try:
            pattern = re.compile("|".join(f"(?:{p})" for p in i.patterns), re.IGNORECASE)
        except re.error as e:
            raise SnapshotError(f"policy {policy!r} intent {i.name!r}: bad pattern: {e}") from e
    return IntentMatcher(i.name, tuple(k.lower() for k in i.keywords if k), pattern)


def _automaton(intents: tuple[IntentMatcher, ...]) -> Any:
    automaton = ahocorasick.Automaton()
    for index, intent in enumerate(intents):
        for kw in intent.keywords:
            known = automaton.get(kw, None)
            if known is None or known[0] > index:
                automaton.add_word(kw, (index, intent.name, kw))
    if len(automaton):
        automaton.make_automaton()
    return automaton


def _examples(
    p: snapshot_pb2.Policy,
) -> tuple[np.ndarray[Any, np.dtype[np.float32]] | None, tuple[str, ...]]:
    rows = [(i.name, e) for i in p.intents for e in i.examples]
    if not rows or p.intent_min_similarity <= 0:
        return None, ()
    embed = embedder().embed
    matrix = np.stack([embed(text) for _, text in rows]).astype(np.float32)
    return matrix, tuple(name for name, _ in rows)


def _pattern_set(policy: str, intents: tuple[IntentMatcher, ...]) -> tuple[Any, tuple[str, ...]]:
    with_patterns = [i for i in intents if i.pattern is not None]
    if not with_patterns:
        return None, ()
    pattern_set = re2.Set.SearchSet(pattern_options())
    for i in with_patterns:
        assert i.pattern is not None
        try:
            pattern_set.Add(i.pattern.pattern)
        except Exception as e:  # re2.error: outside the RE2 subset the CRDs allow
            raise SnapshotError(
                f"policy {policy!r} intent {i.name!r}: pattern not valid RE2: {e}"
            ) from e
    pattern_set.Compile()
    return pattern_set, tuple(i.name for i in with_patterns)


def _rule(p: snapshot_pb2.Policy, r: snapshot_pb2.Rule) -> Rule:
    own = None
    if r.HasField("selection") or r.HasField("weights"):
        sel = r.selection if r.HasField("selection") else p.selection
        own = _selection_of(p, sel, r.weights if r.HasField("weights") else p.weights)
    return Rule(
        name=r.name,
        pool=r.pool,
        tools=r.tools,
        min_tokens=r.min_prompt_tokens,
        max_tokens=r.max_prompt_tokens,
        sets=tuple(
            (attr_of(x), frozenset(values)) for x in RULE_SETS if (values := getattr(r, x.rule_set))
        ),
        intents=frozenset(r.intents),
        selection=own,
        min_win=r.min_win_probability,
        max_win=r.max_win_probability,
    )


def _reliability(p: snapshot_pb2.Policy) -> ReliabilitySettings:
    if not p.HasField("reliability"):
        return ReliabilitySettings()
    r = p.reliability
    return ReliabilitySettings(
        retry_budget_ratio=r.retry_budget_ratio,
        retry_budget_min_concurrency=r.retry_budget_min_concurrency,
        outlier_consecutive_failures=max(1, r.outlier_consecutive_failures),
        outlier_base_ejection_s=(r.outlier_base_ejection_ms or 30_000) / 1000.0,
        outlier_max_ejection_share=r.outlier_max_ejection_percent / 100.0,
        hedge_enabled=r.hedge_enabled,
        hedge_after_s=r.hedge_after_ms / 1000.0,
        hedge_percentile=r.hedge_percentile or 95.0,
        content_filter_fallback=r.content_filter_fallback,
        non_idempotent_tools=frozenset(r.non_idempotent_tools),
        non_idempotent_max_attempts=max(1, r.non_idempotent_max_attempts),
        idempotency_ttl_s=float(r.idempotency_ttl_seconds or 86_400),
        idempotency_fail_open=r.idempotency_fail_open,
    )


#: The smallest non-zero weight (the control plane's validator holds the same floor):
#: smaller ones would underflow to nothing for some candidates and not others.
MIN_WEIGHT = 1e-6


def _weights(
    p: snapshot_pb2.Policy, w: snapshot_pb2.ScoringWeights
) -> tuple[float, float, float, float]:
    weights = (w.cost, w.latency, w.success, w.quality)
    if any(not x >= 0 for x in weights):  # also NaN
        raise SnapshotError(f"policy {p.name!r}: weights {weights} must be non-negative numbers")
    if any(0 < x < MIN_WEIGHT for x in weights):
        raise SnapshotError(f"policy {p.name!r}: weights {weights}: each is 0 or >= {MIN_WEIGHT}")
    return weights


def _selection_of(
    p: snapshot_pb2.Policy, s: snapshot_pb2.Selection, w: snapshot_pb2.ScoringWeights
) -> SelectionSettings:
    ad = p.adaptation
    if not 0.0 <= ad.exploration <= 1.0:
        raise SnapshotError(
            f"policy {p.name!r}: adaptation.exploration {ad.exploration} is not in [0, 1]"
        )
    mode = s.mode or ("scored" if s.scored else "ordered")
    thompson, weight = _sampling(p)
    if mode not in SELECTION_MODES:
        raise SnapshotError(
            f"policy {p.name!r}: selection mode {mode!r} is not one of {sorted(SELECTION_MODES)}"
        )
    return SelectionSettings(
        mode=mode,
        weights=SELECTION_MODES[mode] or _weights(p, w),
        adaptive=ad.enabled,
        exploration=ad.exploration if ad.enabled else 0.0,
        max_cost_per_1k=s.max_cost_per_1k,
        min_quality=s.min_quality,
        max_p95_s=s.max_p95_ms / 1000.0,
        family_first=s.family_first,
        expected_completion_tokens=s.expected_completion_tokens or 256,
        objective_p95_s=max(0, s.objective_p95_ms) / 1000.0,
        thompson=thompson,
        prior_weight=weight,
    )


def _sampling(p: snapshot_pb2.Policy) -> tuple[bool, float]:
    """(Thompson sampling on, the prior's weight): adaptation.qualitySampling, checked."""
    ad = p.adaptation
    if ad.quality_sampling not in ("", "mean", "thompson"):
        raise SnapshotError(
            f"policy {p.name!r}: adaptation.quality_sampling {ad.quality_sampling!r} is not "
            "'mean' or 'thompson'"
        )
    weight = ad.quality_prior_weight or 10.0
    if not (math.isfinite(weight) and weight > 0):
        raise SnapshotError(
            f"policy {p.name!r}: adaptation.quality_prior_weight {weight} is not a positive number"
        )
    return ad.enabled and ad.quality_sampling == "thompson", weight


def _selection(p: snapshot_pb2.Policy) -> SelectionSettings:
    if not p.HasField("selection"):
        ad = p.adaptation
        thompson, weight = _sampling(p)
        return SelectionSettings(
            weights=(p.weights.cost, p.weights.latency, p.weights.success, p.weights.quality),
            adaptive=ad.enabled,
            exploration=ad.exploration if ad.enabled else 0.0,
            thompson=thompson,
            prior_weight=weight,
        )
    return _selection_of(p, p.selection, p.weights)


def _policy(
    p: snapshot_pb2.Policy, pools: dict[str, tuple[Candidate, ...]], snapshot_version: str
) -> PolicyTable:
    intents = tuple(_intent(p.name, i) for i in p.intents)
    names = frozenset(i.name for i in intents)
    selection = _selection(p)
    rules = tuple(_rule(p, r) for r in p.rules)
    for r in (*rules, None):
        pool = r.pool if r else p.default_pool
        if pool not in pools:
            where = f"rule {r.name!r}" if r else "defaultPool"
            raise SnapshotError(f"policy {p.name!r} {where}: pool {pool!r} is not in the snapshot")
        if not pools[pool]:
            raise SnapshotError(f"policy {p.name!r}: pool {pool!r} has no candidates")
    # Per intent, only the rules that can match it, in their declared order.
    by_intent = {
        name: tuple(r for r in rules if not r.intents or name in r.intents)
        for name in (*names, UNKNOWN_INTENT)
    }
    lim = p.limits
    w = p.weights
    mine = {k: pools[k] for k in {r.pool for r in rules} | {p.default_pool}}
    vectors, example_intents = _examples(p)
    pattern_set, pattern_names = _pattern_set(p.name, intents)
    return PolicyTable(
        name=p.name,
        version=p.version,
        snapshot_version=snapshot_version,
        intents=intents,
        keywords=_automaton(intents),
        pattern_set=pattern_set,
        pattern_names=pattern_names,
        embedder=embedder(),
        example_vectors=vectors,
        example_intents=example_intents,
        intent_min_similarity=p.intent_min_similarity,
        tool_use={**{i.name: i.tool_use_probability for i in p.intents}, UNKNOWN_INTENT: 0.0},
        intent_names=names,
        rules_by_intent=by_intent,
        default_pool=p.default_pool,
        pools=mine,
        cache=CacheSettings(
            enabled=p.cache.enabled,
            intents=frozenset(p.cache.intents),
            # 0 with a bound: the threshold comes from the bound (cache.rules).
            threshold=p.cache.similarity_threshold
            or (0.0 if p.cache.HasField("max_false_hit_rate") else 0.9),
            ttl_s=float(p.cache.ttl_seconds or 3600),
            max_entries=p.cache.max_entries or 10_000,
            families=tuple(
                sorted(
                    (name, f.similarity_threshold, float(f.ttl_seconds or 3600))
                    for name, f in p.cache.families.items()
                )
            ),
            max_false_hit_rate=(
                p.cache.max_false_hit_rate if p.cache.HasField("max_false_hit_rate") else None
            ),
            family_bounds=tuple(
                sorted(
                    (name, f.max_false_hit_rate)
                    for name, f in p.cache.families.items()
                    if f.HasField("max_false_hit_rate")
                )
            ),
        ),
        max_attempts=max(1, lim.max_attempts or 3),
        request_timeout_s=(lim.request_timeout_ms or 30_000) / 1000.0,
        first_token_timeout_s=(lim.first_token_timeout_ms or 5_000) / 1000.0,
        inter_token_timeout_s=(lim.inter_token_timeout_ms or 10_000) / 1000.0,
        trust_declared_intent=p.trust_declared_intent,
        weights=(w.cost, w.latency, w.success, w.quality),
        reliability=_reliability(p),
        selection=selection,
        cache_scope=p.name,
        learned=_learned_signal(p, mine),
        prompt_text=p.outcome_prompt_text,
        drop_parameters=frozenset(p.drop_parameters),
    )


def _learned_signal(
    p: snapshot_pb2.Policy, pools: dict[str, tuple[Candidate, ...]]
) -> LearnedSignal | None:
    if not p.HasField("learned_signal"):
        return None

    def quality_of(model: str) -> dict[str, float] | None:
        # The first of the policy's pools by name holding it (as the control plane's fit).
        for name in sorted(pools):
            for c in pools[name]:
                if c.model == model:
                    return c.quality
        return None

    try:
        return compile_signal(p.name, p.learned_signal, quality_of, embedder().dim)
    except LearnedSignalError as e:
        raise SnapshotError(str(e)) from e


def _link_canaries(snapshot: snapshot_pb2.Snapshot, policies: dict[str, PolicyTable]) -> None:
    """Attach each candidate to its stable policy; candidates are not addressable by name."""
    candidates: dict[str, PolicyTable] = {}
    for p in snapshot.policies:
        if p.candidate_of:
            cand = policies.pop(p.name)
            cand.name, cand.track = p.candidate_of, "candidate"
            cand.cache_scope = f"{p.candidate_of}~candidate@{p.version}"
            candidates[p.name] = cand
    for p in snapshot.policies:
        if p.candidate_of and p.candidate_of not in policies:
            raise SnapshotError(
                f"policy {p.name!r}: candidate of unknown policy {p.candidate_of!r}"
            )
        if p.HasField("canary") and p.canary.policy:
            target = candidates.get(p.canary.policy)
            if target is None or target.name != p.name:
                raise SnapshotError(
                    f"policy {p.name!r}: canary.policy {p.canary.policy!r} "
                    "is not a candidate of it in the snapshot"
                )
            stable = policies[p.name]
            stable.track = "stable"
            stable.canary = canary.prepare(p.canary, target)


def build_table(snapshot: snapshot_pb2.Snapshot) -> RoutingTable:
    """Prepare everything a request needs; raise SnapshotError if unusable."""
    if not snapshot.version:
        raise SnapshotError("snapshot has no version")
    pools = {
        pool.name: tuple(_candidate(pool.name, c) for c in pool.candidates)
        for pool in snapshot.pools
    }
    policies = {p.name: _policy(p, pools, snapshot.version) for p in snapshot.policies}
    _link_canaries(snapshot, policies)
    if not policies:
        raise SnapshotError("snapshot has no policies")
    default = snapshot.default_policy or (next(iter(policies)) if len(policies) == 1 else "")
    if default and default not in policies:
        raise SnapshotError(f"default_policy {default!r} is not in the snapshot")
    tenants, keys = from_snapshot(snapshot)
    return RoutingTable(
        version=snapshot.version,
        policies=policies,
        default_policy=default,
        pool_names=tuple(sorted(pools)),
        tenants=tenants,
        keys=keys,
    )
