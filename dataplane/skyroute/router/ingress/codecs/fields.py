"""Typed reads of a JSON request's fields, shared by the codecs.

Each read returns the value with its type or raises a 400
:class:`~skyroute.router.ingress.types.Rejection` whose message and
``param`` name the offending part (``messages.2.content.0``), in the words
the Anthropic API uses ("Input should be ..."). The range checks here are the
only ones: every door (Chat Completions' parameters in :mod:`.openai_params`,
Messages, Responses, gRPC) bounds its numbers through :func:`number` and
:func:`integer`.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from skyroute.router.ingress.types import invalid


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object (a 400 naming ``body`` otherwise)."""
    try:
        return obj(orjson.loads(body), "body")
    except orjson.JSONDecodeError as e:
        raise invalid(f"request body is not valid JSON: {e}", "body") from e


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{where}: Input should be an object", where)
    return value


def string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise invalid(f"{where}: Input should be a string", where)
    return value


MAX_INT32 = 2**31 - 1
_SHOWN = 40  # characters of a refused value quoted back in the message


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def number(value: Any, where: str, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    """An optional finite number from ``lo`` to ``hi`` (a bool is not one)."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not lo <= value <= hi
    ):
        span = f" from {lo:g} to {hi:g}" if math.isfinite(lo) or math.isfinite(hi) else ""
        raise invalid(f"{where}: Input should be a number{span}, got {_shown(value)}", where)
    return float(value)


def integer(
    value: Any, where: str, lo: int = 1, hi: int = MAX_INT32, required: bool = False
) -> int | None:
    """An optional (or ``required``) integer from ``lo`` to ``hi`` (a bool is not one).

    A float with no fractional part (``16.0``) is that integer, as JSON Schema
    and the providers' own validators read it; ``16.5`` is refused.
    """
    if value is None and not required:
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        need = (
            "a positive integer" if (lo, hi) == (1, MAX_INT32) else f"an integer from {lo} to {hi}"
        )
        if value is None:
            raise invalid(f"{where}: Field required ({need})", where)
        raise invalid(f"{where}: Input should be {need}, got {_shown(value)}", where)
    return value


def positive_int(value: Any, where: str, required: bool = False) -> int | None:
    """An optional (or ``required``) positive integer."""
    return integer(value, where, required=required)


def boolean(value: Any, where: str) -> bool | None:
    """An optional boolean (``"false"``, a string, is not one)."""
    if value is not None and not isinstance(value, bool):
        raise invalid(f"{where}: Input should be a boolean, got {_shown(value)}", where)
    return value


def policy(data: dict[str, Any]) -> str:
    """The ``model`` field: the RoutingPolicy named, ``auto`` when absent or empty."""
    model = data.get("model", "auto")
    if not isinstance(model, str):
        raise invalid("model: a string naming a RoutingPolicy or 'auto'", "model")
    return model or "auto"
