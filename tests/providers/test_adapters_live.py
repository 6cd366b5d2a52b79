"""Every adapter against the real simulator process: answers, tool round trips, errors.

The Vertex AI families get their tokens the way a router does, from google-auth's
Application Default Credentials (here a service-account key file whose token
endpoint is served on loopback); tests/providers/test_vertex.py checks the token
itself against a simulator that requires it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from gcp_auth import GoogleTokens

from skyroute.router import providers
from skyroute.router.providers import google_auth
from skyroute.router.providers.types import (
    AUTH,
    BAD_RESPONSE,
    CLIENT_ERROR,
    CONNECT,
    CONTENT_FILTER,
    CONTEXT_LENGTH,
    FIRST_TOKEN_TIMEOUT,
    NOT_FOUND,
    RATE_LIMITED,
    SERVER_ERROR,
    STREAM_CUT,
    TIMEOUT,
    ChatRequest,
    ChatResult,
    ProviderError,
    StreamEnd,
    StreamEvent,
    Target,
    TextDelta,
    ToolCallEvent,
)
from skyroute.simulator.harness import SimulatorThread

VERTEX = ["vertex-gemini", "vertex-anthropic"]
FAMILIES = [
    "openai",
    "anthropic",
    "gemini",
    "azure-openai",
    "bedrock",
    *VERTEX,
    "openai-compatible",
]
KEYED = [f for f in FAMILIES if f not in VERTEX]  # a static key; Vertex AI's is a token
KINDS = [
    "server_error",
    "unavailable",
    "overloaded",
    "rate_limited",
    "bad_request",
    "content_filter",
    "auth",
    "not_found",
    "timeout",
    "stream_cut",
    "stall",
    "bad_response",
]
SCENARIO = {
    "seed": 1,
    "time_scale": 100,
    "hang_s": 20,
    "defaults": {"error_rate": 0, "ttft_ms": {"p50": 200, "p95": 400}, "tokens_per_s": 2000},
    "models": {
        **{f"err-{k}": {"error_rate": 1, "errors": {k: 1}} for k in KINDS},
        "tiny-context": {"context_window": 5},
        "slow": {"ttft_ms": {"p50": 100000, "p95": 100000}},
        "long": {
            "completion_tokens": {"p50": 400, "p95": 500, "min": 300, "max": 600},
            "tokens_per_s": 2000,
        },
    },
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "update_shipment",
            "description": "Change a shipment",
            "parameters": {
                "type": "object",
                "properties": {"shipment_id": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["shipment_id", "days"],
            },
        },
    }
]
ENDPOINTS = {
    "openai": "/openai/v1",
    "anthropic": "/anthropic",
    "gemini": "/gemini/v1beta",
    "azure-openai": "/azure",
    "bedrock": "/bedrock",
    "vertex-gemini": "/vertex",
    "vertex-anthropic": "/vertex",
    "openai-compatible": "/selfhosted/v1",
}
# The simulator's self-hosted server is llama-cpp-python's: it refuses a null content.
QUIRKS = {"openai-compatible": frozenset({"rejects-null-content"})}
T = TypeVar("T")


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("sim") / "scenario.json"
    path.write_bytes(orjson.dumps(SCENARIO))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skyroute.cli.main",
            "providers",
            "--listen",
            "127.0.0.1:0",
            "--scenario",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on" in line, line
        yield line.split("listening on ")[1].split()[0]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


@pytest.fixture(scope="module", autouse=True)
def google_adc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The Vertex AI families' tokens: google-auth's ADC, a key file whose token_uri is local."""
    with GoogleTokens("ya29.live-test") as tokens:
        key = tokens.service_account_file(tmp_path_factory.mktemp("adc") / "sa.json")
        saved = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = str(key)
        google_auth._SHARED.clear()  # the process's token source resolves this chain afresh
        try:
            yield
        finally:
            google_auth._SHARED.clear()
            if saved is None:
                os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
            else:
                os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = saved


