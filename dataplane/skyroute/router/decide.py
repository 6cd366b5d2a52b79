"""The per-request decision: signals in, intent, pool and model chain out.

This is the hot path's pure part, so it does only what the routing table
could not prepare: lower-case the prompt once, test intent keywords and
patterns in declared order, walk the few rules that can match the intent,
and filter the pool's candidates by what the request needs (tools, context
window). No I/O, no parsing, nothing that depends on anything but the table
and the request.

Inside the pool, the matched rule's selection (else the policy's) picks the
order: ``ordered`` keeps the pool's declared order; ``scored`` ranks
candidates by a weighted sum over expected cost (this request's prompt size
times the model's prices), p95 latency and failure rate (this router's live
view, or the fleet's priors pushed by the control plane) and the offline
quality eval for the intent, every term normalised to [0, 1] over the pool
(see :func:`score_pool`); ``cheapest`` and ``fastest`` are scored on cost or
p95 alone. Ties keep declared order, hard constraints exclude candidates
outright, and a latency objective puts candidates known to miss it last. The
fallback chain is the rest by score, same model family first unless the
policy says otherwise.

With adaptation on (the learning loop), p95 comes first from the fleet's
prior, which the control plane recomputes from every router's merged,
half-life-decayed latency sketches: this router's own latency ring only
refreshes for models it still calls, so a model that lost its share would
otherwise stay judged by its worst minutes. Failure rates stay local, because
a model that starts failing must lose traffic at once, not one push later.
Exploration is epsilon-greedy: with probability ``exploration`` the runner-up
(the second-best candidate that meets every constraint) goes first, which
keeps fresh observations of it flowing so it can win its share back. It is
never a candidate outside the pool or excluded by a constraint, and Explain
says when it happened.

With ``adaptation.qualitySampling: thompson`` the quality term uses, per
request, a draw from each candidate's Beta posterior (:mod:`sampling`,
seeded by the request id, so Explain with the same id shows the same draw)
instead of the posterior mean; constraints (``minQuality``) still use the
mean, so a lucky draw never lets an excluded model in.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import ahocorasick
import numpy as np

from skyroute.router import sampling
from skyroute.router.providers import registry
from skyroute.router.signals import SIGNALS, attr_of

# The control plane's policy tests import the decision library as one surface
# (tests/test_contract.py names exactly table and decide): extraction is part of it.
from skyroute.router.signals import Signals as Signals
from skyroute.router.signals import signals_from_messages as signals_from_messages
from skyroute.router.signals.learned import FloatArray, Prediction
from skyroute.router.table import (
    UNKNOWN_INTENT,
    Candidate,
    PolicyTable,
    Rule,
    SelectionSettings,
)
from skyroute.v1 import router_pb2, snapshot_pb2

_TOOLS_REQUIRED = snapshot_pb2.TOOL_MATCH_REQUIRED
_TOOLS_ABSENT = snapshot_pb2.TOOL_MATCH_ABSENT
# Exploration draws: one C-level call per scored request with exploration on.
_DRAW: Callable[[], float] = random.Random().random


# Smallest spread of failure rate and quality gap stretched to a whole term (5 points).
_FLOOR_POINTS = 0.05


class Stats(Protocol):
    """Live per-endpoint observations (the engine's EndpointHealth)."""

    def p95_s(self, c: Candidate) -> float | None: ...
    def failures(self, c: Candidate) -> float: ...


@dataclass(slots=True)
class Score:
    """One candidate's weighted score (lower is better) and its parts."""

    cand: Candidate
    score: float
    cost: float  # expected USD for this request
    p95_s: float | None
    failure_rate: float
    quality: float
    excluded: str = ""
    # Each term's contribution to ``score`` (cost, latency, failures, quality).
    terms: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    # Its p95 is known to exceed the rule's latency objective (it goes last).
    misses_objective: bool = False
    # Thompson sampling: the posterior draw the quality term used (None: the mean).
    draw: float | None = None
    # ``quality`` is the learned signal's prediction for this prompt.
    predicted: bool = False


@dataclass(slots=True)
class Decision:
    policy: PolicyTable
    intent: str
    intent_source: str  # "keyword:<kw>", "pattern", "embedding", "declared" or "none"
    rule: str  # rule name or "default"
    pool: str
    chain: tuple[Candidate, ...]
    cacheable: bool
    scores: list[Score] | None = None
    # The runner-up put first by exploration ("" when the best candidate leads).
    explored: str = ""
    confidence: float = 1.0
    # Predicted probability that the request needs a tool (1.0 when it offers tools).
    tool_use: float = 0.0
    # How the model was chosen (the rule's selection, else the policy's).
    selection: SelectionSettings | None = None
    # The learned signal (policy.learned_signal): its prediction and the prompt's
    # embedding it read (reported with the outcome, so the control plane can fit).
    prediction: Prediction | None = None
    embedding: FloatArray | None = None
    # The learned signal's win probability (0.5, no information, without one).
    win_probability: float = 0.5
    # Candidates skipped because their family cannot honour a parameter: (model, parameter).
    unhonoured: tuple[tuple[str, str], ...] = ()
    # Candidates kept without parameters their family cannot honour, as the policy's
    # ``parameters`` say (``drop``): (model, parameters), sent to that model without them.
    dropped: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # What the cache would do for this intent (threshold, its source, the observed false-hit
    # estimate), filled in by the pipeline for Explain: the cache is not the decision's.
    cache_note: str = ""

    def dropped_for(self, model: str) -> tuple[str, ...]:
        """The parameters ``model``'s attempt goes without (the policy's ``drop``)."""
        for m, names in self.dropped:
            if m == model:
                return names
        return ()


def classify(table: PolicyTable, s: Signals) -> tuple[str, str, float]:
    """Return (intent, source, confidence).

    A declared intent counts only if the policy trusts it. Then keywords: one
    Aho-Corasick pass finds every keyword in the prompt and the
    earliest-declared intent among the hits wins. Only when no keyword hits are
    the broader regex patterns tried: one RE2 set pass, earliest-declared
    matching intent first. Last, the
    embedding classifier: the intent of the nearest example by cosine
    similarity, if at least ``intent_min_similarity``; its confidence is that
    similarity. Otherwise ``unknown``.
    """
    declared = s.declared_intent
    if declared and table.trust_declared_intent and declared in table.intent_names:
        return declared, "declared", 1.0
    text = s.text
    if table.keywords.kind == ahocorasick.AHOCORASICK:
        best: tuple[int, str, str] | None = None
        for _, hit in table.keywords.iter(text):
            if best is None or hit[0] < best[0]:
                best = hit
        if best is not None:
            return best[1], "keyword:" + best[2], 1.0
    if table.pattern_set is not None:
        hits = table.pattern_set.Match(text)
        if hits:
            return table.pattern_names[min(hits)], "pattern", 1.0
    vectors = table.example_vectors
    if vectors is not None and text:
        # The first EMBED_CHARS characters: the ask is in its first words.
        sims = vectors @ s.embeddings.get(table.embedder, text)
        row = int(sims.argmax())
        similarity = float(sims[row])
        if similarity >= table.intent_min_similarity:
            return table.example_intents[row], "embedding", similarity
        return UNKNOWN_INTENT, "none", similarity
    return UNKNOWN_INTENT, "none", 0.0


def _rule_matches(r: Rule, s: Signals, win: float) -> bool:
    if (r.min_win and win < r.min_win) or (r.max_win and win > r.max_win):
        return False
    if r.tools == _TOOLS_REQUIRED and not s.has_tools:
        return False
    if r.tools == _TOOLS_ABSENT and s.has_tools:
        return False
    if s.prompt_tokens < r.min_tokens or (r.max_tokens and s.prompt_tokens > r.max_tokens):
        return False
    # The registry's set conditions (tiers, locales, tenants), only those the rule sets.
    return all(getattr(s, attr) in allowed for attr, allowed in r.sets)


def _usable(c: Candidate, s: Signals, embeddings: bool) -> bool:
    if bool(c.embedding_space) != embeddings:  # embedding models serve the Embeddings door only
        return False
    if s.has_tools and not c.supports_tools:
        return False
    return not (c.context_window and s.prompt_tokens > c.context_window)


def largest_window(candidates: tuple[Candidate, ...], s: Signals) -> int | None:
    """The largest context window of ``candidates`` when none can hold the prompt, else None.

    A request it returns a number for is refused with ``context_length_exceeded``
    before any upstream call (no candidate's window is unknown, none is large enough).
    """
    windows = [c.context_window for c in candidates if not c.embedding_space]
    if not windows or not all(windows) or s.prompt_tokens <= max(windows):
        return None
    return max(windows)


def _spread(values: list[float], floor: float) -> tuple[float, float]:
    """(best, spread) of one term over the pool; the spread is at least ``floor``."""
    lo = min(values)
    return lo, max(max(values) - lo, floor)


def score_pool(
    table: PolicyTable,
    candidates: tuple[Candidate, ...],
    intent: str,
    s: Signals,
    stats: Stats | None,
    sel: SelectionSettings | None = None,
    seed: int | None = None,
    prediction: Prediction | None = None,
) -> list[Score]:
    """Weighted score over expected cost, p95, failure rate and quality (lower is better).

    One unit for every term: its distance from the pool's best candidate on
    that term, divided by the pool's spread of it, so each term is in [0, 1]
    (0 = the best in the pool, 1 = the worst) and a weight is what the whole
    spread of its term is worth. Doubling a weight doubles its term's
    contribution, whatever the term's natural scale (dollars, seconds, eval
    points). A spread smaller than a floor (10% of the largest cost or p95, 5
    points of failure rate or quality) is not stretched: noise between near
    equals stays small. A candidate whose p95 nobody has observed yet is
    scored at the mean of those known (neither favoured nor punished).
    With Thompson sampling on and a ``seed`` (the request's), the quality gap
    is one minus a draw from the candidate's posterior. A model of the learned
    signal's pair with a fit is scored on its predicted quality for this prompt
    (``prediction``) instead of the intent's figure. Constraints mark a
    candidate ``excluded`` rather than dropping it here, so Explain can show why.
    """
    sel = sel or table.selection
    wc, wl, ws, wq = sel.weights
    out: list[Score] = []
    for c in candidates:
        prior_p95, prior_fail, prior_tokens = c.observed_for(intent)
        completion = prior_tokens or sel.expected_completion_tokens
        if sel.adaptive and prior_p95:
            p95: float | None = prior_p95
        else:
            p95 = stats.p95_s(c) if stats is not None else (prior_p95 or None)
        fail = stats.failures(c) if stats is not None else prior_fail
        learned = table.learned
        q = None
        if prediction is not None and learned is not None:
            q = prediction.quality(c.model, learned)
        cost = c.cost(s.prompt_tokens, int(completion))
        quality = c.quality_for(intent) if q is None else q
        x = Score(c, 0.0, cost, p95, fail, quality, predicted=q is not None)
        if sel.thompson and seed is not None and q is None:
            x.draw = sampling.draw(seed, c.sample_key, *c.quality_beta(intent, sel.prior_weight))
        out.append(x)
    known = [x.p95_s for x in out if x.p95_s]
    mean_p95 = sum(known) / len(known) if known else 0.0
    lats = [x.p95_s or mean_p95 for x in out]
    costs = [x.cost for x in out]
    fails = [x.failure_rate for x in out]
    gaps = [1.0 - (x.quality if x.draw is None else x.draw) for x in out]
    c0, cs = _spread(costs, 0.1 * max(costs))
    l0, ls = _spread(lats, 0.1 * max(lats))
    f0, fs = _spread(fails, _FLOOR_POINTS)
    q0, qs = _spread(gaps, _FLOOR_POINTS)
    for x, cost, lat, fail, gap in zip(out, costs, lats, fails, gaps, strict=True):
        x.terms = (
            wc * ((cost - c0) / cs if cs else 0.0),
            wl * ((lat - l0) / ls if ls else 0.0),
            ws * (fail - f0) / fs,
            wq * (gap - q0) / qs,
        )
        x.score = sum(x.terms)
        if sel.max_cost_per_1k and x.cost * 1000 > sel.max_cost_per_1k:
            x.excluded = f"expected ${x.cost * 1000:.2f} per 1k > maxCostPer1k"
        elif x.quality < sel.min_quality:
            x.excluded = f"quality {x.quality:.2f} < minQuality"
        elif sel.max_p95_s and x.p95_s and x.p95_s > sel.max_p95_s:
            x.excluded = f"p95 {x.p95_s * 1000:.0f} ms > maxP95Ms"
        elif sel.objective_p95_s and x.p95_s and x.p95_s > sel.objective_p95_s:
            x.misses_objective = True
    return out


def _chain(sel: SelectionSettings, scores: list[Score], explore: bool) -> tuple[Candidate, ...]:
    # Stable sort: exact ties (rounded, so float noise is no tie-breaker) keep declared
    # order; candidates known to miss the latency objective go after those that meet it.
    # Scores are rounded relative to the total weight, so scaling every weight by the
    # same factor never changes the choice.
    scale = sum(sel.weights) or 1.0
    ranked = sorted(
        (x for x in scores if not x.excluded),
        key=lambda x: (x.misses_objective, round(x.score / scale, 9)),
    )
    if not ranked:
        return ()
    if explore and len(ranked) > 1:
        # The runner-up leads; the usual best is its first fallback, then the rest by score.
        return (ranked[1].cand, ranked[0].cand, *(x.cand for x in ranked[2:]))
    best = ranked[0].cand
    if not sel.family_first or sel.mode == "ordered":
        return tuple(x.cand for x in ranked)
    same = [x.cand for x in ranked[1:] if x.cand.family == best.family]
    other = [x.cand for x in ranked[1:] if x.cand.family != best.family]
    return (best, *same, *other)


#: The rule name Explain shows when a tenant's budget under pressure chose the pool.
BUDGET_RULE = "budget-pressure"


def decide(
    table: PolicyTable,
    s: Signals,
    stats: Stats | None = None,
    draw: Callable[[], float] = _DRAW,
    pressure_pool: str | None = None,
    embeddings: bool = False,
    request_id: str | None = None,
    options: Mapping[str, Any] | None = None,
    stops: int = 0,
) -> Decision:
    """Intent, pool and chain for one request; ``draw`` is the exploration coin (tests seed it).

    ``pressure_pool``: the cheaper pool a tenant's budget under pressure routes to
    (the door's ``Budget`` with ``action: route``); it replaces the rules' choice
    when the snapshot has that pool. ``embeddings``: an Embeddings request, which
    only embedding models serve (and a chat request only the others).
    ``request_id`` seeds Thompson sampling's draws (None: the posterior means, as
    policy tests decide).
    """
    intent, source, confidence = classify(table, s)
    prediction = vector = None
    if table.learned is not None:
        vector = _vector(table, s)
        prediction = table.learned.predict(intent, s.prompt_tokens, s.has_tools, vector, draw)
    win = prediction.win if prediction is not None else 0.5
    rule_name, pool = "default", table.default_pool
    sel = table.selection
    if pressure_pool and pressure_pool in table.pools:
        rule_name, pool = BUDGET_RULE, pressure_pool
    else:
        for r in table.rules_by_intent[intent]:
            if _rule_matches(r, s, win):
                rule_name, pool = r.name, r.pool
                sel = r.selection or sel
                break
    candidates = table.pools[pool]
    # Most requests fit every candidate: keep the prepared tuple, allocate nothing.
    if not all(_usable(c, s, embeddings) for c in candidates):
        candidates = tuple(c for c in candidates if _usable(c, s, embeddings))
    unhonoured: tuple[tuple[str, str], ...] = ()
    dropped: tuple[tuple[str, tuple[str, ...]], ...] = ()
    if options or stops:
        # A hard constraint: a family that cannot honour a parameter is never tried,
        # unless the policy drops that parameter (then it is tried without it).
        drop = table.drop_parameters
        kept: list[Candidate] = []
        for c in candidates:
            names = registry.cannot_honour(c.provider, options or {}, c.target.quirks, stops)
            hard = next((n for n in names if n not in drop), None)
            if hard is not None:
                unhonoured += ((c.model, hard),)
                continue
            kept.append(c)
            if names:
                dropped += ((c.model, names),)
        if unhonoured:
            candidates = tuple(kept)
    scores = None
    explored = ""
    if len(candidates) > 1 and (sel.scored or sel.objective_p95_s):
        seed = None
        if sel.thompson and sel.weights[3] > 0 and request_id is not None:
            seed = sampling.seed_of(request_id)
        scores = score_pool(table, candidates, intent, s, stats, sel, seed, prediction)
        explore = sel.scored and sel.exploration > 0.0 and draw() < sel.exploration
        candidates = _chain(sel, scores, explore)
        if explore and len(candidates) > 1:
            explored = candidates[0].model
    cache = table.cache
    tool_use = 1.0 if s.has_tools else table.tool_use.get(intent, 0.0)
    # Cache only where the brief says it is safe: repeatable intents, low predicted tool use.
    cacheable = cache.enabled and tool_use < 0.5 and intent in cache.intents
    return Decision(
        table,
        intent,
        source,
        rule_name,
        pool,
        candidates,
        cacheable,
        scores,
        explored,
        confidence,
        tool_use,
        sel,
        prediction,
        vector,
        win,
        unhonoured,
        dropped,
    )


def _learned_text(x: Score, intent: str, sel: SelectionSettings) -> str:
    """Explain's words for the quality learned from feedback and the Thompson draw."""
    learned = x.cand.learned_quality.get(intent)
    text = ""
    if learned is not None and learned[1] > 0:
        text = f": posterior from prior {learned[0]:.2f} and n {learned[1]:g}"
    if x.draw is not None:
        a, b = x.cand.quality_beta(intent, sel.prior_weight)
        text += f"; Thompson draw {x.draw:.3f} from Beta({a:.4g}, {b:.4g})"
    return text


def _vector(table: PolicyTable, s: Signals) -> FloatArray:
    """The prompt's embedding (shared with the intent classifier: computed once)."""
    if not s.text:
        return np.zeros(table.embedder.dim, dtype=np.float32)
    return s.embeddings.get(table.embedder, s.text)


def explain(d: Decision, s: Signals) -> router_pb2.Decision:
    """The decision as the contract's message, with a reason per step (Explain, logs)."""
    t = d.policy
    reasons = [f"rollout: {t.track} version {t.version}"] if t.track else []
    reasons += [
        f"intent {d.intent!r} from {d.intent_source} (confidence {d.confidence:.2f}, "
        f"predicted tool use {d.tool_use:.2f})",
        f"pool {d.pool!r} by rule {d.rule!r}",
    ]
    refused = dict(d.unhonoured)
    skipped = [c.model for c in t.pools[d.pool] if c not in d.chain and c.model not in refused]
    if skipped:
        reasons.append(f"skipped {skipped} (tools or context window)")
    for model, name in d.unhonoured:
        reasons.append(f"skipped {model}: its family cannot honour {name}")
    for model, names in d.dropped:
        reasons.append(
            f"{model} is sent without {', '.join(names)}: its family cannot honour "
            "them and the policy's parameters say drop"
        )
    if not d.chain:
        reasons.append(f"no candidate in pool {d.pool!r} can serve this request")
    sel = d.selection or t.selection
    if d.scores:
        wc, wl, ws, wq = sel.weights
        reasons.append(
            f"selection {sel.mode}: score = {wc:g} x cost + {wl:g} x p95 + {ws:g} x failures "
            f"+ {wq:g} x quality gap, each term 0 (pool's best) to 1 (its worst); "
            "ties keep the pool's declared order"
            + (
                f"; objective p95 {sel.objective_p95_s * 1000:.0f} ms"
                if sel.objective_p95_s
                else ""
            )
        )
    for x in d.scores or ():
        tc, tl, tf, tq = x.terms
        reasons.append(
            f"{x.cand.model}: score {x.score:.3f} = cost {tc:.3f} + latency {tl:.3f} + "
            f"failures {tf:.3f} + quality {tq:.3f} (expected ${x.cost:.6f}, p95 "
            f"{'?' if x.p95_s is None else f'{x.p95_s * 1000:.0f} ms'}, failures "
            f"{x.failure_rate:.1%}, quality {x.quality:.2f}{_learned_text(x, d.intent, sel)})"
            + (f" excluded: {x.excluded}" if x.excluded else "")
            + (" misses the p95 objective: after those that meet it" if x.misses_objective else "")
        )
    for c in d.chain:
        if c.endpoints is not None:
            sites = [one.site for one in c.endpoints.rotations[0] if one.site is not None]
            reasons.append(
                f"{c.model}: endpoints "
                + ", ".join(f"{x.name} (weight {x.weight})" for x in sites)
                + ": power of two choices by outstanding requests per weight, "
                "then the others before the next model"
            )
    if d.prediction is not None and t.learned is not None:
        reasons.append(_learned_reason(d.prediction, t))
    if d.explored:
        reasons.append(
            f"exploring: runner-up {d.explored!r} first (adaptation.exploration "
            f"{t.selection.exploration:.0%}, epsilon-greedy)"
        )
    reasons.append(
        ("cacheable" + (f": {d.cache_note}" if d.cache_note else ""))
        if d.cacheable
        else "not cacheable (intent not in cache.intents, tools, or off)"
    )
    return router_pb2.Decision(
        policy=t.name,
        policy_version=t.version,
        snapshot_version=t.snapshot_version,
        track=t.track,
        signals=router_pb2.Signals(
            **{x.name: getattr(d if x.origin == "decision" else s, attr_of(x)) for x in SIGNALS}
        ),
        rule=d.rule,
        pool=d.pool,
        chain=[c.model for c in d.chain],
        selection=sel.mode,
        cacheable=d.cacheable,
        reasons=reasons,
        endpoints=[
            router_pb2.ChainEndpoint(
                model=c.model,
                name=one.site.name,
                url=one.target.endpoint,
                weight=one.site.weight,
                region=one.site.region,
            )
            for c in d.chain
            if c.endpoints is not None
            for one in c.endpoints.rotations[0]
            if one.site is not None
        ],
        scores=[
            router_pb2.CandidateScore(
                model=x.cand.model,
                score=x.score,
                expected_cost_usd=x.cost,
                p95_ms=(x.p95_s or 0.0) * 1000,
                failure_rate=x.failure_rate,
                quality=x.quality,
                excluded=x.excluded,
                cost_term=x.terms[0],
                latency_term=x.terms[1],
                failure_term=x.terms[2],
                quality_term=x.terms[3],
                quality_prior=x.cand.learned_quality.get(d.intent, (x.quality, 0.0))[0],
                quality_n=x.cand.learned_quality.get(d.intent, (0.0, 0.0))[1],
                quality_draw=x.draw,
                predicted_quality=x.quality if x.predicted else 0.0,
            )
            for x in d.scores or ()
        ],
    )


def _learned_reason(p: Prediction, t: PolicyTable) -> str:
    """Explain's line for the learned signal: the prediction and its inputs."""
    ls = t.learned
    assert ls is not None
    fits = (
        ", ".join(f"{m.model} n={m.n:g}" for m in ls.models.values()) or "none yet (offline evals)"
    )
    head = (
        f"win probability {p.win:.0f}: exploring, a fair coin between {ls.strong} and "
        f"{ls.weak} (learnedSignal.exploration {ls.exploration:.0%})"
        if p.explored
        else f"win probability {p.win:.3f} = 0.5 + (q({ls.strong}) {p.strong:.3f} - "
        f"q({ls.weak}) {p.weak:.3f}) / 2"
    )
    return (
        f"{head}; q = offline eval for the intent + learned weights over the prompt "
        f"embedding, size {p.size:.3f} (log1p(tokens)/10), tools, intent; fits: {fits}"
    )
