"""Learned state that survives a restart: the learner's fleet figures in a file.

Everything the learning loop has learned lives in memory: the decayed fleet
sketches per model and per (model, intent), the priors it published, the
drift baselines, the observed tool-use rates, the quality feedback tallies
(``learning.quality``; counts, which do not decay). Without this module a
restarted control plane starts cold: its first snapshot carries no priors,
so routers score every model as unknown until ``min_samples`` fresh
observations arrive again, and drift baselines are re-learned from whatever
the fleet looks like after the restart.

``dump`` writes that state as one JSON document; ``restore`` reads it back.
The learner's clock is monotonic (it does not survive a restart), so ages
are stored, not timestamps: each series records how long before the dump it
was last decayed, plus the wall time of the dump, and on restore the time
the control plane was down counts as age too. A series restored after a
long outage has decayed exactly as if the control plane had stayed up
without traffic.

The file is input like any other (it may be old, hand-edited or truncated):
its size, its series count (through the learner's ``SeriesCap``) and every
number are checked, a malformed series is skipped and counted, and a file
that cannot be read at all restores nothing and says why; it never stops
the control plane from starting. ``LearnedStateFile`` writes whole files
atomically (temporary name, then rename); the control plane saves it every
few seconds and when it stops.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyroute.control.files import write_atomic
from skyroute.control.learning.fleet import DecayedStats
from skyroute.control.learning.loop import Learner
from skyroute.control.learning.quality import Tally
from skyroute.control.learning.tooluse import _Rate
from skyroute.control.logs import event

log = logging.getLogger("skyroute.control.learning")

FORMAT = 1
MAX_FILE_BYTES = 64 * 1024 * 1024
_MAX_BINS = 4096
_MAX_KEY = 1 << 20


@dataclass(slots=True)
class Restored:
    """What ``restore`` brought back (shown in ``/debug/learning`` and ``skyroute status``)."""

    path: str = ""
    saved_unix_ms: int = 0
    series: int = 0
    priors: int = 0
    skipped: int = 0
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "saved_unix_ms": self.saved_unix_ms,
            "series": self.series,
            "priors": self.priors,
            "skipped": self.skipped,
            "error": self.error,
        }


# -- dump ----------------------------------------------------------------------------


def _stats(st: DecayedStats, now: float) -> dict[str, Any]:
    return {
        "age_s": max(0.0, now - st.t),
        "requests": st.requests,
        "failures": st.failures,
        "completion_tokens": st.completion_tokens,
        "cost_usd": st.cost_usd,
        "zero": st.zero,
        "bins": [[k, c] for k, c in sorted(st.bins.items())],
    }


def _triple(v: tuple[float, float, float]) -> list[float]:
    return [v[0], v[1], v[2]]


def dump(learner: Learner, *, wall_ms: int | None = None) -> dict[str, Any]:
    """The learner's state as one JSON-able document."""
    now = learner.clock()
    return {
        "format": FORMAT,
        "saved_unix_ms": int(time.time() * 1000) if wall_ms is None else wall_ms,
        "models": {m: _stats(st, now) for m, st in sorted(learner.models.items())},
        "by_intent": [[m, i, _stats(st, now)] for (m, i), st in sorted(learner.by_intent.items())],
        "priors": {m: _triple(v) for m, v in sorted(learner.priors.items())},
        "intent_priors": [
            [m, i, _triple(v)] for (m, i), v in sorted(learner.intent_priors.items())
        ],
        "baselines": {m: [b[0], b[1]] for m, b in sorted(learner.baselines.items())},
        "tool_use": [
            [p, i, max(0.0, now - r.t), r.offered, r.called]
            for (p, i), r in sorted(learner.tool_use.rates.items())
        ],
        "tool_priors": [[p, i, v] for (p, i), v in sorted(learner.tool_priors.items())],
        "quality": [[m, i, t.as_list()] for (m, i), t in sorted(learner.quality.tallies.items())],
        "learned_signal": learner.wins.dump(),
    }


# -- restore -------------------------------------------------------------------------


class _Bad(ValueError):
    pass


def _num(v: object, *, lo: float = 0.0, hi: float = 1e15) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _Bad(f"{v!r} is not a number")
    x = float(v)
    if not math.isfinite(x) or not lo <= x <= hi:
        raise _Bad(f"{x} is outside [{lo}, {hi}]")
    return x


def _opt(v: object) -> float | None:
    return None if v is None else _num(v)


def _name(v: object) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= 256:
        raise _Bad(f"{v!r} is not a name")
    return v


def _read_stats(d: object, now: float, down_s: float) -> DecayedStats:
    if not isinstance(d, dict):
        raise _Bad("a series is not an object")
    bins_in = d.get("bins", [])
    if not isinstance(bins_in, list) or len(bins_in) > _MAX_BINS:
        raise _Bad(f"bins is not a list of at most {_MAX_BINS} pairs")
    bins: dict[int, float] = {}
    for pair in bins_in:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], int):
            raise _Bad(f"bin {pair!r} is not [key, count]")
        if abs(pair[0]) > _MAX_KEY:
            raise _Bad(f"bin key {pair[0]} out of range")
        bins[pair[0]] = _num(pair[1])
    age = _num(d.get("age_s", 0.0)) + down_s
    st = DecayedStats(
        now - age,
        requests=_num(d.get("requests", 0.0)),
        failures=_num(d.get("failures", 0.0)),
        completion_tokens=_num(d.get("completion_tokens", 0.0)),
        cost_usd=_num(d.get("cost_usd", 0.0)),
        zero=_num(d.get("zero", 0.0)),
        bins=bins,
    )
    if st.failures > st.requests:
        raise _Bad("more failures than requests")
    return st


