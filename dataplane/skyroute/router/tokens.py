"""A cheap prompt-token estimate that holds across scripts, code and tool schemas.

The estimate feeds the context-window filter, the prompt-size rules and cost
scoring, so it must not be off by a factor for any kind of request: the old
one (characters / 4 over text parts) counted a tools-only request as one
token and Chinese at a quarter of its size. No tokenizer runs on the hot
path (the models' own differ anyway); instead the UTF-8 bytes are classed
by one ``bytes.translate`` and counted (C loops, no per-character Python):

- ASCII characters, at 4.3 per token (English prose runs about 4.5, code and
  JSON about 3, which the punctuation term makes up), plus one token per 8
  ASCII punctuation marks;
- characters of three or four UTF-8 bytes (CJK ideographs, kana, hangul,
  full-width forms, Indic and South-East Asian scripts, emoji), one token
  each, except general punctuation and symbols (U+2000 to U+2FFF);
- two-byte characters (accented Latin, Cyrillic, Greek, Hebrew, Arabic, ...)
  and those symbols, at two per token;
- every message's framing and role (4 tokens, as OpenAI counts chat
  messages) and the reply's priming (3);
- the tools' JSON schemas, as their compact JSON text, and the arguments of
  tool calls already in the conversation.

A text longer than 1,536 characters is judged by three samples of it scaled
to its length, so the estimate costs about the same for any prompt size.

Checked against tiktoken's ``cl100k_base`` (tests/router/test_tokens.py: English,
code, Chinese, Japanese and tools-only requests each within 25%); its cost is
measured in ``bench/tokens_bench.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

_ASCII_PER_TOKEN = 4.3
_PUNCT_PER_TOKEN = 8.0
_OTHER_PER_TOKEN = 2.0
PER_MESSAGE = 4  # framing (3) and the role
REPLY_PRIMING = 3
_SAMPLE = 512
_SAMPLED_ABOVE = 3 * _SAMPLE


def _classes() -> bytes:
    """UTF-8 byte -> class: a(scii), p(unctuation), c(ontinuation), o(ther), w(ide)."""
    table = bytearray(b"a" * 256)
    for b in b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~":
        table[b] = ord("p")
    table[0x80:0xC0] = b"c" * 0x40  # continuation bytes
    table[0xC0:0xE0] = b"o" * 0x20  # lead of a two-byte character
    table[0xE0:0xF8] = b"w" * 0x18  # lead of a three- or four-byte character
    table[0xE2] = ord("o")  # U+2000..U+2FFF: punctuation and symbols
    table[0xF8:] = b"c" * 8  # never in UTF-8
    return bytes(table)


_CLASSES = _classes()


def bytes_tokens(data: bytes, chars: int = -1) -> float:
    """Estimated tokens of UTF-8 text of ``chars`` characters, when known (fractional)."""
    if not data:
        return 0.0
    classed = data.translate(_CLASSES)
    punct = classed.count(b"p")
    if data.isascii():
        return len(data) / _ASCII_PER_TOKEN + punct / _PUNCT_PER_TOKEN
    wide, other = classed.count(b"w"), classed.count(b"o")
    if chars < 0:
        chars = len(data) - classed.count(b"c")
    ascii_chars = chars - wide - other  # one lead byte per non-ASCII character
    return (
        ascii_chars / _ASCII_PER_TOKEN + punct / _PUNCT_PER_TOKEN + wide + other / _OTHER_PER_TOKEN
    )


def text_tokens(text: str) -> float:
    """Estimated tokens of one piece of text (fractional; callers round once).

    A long text is judged by three 512-character samples (start, middle,
    end) scaled to its length, so the cost is bounded whatever its size.
    """
    n = len(text)
    if n <= _SAMPLED_ABOVE:
        return bytes_tokens(text.encode("utf-8", "surrogatepass"), n) if text else 0.0
    mid = n // 2
    sample = text[:_SAMPLE] + text[mid - _SAMPLE // 2 : mid + _SAMPLE // 2] + text[-_SAMPLE:]
    return bytes_tokens(sample.encode("utf-8", "surrogatepass"), len(sample)) * n / len(sample)


def received_tokens(text: str) -> int:
    """Completion tokens charged for a stream cut after ``text`` arrived (no usage report)."""
    return int(text_tokens(text) + 0.5) if text else 0


def _content_tokens(content: Any) -> float:
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, list):  # OpenAI content parts: text parts count
        return sum(
            text_tokens(p["text"])
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return 0.0


def calls_tokens(calls: Any) -> float:
    total = 0.0
    if isinstance(calls, list):
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                for key in ("name", "arguments"):
                    value = fn.get(key)
                    if isinstance(value, str):
                        total += text_tokens(value)
    return total


def tools_tokens(tools: Sequence[Mapping[str, Any]]) -> float:
    """Estimated tokens of the tools' schemas, as their compact JSON."""
    if not tools:
        return 0.0
    try:
        return bytes_tokens(orjson.dumps(list(tools)))
    except TypeError:  # not JSON-serialisable: the door rejects it; count nothing here
        return 0.0


def estimate(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] = ()) -> int:
    """Estimated prompt tokens of a chat request (messages and tool schemas)."""
    total = float(REPLY_PRIMING)
    for m in messages:
        total += PER_MESSAGE + _content_tokens(m.get("content"))
        if "tool_calls" in m:
            total += calls_tokens(m["tool_calls"])
    return round(total + tools_tokens(tools))
