"""Stored responses through real routers, with the official ``openai`` SDK as the client.

Two routers share one real redis-server (``--redis``), with the provider
simulator upstream and the Messages door's policies, pools and keyed
tenants (``shop`` and ``narrow``): a response created on one router is
retrieved, listed and deleted on the other; ``previous_response_id``
continues a conversation (what the upstream received is read back from the
simulator: the earlier turns, then the new input), across routers and
families, tool calls included; ``store: false`` keeps nothing; another
tenant gets OpenAI's 404 for every id it did not create. A third, in-process
router with a one-second ``--responses-ttl`` lets a response expire.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

# The stack's files, scenario and the tool, as the Messages and Responses doors' tests use.
from test_messages_door import FILES, SCENARIO
from test_parameters import _received
from test_responses_door import TOOL

from harness import Stack, http_get, keys_cli, running_stack, wait_until
from redis_server import RedisProcess, start_redis

NO_CACHE = {"Cache-Control": "no-cache"}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisProcess]:
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisProcess) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stored")
    args = ["--redis", redis_server.url]
    with running_stack(tmp, FILES, SCENARIO, routers=2, router_args=args) as stack:
        yield stack


@pytest.fixture(scope="module")
def keys(stack: Stack) -> dict[str, str]:
    out = {
        t: keys_cli("create", "--tenant", t, "--source", str(stack.source))
        for t in ("shop", "narrow")
    }
    for i in range(2):
        wait_until(lambda i=i: stack.router_status(i)["door"]["keys"] == 2, what="keys pushed")
    return out


def _client(stack: Stack, router: int, key: str) -> openai.OpenAI:
    url = stack.routers[router][2] + "/v1"
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def shop(stack: Stack, keys: dict[str, str]) -> tuple[openai.OpenAI, openai.OpenAI]:
    """The shop tenant's client of each router."""
    return _client(stack, 0, keys["shop"]), _client(stack, 1, keys["shop"])


@pytest.fixture(scope="module")
def narrow(stack: Stack, keys: dict[str, str]) -> openai.OpenAI:
    return _client(stack, 1, keys["narrow"])


def _roles(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in messages]


def test_a_response_stored_on_one_router_is_retrieved_and_deleted_on_the_other(
    stack: Stack, shop: tuple[openai.OpenAI, openai.OpenAI]
) -> None:
    a, b = shop
    created = a.responses.create(
        model="to-openai",
        instructions="You are terse.",
        input="Where is my parcel?",
        extra_headers=NO_CACHE,
    )
    assert created.store is True and created.id.startswith("resp_")
    got = b.responses.retrieve(created.id)
    assert (got.id, got.model, got.status) == (created.id, "gpt-model", "completed")
    assert got.output_text == created.output_text and got.output_text.startswith("[gpt-model]")
    assert got.instructions == "You are terse." and got.created_at == created.created_at
    assert got.usage is not None and got.usage.output_tokens == 24
    (item,) = list(b.responses.input_items.list(created.id))
    assert item.type == "message" and item.role == "user"
    assert [c.text for c in item.content] == ["Where is my parcel?"]  # type: ignore[union-attr]
    assert stack.router_status(0)["responses"]["written"] >= 1

    assert a.responses.delete(created.id) is None
    for client in (a, b):
        with pytest.raises(openai.NotFoundError) as nf:
            client.responses.retrieve(created.id)
        assert nf.value.body["code"] == "response_not_found"  # type: ignore[index]
        assert nf.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        b.responses.delete(created.id)


def test_previous_response_id_continues_across_routers_and_families(
    stack: Stack, shop: tuple[openai.OpenAI, openai.OpenAI]
) -> None:
    a, b = shop
    first = a.responses.create(
        model="to-openai",
        instructions="First rules.",
        input="My name is Ada.",
        extra_headers=NO_CACHE,
    )
    second = b.responses.create(
        model="to-openai",
        instructions="Second rules.",
        previous_response_id=first.id,
        input="What is my name?",
        extra_headers=NO_CACHE,
    )
    assert second.previous_response_id == first.id and second.store is True
    # The upstream got the earlier turn; the instructions are this request's only (OpenAI's rule).
    assert _roles(_received(stack, "openai")["messages"]) == [
        ("system", "Second rules."),
        ("user", "My name is Ada."),
        ("assistant", first.output_text),
        ("user", "What is my name?"),
    ]
    # The third turn streams, on the first router, answered by another family.
    events = list(
        a.responses.create(
            model="to-anthropic",
            previous_response_id=second.id,
            input="And my surname?",
            stream=True,
            extra_headers=NO_CACHE,
        )
    )
    done = events[-1]
    assert done.type == "response.completed" and done.response.store is True
    anthropic = _received(stack, "anthropic")
    assert "system" not in anthropic
    assert [m["role"] for m in anthropic["messages"]] == ["user", "assistant"] * 2 + ["user"]
    assert json.dumps(anthropic["messages"][3]).find(second.output_text[:20]) > 0
    third = b.responses.retrieve(done.response.id)
    assert third.output_text == done.response.output_text
    assert third.output_text.startswith("[claude-model]")
    listed = list(b.responses.input_items.list(third.id, order="asc"))
    assert [(i.type, getattr(i, "role", "")) for i in listed] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    newest = b.responses.input_items.list(third.id, limit=2)
    assert [i.id for i in newest.data] == [i.id for i in reversed(listed)][:2]
    assert newest.has_more is True


