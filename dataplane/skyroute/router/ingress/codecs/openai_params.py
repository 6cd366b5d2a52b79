"""Chat Completions request parameters checked as OpenAI checks them, and sorted.

:func:`check` validates types, ranges and shapes (``stream`` a boolean,
``temperature`` 0-2, ``top_p`` 0-1, ``n`` at least 1, message content parts,
``response_format``...), raising a 400 whose ``param`` names the exact path
(``messages[2].content[0].text``). :func:`options` returns every parameter
without a field of its own in :class:`~skyroute.router.providers.types.ChatRequest`,
for the adapters to send on, translate or refuse per family
(:mod:`skyroute.router.providers.options`); nothing is dropped here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skyroute.router.ingress.codecs import fields
from skyroute.router.ingress.types import invalid

#: Parameters with a ChatRequest field (or read by the router itself): not options.
CORE = frozenset(
    {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "stop",
        "stream",
        "stream_options",
    }
)
MAX_STOP = 4  # OpenAI's limit on stop sequences
#: Number parameters and their ranges (also the OpenAPI document's bounds).
RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
#: Integer parameters and their ranges.
INTS: dict[str, tuple[int, int]] = {
    "n": (1, 128),
    "top_logprobs": (0, 20),
    "max_tokens": (1, 2**31 - 1),
    "max_completion_tokens": (1, 2**31 - 1),
    "seed": (-(2**63), 2**63 - 1),
}
#: Boolean parameters (a string "false" is refused).
BOOLS = ("stream", "logprobs", "parallel_tool_calls", "store")
#: ``response_format.type`` values.
FORMATS = ("text", "json_object", "json_schema")
#: Content part types that carry text, and the field holding it.
PART_TEXT = {"text": "text", "input_text": "text", "refusal": "refusal"}
#: The message roles Chat Completions takes (every door's messages are checked against them).
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
#: Reasoning efforts (Chat ``reasoning_effort``, Responses ``reasoning.effort``).
EFFORTS = ("minimal", "low", "medium", "high")
# Parameters skyroute cannot yet carry back to the client: refused, not silently lost.
UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    "n": lambda v: v != 1,
    "logprobs": lambda v: v is True,
    "top_logprobs": lambda v: True,
}


def _content(content: Any, where: str) -> None:
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid(f"'{where}' must be a string or an array of content parts", where)
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid(f"'{at}' must be an object with a string 'type'", f"{at}.type")
        key = PART_TEXT.get(part["type"])
        if key is not None and not isinstance(part.get(key), str):
            raise invalid(f"'{at}.{key}' must be a string", f"{at}.{key}")


def effort(value: Any, where: str) -> str | None:
    """A reasoning effort, or None when absent; anything else is a 400 naming ``where``."""
    if value is not None and value not in EFFORTS:
        raise invalid(f"'{where}' must be one of " + ", ".join(EFFORTS), where)
    return value  # type: ignore[no-any-return]


def messages(turns: list[Any]) -> None:
    """Each message an object with one of OpenAI's roles and well-formed content."""
    for i, m in enumerate(turns):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise invalid(f"'{where}.role' must be one of " + ", ".join(ROLES), f"{where}.role")
        _content(m.get("content"), f"{where}.content")


def _response_format(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or value.get("type") not in FORMATS:
        raise invalid(
            "'response_format' must be an object whose 'type' is one of " + ", ".join(FORMATS),
            "response_format.type",
        )
    if value["type"] == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise invalid(
                "'response_format.json_schema' must be an object with a string 'name'",
                "response_format.json_schema.name",
            )
        if spec.get("schema") is not None and not isinstance(spec["schema"], dict):
            raise invalid(
                "'response_format.json_schema.schema' must be an object",
                "response_format.json_schema.schema",
            )


def stop(value: Any) -> list[str]:
    """``stop`` as a list: a string, or an array of at most four strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if (
        not isinstance(value, list)
        or len(value) > MAX_STOP
        or not all(isinstance(s, str) for s in value)
    ):
        raise invalid(f"'stop' must be a string or an array of at most {MAX_STOP} strings", "stop")
    return value


def check(data: dict[str, Any]) -> None:
    """Raise a 400 naming the first parameter OpenAI would refuse (messages checked first).

    Integer parameters are left in ``data`` as ints (``16.0`` becomes ``16``).
    """
    messages(data["messages"])
    for name, (lo, hi) in RANGES.items():
        fields.number(data.get(name), name, lo, hi)
    for name, (ilo, ihi) in INTS.items():
        if data.get(name) is not None:  # 16.0 goes on as 16
            data[name] = fields.integer(data[name], name, ilo, ihi)
    for name in BOOLS:
        fields.boolean(data.get(name), name)
    _response_format(data.get("response_format"))
    effort(data.get("reasoning_effort"), "reasoning_effort")
    for name, refused in UNSUPPORTED.items():
        if data.get(name) is not None and refused(data[name]):
            raise invalid(
                f"'{name}' is not supported by skyroute yet (one choice, no log probabilities)",
                name,
            )


def options(data: dict[str, Any]) -> dict[str, Any]:
    """Every parameter without a ChatRequest field of its own, as the client sent it."""
    return {k: v for k, v in data.items() if k not in CORE and v is not None}
