"""What the simulated model says: deterministic text and schema-shaped tool arguments.

The text of an answer is ``"[<model>] "`` followed by words taken from one
long filler text built once at import, starting at an offset derived from
the prompt's hash. Slicing a prebuilt string by precomputed word offsets
makes an answer of any length cost one slice instead of a loop over words,
and makes the answer a pure function of (model, prompt, length): tests can
tell which model answered, and a cache test sees identical answers for
identical prompts.

Parameters that change an answer are honoured so a test can tell a
parameter the router passed from one it dropped: ``seed`` moves the answer's
offset (the same seed and prompt give the same text, another seed other
text), stop sequences cut the text before the first one found
(:func:`stop_at`), ``n`` asks for more choices (:func:`variant`, each its
own text) and log probabilities are a pure function of each token and its
position (:func:`token_logprobs`).

Tool-call arguments are synthesised from the first offered tool's JSON
Schema: every required property gets a plausible value of its declared type
(the first ``enum`` value when there is one), recursively for objects, so
that a client validating arguments against its own schema accepts them.
"""

from __future__ import annotations

import math
import re
import secrets
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

_VOCAB = (
    "order",
    "refund",
    "shipping",
    "account",
    "password",
    "plan",
    "invoice",
    "ticket",
    "update",
    "status",
    "customer",
    "support",
    "delivery",
    "return",
    "policy",
    "price",
    "seat",
    "team",
    "upgrade",
    "billing",
    "payment",
    "card",
    "address",
    "tracking",
    "warehouse",
    "item",
    "cart",
    "discount",
    "coupon",
    "store",
    "product",
    "review",
    "rating",
    "message",
    "the",
    "a",
    "to",
    "for",
    "with",
    "your",
    "we",
    "can",
    "please",
    "check",
    "this",
    "that",
    "it",
    "is",
    "will",
    "be",
    "now",
    "today",
    "soon",
    "thanks",
    "here",
    "next",
    "step",
    "confirm",
    "details",
    "help",
    "request",
    "number",
    "email",
    "reset",
    "link",
    "sent",
)
_FILLER_WORDS = 16384
_START_SPAN = 4096
_MAX_WORDS = _FILLER_WORDS - _START_SPAN


def _build_filler() -> tuple[str, list[int]]:
    words: list[str] = []
    x = 2463534242
    for _ in range(_FILLER_WORDS + 1):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        words.append(_VOCAB[x % len(_VOCAB)])
    offsets: list[int] = []
    pos = 0
    for w in words:
        offsets.append(pos)
        pos += len(w) + 1
    return " ".join(words) + " ", offsets


_FILLER, _OFFSETS = _build_filler()


def prompt_hash(text: str) -> int:
    """A stable 32-bit hash of the prompt text (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


@dataclass(slots=True)
class Answer:
    """A successful answer, in neutral form; each wire module renders it."""

    model: str
    text: str  # full text ("" for a tool call)
    pieces: list[str]  # text split into stream chunks (concatenation == text)
    tool_name: str | None
    tool_args: dict[str, Any] | None
    tool_args_json: str  # "" for text answers
    prompt_tokens: int
    completion_tokens: int
    truncated: bool
    # The stop sequence the text was cut at (stop_at), or None.
    stop_sequence: str | None = None
    # Choices 1..n-1 when ``n`` > 1 (this answer is choice 0); only OpenAI's wire has them.
    alternatives: list[Answer] = field(default_factory=list)

    @property
    def is_tool(self) -> bool:
        return self.tool_name is not None

    def arg_pieces(self, parts: int = 3) -> list[str]:
        """The tool arguments JSON cut into a few pieces, as providers stream it."""
        s = self.tool_args_json
        step = max(1, -(-len(s) // parts))
        return [s[i : i + step] for i in range(0, len(s), step)] or [""]


def text_answer(
    model: str, phash: int, n_tokens: int, chunk_tokens: int, prompt_tokens: int, truncated: bool
) -> Answer:
    prefix = f"[{model}] "
    words = min(max(n_tokens, 1), _MAX_WORDS)
    start = phash % _START_SPAN
    base = _OFFSETS[start]
    body = _FILLER[base : _OFFSETS[start + words] - 1]
    pieces = [
        body[_OFFSETS[start + i] - base : _OFFSETS[start + min(i + chunk_tokens, words)] - base]
        for i in range(0, words, chunk_tokens)
    ]
    if pieces:
        pieces[0] = prefix + pieces[0]
    return Answer(model, prefix + body, pieces, None, None, "", prompt_tokens, n_tokens, truncated)


def tool_answer(
    model: str, tool_name: str, schema: Any, prompt_tokens: int, n_tokens: int
) -> Answer:
    args = synth_object(schema if isinstance(schema, dict) else {}, 0)
    args_json = orjson.dumps(args).decode()
    tokens = max(1, min(n_tokens, len(args_json) // 4 + 8))
    return Answer(model, "", [], tool_name, args, args_json, prompt_tokens, tokens, False)


def json_answer(model: str, schema: dict[str, Any], prompt_tokens: int) -> Answer:
    """JSON mode: a text answer that is a JSON object valid for ``schema`` ({} for any object)."""
    text = orjson.dumps(synth_object(schema, 0) if schema else {"answer": f"[{model}]"}).decode()
    tokens = max(1, len(text) // 4 + 1)
    return Answer(model, text, [text], None, None, "", prompt_tokens, tokens, False)


def seeded(phash: int, seed: int | None) -> int:
    """The answer's hash under a ``seed``: the prompt's own without one."""
    return phash if seed is None else zlib.crc32(b"seed:%d" % seed, phash)


def variant(phash: int, choice: int) -> int:
    """The hash choice ``choice`` (``n`` > 1) answers from: choice 0 is the request's own."""
    return phash if choice == 0 else zlib.crc32(b"choice:%d" % choice, phash)


