"""The openai-compatible family: the OpenAI codec bent by a model's declared quirks.

Each quirk is checked both ways (declared: the router copes; not declared: the
OpenAI behaviour), on the bodies the adapter sends and, through the simulator's
llama-cpp-python stand-in, on what comes back. The real server is in
test_selfhosted_llama.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest

from skyroute.families import QUIRK_NAMES
from skyroute.router import providers
from skyroute.router.providers import registry
from skyroute.router.providers.errors import classify_status
from skyroute.router.providers.openai_adapter import OpenAIAdapter
from skyroute.router.providers.types import (
    AUTH,
    CLIENT_ERROR,
    CONNECT,
    FIRST_TOKEN_TIMEOUT,
    SERVER_ERROR,
    STREAM_CUT,
    ChatRequest,
    ProviderError,
    StreamEnd,
    StreamEvent,
    Target,
    TextDelta,
    ToolCallEvent,
)
from skyroute.router.table import SnapshotError, build_table
from skyroute.simulator.harness import SimulatorThread
from skyroute.v1 import snapshot_pb2

FAMILY = "openai-compatible"
URL = "http://127.0.0.1:8000/v1"
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
TURNS: list[dict[str, Any]] = [
    {"role": "user", "content": "go"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "done"},
]


def target(*quirks: str, url: str = URL, key: str | None = None) -> Target:
    return Target(FAMILY, url, "local", key, quirks=frozenset(quirks))


def sent(t: Target, req: ChatRequest, stream: bool = True) -> dict[str, Any]:
    adapter, prep = providers.prepared(t)
    body: dict[str, Any] = orjson.loads(adapter.encode(req, prep.model, stream))
    return body


def test_every_contract_quirk_changes_the_codec() -> None:
    # A quirk name the adapter does not act on would be a flag that does nothing.
    base = registry.FAMILIES[FAMILY].adapter
    assert isinstance(base, OpenAIAdapter)
    for name in QUIRK_NAMES:
        assert base.quirks.declared([name]) != base.quirks, name
    assert base.with_quirks([]) is base


def test_the_budget_goes_as_max_tokens_for_every_self_hosted_server() -> None:
    body = sent(target(), ChatRequest(TURNS[:1], max_tokens=7))
    assert body["max_tokens"] == 7 and "max_completion_tokens" not in body
    # OpenAI itself keeps max_completion_tokens (reasoning models refuse max_tokens).
    openai = sent(Target("openai", URL, "gpt", "k"), ChatRequest(TURNS[:1], max_tokens=7))
    assert openai["max_completion_tokens"] == 7 and "max_tokens" not in openai


def test_rejects_stream_options() -> None:
    req = ChatRequest(TURNS[:1], options={"stream_options": {"include_usage": False}})
    assert sent(target(), req)["stream_options"] == {"include_usage": True}
    body = sent(target("rejects-stream-options"), req)
    assert "stream_options" not in body and body["stream"] is True


def test_rejects_null_content_sends_an_empty_string() -> None:
    assert sent(target(), ChatRequest(TURNS))["messages"][1]["content"] is None
    body = sent(target("rejects-null-content"), ChatRequest(TURNS))
    assert body["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [CALL]}
    assert TURNS[1]["content"] is None  # the request itself is left alone
    # A user message's content is not touched, nor is a non-null assistant content.
    turns = [*TURNS[:1], {"role": "assistant", "content": "hi"}]
    assert sent(target("rejects-null-content"), ChatRequest(turns))["messages"] == turns


def test_ignores_n_refuses_several_choices() -> None:
    assert sent(target(), ChatRequest(TURNS[:1], options={"n": 3}))["n"] == 3
    assert sent(target("ignores-n"), ChatRequest(TURNS[:1], options={"n": 1}))["n"] == 1
    with pytest.raises(ProviderError) as err:
        sent(target("ignores-n"), ChatRequest(TURNS[:1], options={"n": 3}))
    assert err.value.error_class == CLIENT_ERROR and err.value.status == 400
    assert err.value.message.startswith("n: ")


def test_selection_skips_a_model_whose_server_ignores_n() -> None:
    ignores = frozenset({"ignores-n"})
    assert registry.cannot_honour(FAMILY, {"n": 2}, ignores) == ("n",)
    assert registry.cannot_honour(FAMILY, {"n": 1}, ignores) == ()
    assert registry.cannot_honour(FAMILY, {"n": 2}) == ()
    assert registry.cannot_honour(FAMILY, {"seed": 1, "top_k": 3}, ignores) == ()


def test_errors_as_500_makes_a_validation_500_the_request_s_fault() -> None:
    body = orjson.dumps(
        {"error": {"message": "1 validation error for X", "type": "internal_server_error"}}
    )
    other = orjson.dumps({"error": {"message": "CUDA out of memory", "type": "server_error"}})
    assert classify_status(FAMILY, 500, body, {}, None).error_class == SERVER_ERROR
    assert classify_status(FAMILY, 500, body, {}, None, True).error_class == CLIENT_ERROR
    assert classify_status(FAMILY, 500, other, {}, None, True).error_class == SERVER_ERROR
    assert classify_status(FAMILY, 503, body, {}, None, True).error_class == SERVER_ERROR
    _, plain = providers.prepared(target())
    _, quirky = providers.prepared(target("errors-as-500"))
    assert not plain.invalid_as_500 and quirky.invalid_as_500


def test_overcounts_completion_marks_the_stream_end() -> None:
    for quirks, over in (((), False), (("overcounts-completion",), True)):
        adapter, _ = providers.prepared(target(*quirks))
        asm = adapter.assembler()
        asm.feed(b'{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"length"}]}')
        asm.feed(b'{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}}')
        asm.feed(b"[DONE]")
        assert asm.at_eof()[-1] == StreamEnd("length", 5, 9, reported=True, over_max=over)


def test_a_stream_without_usage_says_so() -> None:
    adapter, _ = providers.prepared(target())
    asm = adapter.assembler()
    asm.feed(b'{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}')
    asm.feed(b"[DONE]")
    assert asm.at_eof() == [StreamEnd("stop", 0, 0, reported=False)]


def test_tool_calls_with_object_arguments_and_no_id_are_made_openai_shaped() -> None:
    # TGI sends arguments as a JSON object; some servers send no call id.
    adapter, _ = providers.prepared(target())
    answer = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    call = adapter.decode(orjson.dumps(answer)).tool_calls[0]
    assert call["function"]["arguments"] == '{"a":1}' and call["id"].startswith("call_")
    asm = adapter.assembler()
    piece = {"index": 0, "function": {"name": "f", "arguments": {"a": 2}}}
    events = asm.feed(orjson.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]}))
    events += asm.feed(b'{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}')
    events += asm.feed(b"[DONE]") + asm.at_eof()
    streamed = [e for e in events if isinstance(e, ToolCallEvent)]
    assert streamed[0].call["function"]["arguments"] == '{"a":2}'
    assert streamed[0].call["id"].startswith("call_")
    # The OpenAI family itself stays strict: a call without an id is a bad answer.
    with pytest.raises(ProviderError):
        providers.prepared(Target("openai", URL, "m", "k"))[0].decode(orjson.dumps(answer))


def test_targets_differing_only_in_quirks_get_their_own_adapter() -> None:
    a, _ = providers.prepared(target())
    b, _ = providers.prepared(target("ignores-n"))
    c, _ = providers.prepared(target("ignores-n"))
    assert a is registry.FAMILIES[FAMILY].adapter and b is not a and b is c
    assert providers.prepared(target(key="k"))[1].headers["Authorization"] == "Bearer k"
    assert "Authorization" not in providers.prepared(target())[1].headers


def _snapshot(provider: str, quirks: list[str]) -> snapshot_pb2.Snapshot:
    snap = snapshot_pb2.Snapshot(version="v1")
    pool = snap.pools.add(name="p")
    pool.candidates.add(
        model="local", provider=provider, endpoint=URL, context_window=4096, quirks=quirks
    )
    snap.policies.add(name="default", default_pool="p")
    return snap


def test_snapshot_quirks_reach_the_target_and_bad_ones_are_refused() -> None:
    policy = build_table(_snapshot(FAMILY, ["ignores-n", "errors-as-500"])).policy("default")
    assert policy is not None
    (cand,) = policy.pools["p"]
    assert cand.target.quirks == frozenset({"ignores-n", "errors-as-500"})
    with pytest.raises(SnapshotError, match="not among"):
        build_table(_snapshot(FAMILY, ["ignores-everything"]))
    with pytest.raises(SnapshotError, match="only for providers"):
        build_table(_snapshot("openai", ["ignores-n"]))


def _stream(t: Target, req: ChatRequest) -> list[StreamEvent]:
    async def go() -> list[StreamEvent]:
        async with aiohttp.ClientSession() as s:
            return [e async for e in providers.stream(s, t, req, 3, 5)]

    return asyncio.run(go())


def _complete(t: Target, req: ChatRequest) -> Any:
    async def go() -> Any:
        async with aiohttp.ClientSession() as s:
            return await providers.complete(s, t, req, 5)

    return asyncio.run(go())


def test_against_the_simulator_s_llama_cpp_stand_in() -> None:
    with SimulatorThread({"api_key": "k-1", "time_scale": 1000}) as sim:
        url = sim.url + "/selfhosted/v1"
        events = _stream(target(url=url, key="k-1"), ChatRequest(TURNS[:1], max_tokens=3))
        assert "".join(e.text for e in events if isinstance(e, TextDelta))
        assert events[-1] == StreamEnd("length", 0, 0, reported=False)
        # Its 401 body is FastAPI's {"detail": ...}, not OpenAI's: still AUTH, key unseen.
        with pytest.raises(ProviderError) as err:
            _complete(target(url=url, key="k-wrong-77"), ChatRequest(TURNS[:1]))
        assert err.value.error_class == AUTH and "k-wrong-77" not in err.value.message
        # Null content: refused as a 500 unless declared, and the 500 is the request's
        # fault only when errors-as-500 is declared.
        with pytest.raises(ProviderError) as err:
            _complete(target(url=url, key="k-1"), ChatRequest(TURNS))
        assert err.value.error_class == SERVER_ERROR and err.value.status == 500
        with pytest.raises(ProviderError) as err:
            _complete(target("errors-as-500", url=url, key="k-1"), ChatRequest(TURNS))
        assert err.value.error_class == CLIENT_ERROR
        fixed = _complete(target("rejects-null-content", url=url, key="k-1"), ChatRequest(TURNS))
        assert fixed.content.startswith("[local] ")


def test_a_stream_ending_without_a_finish_reason_is_a_cut_for_self_hosted_servers() -> None:
    # llama-cpp-python ends a stream it interrupted with [DONE] and no finish_reason.
    for started, error_class in ((False, CONNECT), (True, STREAM_CUT)):
        adapter, _ = providers.prepared(target())
        asm = adapter.assembler()
        if started:
            asm.feed(b'{"choices":[{"index":0,"delta":{"content":"par"},"finish_reason":null}]}')
        asm.feed(b"[DONE]")
        with pytest.raises(ProviderError) as err:
            asm.at_eof()
        assert err.value.error_class == error_class
    # OpenAI itself always sends one; its codec is not made stricter here.
    openai = providers.prepared(Target("openai", URL, "m", "k"))[0].assembler()
    openai.feed(b"[DONE]")
    assert openai.at_eof()[-1] == StreamEnd("stop", 0, 0, reported=False)


SLOW = {
    "time_scale": 1,
    "defaults": {
        "error_rate": 0,
        "ttft_ms": {"p50": 300, "p95": 300},
        "tokens_per_s": 100,
        "completion_tokens": {"p50": 20, "p95": 20, "min": 20, "max": 20},
    },
}


def _two_streams(t: Target, first_token_s: float) -> list[Any]:
    async def one(s: aiohttp.ClientSession, text: str) -> Any:
        got: list[Any] = []
        try:
            async for e in providers.stream(
                s, t, ChatRequest([{"role": "user", "content": text}]), first_token_s, 10
            ):
                got.append((time.monotonic(), e))
        except ProviderError as exc:
            return exc
        return got

    async def go() -> list[Any]:
        async with aiohttp.ClientSession() as s:
            return list(await asyncio.gather(one(s, "one"), one(s, "two")))

    return asyncio.run(go())


def test_serves_one_at_a_time_sends_one_request_per_endpoint_at_a_time() -> None:
    with SimulatorThread(SLOW) as sim:
        url = sim.url + "/selfhosted/v1"
        a, b = _two_streams(target("serves-one-at-a-time", url=url), 5)
        assert isinstance(a, list) and isinstance(b, list)
        (first, second) = sorted((a, b), key=lambda got: got[0][0])
        assert isinstance(first[-1][1], StreamEnd) and isinstance(second[-1][1], StreamEnd)
        assert second[0][0] >= first[-1][0]  # the second began after the first ended
        # Undeclared, both run at once.
        a, b = _two_streams(target(url=url), 5)
        (first, second) = sorted((a, b), key=lambda got: got[0][0])
        assert second[0][0] < first[-1][0]
        # A turn not had within the first-token deadline is a first-token timeout.
        a, b = _two_streams(target("serves-one-at-a-time", url=url), 0.5)
        errors = [x for x in (a, b) if isinstance(x, ProviderError)]
        assert [e.error_class for e in errors] == [FIRST_TOKEN_TIMEOUT]
        assert "one request at a time" in errors[0].message
