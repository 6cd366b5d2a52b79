"""Whether prompt and completion text may leave the router in telemetry, and how.

By default it never does: metrics carry labels only (policy, pool, model,
intent, provider, error class), spans carry the same plus counts and costs,
and the router logs no request content. Prompts hold customers' personal
data and secrets; telemetry pipelines are read by many more people, and kept
far longer, than the requests themselves.

For debugging a routing decision it can help to see the text, so there is an
explicit opt-in, ``SKYROUTE_LOG_CONTENT``:

- ``off`` (the default, also when unset): nothing;
- ``redacted``: the messages and the answer are added to the request span as
  ``gen_ai.input.messages`` / ``gen_ai.output.messages``, with e-mail
  addresses, runs of four or more digits (phone, card and account numbers)
  and long tokens that look like keys masked, each text cut to 256 characters;
- ``full``: the same attributes, unmasked and uncut. Only for a test bed.

Any other value stops the router at start-up with a message naming the
variable, rather than silently choosing one of the above.
"""

from __future__ import annotations

import os
import re
from typing import Any

import orjson

ENV = "SKYROUTE_LOG_CONTENT"
MODES = ("off", "redacted", "full")
MAX_CHARS = 256

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DIGITS = re.compile(r"\d[\d \-]{2,}\d")
_KEYLIKE = re.compile(r"\b[A-Za-z0-9_\-]{32,}\b")


def mode(env: dict[str, str] | None = None) -> str:
    """The configured mode; a clear error for anything but off, redacted or full."""
    raw = (env if env is not None else os.environ).get(ENV, "").strip().lower()
    if raw in ("", "0", "false", "none"):
        return "off"
    if raw not in MODES:
        raise SystemExit(
            f"{ENV}={raw!r} is not one of {', '.join(MODES)} "
            "(prompt text in telemetry is off unless explicitly enabled)"
        )
    return raw


def redact(text: str) -> str:
    text = _EMAIL.sub("[email]", text)
    text = _KEYLIKE.sub("[secret]", text)
    text = _DIGITS.sub(
        lambda m: "[digits]" if sum(c.isdigit() for c in m.group()) >= 4 else m.group(), text
    )
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + "…"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def render_messages(messages: list[dict[str, Any]], how: str) -> str:
    """Messages as the JSON string a span attribute holds (``how`` is redacted or full)."""
    out = []
    for m in messages:
        text = _text(m.get("content"))
        out.append(
            {"role": str(m.get("role", "")), "content": redact(text) if how == "redacted" else text}
        )
    return orjson.dumps(out).decode()


def render_answer(text: str, how: str) -> str:
    return orjson.dumps(
        [{"role": "assistant", "content": redact(text) if how == "redacted" else text}]
    ).decode()