def target(url: str, family: str, model: str, key: str | None = "test-key") -> Target:
    if family in VERTEX:
        return Target(family, url + ENDPOINTS[family], model, auth="google", project="acme-prod")
    return Target(
        family, url + ENDPOINTS[family], model, key, quirks=QUIRKS.get(family, frozenset())
    )


def run(fn: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
    async def go() -> T:
        async with aiohttp.ClientSession() as session:
            return await fn(session)

    return asyncio.run(go())


def complete(t: Target, req: ChatRequest, timeout_s: float = 5) -> ChatResult:
    return run(lambda s: providers.complete(s, t, req, timeout_s))


def stream(
    t: Target, req: ChatRequest, first: float = 3, total: float = 5
) -> tuple[list[StreamEvent], ProviderError | None]:
    async def go(s: aiohttp.ClientSession) -> tuple[list[StreamEvent], ProviderError | None]:
        events: list[StreamEvent] = []
        try:
            async for ev in providers.stream(s, t, req, first, total):
                events.append(ev)
        except ProviderError as exc:
            return events, exc
        return events, None

    return run(go)


def ask(text: str, **kw: Any) -> ChatRequest:
    return ChatRequest(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}], **kw
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_text_complete_and_stream_agree(sim_url: str, family: str) -> None:
    t = target(sim_url, family, "claude-4.5-sonnet")
    result = complete(t, ask("what is your refund policy?"))
    assert result.content.startswith("[claude-4.5-sonnet] ")
    assert result.finish_reason == "stop" and result.tool_calls == []
    assert result.prompt_tokens >= 1 and result.completion_tokens >= 1
    events, err = stream(t, ask("what is your refund policy?"))
    assert err is None
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == result.content
    if family == "openai-compatible":  # a self-hosted server reports no usage in streams
        assert events[-1] == StreamEnd("stop", 0, 0, reported=False)
    else:
        assert events[-1] == StreamEnd("stop", result.prompt_tokens, result.completion_tokens)


@pytest.mark.parametrize("family", FAMILIES)
def test_max_tokens_gives_length(sim_url: str, family: str) -> None:
    result = complete(target(sim_url, family, "m"), ask("tell me everything", max_tokens=2))
    assert result.finish_reason == "length" and result.completion_tokens == 2


@pytest.mark.parametrize("first", FAMILIES)
@pytest.mark.parametrize("second", FAMILIES)
def test_tool_round_trip_across_families(sim_url: str, first: str, second: str) -> None:
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "delay shipment S1 by 2 days"}]
    if first == "openai":  # streamed tool call on one family, plain on the others
        events, err = stream(target(sim_url, first, "a"), ChatRequest(msgs, tools=TOOLS))
        assert err is None and isinstance(events[-1], StreamEnd)
        assert events[-1].finish_reason == "tool_calls"
        calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    else:
        result = complete(target(sim_url, first, "a"), ChatRequest(msgs, tools=TOOLS))
        assert result.finish_reason == "tool_calls"
        calls = result.tool_calls
    assert len(calls) == 1 and calls[0]["function"]["name"] == "update_shipment"
    assert orjson.loads(calls[0]["function"]["arguments"]) == {
        "shipment_id": "sim-shipment_id",
        "days": 1,
    }
    msgs += [
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"ok": true}'},
    ]
    # the simulator rejects tool results whose ids/names do not match (as the real APIs do)
    follow = complete(target(sim_url, second, "b"), ChatRequest(msgs, tools=TOOLS))
    assert follow.finish_reason == "stop" and follow.content.startswith("[b] ")


@pytest.mark.parametrize("family", FAMILIES)
def test_streamed_tool_call_is_assembled(sim_url: str, family: str) -> None:
    events, err = stream(
        target(sim_url, family, "m"),
        ChatRequest([{"role": "user", "content": "move it"}], tools=TOOLS),
    )
    assert err is None
    assert [type(e) for e in events] == [ToolCallEvent, StreamEnd]
    call = events[0].call  # type: ignore[union-attr]
    assert call["type"] == "function" and call["id"]
    assert orjson.loads(call["function"]["arguments"])["days"] == 1


