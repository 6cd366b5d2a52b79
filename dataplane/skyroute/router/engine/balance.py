"""Picking one of a model's several endpoints: weighted power of two choices.

A model may be served from several endpoints (regions, deployments,
replicas), each with a weight. The decision picks the model; this module
picks, per request, which of its endpoints goes first and in what order the
others follow if it fails, before the walk moves on to another model:

- two endpoints are drawn at random with probability proportional to their
  weight (Vose's alias table, prebuilt per snapshot: one draw is O(1));
- of the two, the one with fewer **outstanding requests per unit of weight**
  goes first (``load_a * weight_b < load_b * weight_a``, integers); a tie, as
  at no load at all, keeps the first draw, so an idle router spreads requests
  exactly by weight and a busy one steers away from the endpoint that is
  slower to give its requests back (Mitzenmacher's power of two choices);
- an endpoint that is ejected or cooling down (:mod:`.health`) loses to one
  that is not, whatever their load;
- the others follow in declared order from the one after it, wrapping (a
  prebuilt rotation, so failover spreads too); the walk's health ordering
  still moves ejected ones behind the chain's healthy candidates.

Outstanding requests are counted per (model, endpoint) from the moment an
attempt starts until it is over (answered, failed, cancelled or abandoned).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from skyroute.router.table import Candidate, Endpoints

Available = Callable[[Candidate], bool]


def draw(e: Endpoints, u: float) -> int:
    """The endpoint index a uniform ``u`` in [0, 1) draws, by weight (alias method)."""
    n = len(e.prob)
    scaled = u * n
    i = min(int(scaled), n - 1)
    return i if scaled - i < e.prob[i] else e.alias[i]


def choose(
    e: Endpoints, u1: float, u2: float, load: Callable[[Candidate], int], up: Available
) -> int:
    """Power of two choices: of two weighted draws, the less loaded per weight (see above)."""
    i, j = draw(e, u1), draw(e, u2)
    if i == j:
        return i
    a, b = e.rotations[i][0], e.rotations[j][0]
    a_up, b_up = up(a), up(b)
    if a_up != b_up:
        return i if a_up else j
    assert a.site is not None and b.site is not None
    return j if load(b) * a.site.weight < load(a) * b.site.weight else i


class Balancer:
    """Outstanding requests per endpoint, and the per-request failover order of a model.

    ``available(candidate, now)`` says whether an endpoint is in service (not ejected
    or cooling down: :meth:`.health.EndpointHealth.available`), on ``clock``.
    """

    def __init__(
        self,
        available: Callable[[Candidate, float], bool],
        clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self._outstanding: dict[tuple[str, str], int] = {}
        self._available = available
        self._clock = clock
        self._random = (rng or random.Random()).random

    def outstanding(self, c: Candidate) -> int:
        return self._outstanding.get((c.model, c.endpoint_key), 0)

    def acquire(self, c: Candidate) -> None:
        key = (c.model, c.endpoint_key)
        self._outstanding[key] = self._outstanding.get(key, 0) + 1

    def release(self, c: Candidate) -> None:
        key = (c.model, c.endpoint_key)
        left = self._outstanding.get(key, 0) - 1
        if left > 0:
            self._outstanding[key] = left
        else:
            self._outstanding.pop(key, None)

    def order(self, c: Candidate, up: Available | None = None) -> tuple[Candidate, ...]:
        """``c``'s endpoints in the order this request tries them (``(c,)``: one endpoint)."""
        e = c.endpoints
        if e is None:
            return (c,)
        if up is None:
            up = self._up_now()
        return e.rotations[choose(e, self._random(), self._random(), self.outstanding, up)]

    def expand(self, chain: tuple[Candidate, ...]) -> tuple[Candidate, ...]:
        """The decision's chain of models as a chain of endpoints (models keep their order)."""
        if not _several(chain):
            return chain  # the common case, one endpoint per model: nothing to do
        up = self._up_now()
        out: list[Candidate] = []
        for c in chain:
            out.extend(self.order(c, up))
        return tuple(out)

    def _up_now(self) -> Available:
        now, available = self._clock(), self._available
        return lambda c: available(c, now)


def _several(chain: tuple[Candidate, ...]) -> bool:
    """Does a model of ``chain`` have several endpoints? (a plain loop: the hot path's)"""
    for c in chain:  # noqa: SIM110 - a plain loop: any() over a generator costs more here
        if c.endpoints is not None:
            return True
    return False


def every_endpoint(chain: tuple[Candidate, ...]) -> tuple[Candidate, ...]:
    """Each endpoint of each model of ``chain``, in declared order (ejection's pool)."""
    if not _several(chain):
        return chain
    return tuple(one for c in chain for one in (c.endpoints.rotations[0] if c.endpoints else (c,)))
