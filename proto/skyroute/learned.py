"""The learned signal's features and its win probability, defined once for both planes.

A router reports each request's prompt features with its outcome (for a
policy with ``spec.learnedSignal``); the control plane fits, per model of the
strong/weak pair, a linear model of answer quality over them and pushes its
weights (``snapshot.LearnedQualityModel``); the router evaluates them per
request. Both sides must read the features alike, so they are written here:

- the prompt's embedding (the one the intent classifier and the semantic
  cache share, L2-normalised) quantized to one signed byte per dimension,
  ``round(x * 127)``: 512 bytes for the built-in hashing embedder;
- prompt size: ``log1p(prompt tokens) / 10`` (about 0.7 for a 1,000-token prompt);
- tools offered: 1 or 0;
- the intent: one-hot (a weight per intent name).

A model's predicted quality is its offline eval for the intent plus
``bias + tokens·size + tools·has_tools + intents[intent] + embedding·e``,
clipped to [0, 1]; the win probability of strong over weak is
``0.5 + (q_strong - q_weak) / 2``: the chance the strong answer is the better
one when each is good with its predicted probability and ties count half.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

#: One embedding dimension as a signed byte: ``round(x * EMBED_SCALE)``.
EMBED_SCALE: Final = 127.0
#: The longest embedding an outcome may carry (bytes = dimensions).
MAX_EMBEDDING_BYTES: Final = 1024
#: Intents one fitted model may weigh (a policy declares at most 128; the rest weigh 0).
MAX_INTENT_WEIGHTS: Final = 128

FloatArray = np.ndarray[Any, np.dtype[np.float32]]


def quantize(vector: FloatArray) -> bytes:
    """An L2-normalised embedding as signed bytes (what an outcome carries)."""
    q = np.clip(np.rint(vector * EMBED_SCALE), -127, 127).astype(np.int8)
    return bytes(q.tobytes())


def dequantize(raw: bytes) -> FloatArray:
    """The embedding an outcome carried, as float32 (the inverse of :func:`quantize`)."""
    return np.frombuffer(raw, dtype=np.int8).astype(np.float32) / np.float32(EMBED_SCALE)


def size_feature(prompt_tokens: int) -> float:
    """The prompt-size feature: ``log1p(tokens) / 10``."""
    return math.log1p(max(0, prompt_tokens)) / 10.0


def win_probability(q_strong: float, q_weak: float) -> float:
    """P(strong's answer beats weak's), ties half: ``0.5 + (q_s - q_w) / 2`` in [0, 1]."""
    return min(1.0, max(0.0, 0.5 + (q_strong - q_weak) / 2.0))