ERROR_CASES = [
    ("err-rate_limited", RATE_LIMITED),
    ("err-server_error", SERVER_ERROR),
    ("err-unavailable", SERVER_ERROR),
    ("err-overloaded", SERVER_ERROR),
    ("err-bad_request", CLIENT_ERROR),
    ("err-content_filter", CONTENT_FILTER),
    ("err-auth", AUTH),
    ("err-not_found", NOT_FOUND),
    ("tiny-context", CONTEXT_LENGTH),
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("model", "error_class"), ERROR_CASES)
def test_error_classes(sim_url: str, family: str, model: str, error_class: str) -> None:
    t = target(sim_url, family, model, key="sk-very-secret")
    req = ask("please help me with my order " * 3)
    with pytest.raises(ProviderError) as err:
        complete(t, req)
    assert err.value.error_class == error_class
    assert "sk-very-secret" not in str(err.value)
    events, stream_err = stream(t, req)
    assert events == [] and stream_err is not None
    assert stream_err.error_class == error_class
    if error_class == RATE_LIMITED:
        assert err.value.retry_after_s == pytest.approx(0.01)
        assert stream_err.retry_after_s == pytest.approx(0.01)
        assert err.value.retryable


@pytest.mark.parametrize("family", FAMILIES)
def test_transport_failures(sim_url: str, family: str) -> None:
    req = ask("hello")
    with pytest.raises(ProviderError) as err:
        complete(target(sim_url, family, "err-timeout"), req, timeout_s=0.3)
    assert err.value.error_class == TIMEOUT
    _, e = stream(target(sim_url, family, "err-timeout"), req, first=0.3, total=5)
    assert e is not None and e.error_class == FIRST_TOKEN_TIMEOUT
    _, e = stream(target(sim_url, family, "slow"), req, first=0.3, total=5)
    assert e is not None and e.error_class == FIRST_TOKEN_TIMEOUT
    with pytest.raises(ProviderError) as err:
        complete(target(sim_url, family, "err-bad_response"), req)
    assert err.value.error_class == BAD_RESPONSE
    _, e = stream(target(sim_url, family, "err-bad_response"), req)
    assert e is not None and e.error_class == BAD_RESPONSE
    with pytest.raises(ProviderError) as err:
        complete(target(sim_url, family, "err-stream_cut"), req)
    assert err.value.error_class == CONNECT


@pytest.mark.parametrize("family", FAMILIES)
def test_failures_after_the_first_token(sim_url: str, family: str) -> None:
    events, e = stream(target(sim_url, family, "err-stream_cut"), ask("hello"))
    assert e is not None and e.error_class == STREAM_CUT and not e.retryable
    assert any(isinstance(ev, TextDelta) for ev in events)
    assert not any(isinstance(ev, StreamEnd) for ev in events)
    events, e = stream(target(sim_url, family, "err-stall"), ask("hello"), first=2, total=0.8)
    assert e is not None and e.error_class == STREAM_CUT and not e.retryable
    assert any(isinstance(ev, TextDelta) for ev in events)


@pytest.mark.parametrize("family", FAMILIES)
def test_connection_refused(family: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(ProviderError) as err:
        complete(target(url, family, "m"), ask("x"))
    assert err.value.error_class == CONNECT and err.value.retryable
    _, e = stream(target(url, family, "m"), ask("x"))
    assert e is not None and e.error_class == CONNECT


@pytest.mark.parametrize("family", KEYED)
def test_api_key_goes_in_the_family_header(family: str) -> None:
    with SimulatorThread({"api_key": "k-123", "time_scale": 1000}) as sim:
        good = complete(target(sim.url, family, "m", key="k-123"), ask("x"))
        assert good.content.startswith("[m] ")
        with pytest.raises(ProviderError) as err:
            complete(target(sim.url, family, "m", key="k-wrong-999"), ask("x"))
        assert err.value.error_class == AUTH and "k-wrong-999" not in str(err.value)
        with pytest.raises(ProviderError) as err:
            complete(target(sim.url, family, "m", key=None), ask("x"))
        assert err.value.error_class == AUTH