def test_a_function_call_is_answered_with_only_its_output(
    stack: Stack, shop: tuple[openai.OpenAI, openai.OpenAI]
) -> None:
    a, b = shop
    first = a.responses.create(
        model="to-gemini",
        input="Where is order 42?",
        tools=[TOOL],  # type: ignore[list-item]
        tool_choice="required",
        extra_headers=NO_CACHE,
    )
    (call,) = [o for o in first.output if o.type == "function_call"]
    second = b.responses.create(
        model="to-openai",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "shipped"}],
        tools=[TOOL],  # type: ignore[list-item]
        extra_headers=NO_CACHE,
    )
    assert second.output_text.startswith("[gpt-model]")
    sent = _received(stack, "openai")["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    (tool_call,) = sent[1]["tool_calls"]
    assert tool_call["id"] == call.call_id
    assert tool_call["function"]["arguments"] == call.arguments
    assert (sent[2]["tool_call_id"], sent[2]["content"]) == (call.call_id, "shipped")
    items = list(b.responses.input_items.list(second.id, order="asc"))
    assert [i.type for i in items] == ["message", "function_call", "function_call_output"]


def test_store_false_keeps_nothing(shop: tuple[openai.OpenAI, openai.OpenAI]) -> None:
    a, b = shop
    resp = a.responses.create(model="to-openai", input="hi", store=False, extra_headers=NO_CACHE)
    assert resp.store is False
    with pytest.raises(openai.NotFoundError):
        b.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError) as nf:
        b.responses.create(model="to-openai", input="more", previous_response_id=resp.id)
    assert nf.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_another_tenant_finds_none_of_them(
    shop: tuple[openai.OpenAI, openai.OpenAI], narrow: openai.OpenAI
) -> None:
    a, b = shop
    mine = a.responses.create(model="to-openai", input="secret plans", extra_headers=NO_CACHE)
    with pytest.raises(openai.NotFoundError) as got:
        narrow.responses.retrieve(mine.id)
    assert got.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        narrow.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        narrow.responses.input_items.list(mine.id)
    with pytest.raises(openai.NotFoundError) as cont:
        narrow.responses.create(model="to-openai", input="tell me", previous_response_id=mine.id)
    body = cont.value.body
    assert body["param"] == "previous_response_id"  # type: ignore[index]
    assert body["code"] == "previous_response_not_found"  # type: ignore[index]
    assert mine.id in body["message"]  # type: ignore[index]
    # The owner still has it: the other tenant's delete touched nothing.
    assert b.responses.retrieve(mine.id).output_text == mine.output_text


def test_malformed_ids_and_pages_are_400s(
    stack: Stack, shop: tuple[openai.OpenAI, openai.OpenAI], keys: dict[str, str]
) -> None:
    a, _ = shop
    with pytest.raises(openai.BadRequestError) as long_id:
        a.responses.retrieve("resp_" + "x" * 200)
    assert long_id.value.body["param"] == "response_id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as prev:
        a.responses.create(model="to-openai", input="hi", previous_response_id="msg_1")
    assert prev.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as store:
        a.responses.create(model="to-openai", input="hi", extra_body={"store": "yes"})
    assert store.value.body["param"] == "store"  # type: ignore[index]
    resp = a.responses.create(model="to-openai", input="hi", extra_headers=NO_CACHE)
    for query, param in (
        ({"limit": 0}, "limit"),
        ({"order": "up"}, "order"),
        (
            {"after": "msg_x"},
            "after",
        ),
    ):
        with pytest.raises(openai.BadRequestError) as page:
            a.responses.input_items.list(resp.id, extra_query=query)
        assert page.value.body["param"] == param  # type: ignore[index]
    # No key: the door's 401, before any lookup.
    status, _ = http_get(stack.routers[0][2] + "/v1/responses/" + resp.id)
    assert status == 401


def test_a_response_expires_after_the_ttl(tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("ttl")
    with running_stack(tmp, FILES, SCENARIO, router_args=["--responses-ttl", "1"]) as stack:
        key = keys_cli("create", "--tenant", "shop", "--source", str(stack.source))
        wait_until(lambda: stack.router_status()["door"]["keys"] == 1, what="key pushed")
        client = _client(stack, 0, key)
        resp = client.responses.create(model="to-openai", input="hi", extra_headers=NO_CACHE)
        assert resp.store is True
        assert stack.router_status()["responses"]["written"] == 1

        def gone() -> bool:
            try:
                client.responses.retrieve(resp.id)
            except openai.NotFoundError:
                return True
            return False

        wait_until(gone, timeout=20, interval=0.2, what="the stored response expired")
        with pytest.raises(openai.NotFoundError):
            client.responses.create(model="to-openai", input="hi", previous_response_id=resp.id)
        assert stack.router_status()["responses"]["expired"] >= 1
