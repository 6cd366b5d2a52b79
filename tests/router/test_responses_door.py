"""The OpenAI Responses door, with the official ``openai`` SDK as the client.

One real router over loopback with the provider simulator upstream (the
policies, pools and tenants of the Messages door's test): ``responses.create``
streamed and not, answered by Anthropic, OpenAI and Gemini upstreams,
function tools and their outputs going back as input items, the event
sequence, and OpenAI-shaped refusals of what the router does not serve.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

# The same stack (a fixture of this module too, so its own router) and keys.
from test_messages_door import FAMILIES, ROUTED, keys, stack  # noqa: F401
from test_messages_door import TOOL as MESSAGES_TOOL

from harness import Stack

# The Messages test's tool, as a Responses function tool.
TOOL = {
    "type": "function",
    "name": MESSAGES_TOOL["name"],
    "description": MESSAGES_TOOL["description"],
    "parameters": MESSAGES_TOOL["input_schema"],
}
NO_CACHE = {"Cache-Control": "no-cache"}


@pytest.fixture(scope="module")
def client(stack: Stack, keys: dict[str, str]) -> openai.OpenAI:  # noqa: F811 (fixtures)
    return openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key=keys["shop"], max_retries=0, timeout=20
    )


def _model(policy: str) -> str:
    return FAMILIES[policy][1]


@pytest.mark.parametrize("policy", ROUTED)
def test_response_from_every_family_and_its_stream(policy: str, client: openai.OpenAI) -> None:
    ask: dict[str, Any] = {
        "model": policy,
        "instructions": "You are terse.",
        "input": "Where is my parcel?",
        "max_output_tokens": 256,
        "extra_headers": NO_CACHE,
    }
    raw = client.responses.with_raw_response.create(**ask)
    resp = raw.parse()
    assert resp.object == "response" and resp.status == "completed"
    assert resp.model == _model(policy)
    assert [o.type for o in resp.output] == ["message"]
    assert resp.output_text.startswith(f"[{_model(policy)}]")
    assert resp.usage is not None and resp.usage.output_tokens == 24
    assert resp.usage.total_tokens == resp.usage.input_tokens + 24
    assert raw.headers["x-skyroute-pool"] == FAMILIES[policy][0]

    events = list(client.responses.create(**ask, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == resp.output_text
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == resp.output_text
    assert final.response.usage is not None and final.response.usage.output_tokens == 24


@pytest.mark.parametrize("policy", ROUTED)
def test_function_call_and_its_output_round_trip(policy: str, client: openai.OpenAI) -> None:
    question = {"role": "user", "content": "Where is order 42?"}
    first = client.responses.create(
        model=policy,
        input=[question],  # type: ignore[list-item]
        tools=[TOOL],  # type: ignore[list-item]
        tool_choice="required",
        extra_headers=NO_CACHE,
    )
    (call,) = [o for o in first.output if o.type == "function_call"]
    assert call.type == "function_call" and call.name == "lookup_order"
    assert isinstance(json.loads(call.arguments)["order_id"], str)

    events = list(
        client.responses.create(
            model=policy,
            input=[question],  # type: ignore[list-item]
            tools=[TOOL],  # type: ignore[list-item]
            stream=True,
            extra_headers=NO_CACHE,
        )
    )
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert set(json.loads(done.arguments)) == set(json.loads(call.arguments))
    assert events[-1].type == "response.completed"
    assert [o.type for o in events[-1].response.output] == ["function_call"]

    second = client.responses.create(
        model=policy,
        input=[
            question,  # type: ignore[list-item]
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "shipped"},
        ],
        tools=[TOOL],  # type: ignore[list-item]
        extra_headers=NO_CACHE,
    )
    assert second.output_text.startswith(f"[{_model(policy)}]")


def test_what_the_router_does_not_keep_is_refused(client: openai.OpenAI) -> None:
    # An unknown previous response is OpenAI's 404 naming it (stored ones: test_responses_store).
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="to-openai", input="hi", previous_response_id="resp_1")
    assert e.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as conv:
        client.responses.create(model="to-openai", input="hi", conversation="conv_1")
    assert conv.value.body["param"] == "conversation"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as b:
        client.responses.create(
            model="to-openai",
            input="hi",
            tools=[{"type": "web_search"}],  # type: ignore[list-item]
        )
    assert "web_search" in b.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as nf:
        client.responses.retrieve("resp_123")
    assert nf.value.body["code"] == "response_not_found"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="hi")
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="to-openai", input=[])
    assert bad.value.body["param"] == "input"  # type: ignore[index]
    with pytest.raises(openai.InternalServerError) as up:
        client.responses.create(model="to-broken", input="hi", extra_headers=NO_CACHE)
    assert "all attempts failed" in up.value.body["message"]  # type: ignore[index]