def stop_at(answer: Answer, stops: tuple[str, ...]) -> Answer:
    """The answer cut before the first of ``stops`` its text holds (unchanged if none)."""
    if answer.is_tool or not stops:
        return answer
    found = [(i, s) for s in stops if s and (i := answer.text.find(s)) >= 0]
    if not found:
        return answer
    cut, stop = min(found)
    pieces: list[str] = []
    left = cut
    for piece in answer.pieces:
        if left <= 0:
            break
        pieces.append(piece[:left])
        left -= len(piece)
    text = answer.text[:cut]
    tokens = max(1, len(TOKEN.findall(text)))
    return replace(
        answer,
        text=text,
        pieces=pieces,
        completion_tokens=min(tokens, answer.completion_tokens),
        truncated=False,
        stop_sequence=stop,
    )


#: A token of a simulated answer: a word and the spaces after it (joined, they are the text).
TOKEN = re.compile(r"\S+\s*|\s+")


def _logprob(token: str, position: int) -> float:
    """A deterministic log probability in [-2.5, -0.01] for ``token`` at ``position``."""
    h = zlib.crc32(b"%d:" % position + token.encode("utf-8", "surrogatepass"))
    return -round(0.01 + (h % 2490) / 1000, 4)


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def token_logprobs(text: str, top: int, start: int = 0) -> list[dict[str, Any]]:
    """OpenAI's ``logprobs.content`` for ``text``: one entry per token, each with ``top``
    alternatives (the token itself first, the most likely), positions from ``start``."""
    out: list[dict[str, Any]] = []
    for i, token in enumerate(TOKEN.findall(text), start):
        lp = _logprob(token, i)
        alts = [_entry(token, lp)]
        rest = [w for w in _VOCAB if w + " " != token and w != token.strip()]
        for k in range(1, top):
            word = rest[(zlib.crc32(token.encode()) + k) % len(rest)]
            alts.append(_entry(word + " ", round(lp - math.log1p(k), 4)))
        out.append({**_entry(token, lp), "top_logprobs": alts[:top]})
    return out


def synth_object(schema: dict[str, Any], depth: int) -> dict[str, Any]:
    props = schema.get("properties")
    if not isinstance(props, dict):
        return {}
    required = schema.get("required")
    names = [n for n in required if n in props] if isinstance(required, list) else []
    return {name: synth_value(props[name], name, depth + 1) for name in names}


def synth_value(schema: Any, name: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > 8:
        return f"sim-{name}"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return synth_value(options[0], name, depth + 1)
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = str(kind).lower()  # Gemini schemas spell types in upper case
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "array":
        items = schema.get("items")
        return [synth_value(items, name, depth + 1)] if isinstance(items, dict) else []
    if kind == "object":
        return synth_object(schema, depth)
    fmt = schema.get("format")
    if fmt == "date":
        return "2026-01-15"
    if fmt == "date-time":
        return "2026-01-15T10:00:00Z"
    if fmt == "email":
        return "customer@example.com"
    return f"sim-{name}"


def new_id(prefix: str) -> str:
    """A fresh provider-style id (``call_…``, ``toolu_…``, ``msg_…``)."""
    return prefix + secrets.token_hex(12)
