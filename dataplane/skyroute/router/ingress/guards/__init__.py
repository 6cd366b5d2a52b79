"""Guards: identity and limits at the router door, run on every decoded request.

``keys`` verifies API keys against digests, ``sa_tokens`` verifies
ServiceAccount JWTs, ``tenants`` holds the compiled tenant rules,
``limits`` reserves and settles every rate limit, concurrency limit and
budget of a request in one atomic step (Redis or in-process).

Identity (who is calling), limits (budgets, rate limits, sizes) and input
checks that are not one API's wire format go here, one module per guard.
The pipeline runs :data:`GUARDS` in order on the decoded
:class:`~skyroute.router.ingress.types.Inbound` request, so every door gets
every guard; a guard refuses by raising
:class:`~skyroute.router.ingress.types.Rejection`. Load shedding (requests in
flight) runs before decoding, in the pipeline itself, because it must cost
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # the guard modules above must not import the pipeline's types at runtime
    from skyroute.router.ingress.types import Inbound

Guard = Callable[["Inbound"], None]

#: The guards every request passes, in order (identity and limits are wired in here).
GUARDS: Final[tuple[Guard, ...]] = ()
