"""The signal registry: every signal the router decides on, declared once.

A signal is one fact about a request that routing can use. Each entry says
what it is called (its field in ``skyroute.v1.Signals``, which Explain
returns), its type, where it comes from, and the RoutingPolicy field that
matches on it. Everything else is derived from this table:

- the doors read caller-declared signals through it (the HTTP header and
  the ``CompletionRequest`` field of each, see :mod:`skyroute.router.ingress`),
  with one size and type limit;
- the routing table compiles a rule's set conditions (tiers, locales,
  tenants) from it, so the decision loops over the registry's conditions
  rather than naming each signal;
- Explain fills ``Signals`` from it;
- the README's signal table is rendered from it (``python -m
  skyroute.router.signals README.md`` rewrites it; a test checks it is fresh).

Three origins: ``declared`` by the caller (a header or a gRPC field),
``prompt`` (computed from the request body) and ``decision`` (computed while
deciding: the intent and what follows from it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

Origin = Literal["declared", "prompt", "decision"]

#: The longest value a caller may declare for a signal (characters).
MAX_DECLARED_CHARS: Final = 128


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal: its name in Explain, type, origin and what matches on it."""

    name: str  # field of skyroute.v1.Signals
    type: type[str] | type[int] | type[float] | type[bool]
    origin: Origin
    summary: str
    # The attribute holding it: on Signals (declared, prompt) or on Decision (decision).
    attr: str = ""
    # Declared signals: the HTTP request header and the CompletionRequest field.
    header: str = ""
    field: str = ""
    # The RoutingPolicy fields that match on it (none for some).
    crd: tuple[str, ...] = ()
    # Set-membership rules: the snapshot Rule field listing the allowed values.
    rule_set: str = ""

    @property
    def source(self) -> str:
        """Where the value comes from, for people (README, errors)."""
        if self.origin == "declared":
            return f"header `{self.header}`, gRPC `{self.field}`"
        return "the request body" if self.origin == "prompt" else "the decision"


SIGNALS: Final[tuple[Signal, ...]] = (
    Signal(
        "intent",
        str,
        "decision",
        "the intent class: declared (if trusted), keyword, pattern, embedding, else `unknown`",
        crd=("spec.rules[].match.intents",),
    ),
    Signal(
        "intent_confidence",
        float,
        "decision",
        "1 for declared, keyword and pattern hits; the cosine similarity for the embedding",
        attr="confidence",
        crd=("spec.intentMinSimilarity",),
    ),
    Signal(
        "intent_source",
        str,
        "decision",
        "how the intent was found: `declared`, `keyword:<kw>`, `pattern`, `embedding`, `none`",
    ),
    Signal(
        "declared_intent",
        str,
        "declared",
        "the caller's intent, used only when the policy trusts it",
        header="x-skyroute-intent",
        field="intent",
        crd=("spec.trustDeclaredIntent",),
    ),
    Signal(
        "prompt_tokens",
        int,
        "prompt",
        "token estimate over the messages and tool schemas (see `skyroute.router.tokens`)",
        crd=("spec.rules[].match.minPromptTokens", "spec.rules[].match.maxPromptTokens"),
    ),
    Signal(
        "has_tools",
        bool,
        "prompt",
        "the request offers tools",
        crd=("spec.rules[].match.tools",),
    ),
    Signal(
        "predicted_tool_use",
        float,
        "decision",
        "probability that the answer calls a tool (1 when tools are offered)",
        attr="tool_use",
        crd=("spec.intents[].toolUse",),
    ),
    Signal(
        "win_probability",
        float,
        "decision",
        "the learned signal: predicted chance the strong model's answer beats the weak one's "
        "on this prompt (0.5 without `spec.learnedSignal`)",
        crd=(
            "spec.rules[].match.minWinProbability",
            "spec.rules[].match.maxWinProbability",
        ),
    ),
    Signal(
        "locale",
        str,
        "declared",
        "the caller's locale, e.g. `de-DE`",
        header="x-skyroute-locale",
        field="locale",
        crd=("spec.rules[].match.locales",),
        rule_set="locales",
    ),
    Signal(
        "user_tier",
        str,
        "declared",
        "the caller's user tier, e.g. `enterprise`",
        header="x-skyroute-user-tier",
        field="user_tier",
        crd=("spec.rules[].match.userTiers",),
        rule_set="user_tiers",
    ),
    Signal(
        "tenant",
        str,
        "declared",
        "the caller's tenant; also partitions the cache and idempotency keys",
        header="x-skyroute-tenant",
        field="tenant",
        crd=("spec.rules[].match.tenants",),
        rule_set="tenants",
    ),
    Signal(
        "safety_class",
        str,
        "declared",
        "a caller-assigned safety class (e.g. `minor`): a hard cache partition",
        header="x-skyroute-safety-class",
        field="safety_class",
    ),
)

#: Signals a caller declares, in registry order.
DECLARED: Final = tuple(s for s in SIGNALS if s.origin == "declared")
#: Declared signals that rules match by set membership (the snapshot Rule lists values).
RULE_SETS: Final = tuple(s for s in DECLARED if s.rule_set)


def attr_of(s: Signal) -> str:
    """The attribute that holds ``s`` on Signals or Decision."""
    return s.attr or s.name


class SignalError(ValueError):
    """A declared signal's value is out of bounds; ``signal`` says which."""

    def __init__(self, signal: Signal, message: str) -> None:
        super().__init__(message)
        self.signal = signal


def read_declared(get: Callable[[Signal], object]) -> dict[str, str]:
    """The declared signals a request gives, by Signals attribute, each checked.

    ``get`` reads one signal's raw value from the wire (its header, its gRPC
    field); empty and absent values are left out. Raises :class:`SignalError`.
    """
    out: dict[str, str] = {}
    for s in DECLARED:
        value = get(s)
        if value:
            out[attr_of(s)] = check_declared(s, value)
    return out


def check_declared(s: Signal, value: object) -> str:
    """A declared value, checked for type and size (raises :class:`SignalError`)."""
    if not isinstance(value, str):
        raise SignalError(s, f"{s.name} must be a string")
    if len(value) > MAX_DECLARED_CHARS:
        raise SignalError(
            s, f"{s.name} is {len(value)} characters; at most {MAX_DECLARED_CHARS} allowed"
        )
    return value
