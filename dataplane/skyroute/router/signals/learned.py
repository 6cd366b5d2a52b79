"""The learned signal, compiled once per snapshot and evaluated per request in microseconds.

A policy's ``learned_signal`` names a strong and a weak model and carries,
for each that the control plane has fitted, a linear model of answer quality
over the prompt's features (:mod:`skyroute.learned`). The table turns it into
ready float32 arrays once per snapshot version; per request the router does
two dot products over the prompt's embedding (the one the intent classifier
already computed) and a few additions:

    q_m = clip(offline_m(intent) + bias + tokens·size + tools·has_tools
               + intents[intent] + embedding·e, 0, 1)
    win_probability = 0.5 + (q_strong - q_weak) / 2

A model without a fit predicts its offline eval, so before any feedback the
signal is what the offline evals say per intent. With probability
``exploration`` the win probability is a fair coin instead, 1 or 0, so rules
thresholding it send that declared share of every region of the feature
space half to each model, and both keep getting feedback there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from skyroute.learned import size_feature, win_probability
from skyroute.v1 import snapshot_pb2

FloatArray = np.ndarray[Any, np.dtype[np.float32]]


class LearnedSignalError(ValueError):
    """A pushed learned signal this router cannot evaluate; the message says what."""


def offline_quality(quality: Mapping[str, float], intent: str) -> float:
    """A model's offline eval for ``intent`` (its "*" entry, else 0.5): the fit's baseline."""
    q = quality.get(intent)
    if q is None:
        q = quality.get("*", 0.5)
    return q


@dataclass(frozen=True, slots=True)
class QualityModel:
    """One model's fitted weights, as arrays."""

    model: str
    n: float
    bias: float
    tokens: float
    tools: float
    intents: Mapping[str, float]
    embedding: FloatArray  # empty: no embedding weights

    def learned(self, size: float, has_tools: bool, intent: str, dot: float) -> float:
        """The fitted part of the prediction (added to the offline eval); ``dot`` is the
        embedding's dot product with this model's embedding weights."""
        out = self.bias + self.tokens * size + self.intents.get(intent, 0.0) + dot
        if has_tools:
            out += self.tools
        return out


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the learned signal said about one request (Explain shows it)."""

    win: float
    strong: float  # predicted quality of the strong model
    weak: float
    explored: bool = False
    size: float = 0.0
    fitted: tuple[str, ...] = ()  # the models with a fit behind their prediction

    def quality(self, model: str, signal: LearnedSignal) -> float | None:
        """The predicted quality of ``model`` when it is one of the pair with a fit."""
        if model not in self.fitted:
            return None
        return self.strong if model == signal.strong else self.weak


@dataclass(frozen=True, slots=True)
class LearnedSignal:
    """A policy's learned signal: the pair, its offline evals, the fits and exploration."""

    strong: str
    weak: str
    exploration: float
    strong_quality: Mapping[str, float]
    weak_quality: Mapping[str, float]
    models: Mapping[str, QualityModel]
    # The fitted models' embedding weights as rows of one matrix (strong first, then
    # weak, those with a fit): one matrix-vector product per request. None: no fit.
    matrix: FloatArray | None = None
    rows: tuple[str, ...] = ()

    def predict(
        self,
        intent: str,
        prompt_tokens: int,
        has_tools: bool,
        vector: FloatArray,
        draw: Callable[[], float],
    ) -> Prediction:
        """The win probability for one request (``draw`` is the exploration coin)."""
        size = size_feature(prompt_tokens)
        qs = offline_quality(self.strong_quality, intent)
        qw = offline_quality(self.weak_quality, intent)
        if self.matrix is not None:
            dots = (self.matrix @ vector).tolist()
            for name, dot in zip(self.rows, dots, strict=True):
                fit = self.models[name].learned(size, has_tools, intent, dot)
                if name == self.strong:
                    qs += fit
                else:
                    qw += fit
        qs, qw = min(1.0, max(0.0, qs)), min(1.0, max(0.0, qw))
        fitted = tuple(self.models)
        if self.exploration > 0.0 and draw() < self.exploration:
            # An even coin between the pair: 1 (strong wins) or 0, whatever the thresholds.
            return Prediction(1.0 if draw() < 0.5 else 0.0, qs, qw, True, size, fitted)
        return Prediction(win_probability(qs, qw), qs, qw, False, size, fitted)


def _finite(*xs: float) -> bool:
    return all(math.isfinite(x) for x in xs)


def compile_signal(
    policy: str,
    ls: snapshot_pb2.LearnedSignal,
    quality_of: Callable[[str], Mapping[str, float] | None],
    dim: int,
) -> LearnedSignal:
    """Arrays from the snapshot's message; ``quality_of(model)`` is its offline evals (None:
    not in the policy's pools); ``dim`` is this router's embedding dimension. Raises
    :class:`LearnedSignalError` on anything it cannot evaluate."""
    where = f"policy {policy!r} learnedSignal"
    if not 0.0 <= ls.exploration <= 1.0:
        raise LearnedSignalError(f"{where}: exploration {ls.exploration} is not in [0, 1]")
    strong_q, weak_q = quality_of(ls.strong), quality_of(ls.weak)
    for name, q in ((ls.strong, strong_q), (ls.weak, weak_q)):
        if q is None:
            raise LearnedSignalError(f"{where}: model {name!r} is in none of the policy's pools")
    models: dict[str, QualityModel] = {}
    for m in ls.models:
        if m.model not in (ls.strong, ls.weak) or m.model in models:
            raise LearnedSignalError(f"{where}: weights for {m.model!r}, not one of the pair")
        if m.embedding and len(m.embedding) != dim:
            raise LearnedSignalError(
                f"{where}: {m.model!r} has {len(m.embedding)} embedding weights; "
                f"this router's embedder has {dim} dimensions"
            )
        emb = np.asarray(m.embedding, dtype=np.float32)
        if not (_finite(m.bias, m.tokens, m.tools, *m.intents.values()) and np.isfinite(emb).all()):
            raise LearnedSignalError(f"{where}: {m.model!r} has a weight that is not finite")
        models[m.model] = QualityModel(
            m.model, m.n, m.bias, m.tokens, m.tools, dict(m.intents), emb
        )
    assert strong_q is not None and weak_q is not None
    rows = tuple(m for m in (ls.strong, ls.weak) if m in models)
    matrix = None
    if rows:
        zero = np.zeros(dim, dtype=np.float32)
        matrix = np.stack([models[m].embedding if models[m].embedding.size else zero for m in rows])
    return LearnedSignal(ls.strong, ls.weak, ls.exploration, strong_q, weak_q, models, matrix, rows)
