"""Signals: the facts about a request that routing decides on, declared once.

- :mod:`.registry`: every signal (name, type, origin, header and gRPC field,
  the RoutingPolicy field that matches on it);
- :mod:`.extract`: :class:`Signals` and extraction from a conversation;
- :mod:`.readme`: the README's signal table, rendered from the registry.

This package is pure (no I/O, nothing above the routing table's base): the
doors, the decision code and the control plane's policy tests all use it.
"""

from __future__ import annotations

from skyroute.router.signals.extract import Signals, content_text, signals_from_messages
from skyroute.router.signals.registry import (
    DECLARED,
    MAX_DECLARED_CHARS,
    RULE_SETS,
    SIGNALS,
    Signal,
    SignalError,
    attr_of,
    check_declared,
    read_declared,
)

__all__ = [
    "DECLARED",
    "MAX_DECLARED_CHARS",
    "RULE_SETS",
    "SIGNALS",
    "Signal",
    "SignalError",
    "Signals",
    "attr_of",
    "check_declared",
    "content_text",
    "read_declared",
    "signals_from_messages",
]
