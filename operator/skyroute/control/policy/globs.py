"""Intent globs, resolved once at compile time.

Policies refer to intents with shell-style globs (``faq.*``) because intent
families grow: adding ``faq.warranty`` should not require editing every rule
that means "all FAQs". Routers, however, must not run ``fnmatch`` per request,
so the compiler expands every glob against the intents a policy actually
defines and the snapshot carries concrete names only. The same expansion is
used by validation, so a glob that matches nothing is reported as an error
instead of silently producing a rule that never fires.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

WILDCARDS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` contains a wildcard (a literal name matches only itself)."""
    return any(ch in WILDCARDS for ch in pattern)


def matches(pattern: str, name: str) -> bool:
    return fnmatchcase(name, pattern)


def expand(patterns: Iterable[str], names: Sequence[str]) -> list[str]:
    """Concrete names matched by any of ``patterns``, in ``names`` order, without repeats."""
    pats = list(patterns)
    return [name for name in names if any(fnmatchcase(name, p) for p in pats)]


def specificity(pattern: str) -> tuple[int, int, str]:
    """Sort key: literal names beat globs, then more literal characters, then the text.

    Used when several quality globs match one intent (``*``, ``faq.*`` and
    ``faq.refund``): the most specific wins, deterministically.
    """
    literal = sum(1 for ch in pattern if ch not in WILDCARDS)
    return (0 if is_glob(pattern) else 1, literal, pattern)
