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
A family may cap the stop sequences it takes (``max_stop``: OpenAI's API
refuses more than 4, while the Anthropic Messages door accepts 64): more than
that is a ``stop`` the family cannot honour, by the same rule. A policy's
``spec.parameters`` may say ``drop`` for a parameter instead of skipping:
:func:`without` is the request such a candidate gets.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any

from skyroute.router.providers.types import CLIENT_ERROR, ChatRequest, ProviderError

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


def unhonoured(
    options: Mapping[str, Any],
    table: Table | None,
    stops: int = 0,
    max_stop: int | None = None,
) -> tuple[str, ...]:
    """Every parameter of ``options`` a family with ``table`` cannot honour (none: ``()``).

    ``table`` None: the family takes every parameter as sent (OpenAI's wire).
    ``stops``: how many stop sequences the request has; more than ``max_stop``
    (the family's cap, None: none) is ``stop``, which it cannot honour.
    Selection skips a candidate this names a parameter for, or drops the
    parameter where the policy says so (``decide``).
    """
    out: tuple[str, ...] = ()
    if max_stop is not None and stops > max_stop:
        out = ("stop",)
    if table is None:
        return out
    for name, value in options.items():
        if value is not None and name not in table and value not in _DEFAULTS.get(name, ()):
            out += (name,)
    return out


def without(req: ChatRequest, names: Collection[str]) -> ChatRequest:
    """``req`` without the parameters ``names`` (a policy's ``drop``; ``stop`` too)."""
    return replace(
        req,
        options={k: v for k, v in req.options.items() if k not in names},
        stop=[] if "stop" in names else req.stop,
    )


def translate(options: Mapping[str, Any], table: Table, family: str) -> dict[str, Any]:
    """The family's body fragments for ``options`` (nested by dotted path), or refuse."""
    refused = next(iter(unhonoured(options, table)), None)
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
