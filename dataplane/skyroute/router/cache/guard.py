"""Which requests may touch the cache at all: the refusals that come before any key.

The policy already limited caching to repeatable intents with no tools
offered (``Decision.cacheable``). This module adds the refusals that depend
on the request's content, and they hold whatever the policy says:

- **Tool use.** Tools offered, a ``tool_choice``, or tool traffic earlier in
  the conversation (a ``tool`` message, an assistant turn with
  ``tool_calls``): the answer depends on live data or has side effects, so
  predicted tool use is not low and nothing is served or stored.
- **Personal data.** Any message that looks like it carries personal or
  secret data: an e-mail address, a phone number or any run of seven or more
  digits (card, account, order, tracking numbers, dates of birth), an IBAN,
  an IP address, a long letter-and-digit identifier, a street address, an
  API key or bearer token, a URL with a query string, or phrases such as
  "my name is" and "my password is". The answer to such a question is about
  one person, and a semantic neighbour ("order 1234567" / "order 7654321")
  must never receive it. The check is deliberately broad: a false alarm
  only costs a cache miss.
- **Shape.** The last message must be a user message with text; anything
  else (an assistant prefill, an empty question) is not a question to key on.

Answers are checked too (:func:`answer_refusal`): an upstream answer that
carries personal data is not stored, so it can never be replayed.

A no-cache directive from the client is parsed by :func:`cache_directive`
(``Cache-Control: no-cache`` / ``no-store`` / ``max-age=0``, ``Pragma:
no-cache``).
"""

from __future__ import annotations

import re
from typing import Any

# One pattern per kind, each with a cheap precondition on the text; the first
# kind found names the refusal reason.
_MARKERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    (
        "secret",
        re.compile(
            r"\b(?:sk|pk|rk|ghp|gho|xox[abp])[-_][A-Za-z0-9_-]{12,}|\bbearer\s+[A-Za-z0-9._~+/-]{12,}"
            r"|\b(?:password|passcode|pin|api key|token|secret)\s+(?:is|was|=|:)\s*\S+",
            re.IGNORECASE,
        ),
    ),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}\b", re.IGNORECASE)),
    ("ip_address", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")),
    # Phone, card, account, order, tracking numbers, dates: 7+ digits with separators.
    ("number", re.compile(r"\+?\d(?:[\s().\-/]*\d){6,}")),
    # Letters and at least four digits in one 8+ character token (checked in _identifier).
    ("identifier", re.compile(r"[A-Za-z0-9-]{8,}")),
    (
        "address",
        re.compile(
            r"\b\d{1,5}\s+(?:[A-Za-z]+\s+){1,3}(?:street|st|avenue|ave|road|rd|boulevard|blvd|"
            r"lane|ln|drive|dr|court|ct|way|place|pl)\b",
            re.IGNORECASE,
        ),
    ),
    ("url_query", re.compile(r"https?://\S+\?\S+", re.IGNORECASE)),
    (
        "self_identification",
        re.compile(
            r"\bmy (?:name|full name|address|home address|email|e-mail|phone number|"
            r"date of birth|birthday|ssn|social security number|account number|"
            r"card number|passport number|license number|iban) (?:is|was)\b",
            re.IGNORECASE,
        ),
    ),
)
_SECRET_HINTS = (
    "sk-",
    "sk_",
    "pk-",
    "pk_",
    "rk-",
    "rk_",
    "ghp_",
    "gho_",
    "xox",
    "bearer",
    "password",
    "passcode",
    "pin",
    "api key",
    "token",
    "secret",
)
_DIGIT = re.compile(r"\d")
_MEMO: dict[str, str | None] = {}
_MEMO_LIMIT = 512
_MEMO_MIN_LEN = 200  # long texts (system prompts) repeat verbatim: remember their verdict


def personal_data(text: str) -> str | None:
    """The kind of personal or secret data ``text`` seems to carry, or None."""
    if len(text) >= _MEMO_MIN_LEN:
        if text in _MEMO:
            return _MEMO[text]
        kind = _scan(text)
        if len(_MEMO) >= _MEMO_LIMIT:
            _MEMO.clear()
        _MEMO[text] = kind
        return kind
    return _scan(text)


def _identifier(token: str) -> bool:
    digits = sum(c.isdigit() for c in token)
    return digits >= 4 and any(c.isalpha() for c in token)


def _scan(text: str) -> str | None:
    low = text.lower()
    has_digit = _DIGIT.search(text) is not None
    wanted = {
        "email": "@" in text,
        "secret": any(h in low for h in _SECRET_HINTS),
        "iban": has_digit,
        "ip_address": has_digit,
        "number": has_digit,
        "identifier": has_digit,
        "address": has_digit,
        "url_query": "http" in low,
        "self_identification": "my " in low,
    }
    for kind, pattern in _MARKERS:
        if not wanted[kind]:
            continue
        if kind == "identifier":
            if any(_identifier(t) for t in pattern.findall(text)):
                return kind
        elif pattern.search(text) is not None:
            return kind
    return None


def message_text(content: Any) -> str:
    """The text of an OpenAI message content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _non_text_parts(content: Any) -> bool:
    return isinstance(content, list) and any(
        not isinstance(p, dict) or p.get("type") != "text" for p in content
    )


def request_refusal(
    messages: list[dict[str, Any]], tools: list[Any], tool_choice: Any
) -> str | None:
    """Why this request must not use the cache, or None if it may."""
    if tools:
        return "tools"
    if tool_choice not in (None, "none"):
        return "tool_choice"
    if not messages or messages[-1].get("role") != "user":
        return "last_message_not_user"
    for m in messages:
        if m.get("role") == "tool" or m.get("tool_calls") or m.get("function_call"):
            return "tool_messages"
        content = m.get("content")
        if _non_text_parts(content):
            return "non_text_content"  # images, audio, files: not keyed by text
        kind = personal_data(message_text(content))
        if kind is not None:
            return "personal_data:" + kind
    if not message_text(messages[-1].get("content")).strip():
        return "empty_question"
    return None


def answer_refusal(
    content: str,
    tool_calls: list[Any],
    finish_reason: str,
    thinking: list[dict[str, Any]] | None = None,
) -> str | None:
    """Why an upstream answer must not be stored, or None if it may.

    Its thinking blocks (kept and replayed with it) are checked for personal data
    like its text.
    """
    if tool_calls:
        return "answer_tool_calls"
    if finish_reason != "stop":
        return "answer_not_complete"
    if not content.strip():
        return "answer_empty"
    kind = personal_data(content)
    for block in thinking or ():
        if kind is None:
            kind = personal_data(str(block.get("thinking", "")))
    return None if kind is None else "answer_personal_data:" + kind


def cache_directive(cache_control: str, pragma: str = "") -> tuple[bool, bool]:
    """``(no_lookup, no_store)`` from request headers.

    ``no-cache`` and ``max-age=0`` forbid serving from cache; ``no-store``
    forbids both serving and storing (the request may hold what the client
    does not want kept).
    """
    directives = {d.strip().lower() for d in cache_control.split(",") if d.strip()}
    no_store = "no-store" in directives
    no_lookup = (
        no_store
        or "no-cache" in directives
        or "max-age=0" in directives
        or "no-cache" in pragma.lower()
    )
    return no_lookup, no_store
