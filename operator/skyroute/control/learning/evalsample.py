"""Reading a labelled traffic sample: graded requests in, per (model, intent) tallies out.

A sample is JSON Lines, one graded request per line::

    {"intent": "faq.refund", "model": "gemini-3-flash", "score": 0.8}
    {"intent": "tools.invoice", "model": "gpt-5.2-high", "pass": true}
    {"intent": "faq.pricing", "model": "claude-4.5-haiku", "correct": false}

``intent`` (a concrete intent name, as a RoutingPolicy declares it) and
``model`` (a ModelPool model name) are required, plus exactly one label:
``score`` (a number in [0, 1], for graded answers) or ``pass`` / ``correct``
(booleans, counted as 1 or 0, for pass/fail checks). ``id``, ``pool``,
``grader`` (strings) and ``meta`` (any object) may be present and are ignored,
so a sample can carry what a reviewer needs to audit a grade.

The reader is strict because a sample's mistakes are silent otherwise: a
misspelt label (``scroe``) would make a line count as unlabelled, a grade of
85 instead of 0.85 would drag a mean past any threshold, and an intent with a
capital letter would never match a policy. Every bad line is reported with
``file:line``, the field and why (up to a cap, so a wholly wrong file does not
flood the terminal), and nothing is computed from a sample with any bad line.
Blank lines are skipped. Lines are streamed, so a large sample costs memory
per (model, intent) pair, not per line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyroute.control.policy.model import INTENT_PATTERN, MODEL_PATTERN

LABELS = ("score", "pass", "correct")
OPTIONAL = ("id", "pool", "grader", "meta")
_MAX_REPORTED = 50
_INTENT_RE = re.compile(INTENT_PATTERN)
_MODEL_RE = re.compile(MODEL_PATTERN)


class EvalsError(Exception):
    """Bad sample or pool input; ``problems`` holds one located line per mistake."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class Tally:
    """Graded requests of one (model, intent): the sum of labels and their count."""

    total: float
    count: int

    @property
    def mean(self) -> float:
        return self.total / self.count


def read_sample(path: Path) -> dict[tuple[str, str], Tally]:
    """(model, intent) -> Tally over every labelled line; EvalsError lists bad lines."""
    sums: dict[tuple[str, str], tuple[float, int]] = {}
    problems: list[str] = []
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise EvalsError([f"{path}: cannot read sample: {exc.strerror or exc}"]) from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                found = _parse_line(line, where, problems)
                if found is not None:
                    key, label = found
                    total, count = sums.get(key, (0.0, 0))
                    sums[key] = (total + label, count + 1)
        except UnicodeDecodeError as exc:
            raise EvalsError([f"{path}: not UTF-8 text: {exc.reason}"]) from None
    if problems:
        extra = len(problems) - _MAX_REPORTED
        shown = problems[:_MAX_REPORTED] + ([f"... and {extra} more"] if extra > 0 else [])
        raise EvalsError(shown)
    if not sums:
        raise EvalsError([f"{path}: no labelled records"])
    return {key: Tally(total, count) for key, (total, count) in sums.items()}


def _parse_line(line: str, where: str, problems: list[str]) -> tuple[tuple[str, str], float] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        problems.append(f"{where}: not JSON: {exc.msg} (column {exc.colno})")
        return None
    if not isinstance(record, dict):
        problems.append(f"{where}: a line must be a JSON object, got {type(record).__name__}")
        return None
    before = len(problems)
    for key in record:
        if key not in (*LABELS, *OPTIONAL, "intent", "model"):
            allowed = ", ".join(("intent", "model", *LABELS, *OPTIONAL))
            problems.append(f"{where}: {key}: unknown field (allowed: {allowed})")
    intent = _name(record, "intent", _INTENT_RE, where, problems)
    model = _name(record, "model", _MODEL_RE, where, problems)
    label = _label(record, where, problems)
    if len(problems) > before or intent is None or model is None or label is None:
        return None
    return (model, intent), label


def _name(
    record: Mapping[str, Any], key: str, pattern: re.Pattern[str], where: str, problems: list[str]
) -> str | None:
    value = record.get(key)
    if value is None:
        problems.append(f"{where}: {key}: required field missing")
    elif not isinstance(value, str) or len(value) > 128 or not pattern.match(value):
        problems.append(f"{where}: {key}: {value!r} does not match {pattern.pattern}")
    else:
        return value
    return None


def _label(record: Mapping[str, Any], where: str, problems: list[str]) -> float | None:
    given = [k for k in LABELS if k in record]
    if len(given) != 1:
        got = f" (got {', '.join(given)})" if given else ""
        problems.append(f"{where}: label: give exactly one of score, pass, correct{got}")
        return None
    key = given[0]
    value = record[key]
    if key == "score":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or not 0 <= value <= 1:
            problems.append(f"{where}: score: must be a number in [0, 1], got {value!r}")
            return None
        return float(value)
    if not isinstance(value, bool):
        problems.append(f"{where}: {key}: must be true or false, got {value!r}")
        return None
    return 1.0 if value else 0.0
