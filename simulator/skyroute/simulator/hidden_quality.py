"""Prompts whose hidden quality gap between a strong and a weak model depends on the prompt.

The learned signal's test bed (tests and ``bench/learned_signal.py``): every
prompt is of one intent as a router sees it (no keyword tells them apart),
but each has a hidden *kind* (what it asks) and a *length*, and the weak
model's chance of a good answer depends on both; the strong model is good
almost everywhere:

==========  =============================  ===========  ==========
kind        asks for                       weak (short) strong
==========  =============================  ===========  ==========
``hard``    proofs, derivations, debugging 0.25         0.92
``medium``  explanations, comparisons      0.60         0.92
``easy``    rewording, greetings, lookups  0.90         0.92
==========  =============================  ===========  ==========

A long prompt (a question followed by pasted context, about 400 estimated
tokens more) takes :data:`LONG_PENALTY` off the weak model's quality: the
size feature, not the words, says that. The words overlap across kinds
(shared openers, fillers and subjects), so it is a fit, not a lookup. Quality
recovered by a routing is RouteLLM's "performance gap recovered":
``(Q - Q_weak) / (Q_strong - Q_weak)`` over a prompt set, with the hidden
expected qualities (no sampling noise). Nothing here comes from RouteLLM's
published per-prompt evaluation files: those stay an independent check.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

STRONG_QUALITY = 0.92
WEAK_QUALITY = {"hard": 0.25, "medium": 0.60, "easy": 0.90}
LONG_PENALTY = 0.2
LONG_SHARE = 0.25

_OPENERS = ("please", "can you", "i need you to", "quick one:", "hey,", "could you", "")
_SUBJECTS = (
    "the invoice totals",
    "our shipping table",
    "a binary search tree",
    "the login page",
    "prime numbers",
    "a customer email",
    "the quarterly report",
    "a sorting routine",
    "the refund policy",
    "a graph of cities",
)
_ASKS = {
    "hard": (
        "prove that the algorithm for {s} terminates and derive its worst-case bound",
        "derive a closed form for the recurrence behind {s} and prove it by induction",
        "find the race condition in the concurrent code for {s} and prove the fix correct",
        "formally verify the invariant of {s} under concurrent updates",
        "solve the optimisation problem over {s} with lagrange multipliers step by step",
        "prove the lower bound on comparisons needed for {s}",
    ),
    "medium": (
        "explain how {s} works and compare two approaches",
        "summarise the trade-offs of redesigning {s}",
        "explain why {s} might be slow and what to measure",
        "compare the pros and cons of caching {s}",
        "outline a plan to migrate {s} to the new system",
    ),
    "easy": (
        "rewrite this sentence about {s} more politely",
        "translate a short greeting about {s} into french",
        "fix the spelling in this note about {s}",
        "give {s} a friendlier title",
        "say thanks to the team for {s}",
        "turn this line about {s} into a bullet point",
    ),
}
_CONTEXT = " Context follows. " + "The records below were exported from the system last week. " * 30


@dataclass(frozen=True, slots=True)
class Prompt:
    text: str
    kind: str  # "hard", "medium" or "easy"
    long: bool

    def quality(self, strong: bool) -> float:
        """The hidden chance of a good answer from the strong (or the weak) model."""
        if strong:
            return STRONG_QUALITY
        q = WEAK_QUALITY[self.kind]
        return max(0.0, q - LONG_PENALTY) if self.long else q


def prompts(n: int, seed: int) -> list[Prompt]:
    """``n`` prompts, kinds equally likely, a quarter of them long; deterministic per seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.choice(("hard", "medium", "easy"))
        ask = rng.choice(_ASKS[kind]).format(s=rng.choice(_SUBJECTS))
        opener = rng.choice(_OPENERS)
        text = f"{opener} {ask}".strip()
        long = rng.random() < LONG_SHARE
        out.append(Prompt(text + (_CONTEXT if long else ""), kind, long))
    return out


def recovered(chosen_strong: Sequence[bool], ps: Sequence[Prompt]) -> float:
    """Quality recovered by a routing (True = strong) over ``ps``: 0 = all weak, 1 = all strong."""
    weak = sum(p.quality(False) for p in ps)
    strong = sum(p.quality(True) for p in ps)
    got = sum(p.quality(s) for p, s in zip(ps, chosen_strong, strict=True))
    return (got - weak) / (strong - weak)


def curve(
    win: Sequence[float], ps: Sequence[Prompt], shares: Sequence[float]
) -> list[tuple[float, float]]:
    """(strong share, quality recovered) sending the top ``share`` of prompts by ``win``
    to the strong model, for each share (ties broken by order, which is random)."""
    order = sorted(range(len(ps)), key=lambda i: -win[i])
    out = []
    for share in shares:
        k = round(share * len(ps))
        chosen = [False] * len(ps)
        for i in order[:k]:
            chosen[i] = True
        out.append((k / len(ps), recovered(chosen, ps)))
    return out
