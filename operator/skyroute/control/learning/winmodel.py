"""The learned signal's fit: per model of a policy's strong/weak pair, quality over prompt features.

Routers report, with each outcome of a policy that declares
``spec.learnedSignal``, the prompt's features (:mod:`skyroute.learned`: the
quantized embedding; size, tools and intent are outcome fields already).
Feedback on that answer arrives later, already joined to the model that
served it; :class:`~skyroute.control.learning.recent.RecentOutcomes` joins it
to the outcome by request id and hands each new boolean or score (once per
answer, source and kind) to :meth:`WinModels.example`.

Method: ridge regression (a linear probability model) per (policy, model) on
the residual ``y - q0``, where ``y`` is the feedback (good = 1, bad = 0, a
score in [0, 1]) and ``q0`` the model's offline eval for the intent, over
``x = [1, size, tools, one-hot intent, embedding]``. The sufficient
statistics ``A = Σ x xᵀ`` and ``b = Σ x (y - q0)`` are kept (examples are
folded into them in one matrix product per tick, not one outer product per
piece of feedback), and ``w = (A + λI)⁻¹ b`` is solved at most once per
learning interval when new examples arrived. ``λ`` is the policy's
``learnedSignal.regularization`` in observations: with no feedback the
weights are 0 and the prediction is the offline eval; feedback moves it as
it outweighs ``λ``. Nothing decays (a quality judgement does not go stale on a
latency half-life), as with the quality posteriors.

A model's fit is pushed (``LearnedSignal.models``) once it has
``minFeedback`` examples; the router then predicts its quality as
``q0 + w·x`` and the win probability as ``0.5 + (q_strong - q_weak) / 2``.

Untrusted input: an outcome whose embedding's length differs from the first
one seen for its policy is not used and is counted (``rejected``); the
pending buffer and the number of (policy, model) fits are bounded.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skyroute.control.limits import SeriesCap
from skyroute.control.policy.compiler import referenced_pools
from skyroute.learned import MAX_EMBEDDING_BYTES, MAX_INTENT_WEIGHTS, dequantize, size_feature
from skyroute.reports import UNKNOWN_INTENT
from skyroute.v1 import distribution_pb2, snapshot_pb2

#: Examples waiting to be folded into the statistics (the oldest give up first).
MAX_PENDING = 20_000
#: Leading features before the intents: bias, size, tools.
_HEAD = 3
#: The ridge penalty when a policy gives none (the CRD's default).
DEFAULT_RIDGE = 4.0

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def offline(c: snapshot_pb2.Candidate, intent: str) -> float:
    """The offline eval a model's fit starts from (as the router's ``offline_quality``)."""
    return c.quality.get(intent, c.quality.get("*", 0.5))


@dataclass(slots=True)
class Layout:
    """Where each feature sits in ``x``, fixed per policy when its first example arrives."""

    intents: dict[str, int]
    dim: int  # embedding dimensions

    @property
    def width(self) -> int:
        return _HEAD + len(self.intents) + self.dim

    def row(self, o: distribution_pb2.Outcome) -> FloatArray:
        x = np.zeros(self.width, dtype=np.float64)
        x[0] = 1.0
        x[1] = size_feature(o.prompt_tokens_estimate)
        x[2] = 1.0 if o.has_tools else 0.0
        slot = self.intents.get(o.intent)
        if slot is not None:
            x[_HEAD + slot] = 1.0
        x[_HEAD + len(self.intents) :] = dequantize(o.prompt_embedding)
        return x


@dataclass(slots=True)
class Fit:
    """One (policy, model): sufficient statistics, pending examples, the last solution."""

    layout: Layout
    a: FloatArray
    b: FloatArray
    n: float = 0.0
    pending: list[tuple[FloatArray, float]] = field(default_factory=list)
    weights: snapshot_pb2.LearnedQualityModel | None = None
    ridge: float = DEFAULT_RIDGE  # the penalty of the last solve

    def fold(self) -> bool:
        if not self.pending:
            return False
        x = np.stack([r for r, _ in self.pending])
        y = np.array([t for _, t in self.pending])
        self.a += x.T @ x
        self.b += x.T @ y
        self.n += len(self.pending)
        self.pending.clear()
        return True

    def vector(self, ridge: float) -> FloatArray:
        w = np.linalg.solve(self.a + ridge * np.eye(len(self.b)), self.b)
        return np.asarray(w, dtype=np.float64)

    def solve(self, model: str, ridge: float) -> snapshot_pb2.LearnedQualityModel:
        self.ridge = ridge
        w = self.vector(ridge)
        k = len(self.layout.intents)
        return snapshot_pb2.LearnedQualityModel(
            model=model,
            n=self.n,
            bias=float(w[0]),
            tokens=float(w[1]),
            tools=float(w[2]),
            intents={
                name: round(float(w[_HEAD + i]), 6)
                for name, i in self.layout.intents.items()
                if abs(w[_HEAD + i]) > 1e-9
            },
            embedding=[float(v) for v in w[_HEAD + k :].astype(np.float32)],
        )


class WinModels:
    """The learned signal's fits for every policy that declares one."""

    def __init__(self, cap: SeriesCap) -> None:
        self.cap = cap
        self.fits: dict[tuple[str, str], Fit] = {}
        self.layouts: dict[str, Layout] = {}
        self.examples = 0
        self.rejected: Counter[str] = Counter()
        self.changed = False  # a fit was solved since the last push
        self._pending = 0

    # -- input -------------------------------------------------------------------
    def example(
        self,
        snapshot: snapshot_pb2.Snapshot | None,
        o: distribution_pb2.Outcome,
        feedback: list[distribution_pb2.Feedback],
    ) -> None:
        """Feedback joined to its outcome: one example per boolean or score."""
        if snapshot is None or not o.prompt_embedding or not o.model:
            return
        policy = _signal_policy(snapshot, o.policy)
        if policy is None or o.model not in (
            policy.learned_signal.strong,
            policy.learned_signal.weak,
        ):
            return
        layout = self.layouts.get(o.policy)
        if layout is None:
            names = sorted({i.name for i in policy.intents} | {UNKNOWN_INTENT})
            layout = Layout(
                {n: i for i, n in enumerate(names[:MAX_INTENT_WEIGHTS])}, len(o.prompt_embedding)
            )
            self.layouts[o.policy] = layout
        if len(o.prompt_embedding) != layout.dim:
            self.rejected["embedding_dim"] += 1
            return
        cand = _candidate(snapshot, policy, o.model)
        if cand is None:
            return
        q0 = offline(cand, o.intent)
        targets = [t for fb in feedback if (t := _target(fb)) is not None]
        if not targets:
            return
        fit = self.cap.entry(
            self.fits,
            (o.policy, o.model),
            lambda: Fit(
                layout,
                np.zeros((layout.width, layout.width)),
                np.zeros(layout.width),
            ),
            "learning.win_models",
        )
        if fit is None:
            return
        x = layout.row(o)
        for y in targets:
            fit.pending.append((x, y - q0))
            self.examples += 1
            self._pending += 1
        while self._pending > MAX_PENDING:
            oldest = max(self.fits.values(), key=lambda f: len(f.pending))
            oldest.pending.pop(0)
            self._pending -= 1
            self.rejected["pending_full"] += 1

    # -- fit ---------------------------------------------------------------------
    def refit(self, snapshot: snapshot_pb2.Snapshot | None) -> bool:
        """Fold pending examples and re-solve the fits that moved; True when one did."""
        if snapshot is None:
            return False
        solved = False
        for (name, model), fit in self.fits.items():
            if not fit.fold():
                continue
            policy = _signal_policy(snapshot, name)
            if policy is None:
                continue
            ls = policy.learned_signal
            if fit.n < max(1, ls.min_feedback):
                continue
            fit.weights = fit.solve(model, ls.regularization or DEFAULT_RIDGE)
            solved = True
        self._pending = sum(len(f.pending) for f in self.fits.values())
        self.changed = self.changed or solved
        return solved

    def weights(self, policy: str, model: str) -> snapshot_pb2.LearnedQualityModel | None:
        fit = self.fits.get((policy, model))
        return fit.weights if fit is not None else None

    def apply(self, snapshot: snapshot_pb2.Snapshot) -> None:
        """Write the pushed fits into every policy's learned signal (in place)."""
        for p in snapshot.policies:
            if not p.HasField("learned_signal"):
                continue
            name = p.candidate_of or p.name  # a canary reports as its policy
            ls = p.learned_signal
            del ls.models[:]
            layout = self.layouts.get(name)
            for model in (ls.strong, ls.weak):
                w = self.weights(name, model)
                if w is not None and layout is not None:
                    ls.models.append(w)

    # -- saved state (learning.persist) -------------------------------------------------
    def dump(self) -> list[dict[str, Any]]:
        """Each fit, compact: its weights exactly, and the diagonal of its evidence.

        ``A`` (``Σ x xᵀ``, about 3 MiB per model) is saved as its diagonal ``d``, and
        ``b`` as ``(d + λ) w``, so a restored fit solves to the very same weights ``w``;
        what is lost is the correlation between features in the old evidence, so new
        feedback moves a restored fit a little more than it would have moved the original.
        """
        out = []
        for (policy, model), fit in sorted(self.fits.items()):
            fit.fold()
            w = fit.vector(fit.ridge)
            d = np.diag(fit.a).copy()
            out.append(
                {
                    "policy": policy,
                    "model": model,
                    "n": fit.n,
                    "ridge": fit.ridge,
                    "pushed": fit.weights is not None,
                    "intents": dict(fit.layout.intents),
                    "dim": fit.layout.dim,
                    "diag": [float(x) for x in d],
                    "b": [float(x) for x in (d + fit.ridge) * w],
                }
            )
        self._pending = 0
        return out

    def restore(self, row: object) -> None:
        """One row of :meth:`dump`; ValueError (the caller skips and counts it) if malformed."""
        if not isinstance(row, dict):
            raise ValueError("a fit is not an object")
        policy, model = row.get("policy"), row.get("model")
        intents, dim = row.get("intents"), row.get("dim")
        if not (
            isinstance(policy, str)
            and isinstance(model, str)
            and 0 < len(policy) <= 256
            and 0 < len(model) <= 256
        ):
            raise ValueError("a fit names no policy and model")
        if not (isinstance(dim, int) and 0 < dim <= MAX_EMBEDDING_BYTES):
            raise ValueError(f"dim {dim!r} is not in [1, {MAX_EMBEDDING_BYTES}]")
        if not (
            isinstance(intents, dict)
            and len(intents) <= MAX_INTENT_WEIGHTS
            and sorted(intents.values()) == list(range(len(intents)))
            and all(isinstance(k, str) and len(k) <= 256 for k in intents)
        ):
            raise ValueError("intents is not a name -> slot map")
        layout = Layout(dict(intents), dim)
        known = self.layouts.get(policy)
        if known is not None and (known.intents, known.dim) != (layout.intents, layout.dim):
            raise ValueError(f"fit of {policy}/{model} disagrees with its policy's layout")
        diag = np.array(row.get("diag"), dtype=np.float64)
        b = np.array(row.get("b"), dtype=np.float64)
        n, ridge = row.get("n"), row.get("ridge")
        if diag.shape != (layout.width,) or b.shape != (layout.width,):
            raise ValueError(f"diag and b must have {layout.width} numbers")
        if not (np.isfinite(diag).all() and np.isfinite(b).all() and (diag >= 0).all()):
            raise ValueError("diag and b hold finite numbers, diag non-negative")
        if not (isinstance(n, int | float) and isinstance(ridge, int | float)):
            raise ValueError("n and ridge are numbers")
        if not (0 <= n <= 1e12 and 0 < ridge <= 1e6):
            raise ValueError("n or ridge out of range")
        fit = Fit(layout, np.diag(diag), b, float(n), ridge=float(ridge))
        if row.get("pushed") is True:
            fit.weights = fit.solve(model, float(ridge))
            self.changed = True  # the first snapshot after the restart carries it
        if self.cap.entry(self.fits, (policy, model), lambda: fit, "learning.win_models"):
            self.layouts.setdefault(policy, layout)

    def as_dict(self) -> dict[str, object]:
        """For /debug/learning: examples per (policy, model), the fit's size, rejections."""
        return {
            "examples": self.examples,
            "rejected": dict(self.rejected),
            "fits": {
                f"{p}/{m}": {
                    "n": f.n,
                    "pending": len(f.pending),
                    "pushed": f.weights is not None,
                    "bias": None if f.weights is None else round(f.weights.bias, 4),
                    "embedding_norm": None
                    if f.weights is None
                    else round(math.sqrt(sum(v * v for v in f.weights.embedding)), 4),
                }
                for (p, m), f in sorted(self.fits.items())
            },
        }


def _target(fb: distribution_pb2.Feedback) -> float | None:
    kind = fb.WhichOneof("value")
    if kind == "good":
        return 1.0 if fb.good else 0.0
    if kind == "score" and 0.0 <= fb.score <= 1.0:
        return fb.score
    return None


def _signal_policy(snapshot: snapshot_pb2.Snapshot, name: str) -> snapshot_pb2.Policy | None:
    for p in snapshot.policies:
        if p.name == name and not p.candidate_of and p.HasField("learned_signal"):
            return p
    return None


def _candidate(
    snapshot: snapshot_pb2.Snapshot, policy: snapshot_pb2.Policy, model: str
) -> snapshot_pb2.Candidate | None:
    """The model's entry in the first of the policy's pools (by name) that has it, as routers."""
    used = referenced_pools(policy)
    for pool in snapshot.pools:  # sorted by name
        if pool.name in used:
            for c in pool.candidates:
                if c.model == model:
                    return c
    return None
