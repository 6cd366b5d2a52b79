"""Structured events: the router's lifecycle, one event per log line.

The router logs its lifecycle, never its requests: start and stop, snapshots
applied or rejected, the control-plane and outcome streams going down, a
cache or idempotency backend degrading. A per-request access line would cost
hot-path time and is what metrics and spans are for; and no line ever holds
prompt or completion text (see :mod:`.content`, whose opt-in concerns spans
only). The line format is the CLI's (``skyroute.cli.logs``), configured
before ``skyroute router`` starts; the data plane does not import the control
plane, so it has this one helper of its own.
"""

from __future__ import annotations

import logging

# The record attribute the CLI's formatters read the fields from (skyroute.cli.logs).
FIELDS = "skyroute_fields"


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: object) -> None:
    """Log the event ``name`` with ``fields`` as its structured fields."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={FIELDS: fields})
