"""Small builders shared by the cache suites (probes, rules, results, the data set)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from skyroute.router.cache import CacheRule, ResponseCache, Scope, rule_for
from skyroute.router.cache.keys import Probe
from skyroute.router.providers.types import ChatResult
from skyroute.router.table import CacheSettings

DATA = Path(__file__).resolve().parent / "data"
SYSTEM = "You are AcmeShop's support assistant. Answer briefly."


def messages(text: str, system: str = SYSTEM) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def scope(
    tenant: str = "acme",
    locale: str = "en",
    safety: str = "standard",
    intent: str = "faq.account",
    policy: str = "support",
) -> Scope:
    return Scope(policy, tenant, locale, safety, intent)


def probe(
    cache: ResponseCache,
    text: str,
    sc: Scope | None = None,
    params: dict[str, Any] | None = None,
    system: str = SYSTEM,
) -> Probe:
    p = cache.probe(
        sc or scope(),
        messages(text, system),
        params if params is not None else {"temperature": 0.2},
        [],
    )
    assert p is not None, f"probe refused for {text!r}"
    return p


def rule(
    threshold: float = 0.9,
    ttl_s: float = 600.0,
    max_entries: int = 10_000,
    intent: str = "faq.account",
) -> CacheRule:
    settings = CacheSettings(True, frozenset({intent}), threshold, ttl_s, max_entries)
    return rule_for(settings, intent)


def default_rule() -> CacheRule:
    """The rule a policy gets with the CRD's defaults (threshold 0.9) for a faq intent."""
    return rule()


def result(text: str) -> ChatResult:
    return ChatResult(text, [], "stop", 12, 7)


def pairs(name: str) -> list[tuple[str, str]]:
    with (DATA / name).open(newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["question_a", "question_b"], f"{name}: bad header {rows[0]}"
    return [(a, b) for a, b in rows[1:]]
