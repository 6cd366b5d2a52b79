"""The Messages codec and the adapters behind it, without sockets.

What cannot be seen from the SDK side: signed thinking blocks and the
Anthropic-only fields reach an Anthropic upstream byte for byte and no other
family; stop sequences reach every family under its own name; bad input is
refused naming its part; a thinking block in an upstream's answer comes back
first, as it was.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from skyroute.router.ingress.codecs.anthropic_messages import (
    MessageEvents,
    content_blocks,
    decode_messages,
)
from skyroute.router.ingress.codecs.openai_chat import HttpIn
from skyroute.router.ingress.types import Rejection
from skyroute.router.providers import ADAPTERS
from skyroute.router.providers.types import StreamEnd, TextDelta, ThinkingEvent

THINKING = {"type": "thinking", "thinking": "Let me look it up.", "signature": "EqQBCgIYAhIM1g"}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}
BODY: dict[str, Any] = {
    "model": "auto",
    "max_tokens": 1024,
    "system": [{"type": "text", "text": "Be brief."}],
    "thinking": {"type": "enabled", "budget_tokens": 512},
    "top_k": 5,
    "metadata": {"user_id": "u-7"},
    "stop_sequences": ["END"],
    "tools": [{"name": "lookup", "input_schema": {"type": "object", "properties": {}}}],
    "messages": [
        {"role": "user", "content": "Where is order 1?"},
        {
            "role": "assistant",
            "content": [
                THINKING,
                REDACTED,
                {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {"id": 1}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "shipped"}],
        },
    ],
}


def _decode(body: dict[str, Any], **headers: str) -> Any:
    return decode_messages(HttpIn(orjson.dumps(body), headers))


def _upstream(family: str, body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(ADAPTERS[family].encode(_decode(body).chat, "m", False))
    return out


def test_thinking_blocks_reach_anthropic_intact() -> None:
    up = _upstream("anthropic", BODY)
    assert up["messages"][1]["content"][:2] == [THINKING, REDACTED]
    assert up["messages"][1]["content"][2]["type"] == "tool_use"
    assert up["messages"][2]["content"][0]["tool_use_id"] == "toolu_01"
    assert up["thinking"] == BODY["thinking"] and up["top_k"] == 5
    assert up["metadata"] == {"user_id": "u-7"}
    assert up["stop_sequences"] == ["END"] and up["system"] == "Be brief."


@pytest.mark.parametrize("family", ["openai", "gemini"])
def test_other_families_get_no_anthropic_only_fields(family: str) -> None:
    up = _upstream(family, BODY)
    raw = orjson.dumps(up)
    assert b"signature" not in raw and b"redacted_thinking" not in raw and b"top_k" not in raw
    if family == "openai":
        assert up["stop"] == ["END"]
        assert [m["role"] for m in up["messages"]] == ["system", "user", "assistant", "tool"]
        assert up["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"id":1}'
    else:
        assert up["generationConfig"]["stopSequences"] == ["END"]


def test_decoded_context() -> None:
    inbound = _decode(BODY, **{"x-skyroute-tenant": "acme", "idempotency-key": "k1"})
    assert inbound.user == "u-7" and inbound.policy == "auto"
    assert inbound.declared == {"tenant": "acme"} and inbound.idempotency_key == "k1"
    assert inbound.chat.tool_choice is None and inbound.chat.max_tokens == 1024


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document"}]}]},
            "messages.0.content.0",
        ),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
        ({"stop_sequences": ["x"] * 65}, "stop_sequences"),
        ({"stop_sequences": [""]}, "stop_sequences"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools.0"),
        ({"system": [{"type": "image"}]}, "system.0"),
        ({"model": 3}, "model"),
    ],
)
def test_bad_input_names_its_part(patch: dict[str, Any], param: str) -> None:
    with pytest.raises(Rejection) as e:
        _decode({**BODY, **patch})
    assert e.value.status == 400 and e.value.param == param, e.value.message


def test_over_long_beta_header_is_refused() -> None:
    with pytest.raises(Rejection) as e:
        _decode(BODY, **{"anthropic-beta": "x" * 3000})
    assert e.value.param == "anthropic-beta"


def test_answer_puts_upstream_thinking_first() -> None:
    result = ADAPTERS["anthropic"].decode(
        orjson.dumps(
            {
                "content": [THINKING, {"type": "text", "text": "Shipped."}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 9, "output_tokens": 3},
            }
        )
    )
    assert result.thinking == [THINKING]
    rec = {
        "model": "m",
        "content": result.content,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "not json"}}
        ],
        "thinking": result.thinking,
    }
    blocks = content_blocks(rec)
    assert [b["type"] for b in blocks] == ["thinking", "text", "tool_use"]
    assert blocks[0] == THINKING and blocks[1]["text"] == "Shipped."
    assert blocks[2]["input"] == {"_arguments": "not json"}  # kept, not dropped


def test_stream_blocks_are_numbered_in_order() -> None:
    enc = MessageEvents("msg_1", 5)
    frames = [*enc.start("m"), enc.text("a"), enc.text("b")]
    frames.append(enc.tool_call({"id": "c", "function": {"name": "f", "arguments": "{}"}}))
    raw = b"".join(frames).decode()
    events = [orjson.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
    indexed = [(e["type"], e.get("index")) for e in events if "index" in e]
    assert indexed == [
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
    ]


# Anthropic's extended-thinking stream, as documented: a thinking block (its text in
# thinking_delta pieces, then a signature_delta), then the text block.
THINKING_STREAM: list[dict[str, Any]] = [
    {"type": "message_start", "message": {"usage": {"input_tokens": 12, "output_tokens": 1}}},
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Let me "},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "look it up."},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1g"},
    },
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": REDACTED},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "text_delta", "text": "Shipped."},
    },
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 30}},
    {"type": "message_stop"},
]


def test_streamed_thinking_is_one_signed_block_through_the_stream() -> None:
    asm = ADAPTERS["anthropic"].assembler()
    events = [e for ev in THINKING_STREAM for e in asm.feed(orjson.dumps(ev))] + asm.at_eof()
    assert events == [
        ThinkingEvent(THINKING),
        ThinkingEvent(REDACTED),
        TextDelta("Shipped."),
        StreamEnd("stop", 12, 30),
    ]
    # The Messages door streams them on as Anthropic does: reassembled, the same blocks.
    enc = MessageEvents("msg_1", 12)
    frames = [*enc.start("m"), enc.thinking(THINKING), enc.thinking(REDACTED), enc.text("Shipped.")]
    raw = b"".join(frames).decode()
    blocks: dict[int, dict[str, Any]] = {}
    for line in raw.splitlines():
        if not line.startswith("data: "):
            continue
        ev = orjson.loads(line[6:])
        if ev["type"] == "content_block_start":
            blocks[ev["index"]] = dict(ev["content_block"])
        elif ev["type"] == "content_block_delta":
            d = ev["delta"]
            key = {"thinking_delta": "thinking", "signature_delta": "signature"}.get(
                d["type"], "text"
            )
            blocks[ev["index"]][key] = blocks[ev["index"]].get(key, "") + d[key]
    assert [blocks[i] for i in sorted(blocks)] == [
        THINKING,
        REDACTED,
        {"type": "text", "text": "Shipped."},
    ]
