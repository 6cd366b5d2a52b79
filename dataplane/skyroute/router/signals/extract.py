"""Signal extraction: what the router knows about a request before deciding.

:class:`Signals` holds the declared and prompt signals of the registry (one
attribute each, see :mod:`.registry`) plus the lower-cased last user message
the intent classifier reads. Extraction is one pass over the messages with
no copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skyroute.router import tokens
from skyroute.router.embed import Embeddings


@dataclass(slots=True)
class Signals:
    """What the router knows about a request before deciding."""

    text: str  # the last user message, lower-cased
    prompt_tokens: int  # estimate over messages and tool schemas (see tokens)
    has_tools: bool
    locale: str = ""
    user_tier: str = ""
    tenant: str = ""
    declared_intent: str = ""
    # A caller-assigned safety class (e.g. "minor", "regulated"): a hard cache partition.
    safety_class: str = ""
    # The question's embeddings, computed on first use and shared by every reader (the
    # intent classifier, the semantic cache): each embedder runs at most once per request.
    embeddings: Embeddings = field(default_factory=Embeddings)
    # The last user message as written: outcomes carry it only if the policy opts in.
    prompt: str = ""


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or OpenAI content parts."""
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
    *,
    locale: str = "",
    user_tier: str = "",
    tenant: str = "",
    declared_intent: str = "",
    safety_class: str = "",
    tools: Sequence[Mapping[str, Any]] = (),
) -> Signals:
    """Extract signals from an OpenAI-shaped conversation and its tools (no copies).

    Declared signals are keyword-only, named as in the registry, so no caller
    builds them by position.
    """
    last_user = ""
    for m in reversed(messages):
        if m.get("role") == "user":
            last_user = content_text(m.get("content"))
            break
    return Signals(
        text=last_user.lower(),
        prompt_tokens=tokens.estimate(messages, tools),
        has_tools=has_tools,
        locale=locale,
        user_tier=user_tier,
        tenant=tenant,
        declared_intent=declared_intent,
        safety_class=safety_class,
        prompt=last_user,
    )
