"""Structured events: the control plane's audit trail, one event per log line.

Every compile, push, ACK, NACK, rejection and rollout step is an event (a
name and typed fields) that an operator filters on or a test parses. How the
lines look (JSON by default, logfmt or text) is decided by the process that
runs the control plane: the CLI configures logging (``skyroute.cli.logs``)
before it starts ``skyroute control`` or ``skyroute operator``.
"""

from __future__ import annotations

import logging

# The record attribute the CLI's formatters read the fields from (skyroute.cli.logs).
FIELDS = "skyroute_fields"


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: object) -> None:
    """Log the event ``name`` with ``fields`` as its structured fields."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={FIELDS: fields})
