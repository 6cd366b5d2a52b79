"""Seeded Beta draws for Thompson sampling over quality, in microseconds per request.

With ``adaptation.qualitySampling: thompson`` the scored selection does not
use a candidate's posterior mean quality but a draw from its posterior,
Beta(alpha, beta) (the control plane compiles alpha and beta from the
offline prior and the feedback into ``LearnedQuality``). A model whose
quality is uncertain then wins some requests in proportion to the chance
that it is in fact the best, and stops winning them as feedback settles it:
exploration that spends itself, unlike epsilon-greedy's fixed share.

The draws are a pure function of (request id, model): the same request id
gives the same draws on any router, so ``Explain`` with the request id of an
answer shows the draw that chose it. ``random.Random`` would cost some 30 µs
to seed per request (Mersenne Twister's state); here a SplitMix64 stream
(Steele, Lea and Flood 2014) seeded from the request id's BLAKE2b hash
gives the uniforms, Marsaglia and Tsang's method (2000) turns them into
gamma variates, and Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
"""

from __future__ import annotations

import hashlib
import math

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_TO_UNIT = 2.0**-53


def seed_of(request_id: str) -> int:
    """A request's 64-bit seed (stable across processes, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "little")


def model_key(model: str) -> int:
    """What a model's stream is offset by (computed once per routing table)."""
    return int.from_bytes(hashlib.blake2b(model.encode(), digest_size=8).digest(), "little")


class Stream:
    """SplitMix64: uniforms in (0, 1) from a 64-bit state."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK

    def uniform(self) -> float:
        self.state = x = (self.state + _GOLDEN) & _MASK
        z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        z ^= z >> 31
        return ((z >> 11) + 0.5) * _TO_UNIT  # never exactly 0 or 1

    def normal(self) -> float:
        # Box-Muller, one of the pair (the other would need state to keep).
        return math.sqrt(-2.0 * math.log(self.uniform())) * math.cos(2.0 * math.pi * self.uniform())

    def gamma(self, shape: float) -> float:
        """Gamma(shape, 1) by Marsaglia and Tsang; shape < 1 boosted by U^(1/shape)."""
        if shape < 1.0:
            return self.gamma(shape + 1.0) * math.pow(self.uniform(), 1.0 / shape)
        d = shape - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        while True:
            x = self.normal()
            v = 1.0 + c * x
            if v <= 0.0:
                continue
            v = v * v * v
            u = self.uniform()
            if u < 1.0 - 0.0331 * x**4 or math.log(u) < 0.5 * x * x + d * (1.0 - v + math.log(v)):
                return d * v

    def beta(self, alpha: float, beta: float) -> float:
        x = self.gamma(alpha)
        y = self.gamma(beta)
        return x / (x + y) if x + y > 0.0 else alpha / (alpha + beta)


def draw(seed: int, key: int, alpha: float, beta: float) -> float:
    """One Beta(alpha, beta) draw for (request seed, model key); alpha, beta > 0."""
    return Stream(seed ^ key).beta(alpha, beta)
