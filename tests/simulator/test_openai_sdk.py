"""The official openai SDK parses everything the simulator's OpenAI surface sends."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from skyroute.simulator.harness import SimulatorThread

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "include_items": {"type": "boolean"},
                    "channel": {"type": "string", "enum": ["web", "app"]},
                    "note": {"type": "string"},
                },
                "required": ["order_id", "include_items", "channel"],
            },
        },
    }
]


_CLIENTS: dict[str, openai.OpenAI] = {}


def client(sim: SimulatorThread) -> openai.OpenAI:
    if sim.url not in _CLIENTS:
        _CLIENTS[sim.url] = openai.OpenAI(
            base_url=sim.url + "/openai/v1", api_key="sk-test", max_retries=0, timeout=5
        )
    return _CLIENTS[sim.url]


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    for c in _CLIENTS.values():
        c.close()
    _CLIENTS.clear()


def test_text_names_model_and_is_deterministic(sim: SimulatorThread) -> None:
    c = client(sim)
    msgs = [{"role": "user", "content": "what is the refund policy?"}]
    a = c.chat.completions.create(model="gpt-5.2", messages=msgs)  # type: ignore[arg-type]
    b = c.chat.completions.create(model="gpt-5.2", messages=msgs)  # type: ignore[arg-type]
    other = c.chat.completions.create(model="claude-x", messages=msgs)  # type: ignore[arg-type]
    assert a.object == "chat.completion"
    assert a.model == "gpt-5.2"
    text = a.choices[0].message.content
    assert text is not None and text.startswith("[gpt-5.2] ")
    assert text == b.choices[0].message.content
    assert (other.choices[0].message.content or "").startswith("[claude-x] ")
    assert a.choices[0].finish_reason == "stop"
    assert a.usage is not None
    assert a.usage.prompt_tokens == max(1, len("what is the refund policy?") // 4)
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens


def test_max_tokens_truncates(sim: SimulatorThread) -> None:
    r = client(sim).chat.completions.create(
        model="gpt-5.2",
        messages=[{"role": "user", "content": "long please"}],
        max_completion_tokens=3,
    )
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 3


def test_stream_with_usage(sim: SimulatorThread) -> None:
    chunks = list(
        client(sim).chat.completions.create(
            model="gpt-5.2",
            messages=[{"role": "user", "content": "hello there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    full = client(sim).chat.completions.create(
        model="gpt-5.2", messages=[{"role": "user", "content": "hello there"}]
    )
    assert text == full.choices[0].message.content
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens  # type: ignore[union-attr]
    assert all(ch.usage is None for ch in chunks[:-1])


def test_tool_call_then_tool_result(sim: SimulatorThread) -> None:
    c = client(sim)
    msgs: list[dict[str, object]] = [{"role": "user", "content": "where is my order?"}]
    r = c.chat.completions.create(model="gpt-5.2", messages=msgs, tools=TOOLS)  # type: ignore[arg-type]
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.id.startswith("call_") and call.function.name == "lookup_order"  # type: ignore[union-attr]
    args = json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert set(args) == {"order_id", "include_items", "channel"}
    assert isinstance(args["order_id"], str) and args["include_items"] is True
    assert args["channel"] == "web"
    msgs += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"status": "shipped"}'},
    ]
    r2 = c.chat.completions.create(model="gpt-5.2", messages=msgs, tools=TOOLS)  # type: ignore[arg-type]
    assert r2.choices[0].finish_reason == "stop"
    assert (r2.choices[0].message.content or "").startswith("[gpt-5.2] ")


def test_unknown_tool_call_id_is_rejected(sim: SimulatorThread) -> None:
    msgs = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_b", "content": "x"},
    ]
    with pytest.raises(openai.BadRequestError) as err:
        client(sim).chat.completions.create(model="gpt-5.2", messages=msgs)  # type: ignore[arg-type]
    assert "role 'tool'" in str(err.value)


def test_streamed_tool_call(sim: SimulatorThread) -> None:
    chunks = list(
        client(sim).chat.completions.create(
            model="gpt-5.2",
            messages=[{"role": "user", "content": "track it"}],
            tools=TOOLS,  # type: ignore[arg-type]
            stream=True,
        )
    )
    deltas = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or ()]
    assert deltas[0].id and deltas[0].function.name == "lookup_order"  # type: ignore[union-attr]
    assert all(d.index == 0 for d in deltas)
    args = "".join(d.function.arguments or "" for d in deltas)  # type: ignore[union-attr]
    assert json.loads(args)["channel"] == "web"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("model", "exc", "status"),
    [
        ("err-rate_limited", openai.RateLimitError, 429),
        ("err-server_error", openai.InternalServerError, 500),
        ("err-unavailable", openai.InternalServerError, 503),
        ("err-bad_request", openai.BadRequestError, 400),
        ("err-auth", openai.AuthenticationError, 401),
        ("err-content_filter", openai.BadRequestError, 400),
        ("err-not_found", openai.NotFoundError, 404),
    ],
)
def test_errors_are_typed(
    sim: SimulatorThread, model: str, exc: type[openai.APIStatusError], status: int
) -> None:
    with pytest.raises(exc) as err:
        client(sim).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.status_code == status
    body = err.value.body
    assert isinstance(body, dict) and {"message", "type", "code"} <= set(body)


def test_rate_limit_has_retry_after(sim: SimulatorThread) -> None:
    with pytest.raises(openai.RateLimitError) as err:
        client(sim).chat.completions.create(
            model="err-rate_limited", messages=[{"role": "user", "content": "x"}]
        )
    # retry_after_s 1 scenario-second at time_scale 100 -> 0.01 s
    assert float(err.value.response.headers["retry-after"]) == pytest.approx(0.01)
    assert err.value.code == "rate_limit_exceeded"


def test_context_length(sim: SimulatorThread) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client(sim).chat.completions.create(
            model="tiny-context", messages=[{"role": "user", "content": "y" * 400}]
        )
    assert err.value.code == "context_length_exceeded"
    assert "maximum context length is 10 tokens" in str(err.value)


def test_timeout_and_cut_are_transport_errors(sim: SimulatorThread) -> None:
    with openai.OpenAI(
        base_url=sim.url + "/openai/v1", api_key="k", max_retries=0, timeout=0.5
    ) as c:
        with pytest.raises(openai.APITimeoutError):
            c.chat.completions.create(
                model="err-timeout", messages=[{"role": "user", "content": "x"}]
            )
        with pytest.raises(openai.APIConnectionError):
            list(
                c.chat.completions.create(
                    model="err-stream_cut", stream=True, messages=[{"role": "user", "content": "x"}]
                )
            )
