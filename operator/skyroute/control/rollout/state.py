"""What one policy's rollout is doing, as data that round-trips through status.

A rollout's whole state lives in the RoutingPolicy's ``status.rollout`` and
``status.history`` (Flagger's rule: a restarted or newly elected operator
must be able to carry on from the object alone). This module is that state
and its (de)serialization, nothing else: the transitions are in
``rollout.py``.

Phases:

* ``Stable``: one version serves all traffic; nothing in flight.
* ``Progressing``: a candidate serves ``weight`` percent, stepping up.
* ``Holding``: the last analysis was inconclusive (too few requests on a
  side); the weight stays until an interval passes or fails.
* ``Promoted``: the candidate became stable (all steps passed, or a manual
  promote); the same as Stable, but says how it got there.
* ``RolledBack``: the candidate failed (failure limit reached, or a manual
  abort); stable serves everything. The spec still names the failed version,
  which is not tried again until the spec changes to another one.
* ``Pinned``: ``spec.pinVersion`` serves a recorded version, whatever the
  spec says.

Versions are the compiled policy's content hash (what routers report in
outcomes); specs are identified by ``specHash``, the hash of the spec
without its lifecycle fields (tests, rollout, pinVersion), which is what
decides whether an edit is a new candidate: changing only the rollout steps
starts nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

STABLE, PROGRESSING, HOLDING = "Stable", "Progressing", "Holding"
PROMOTED, ROLLED_BACK, PINNED = "Promoted", "RolledBack", "Pinned"
IN_FLIGHT = frozenset({PROGRESSING, HOLDING})
HISTORY_IN_STATUS = 10
NO_VERSION = "-"


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: object, default: float) -> float:
    if not isinstance(text, str) or not text:
        return default
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return default


@dataclass(slots=True)
class HistoryEntry:
    """One version this policy served (or tried to), newest last."""

    version: str
    spec_hash: str
    recorded_at: float
    result: str  # serving, candidate, promoted, rolledBack, superseded, pinned

    def as_status(self) -> dict[str, str]:
        return {
            "version": self.version,
            "specHash": self.spec_hash,
            "recordedAt": rfc3339(self.recorded_at),
            "result": self.result,
        }


@dataclass(slots=True)
class RolloutState:
    phase: str = STABLE
    stable_hash: str = ""
    stable_version: str = ""
    candidate_hash: str = ""
    candidate_version: str = ""
    failed_hash: str = ""
    failed_version: str = ""
    pinned_hash: str = ""
    pinned_version: str = ""
    step: int = 0
    steps: int = 0
    weight: float = 0.0
    step_started: float = 0.0
    last_check: float = 0.0
    step_passed: bool = False
    failed_checks: int = 0
    last_analysis: dict[str, Any] | None = None
    message: str = ""
    history: list[HistoryEntry] = field(default_factory=list)

    # --- history ---------------------------------------------------------------

    def record(self, version: str, spec_hash: str, result: str, now: float | None = None) -> None:
        """Add (or update the result of) the entry for this spec and version."""
        for entry in self.history:
            if entry.spec_hash == spec_hash and entry.version == version:
                entry.result = result
                return
        self.history.append(HistoryEntry(version, spec_hash, now or time.time(), result))
        del self.history[:-50]

    def mark(self, spec_hash: str, result: str) -> None:
        for entry in reversed(self.history):
            if entry.spec_hash == spec_hash:
                entry.result = result
                return

    def find(self, version: str) -> HistoryEntry | None:
        return next((e for e in reversed(self.history) if e.version == version), None)

    # --- status ----------------------------------------------------------------

    def clear_candidate(self) -> None:
        self.candidate_hash = self.candidate_version = ""
        self.weight, self.step, self.failed_checks, self.step_passed = 0.0, 0, 0, False

    def as_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "phase": self.phase,
            "stableVersion": self.pinned_version if self.phase == PINNED else self.stable_version,
            "stableSpecHash": self.pinned_hash if self.phase == PINNED else self.stable_hash,
            # Whole numbers as ints: the API server stores JSON numbers and must
            # give back exactly what was written, or every status write looks new.
            "weight": int(self.weight) if self.weight.is_integer() else self.weight,
            # "-" rather than empty or missing: kubectl prints a missing column value as
            # a blank, which shifts the columns of `kubectl get` for anyone splitting them.
            "candidateVersion": self.candidate_version or NO_VERSION,
            "step": self.step + 1 if self.phase in IN_FLIGHT else 0,
            "steps": self.steps,
            "failedChecks": self.failed_checks,
            "message": self.message,
        }
        if self.phase in IN_FLIGHT:
            out["candidateSpecHash"] = self.candidate_hash
            out["stepStartedAt"] = rfc3339(self.step_started)
        if self.failed_hash:
            out["failedVersion"] = self.failed_version
            out["failedSpecHash"] = self.failed_hash
        if self.phase == PINNED:
            out["unpinnedStableVersion"] = self.stable_version
            out["unpinnedStableSpecHash"] = self.stable_hash
        if self.last_analysis is not None:
            out["lastAnalysis"] = self.last_analysis
        return out

    def history_status(self) -> list[dict[str, str]]:
        return [e.as_status() for e in self.history[-HISTORY_IN_STATUS:]]

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None, now: float) -> RolloutState | None:
        """Restore from an object's status; None when it holds no rollout state."""
        status = status or {}
        r = status.get("rollout")
        if not isinstance(r, Mapping) or not r.get("phase"):
            return None
        st = cls(phase=str(r["phase"]))
        if st.phase == PINNED:
            st.pinned_version = str(r.get("stableVersion", ""))
            st.pinned_hash = str(r.get("stableSpecHash", ""))
            st.stable_version = str(r.get("unpinnedStableVersion", ""))
            st.stable_hash = str(r.get("unpinnedStableSpecHash", ""))
        else:
            st.stable_version = str(r.get("stableVersion", ""))
            st.stable_hash = str(r.get("stableSpecHash", ""))
        st.candidate_version = str(r.get("candidateVersion", "")).replace(NO_VERSION, "")
        st.candidate_hash = str(r.get("candidateSpecHash", ""))
        st.failed_version = str(r.get("failedVersion", ""))
        st.failed_hash = str(r.get("failedSpecHash", ""))
        st.weight = float(r.get("weight", 0.0) or 0.0)
        st.step = max(0, int(r.get("step", 0) or 0) - 1)
        st.steps = int(r.get("steps", 0) or 0)
        st.failed_checks = int(r.get("failedChecks", 0) or 0)
        st.message = str(r.get("message", ""))
        st.step_started = parse_rfc3339(r.get("stepStartedAt"), now)
        st.last_check = now  # a new interval starts with the new process
        analysis = r.get("lastAnalysis")
        st.last_analysis = dict(analysis) if isinstance(analysis, Mapping) else None
        for e in status.get("history") or []:
            if isinstance(e, Mapping) and e.get("version") and e.get("specHash"):
                st.history.append(
                    HistoryEntry(
                        str(e["version"]),
                        str(e["specHash"]),
                        parse_rfc3339(e.get("recordedAt"), now),
                        str(e.get("result", "")),
                    )
                )
        return st
