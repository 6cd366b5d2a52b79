"""Chat Completions parameters beyond the core, per family: sent on, translated or refused.

A :class:`~.types.ChatRequest` carries every parameter a client sent that has
no field of its own in ``options``, in OpenAI's names. The OpenAI family gets
them all as they are (unknown ones too: OpenAI adds parameters faster than any
gateway). Every other family declares a :data:`Table`: per parameter, a
function giving the family's own ``(path, value)`` pairs, :data:`IGNORE` for a
hint that changes no answer (``user``, ``metadata``, ``service_tier``...), or
nothing, in which case a request that sets the parameter is refused with a
CLIENT_ERROR (a 400 to the client) naming the parameter and the family, never
silently dropped; selection skips the candidates of such families first
(:func:`unhonoured`), so the refusal comes only when no candidate of the
pool can honour it. A parameter at its default value (``n: 1``,
``logprobs: false``, ``response_format: {"type": "text"}``) is never refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from skyroute.router.providers.types import CLIENT_ERROR, ProviderError

# A translation: the parameter's value -> (dotted path in the family's body, value) pairs.
Translate = Callable[[Any], list[tuple[str, Any]]]


def _ignore(value: Any) -> list[tuple[str, Any]]:
    return []


#: A hint the family has no use for and that changes no answer: left out.
IGNORE: Translate = _ignore
Table = Mapping[str, Translate]

# Values that ask for nothing beyond the default: never a reason to refuse.
_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "parallel_tool_calls": (True,),
    "response_format": ({"type": "text"},),
    "modalities": (["text"],),
    "stream_options": ({"include_usage": True}, {"include_usage": False}),
}

#: Reasoning effort as a thinking budget in tokens, for families that take a budget.
THINKING_BUDGET = {"minimal": 0, "low": 1024, "medium": 4096, "high": 16384}


def to(path: str) -> Translate:
    """The value as it is, at ``path``."""
    return lambda value: [(path, value)]


def unhonoured(options: Mapping[str, Any], table: Table | None) -> str | None:
    """The first parameter of ``options`` a family with ``table`` cannot honour, or None.

    ``table`` None: the family takes every parameter as sent (OpenAI's wire).
    Selection skips a candidate this names a parameter for (``decide``).
    """
    if table is None:
        return None
    for name, value in options.items():
        if value is not None and name not in table and value not in _DEFAULTS.get(name, ()):
            return name
    return None


def translate(options: Mapping[str, Any], table: Table, family: str) -> dict[str, Any]:
    """The family's body fragments for ``options`` (nested by dotted path), or refuse."""
    refused = unhonoured(options, table)
    if refused is not None:
        raise ProviderError(
            CLIENT_ERROR, f"{refused}: not supported by the {family} family; remove it", 400
        )
    out: dict[str, Any] = {}
    for name, value in options.items():
        fn = table.get(name)
        if value is None or fn is None:
            continue
        for path, v in fn(value):
            *parents, leaf = path.split(".")
            node = out
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = v
    return out


def merge(body: dict[str, Any], fragments: Mapping[str, Any]) -> None:
    """Put ``fragments`` into ``body``, merging objects one level down."""
    for key, value in fragments.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key].update(value)
        else:
            body[key] = value


def json_schema_of(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema a ``json_schema`` response format asks for (None for JSON mode)."""
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else {"type": "object"}
    return None