def _read_triple(v: object) -> tuple[float, float, float]:
    if not isinstance(v, list) or len(v) != 3:
        raise _Bad(f"{v!r} is not [p95_ms, failure_rate, completion_tokens]")
    return _num(v[0]), _num(v[1], hi=1.0), _num(v[2])


def restore(learner: Learner, doc: object, *, wall_ms: int | None = None) -> Restored:
    """Load ``dump``'s document into ``learner``; a malformed series is skipped and counted."""
    out = Restored()
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        out.error = f"not a learned-state document of format {FORMAT}"
        return out
    now = learner.clock()
    wall = int(time.time() * 1000) if wall_ms is None else wall_ms
    try:
        saved = int(_num(doc.get("saved_unix_ms", wall), hi=1e14))
    except _Bad as exc:
        out.error = f"saved_unix_ms: {exc}"
        return out
    out.saved_unix_ms = saved
    down_s = max(0.0, (wall - saved) / 1000.0)
    cap = learner.cap

    def each(section: str, rows: object, put: Any) -> None:
        if isinstance(rows, dict):
            items: list[Any] = list(rows.items())
        elif isinstance(rows, list):
            items = rows
        else:
            out.skipped += 1
            return
        for row in items:
            try:
                put(row)
            except (_Bad, TypeError, ValueError) as exc:
                out.skipped += 1
                event(
                    log, "learned_state_skipped", logging.WARNING, section=section, error=str(exc)
                )

    def model(row: tuple[object, object]) -> None:
        name, d = _name(row[0]), _read_stats(row[1], now, down_s)
        if cap.entry(learner.models, name, lambda: d, "learning.models") is not None:
            out.series += 1

    def by_intent(row: object) -> None:
        if not isinstance(row, list) or len(row) != 3:
            raise _Bad("not [model, intent, series]")
        key, d = (_name(row[0]), _name(row[1])), _read_stats(row[2], now, down_s)
        if cap.entry(learner.by_intent, key, lambda: d, "learning.intents") is not None:
            out.series += 1

    def prior(row: tuple[object, object]) -> None:
        learner.priors[_name(row[0])] = _read_triple(row[1])
        out.priors += 1

    def intent_prior(row: object) -> None:
        if not isinstance(row, list) or len(row) != 3:
            raise _Bad("not [model, intent, prior]")
        learner.intent_priors[(_name(row[0]), _name(row[1]))] = _read_triple(row[2])
        out.priors += 1

    def baseline(row: tuple[object, object]) -> None:
        b = row[1]
        if not isinstance(b, list) or len(b) != 2:
            raise _Bad("not [p95_ms, cost_per_request]")
        learner.baselines[_name(row[0])] = (_opt(b[0]), _opt(b[1]))

    def tool_use(row: object) -> None:
        if not isinstance(row, list) or len(row) != 5:
            raise _Bad("not [policy, intent, age_s, offered, called]")
        key = (_name(row[0]), _name(row[1]))
        offered, called = _num(row[3]), _num(row[4])
        if called > offered:
            raise _Bad("more tool calls than requests offering tools")
        rate = cap.entry(learner.tool_use.rates, key, lambda: _Rate(now), "learning.tool_use")
        if rate is not None:
            rate.t, rate.offered, rate.called = now - _num(row[2]) - down_s, offered, called

    def tool_prior(row: object) -> None:
        if not isinstance(row, list) or len(row) != 3:
            raise _Bad("not [policy, intent, rate]")
        learner.tool_priors[(_name(row[0]), _name(row[1]))] = _num(row[2], hi=1.0)

    def quality(row: object) -> None:
        if not isinstance(row, list) or len(row) != 3:
            raise _Bad("not [model, intent, tally]")
        key, tally = (_name(row[0]), _name(row[1])), Tally.of(row[2])
        if cap.entry(learner.quality.tallies, key, lambda: tally, "learning.quality") is not None:
            out.series += 1
            learner.quality.changed = True  # the first snapshot carries the posteriors

    each("models", doc.get("models", {}), model)
    each("by_intent", doc.get("by_intent", []), by_intent)
    each("priors", doc.get("priors", {}), prior)
    each("intent_priors", doc.get("intent_priors", []), intent_prior)
    each("baselines", doc.get("baselines", {}), baseline)
    each("tool_use", doc.get("tool_use", []), tool_use)
    each("tool_priors", doc.get("tool_priors", []), tool_prior)

    def win_fit(row: object) -> None:
        learner.wins.restore(row)
        out.series += 1

    each("quality", doc.get("quality", []), quality)
    each("learned_signal", doc.get("learned_signal", []), win_fit)
    return out


# -- the file ------------------------------------------------------------------------


class LearnedStateFile:
    """The learner's state in one JSON file, written whole and atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saves = 0
        self.restored = Restored(path=str(path))

    def load(self, learner: Learner) -> Restored:
        """Restore from the file if there is one; never raises for a bad file."""
        r = Restored(path=str(self.path))
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            self.restored = r
            return r
        except OSError as exc:
            r.error = str(exc)
        else:
            if size > MAX_FILE_BYTES:
                r.error = f"{size} bytes, over {MAX_FILE_BYTES}"
            else:
                try:
                    doc = json.loads(self.path.read_bytes())
                except (OSError, ValueError) as exc:
                    r.error = f"unreadable: {exc}"
                else:
                    r = restore(learner, doc)
                    r.path = str(self.path)
        if r.error:
            event(log, "learned_state_refused", logging.WARNING, path=str(self.path), error=r.error)
        else:
            event(log, "learned_state_restored", path=str(self.path), series=r.series)
        self.restored = r
        return r

    def save(self, learner: Learner) -> None:
        """Write the state now (a temporary file, then a rename: never half a file)."""
        write_atomic(self.path, json.dumps(dump(learner), sort_keys=True))
        self.saves += 1
