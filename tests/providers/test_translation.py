"""Pure translation tests: no sockets. Tool-call ids and names must survive every family."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyroute.router.providers import ADAPTERS, prepared
from skyroute.router.providers.common import fit_id
from skyroute.router.providers.errors import classify_status, parse_retry_after
from skyroute.router.providers.gemini_adapter import clean_schema
from skyroute.router.providers.sse import SSEDecoder
from skyroute.router.providers.types import (
    AUTH,
    CLIENT_ERROR,
    CONTENT_FILTER,
    CONTEXT_LENGTH,
    NOT_FOUND,
    RATE_LIMITED,
    SERVER_ERROR,
    ChatRequest,
    ProviderError,
    StreamEnd,
    Target,
    TextDelta,
    ToolCallEvent,
)

LONG_ID = "toolu_" + "x" * 50  # longer than OpenAI's 40-character limit
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "find",
            "parameters": {
                "type": "object",
                "additionalProperties": False,
                "$schema": "x",
                "properties": {"q": {"type": ["string", "null"]}},
                "required": ["q"],
            },
        },
    }
]

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are AcmeShop support."},
    {"role": "user", "content": "Where are orders 1 and 2?"},
    {
        "role": "assistant",
        "content": "Checking both.",
        "tool_calls": [
            {
                "id": "call_one",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "1"}'},
            },
            {
                "id": LONG_ID,
                "type": "function",
                "function": {"name": "lookup_v2", "arguments": '{"q": "2"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_one", "content": '{"status": "shipped"}'},
    {"role": "tool", "tool_call_id": LONG_ID, "content": "delayed"},
    {"role": "user", "content": [{"type": "text", "text": "Thanks, and the refund?"}]},
]


def encode(provider: str, req: ChatRequest, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(ADAPTERS[provider].encode(req, "m", stream))
    return body


def test_openai_fits_long_ids_consistently() -> None:
    body = encode("openai", ChatRequest(CONVERSATION, tools=TOOLS, max_tokens=50), stream=True)
    calls = body["messages"][2]["tool_calls"]
    results = [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"]
    assert [c["id"] for c in calls] == results
    assert calls[0]["id"] == "call_one" and all(len(i) <= 40 for i in results)
    assert body["max_completion_tokens"] == 50
    assert body["stream_options"] == {"include_usage": True}
    assert CONVERSATION[2]["tool_calls"][1]["id"] == LONG_ID  # the request is not mutated


def test_openai_passes_messages_through_when_ids_fit() -> None:
    req = ChatRequest(CONVERSATION[:2])
    assert encode("openai", req)["messages"] == CONVERSATION[:2]


def test_anthropic_tool_use_and_results_match() -> None:
    body = encode("anthropic", ChatRequest(CONVERSATION, tools=TOOLS, tool_choice="required"))
    assert body["system"] == "You are AcmeShop support."
    assert body["max_tokens"] == 4096
    assert [t["role"] for t in body["messages"]] == ["user", "assistant", "user"]
    assistant = body["messages"][1]["content"]
    assert assistant[0] == {"type": "text", "text": "Checking both."}
    uses = [b for b in assistant if b["type"] == "tool_use"]
    assert uses[0]["input"] == {"q": "1"} and uses[1]["name"] == "lookup_v2"
    last = body["messages"][2]["content"]
    results = [b for b in last if b["type"] == "tool_result"]
    assert [r["tool_use_id"] for r in results] == [u["id"] for u in uses]
    assert last[-1] == {"type": "text", "text": "Thanks, and the refund?"}
    assert body["tools"][0]["input_schema"] == TOOLS[0]["function"]["parameters"]
    assert body["tool_choice"] == {"type": "any"}


def test_gemini_function_responses_match_call_names() -> None:
    body = encode(
        "gemini",
        ChatRequest(
            CONVERSATION,
            tools=TOOLS,
            max_tokens=9,
            tool_choice={"type": "function", "function": {"name": "lookup"}},
        ),
    )
    assert body["systemInstruction"] == {"parts": [{"text": "You are AcmeShop support."}]}
    roles = [c["role"] for c in body["contents"]]
    assert roles == ["user", "model", "user"]
    calls = [p["functionCall"] for p in body["contents"][1]["parts"] if "functionCall" in p]
    replies = [
        p["functionResponse"] for p in body["contents"][2]["parts"] if "functionResponse" in p
    ]
    assert [c["name"] for c in calls] == [r["name"] for r in replies] == ["lookup", "lookup_v2"]
    assert replies[0]["response"] == {"status": "shipped"}
    assert replies[1]["response"] == {"result": "delayed"}
    decl = body["tools"][0]["functionDeclarations"][0]
    assert decl["parameters"] == {
        "type": "OBJECT",
        "required": ["q"],
        "properties": {"q": {"type": "STRING", "nullable": True}},
    }
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}
    }
    assert body["generationConfig"] == {"maxOutputTokens": 9}


def test_gemini_unknown_tool_call_id_names_the_message() -> None:
    msgs = [
        {"role": "user", "content": "x"},
        {"role": "tool", "tool_call_id": "nope", "content": "y"},
    ]
    with pytest.raises(ProviderError) as err:
        encode("gemini", ChatRequest(msgs))
    assert err.value.error_class == CLIENT_ERROR and "messages[1]" in err.value.message


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_bad_arguments_json_names_the_call(provider: str) -> None:
    msgs = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
            ],
        },
    ]
    with pytest.raises(ProviderError) as err:
        encode(provider, ChatRequest(msgs))
    assert err.value.error_class == CLIENT_ERROR
    assert "messages[1].tool_calls[0]" in err.value.message


@given(st.text(min_size=0, max_size=80))
def test_fit_id_is_stable_and_valid(raw: str) -> None:
    fitted = fit_id(raw)
    assert fitted == fit_id(raw)
    assert 1 <= len(fitted) <= 40
    assert all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in fitted)


def test_fit_id_keeps_good_ids_and_separates_bad_ones() -> None:
    assert fit_id("call_abc-1") == "call_abc-1"
    assert fit_id("a:b") != fit_id("a.b")


@given(
    st.lists(st.binary(min_size=0, max_size=30), min_size=1, max_size=8),
    st.integers(min_value=1, max_value=7),
)
def test_sse_decoder_is_split_agnostic(payloads: list[bytes], step: int) -> None:
    clean = [p.replace(b"\n", b"").replace(b"\r", b"") or b"x" for p in payloads]
    wire = b"".join(b"event: e\r\ndata: " + p + b"\r\n\r\n" for p in clean)
    decoder = SSEDecoder()
    out: list[bytes] = []
    for i in range(0, len(wire), step):
        out.extend(decoder.feed(wire[i : i + step]))
    out.extend(decoder.close())
    assert out == clean


def test_decode_each_family() -> None:
    oa = ADAPTERS["openai"].decode(
        orjson.dumps(
            {
                "choices": [
                    {
                        "message": {
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": "{}"},
                                }
                            ],
                        },
                        "finish_reason": "tool_calls",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4},
            }
        )
    )
    assert oa.tool_calls[0]["id"] == "call_1" and oa.finish_reason == "tool_calls"
    an = ADAPTERS["anthropic"].decode(
        orjson.dumps(
            {
                "content": [
                    {"type": "text", "text": "ok "},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
                ],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 5, "output_tokens": 6},
            }
        )
    )
    assert an.content == "ok " and an.tool_calls[0]["function"]["arguments"] == '{"a":1}'
    assert (an.finish_reason, an.prompt_tokens, an.completion_tokens) == ("tool_calls", 5, 6)
    ge = ADAPTERS["gemini"].decode(
        orjson.dumps(
            {
                "candidates": [
                    {
                        "content": {
                            "parts": [
                                {"text": "hmm", "thought": True},
                                {"functionCall": {"name": "f", "args": {"b": 2}}},
                            ]
                        },
                        "finishReason": "STOP",
                    }
                ],
                "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 8},
            }
        )
    )
    assert ge.content == "" and ge.tool_calls[0]["id"].startswith("call_")
    assert ge.finish_reason == "tool_calls" and ge.completion_tokens == 8


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        (
            "openai",
            {"choices": [{"message": {"content": None, "refusal": "no"}, "finish_reason": "stop"}]},
        ),
        ("anthropic", {"content": [], "stop_reason": "refusal", "usage": {}}),
        ("gemini", {"promptFeedback": {"blockReason": "SAFETY"}}),
        ("gemini", {"candidates": [{"content": {"parts": []}, "finishReason": "SAFETY"}]}),
    ],
)
def test_refusals_are_content_filter(provider: str, body: dict[str, Any]) -> None:
    with pytest.raises(ProviderError) as err:
        ADAPTERS[provider].decode(orjson.dumps(body))
    assert err.value.error_class == CONTENT_FILTER


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_unparsable_answer_is_bad_response(provider: str) -> None:
    with pytest.raises(ProviderError) as err:
        ADAPTERS[provider].decode(b'{"nothing": true}')
    assert err.value.error_class == "bad_response"


def test_stream_assemblers_join_tool_arguments() -> None:
    asm = ADAPTERS["anthropic"].assembler()
    events = []
    for ev in [
        {"type": "message_start", "message": {"usage": {"input_tokens": 4}}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '{"a": '},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "[1]}"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 3},
        },
        {"type": "message_stop"},
    ]:
        events.extend(asm.feed(orjson.dumps(ev)))
    assert asm.done and asm.started
    events.extend(asm.at_eof())
    assert events == [
        ToolCallEvent(
            {
                "id": "toolu_9",
                "type": "function",
                "function": {"name": "f", "arguments": '{"a": [1]}'},
            }
        ),
        StreamEnd("tool_calls", 4, 3),
    ]
    oa = ADAPTERS["openai"].assembler()
    for chunk in [
        {"choices": [{"delta": {"content": "hi"}}]},
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "c", "function": {"name": "g", "arguments": '{"x"'}}
                        ]
                    }
                }
            ]
        },
        {
            "choices": [
                {
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
                    "finish_reason": "tool_calls",
                }
            ]
        },
    ]:
        events = oa.feed(orjson.dumps(chunk))
    assert events == [
        ToolCallEvent(
            {"id": "c", "type": "function", "function": {"name": "g", "arguments": '{"x": 1}'}}
        )
    ]
    assert oa.feed(b"[DONE]") == [] and oa.done
    assert oa.at_eof() == [StreamEnd("tool_calls", 0, 0, reported=False)]
    assert TextDelta("hi") == TextDelta("hi")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, b'{"error": {"message": "slow down", "type": "requests"}}', RATE_LIMITED),
        (
            529,
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
            SERVER_ERROR,
        ),
        (503, b"<html>bad gateway</html>", SERVER_ERROR),
        (
            400,
            b'{"error": {"code": "context_length_exceeded", "message": "too long"}}',
            CONTEXT_LENGTH,
        ),
        (
            400,
            b'{"type": "error", "error": {"type": "invalid_request_error", '
            b'"message": "prompt is too long: 300 tokens > 200 maximum"}}',
            CONTEXT_LENGTH,
        ),
        (
            400,
            b'{"error": {"code": 400, "message": "The input token count (9) exceeds the maximum '
            b'number of tokens allowed (5).", "status": "INVALID_ARGUMENT"}}',
            CONTEXT_LENGTH,
        ),
        (400, b'{"error": {"code": "content_filter", "message": "filtered"}}', CONTENT_FILTER),
        (
            400,
            b'{"error": {"code": 400, "message": "API key not valid.", "status": '
            b'"INVALID_ARGUMENT", "details": [{"reason": "API_KEY_INVALID"}]}}',
            AUTH,
        ),
        (401, b'{"error": {"message": "Incorrect API key provided: sk-secret"}}', AUTH),
        (403, b"", AUTH),
        (404, b'{"error": {"message": "no such model", "code": "model_not_found"}}', NOT_FOUND),
    ],
)
def test_status_classification(status: int, body: bytes, expected: str) -> None:
    err = classify_status("openai", status, body, {}, "sk-secret")
    assert err.error_class == expected and err.status == status
    assert "sk-secret" not in err.message


def test_retry_after_sources() -> None:
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({}) is None
    gemini = (
        b'{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota", '
        b'"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", '
        b'"retryDelay": "0.25s"}]}}'
    )
    assert classify_status("gemini", 429, gemini, {}, None).retry_after_s == 0.25


def test_prepared_headers_and_urls() -> None:
    _, oa = prepared(Target("openai", "http://h/openai/v1/", "gpt", "k1"))
    assert oa.url == "http://h/openai/v1/chat/completions"
    assert oa.headers["Authorization"] == "Bearer k1"
    _, an = prepared(Target("anthropic", "http://h/anthropic", "c", "k2"))
    assert an.url == "http://h/anthropic/v1/messages"
    assert an.headers["x-api-key"] == "k2" and "anthropic-version" in an.headers
    _, ge = prepared(Target("gemini", "http://h/gemini", "g", "k3"))
    assert ge.url == "http://h/gemini/v1beta/models/g:generateContent"
    assert ge.stream_url.endswith(":streamGenerateContent?alt=sse")
    assert ge.headers["x-goog-api-key"] == "k3" and "k3" not in ge.url
    assert prepared(Target("openai", "http://h/openai/v1/", "gpt", "k1"))[1] is oa
    with pytest.raises(ProviderError, match="not one of"):
        prepared(Target("cohere", "http://h", "m"))


def test_clean_schema_keeps_only_gemini_keys() -> None:
    assert clean_schema(
        {"type": "array", "items": {"type": "integer", "exclusiveMinimum": 0}, "uniqueItems": True}
    ) == {"type": "ARRAY", "items": {"type": "INTEGER"}}


def test_in_stream_error_events_are_classified() -> None:
    asm = ADAPTERS["anthropic"].assembler()
    with pytest.raises(ProviderError) as err:
        asm.feed(b'{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}')
    assert err.value.error_class == SERVER_ERROR and err.value.status == 529
    oa = ADAPTERS["openai"].assembler()
    with pytest.raises(ProviderError) as err:
        oa.feed(b'{"error": {"message": "boom", "type": "server_error"}}')
    assert err.value.error_class == SERVER_ERROR
    ge = ADAPTERS["gemini"].assembler()
    with pytest.raises(ProviderError) as err:
        ge.feed(b'{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}')
    assert err.value.error_class == RATE_LIMITED
