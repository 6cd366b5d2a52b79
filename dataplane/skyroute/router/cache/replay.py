"""Replay logged traffic through the cache: what it would have served, per intent.

``skyroute cache replay --traffic FILE`` answers "what would the cache do on
my traffic?" before it is turned on or re-tuned. Requests are read in order
(:func:`load_traffic`: JSON lines, size-limited, errors naming the line) and
each goes through the cache's own path (:meth:`ResponseCache.probe`: the
guard and partition key; :meth:`ResponseCache.lookup`: exact layer, then
semantic at the threshold) against an in-process cache that starts empty.
A miss stores a placeholder for the request's answer, so later requests can
hit it, as the live cache would have after the model answered. Nothing
expires during a replay.

A row is ``{"messages": [...]}`` (or ``{"prompt": "..."}``), with optional
``intent`` (default ``faq``), ``tenant``, ``model`` (the policy: a partition
of its own), ``params`` (model parameters, part of the partition key),
``tools`` (a request offering tools is refused, as live) and
``label``: rows with the same label want the same answer. A hit whose stored
answer came from a row with another label is a **false hit**; a hit where
either side has no label is counted as unlabelled.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyroute.router.cache.backend import EXACT, Answer
from skyroute.router.cache.calibrate import json_lines
from skyroute.router.cache.keys import Scope
from skyroute.router.cache.rules import rule_for
from skyroute.router.cache.service import ResponseCache
from skyroute.router.table import CacheSettings

MAX_ROWS = 500_000
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_MESSAGES = 256
_FOREVER_S = 10.0 * 365 * 86400


class TrafficError(ValueError):
    """A traffic file that cannot be used; the message names the line."""


@dataclass(slots=True, frozen=True)
class Row:
    messages: list[dict[str, Any]]
    intent: str
    tenant: str
    policy: str
    params: dict[str, Any]
    label: str | None
    tools: list[Any] = field(default_factory=list)


@dataclass(slots=True)
class IntentReplay:
    requests: int = 0
    off: int = 0  # intent outside --intents: the cache never looked
    refused: int = 0  # the guard refused (tools, personal data, shape)
    exact_hits: int = 0
    semantic_hits: int = 0
    labelled_hits: int = 0  # hits where both requests carry a label
    false_hits: int = 0  # ...and the labels differ

    @property
    def hits(self) -> int:
        return self.exact_hits + self.semantic_hits

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "off": self.off,
            "refused": self.refused,
            "exact_hits": self.exact_hits,
            "semantic_hits": self.semantic_hits,
            "hit_rate": round(self.hits / self.requests, 4) if self.requests else 0.0,
            "labelled_hits": self.labelled_hits,
            "false_hits": self.false_hits,
            "false_hit_share": (
                round(self.false_hits / self.labelled_hits, 4) if self.labelled_hits else None
            ),
        }


@dataclass(slots=True)
class Replay:
    threshold: float
    per_intent: dict[str, IntentReplay] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)

    def total(self) -> IntentReplay:
        out = IntentReplay()
        for r in self.per_intent.values():
            for name in IntentReplay.__dataclass_fields__:
                setattr(out, name, getattr(out, name) + getattr(r, name))
        return out


def _row(data: Any, where: str) -> Row:
    if not isinstance(data, dict):
        raise TrafficError(f"{where}: expected a JSON object with 'messages' or 'prompt'")
    messages = data.get("messages")
    if messages is None and isinstance(data.get("prompt"), str):
        messages = [{"role": "user", "content": data["prompt"]}]
    if (
        not isinstance(messages, list)
        or not messages
        or len(messages) > MAX_MESSAGES
        or not all(isinstance(m, dict) for m in messages)
    ):
        raise TrafficError(
            f"{where}: 'messages' must be a list of 1 to {MAX_MESSAGES} message objects "
            "(or give 'prompt')"
        )
    strings: dict[str, str] = {}
    for key, default in (("intent", "faq"), ("tenant", ""), ("model", "replay")):
        value = data.get(key, default)
        if value is None:
            value = default
        if not isinstance(value, str) or len(value) > 256:
            raise TrafficError(f"{where}: {key!r} must be a string of at most 256 characters")
        strings[key] = value
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise TrafficError(f"{where}: 'params' must be an object")
    tools = data.get("tools", [])
    if not isinstance(tools, list):
        raise TrafficError(f"{where}: 'tools' must be a list")
    label = data.get("label")
    if label is not None and not isinstance(label, str | int):
        raise TrafficError(f"{where}: 'label' must be a string or an integer")
    return Row(
        messages,
        strings["intent"] or "faq",
        strings["tenant"],
        strings["model"],
        params,
        None if label is None else str(label),
        tools,
    )


def load_traffic(path: Path) -> list[Row]:
    """Logged requests from a JSON-lines file; raises :class:`TrafficError` naming the line."""
    rows: list[Row] = []
    for where, data in json_lines(path, MAX_FILE_BYTES, TrafficError):
        rows.append(_row(data, where))
        if len(rows) > MAX_ROWS:
            raise TrafficError(f"{path}: more than {MAX_ROWS} requests")
    if not rows:
        raise TrafficError(f"{path}: no requests")
    return rows


async def replay(
    rows: Iterable[Row],
    cache: ResponseCache,
    threshold: float,
    intents: tuple[str, ...] = ("*",),
) -> Replay:
    """Each row through ``cache`` (empty, in-process) in order; the tally per intent."""
    out = Replay(threshold)
    labels: dict[str, str | None] = {}  # placeholder answer -> the label of its row
    for n, row in enumerate(rows):
        tally = out.per_intent.setdefault(row.intent, IntentReplay())
        tally.requests += 1
        if not any(fnmatch.fnmatchcase(row.intent, p) for p in intents):
            tally.off += 1
            continue
        settings = CacheSettings(True, frozenset({row.intent}), threshold, _FOREVER_S, 1_000_000)
        rule = rule_for(settings, row.intent, cache.embedder.min_threshold)
        scope = Scope(row.policy, row.tenant, "", "", row.intent)
        probe = cache.probe(scope, row.messages, row.params, row.tools)
        if probe is None:
            tally.refused += 1
            continue
        hit = await cache.lookup(probe, rule)
        if hit is None:
            marker = f"#{n}"
            labels[marker] = row.label
            cache.backend.store(probe, rule, Answer(marker, "stop", 0, 0, "", probe.question))
            continue
        if hit.layer == EXACT:
            tally.exact_hits += 1
        else:
            tally.semantic_hits += 1
        stored = labels.get(hit.answer.content)
        if row.label is not None and stored is not None:
            tally.labelled_hits += 1
            if stored != row.label:
                tally.false_hits += 1
    out.refusals = dict(cache.stats()["refusals"])
    return out
