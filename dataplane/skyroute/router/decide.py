"""The per-request decision: signals in, intent, pool and model chain out.

This is the hot path's pure part, so it does only what the routing table
could not prepare: lower-case the prompt once, test intent keywords and
patterns in declared order, walk the few rules that can match the intent,
and filter the pool's candidates by what the request needs (tools, context
window). No I/O, no parsing, nothing that depends on anything but the table
and the request.

The decision-engine issue adds embedding-based intent matching and weighted
scoring over cost, latency, success and quality; the shape of
:class:`Decision` already carries what they will fill in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skyroute.router.table import UNKNOWN_INTENT, Candidate, PolicyTable, Rule
from skyroute.v1 import router_pb2, snapshot_pb2

_TOOLS_REQUIRED = snapshot_pb2.TOOL_MATCH_REQUIRED
_TOOLS_ABSENT = snapshot_pb2.TOOL_MATCH_ABSENT


@dataclass(slots=True)
class Signals:
    """What the router knows about a request before deciding."""

    text: str  # the last user message, lower-cased
    prompt_tokens: int  # estimate: characters / 4 over all messages
    has_tools: bool
    locale: str = ""
    user_tier: str = ""
    tenant: str = ""
    declared_intent: str = ""


@dataclass(slots=True)
class Decision:
    policy: PolicyTable
    intent: str
    intent_source: str  # "keyword:<kw>", "pattern", "declared" or "none"
    rule: str  # rule name or "default"
    pool: str
    chain: tuple[Candidate, ...]
    cacheable: bool


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def signals_from_messages(
    messages: list[dict[str, Any]],
    has_tools: bool,
    locale: str = "",
    user_tier: str = "",
    tenant: str = "",
    declared_intent: str = "",
) -> Signals:
    """Extract signals from an OpenAI-shaped conversation (one pass, no copies)."""
    chars = 0
    last_user = ""
    for m in messages:
        text = _content_text(m.get("content"))
        chars += len(text)
        if m.get("role") == "user":
            last_user = text
    return Signals(
        text=last_user.lower(),
        prompt_tokens=chars // 4 + 1,
        has_tools=has_tools,
        locale=locale,
        user_tier=user_tier,
        tenant=tenant,
        declared_intent=declared_intent,
    )


def classify(table: PolicyTable, s: Signals) -> tuple[str, str]:
    """Return (intent, source). Declared intents count only if the policy trusts them."""
    declared = s.declared_intent
    if declared and table.trust_declared_intent and declared in table.intent_names:
        return declared, "declared"
    text = s.text
    for intent in table.intents:
        for kw in intent.keywords:
            if kw in text:
                return intent.name, "keyword:" + kw
        if intent.pattern is not None and intent.pattern.search(text):
            return intent.name, "pattern"
    return UNKNOWN_INTENT, "none"


def _rule_matches(r: Rule, s: Signals) -> bool:
    if r.tools == _TOOLS_REQUIRED and not s.has_tools:
        return False
    if r.tools == _TOOLS_ABSENT and s.has_tools:
        return False
    if s.prompt_tokens < r.min_tokens or (r.max_tokens and s.prompt_tokens > r.max_tokens):
        return False
    if r.tiers and s.user_tier not in r.tiers:
        return False
    if r.locales and s.locale not in r.locales:
        return False
    return not (r.tenants and s.tenant not in r.tenants)


def _usable(c: Candidate, s: Signals) -> bool:
    if s.has_tools and not c.supports_tools:
        return False
    return not (c.context_window and s.prompt_tokens > c.context_window)


def decide(table: PolicyTable, s: Signals) -> Decision:
    intent, source = classify(table, s)
    rule_name, pool = "default", table.default_pool
    for r in table.rules_by_intent[intent]:
        if _rule_matches(r, s):
            rule_name, pool = r.name, r.pool
            break
    candidates = table.pools[pool]
    # Most requests fit every candidate: keep the prepared tuple, allocate nothing.
    if not all(_usable(c, s) for c in candidates):
        candidates = tuple(c for c in candidates if _usable(c, s))
    cache = table.cache
    cacheable = cache.enabled and not s.has_tools and intent in cache.intents
    return Decision(table, intent, source, rule_name, pool, candidates, cacheable)


def explain(d: Decision, s: Signals) -> router_pb2.Decision:
    """The decision as the contract's message, with a reason per step (Explain, logs)."""
    t = d.policy
    reasons = [
        f"intent {d.intent!r} from {d.intent_source}",
        f"pool {d.pool!r} by rule {d.rule!r}",
    ]
    skipped = [c.model for c in t.pools[d.pool] if c not in d.chain]
    if skipped:
        reasons.append(f"skipped {skipped} (tools or context window)")
    if not d.chain:
        reasons.append(f"no candidate in pool {d.pool!r} can serve this request")
    reasons.append(
        "cacheable" if d.cacheable else "not cacheable (intent not in cache.intents, tools, or off)"
    )
    return router_pb2.Decision(
        policy=t.name,
        policy_version=t.version,
        snapshot_version=t.snapshot_version,
        signals=router_pb2.Signals(
            intent=d.intent,
            intent_confidence=1.0 if d.intent_source != "none" else 0.0,
            intent_source=d.intent_source,
            prompt_tokens=s.prompt_tokens,
            has_tools=s.has_tools,
            locale=s.locale,
            user_tier=s.user_tier,
            tenant=s.tenant,
        ),
        rule=d.rule,
        pool=d.pool,
        chain=[c.model for c in d.chain],
        cacheable=d.cacheable,
        reasons=reasons,
    )
