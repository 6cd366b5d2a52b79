"""The Responses API's ``text.format``, as the Chat Completions ``response_format``.

``text: {"format": ...}`` on ``POST /v1/responses`` says what the output text
must be: ``text`` (the default), ``json_object`` (JSON mode) or
``json_schema`` with its ``name``, ``schema``, ``strict`` and ``description``
flat in the format object (where Chat Completions nests them under
``json_schema``). :func:`response_format` gives the Chat form, which the
router's request carries among its options: the OpenAI family receives it as
it is, the others translate or refuse it (:mod:`skyroute.router.providers.options`:
Gemini's ``responseJsonSchema``, a 400 naming ``response_format`` where a
family cannot honour it). :func:`echo` gives the ``text`` object the
response reports back, in the Responses form. Malformed formats are 400s
naming the exact part (``text.format.schema``).
"""

from __future__ import annotations

from typing import Any

from skyroute.router.ingress.codecs.fields import boolean, obj, string
from skyroute.router.ingress.types import invalid

_TYPES = ("text", "json_object", "json_schema")
# The json_schema fields the Chat form nests under ``json_schema``.
_SPEC = ("name", "schema", "strict", "description")
#: At most this many characters in a schema name (OpenAI's limit is 64).
MAX_NAME = 64


def _spec(fmt: dict[str, Any]) -> dict[str, Any]:
    name = string(fmt.get("name"), "text.format.name")
    if not name or len(name) > MAX_NAME:
        raise invalid(f"text.format.name: 1 to {MAX_NAME} characters", "text.format.name")
    spec: dict[str, Any] = {
        "name": name,
        "schema": obj(fmt.get("schema"), "text.format.schema"),
    }
    strict = boolean(fmt.get("strict"), "text.format.strict")
    if strict is not None:
        spec["strict"] = strict
    if fmt.get("description") is not None:
        spec["description"] = string(fmt["description"], "text.format.description")
    return spec


def response_format(text: Any) -> dict[str, Any] | None:
    """The Chat ``response_format`` for a request's ``text`` (None: plain text)."""
    if text is None:
        return None
    fmt = obj(text, "text").get("format")
    if fmt is None:
        return None
    kind = obj(fmt, "text.format").get("type")
    if kind not in _TYPES:
        raise invalid("text.format.type: expected one of " + ", ".join(_TYPES), "text.format.type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": _spec(fmt)}


def echo(response_format: Any) -> dict[str, Any]:
    """The response's ``text`` object for the Chat ``response_format`` a request carries."""
    if not isinstance(response_format, dict):
        return {"format": {"type": "text"}}
    spec = response_format.get("json_schema")
    fmt = {"type": response_format.get("type", "text")}
    if isinstance(spec, dict):
        fmt.update({k: spec[k] for k in _SPEC if k in spec})
    return {"format": fmt}
