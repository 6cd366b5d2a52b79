"""Calibration on the user's own data: labelled question pairs in, a threshold out.

A similarity threshold means nothing by itself: the same 0.9 serves most
paraphrases with one embedder and almost none with another, and what a
wrong answer costs is the operator's call. So the operator states the error
bound (the share of different-meaning questions that may be served the
other's answer, e.g. 1%) and calibrates on pairs from their own traffic:

- :func:`load_pairs` reads JSON lines ``{"a": ..., "b": ..., "same": true}``
  (``same``: do both questions want the same answer), with size limits and a
  clear error naming the line of anything malformed;
- :func:`score_pairs` scores each pair exactly as a lookup would serve it:
  the same guard (a refused question never hits), the exact layer (folded
  text equal: 1.0), else the cosine of the two embeddings if the meaning
  signatures are compatible (else never served: ``-inf``), questions over
  the embedded length exact-only;
- :func:`curve` gives hit rate (same pairs served) and false-hit rate
  (different pairs served) per threshold, and :func:`pick` the lowest
  threshold whose false-hit rate is within the bound (the most hits that the
  bound allows), never below the embedder's floor.

``skyroute cache calibrate --pairs FILE`` prints it as a table with a bar
plot.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyroute.router.cache.keys import Scope
from skyroute.router.cache.service import ResponseCache
from skyroute.router.embed.text import compatible

MAX_PAIRS = 200_000
MAX_QUESTION_CHARS = 4_000
MAX_FILE_BYTES = 256 * 1024 * 1024
_SCOPE = Scope("calibrate", "", "", "", "faq")


class PairsError(ValueError):
    """A pairs file that cannot be used; the message names the line."""


@dataclass(slots=True, frozen=True)
class Pair:
    a: str
    b: str
    same: bool


@dataclass(slots=True, frozen=True)
class Point:
    """Hit and false-hit rate at one threshold."""

    threshold: float
    hit_rate: float  # share of same-meaning pairs served
    false_hit_rate: float  # share of different-meaning pairs served


def _text(row: dict[str, object], key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PairsError(f"{where}: {key!r} must be a non-empty string")
    if len(value) > MAX_QUESTION_CHARS:
        raise PairsError(f"{where}: {key!r} is over {MAX_QUESTION_CHARS} characters")
    return value


def json_lines(path: Path, max_bytes: int, error: type[ValueError]) -> Iterator[tuple[str, Any]]:
    """``(where, value)`` for each non-empty line of a JSON-lines file (``where`` is
    ``path:line``); ``error`` naming the line for one that is not JSON, or the file if
    it is over ``max_bytes``."""
    size = path.stat().st_size
    if size > max_bytes:
        raise error(f"{path}: {size} bytes is over the {max_bytes}-byte limit")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{n}", json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{path}:{n}: not JSON ({e.msg})") from None


def load_pairs(path: Path) -> list[Pair]:
    """Labelled pairs from a JSON-lines file; raises :class:`PairsError` naming the line."""
    pairs: list[Pair] = []
    for where, row in json_lines(path, MAX_FILE_BYTES, PairsError):
        if not isinstance(row, dict):
            raise PairsError(f"{where}: expected an object with 'a', 'b' and 'same'")
        same = row.get("same")
        if not isinstance(same, bool):
            raise PairsError(f"{where}: 'same' must be true or false")
        pairs.append(Pair(_text(row, "a", where), _text(row, "b", where), same))
        if len(pairs) > MAX_PAIRS:
            raise PairsError(f"{path}: more than {MAX_PAIRS} pairs")
    if not any(p.same for p in pairs) or all(p.same for p in pairs):
        raise PairsError(f"{path}: needs both same-meaning and different-meaning pairs")
    return pairs


def score_pairs(pairs: list[Pair], cache: ResponseCache) -> list[float]:
    """Each pair's similarity as the cache's lookup sees it (``-inf``: never served)."""
    out: list[float] = []
    for p in pairs:
        pa = cache.probe(_SCOPE, [{"role": "user", "content": p.a}], {}, [])
        pb = cache.probe(_SCOPE, [{"role": "user", "content": p.b}], {}, [])
        if pa is None or pb is None:
            out.append(-math.inf)  # refused by the guard (personal data, shape)
        elif pa.exact == pb.exact:
            out.append(1.0)
        elif not compatible(pa.signature, pb.signature):
            out.append(-math.inf)
        else:
            va, vb = pa.vector(), pb.vector()
            out.append(float(va @ vb) if va.any() and vb.any() else -math.inf)
    return out


def curve(pairs: list[Pair], scores: list[float], thresholds: list[float]) -> list[Point]:
    same = [s for p, s in zip(pairs, scores, strict=True) if p.same]
    diff = [s for p, s in zip(pairs, scores, strict=True) if not p.same]
    return [
        Point(
            t,
            sum(s >= t for s in same) / len(same),
            sum(s >= t for s in diff) / len(diff),
        )
        for t in thresholds
    ]


def pick(points: list[Point], max_false_hit_rate: float, floor: float) -> Point | None:
    """The lowest threshold at or above ``floor`` within the bound (None: none is)."""
    ok = [p for p in points if p.threshold >= floor and p.false_hit_rate <= max_false_hit_rate]
    return min(ok, key=lambda p: p.threshold) if ok else None


def thresholds(lo: float = 0.5, hi: float = 1.0, step: float = 0.01) -> list[float]:
    n = round((hi - lo) / step)
    return [round(lo + i * step, 4) for i in range(n + 1)]
