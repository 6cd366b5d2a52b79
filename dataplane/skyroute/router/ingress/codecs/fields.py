"""Typed reads of a JSON request's fields, shared by the codecs.

Each read returns the value with its type or raises a 400
:class:`~skyroute.router.ingress.types.Rejection` whose message and
``param`` name the offending part (``messages.2.content.0``), in the words
the Anthropic API uses ("Input should be ...").
"""

from __future__ import annotations

from typing import Any

from skyroute.router.ingress.types import invalid


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{where}: Input should be an object", where)
    return value


def string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise invalid(f"{where}: Input should be a string", where)
    return value


def number(value: Any, where: str) -> float | None:
    """An optional number (a bool is not one)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{where}: Input should be a number", where)
    return float(value)


def positive_int(value: Any, where: str, required: bool = False) -> int | None:
    """An optional (or ``required``) positive integer."""
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        need = "Field required (a positive integer)" if required else "a positive integer"
        raise invalid(f"{where}: {need}", where)
    return value


def policy(data: dict[str, Any]) -> str:
    """The ``model`` field: the RoutingPolicy named, ``auto`` when absent or empty."""
    model = data.get("model", "auto")
    if not isinstance(model, str):
        raise invalid("model: a string naming a RoutingPolicy or 'auto'", "model")
    return model or "auto"
