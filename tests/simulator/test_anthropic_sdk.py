"""The official anthropic SDK parses everything the simulator's Anthropic surface sends."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from skyroute.simulator.harness import SimulatorThread

TOOLS = [
    {
        "name": "open_ticket",
        "description": "Open a support ticket",
        "input_schema": {
            "type": "object",
            "properties": {
                "subject": {"type": "string"},
                "priority": {"type": "integer", "minimum": 2},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["subject", "priority", "tags"],
        },
    }
]


_CLIENTS: dict[str, anthropic.Anthropic] = {}


def client(sim: SimulatorThread) -> anthropic.Anthropic:
    if sim.url not in _CLIENTS:
        _CLIENTS[sim.url] = anthropic.Anthropic(
            base_url=sim.url + "/anthropic", api_key="sk-ant-test", max_retries=0, timeout=5
        )
    return _CLIENTS[sim.url]


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    for c in _CLIENTS.values():
        c.close()
    _CLIENTS.clear()


def test_create_text(sim: SimulatorThread) -> None:
    m = client(sim).messages.create(
        model="claude-4.5-haiku",
        max_tokens=200,
        system="You are helpful.",
        messages=[{"role": "user", "content": "reset my password"}],
    )
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text"
    assert m.content[0].text.startswith("[claude-4.5-haiku] ")
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens >= 1 and m.usage.output_tokens >= 1


def test_stream_text_equals_create(sim: SimulatorThread) -> None:
    c = client(sim)
    msgs = [{"role": "user", "content": "compare plans for 200 seats"}]
    with c.messages.stream(model="claude-4.5-sonnet", max_tokens=500, messages=msgs) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    created = c.messages.create(model="claude-4.5-sonnet", max_tokens=500, messages=msgs)  # type: ignore[arg-type]
    assert text == created.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == created.usage.output_tokens


def test_raw_event_sequence(sim: SimulatorThread) -> None:
    events = list(
        client(sim).messages.create(
            model="claude-4.5-haiku",
            max_tokens=50,
            stream=True,
            messages=[{"role": "user", "content": "hi"}],
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) <= {"ping", "content_block_delta"}


def test_max_tokens_stop_reason(sim: SimulatorThread) -> None:
    m = client(sim).messages.create(
        model="claude-4.5-haiku",
        max_tokens=2,
        messages=[{"role": "user", "content": "write a lot"}],
    )
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 2


def test_tool_use_create_and_stream_then_result(sim: SimulatorThread) -> None:
    c = client(sim)
    msgs: list[dict[str, object]] = [{"role": "user", "content": "my parcel is lost"}]
    m = c.messages.create(
        model="claude-4.5-opus",
        max_tokens=300,
        tools=TOOLS,  # type: ignore[arg-type]
        messages=msgs,
    )  # type: ignore[arg-type]
    assert m.stop_reason == "tool_use"
    block = m.content[0]
    assert block.type == "tool_use" and block.id.startswith("toolu_")
    assert block.input == {"subject": "sim-subject", "priority": 2, "tags": ["sim-tags"]}
    with c.messages.stream(
        model="claude-4.5-opus",
        max_tokens=300,
        tools=TOOLS,  # type: ignore[arg-type]
        messages=msgs,
    ) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].input == block.input  # type: ignore[union-attr]
    msgs += [
        {"role": "assistant", "content": [block.model_dump()]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": block.id, "content": "ticket T-1 opened"}
            ],
        },
    ]
    done = c.messages.create(
        model="claude-4.5-opus",
        max_tokens=300,
        tools=TOOLS,  # type: ignore[arg-type]
        messages=msgs,
    )  # type: ignore[arg-type]
    assert done.stop_reason == "end_turn"


def test_tool_use_without_result_is_rejected(sim: SimulatorThread) -> None:
    msgs = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "open_ticket", "input": {}}],
        },
        {"role": "user", "content": "and?"},
    ]
    with pytest.raises(anthropic.BadRequestError) as err:
        client(sim).messages.create(model="m", max_tokens=10, messages=msgs)  # type: ignore[arg-type]
    assert "toolu_1" in str(err.value) and "tool_result" in str(err.value)


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_version_header_and_max_tokens_required(sim: SimulatorThread) -> None:
    url = sim.url + "/anthropic/v1/messages"
    msgs = [{"role": "user", "content": "x"}]
    status, body = _post(url, {"model": "m", "max_tokens": 5, "messages": msgs}, {})
    assert status == 400 and "anthropic-version" in body["error"]["message"]
    status, body = _post(url, {"model": "m", "messages": msgs}, {"anthropic-version": "2023-06-01"})
    assert status == 400 and body["type"] == "error"
    assert "max_tokens" in body["error"]["message"]


@pytest.mark.parametrize(
    ("model", "exc", "status", "etype"),
    [
        ("err-overloaded", anthropic.InternalServerError, 529, "overloaded_error"),
        ("err-rate_limited", anthropic.RateLimitError, 429, "rate_limit_error"),
        ("err-server_error", anthropic.InternalServerError, 500, "api_error"),
        ("err-auth", anthropic.AuthenticationError, 401, "authentication_error"),
        ("tiny-context", anthropic.BadRequestError, 400, "invalid_request_error"),
    ],
)
def test_errors_are_typed(
    sim: SimulatorThread, model: str, exc: type[anthropic.APIStatusError], status: int, etype: str
) -> None:
    with pytest.raises(exc) as err:
        client(sim).messages.create(
            model=model, max_tokens=10, messages=[{"role": "user", "content": "z" * 100}]
        )
    assert err.value.status_code == status
    assert err.value.body["type"] == "error"  # type: ignore[index]
    assert err.value.body["error"]["type"] == etype  # type: ignore[index]


def test_refusal_and_cut(sim: SimulatorThread) -> None:
    m = client(sim).messages.create(
        model="err-content_filter", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    )
    assert m.stop_reason == "refusal" and m.content == []
    # the SDK surfaces a cut stream as its HTTP library's protocol error
    with (
        pytest.raises(Exception, match=r"incomplete|Connection error"),
        client(sim).messages.stream(
            model="err-stream_cut", max_tokens=100, messages=[{"role": "user", "content": "x"}]
        ) as s,
    ):
        s.get_final_message()
