"""Serving a decided request: the walk of the candidate chain and what it keeps.

The engine owns everything between a decision and an outcome: the cache
lookup, the attempts along the chain (retries, fallbacks, hedging, stream
commitment), endpoint health (outlier ejection, the retry budget) and the
per-window statistics the control plane learns from. Doors (transports and
the ingress pipeline) call :class:`Engine` and read its records; the engine
calls providers and never a door.

- :mod:`.walk`: the :class:`Engine`: one walk of the chain, unary and streaming.
- :mod:`.records`: what it hands back (attempt trail, served request, stream items).
- :mod:`.hedge`: racing two attempts to their first answer.
- :mod:`.health`: per-endpoint ejection and cool-downs, the retry budget.
- :mod:`.stats`: per-(model, intent) sketches for the learning loop.
"""

from __future__ import annotations

from skyroute.router.engine.records import (
    CANCELLED,
    NO_CANDIDATE,
    AttemptRecord,
    RequestContext,
    Served,
    StreamDone,
    StreamFailed,
    StreamItem,
    StreamStarted,
)
from skyroute.router.engine.walk import Engine

__all__ = [
    "CANCELLED",
    "NO_CANDIDATE",
    "AttemptRecord",
    "Engine",
    "RequestContext",
    "Served",
    "StreamDone",
    "StreamFailed",
    "StreamItem",
    "StreamStarted",
]
