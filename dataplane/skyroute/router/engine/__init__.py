"""Serving a decided request: the walk of the candidate chain and what it keeps.

The engine owns everything between a decision and an outcome: the cache
lookup, the attempts along the chain (retries, fallbacks, hedging, stream
commitment), endpoint health (outlier ejection, the retry budget) and the
per-window statistics the control plane learns from. Doors (transports and
the ingress pipeline) call :class:`Engine` and read its records; the engine
calls providers and never a door.

- :mod:`.walk`: the :class:`Engine`, unary and streaming.
- :mod:`.stream_hedge`: racing two streams up to their first event.
- :mod:`.health`: per-endpoint ejection and cool-downs, the retry budget.
- :mod:`.stats`: per-(model, intent) sketches for the learning loop.
"""

from __future__ import annotations

from skyroute.router.engine.walk import (
    CANCELLED,
    NO_CANDIDATE,
    AttemptRecord,
    Engine,
    RequestContext,
    Served,
    StreamDone,
    StreamFailed,
    StreamItem,
    StreamStarted,
)

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
