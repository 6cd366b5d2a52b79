"""The Anthropic Messages door, with the official ``anthropic`` SDK as the client.

One real router over loopback (``base_url`` pointing at it, as
``ANTHROPIC_BASE_URL`` does for Claude Code) with the provider simulator
upstream. Each policy routes to one family, so the same Messages request is
answered by an Anthropic upstream (same family) and, translated both ways,
by OpenAI and Gemini upstreams: messages, streams (the raw event sequence
too), tools and tool results, count_tokens, and Anthropic-shaped errors.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from skyroute.router import tokens

from harness import Stack, keys_cli, running_stack, wait_until

_POOL = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: {name}}}
spec:
  models:
    - name: {model}
      provider: {provider}
      endpoint: "{{SIM}}/{path}"
      pricing: {{inputPerMTok: 1.0, outputPerMTok: 2.0}}
"""
_POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {{name: {name}}}
spec:
  default: {default}
  defaultPool: {pool}
  selection: {{mode: ordered}}
"""
# policy -> (pool, model, family, simulator path)
FAMILIES = {
    "to-anthropic": ("claude", "claude-model", "anthropic", "anthropic"),
    "to-openai": ("gpt", "gpt-model", "openai", "openai/v1"),
    "to-gemini": ("gem", "gem-model", "gemini", "gemini"),
    "to-broken": ("broken", "err-model", "openai", "openai/v1"),
}
FILES = {
    "pools.yaml": "---\n".join(
        _POOL.format(name=pool, model=model, provider=fam, path=path)
        for pool, model, fam, path in FAMILIES.values()
    ),
    "policy.yaml": "---\n".join(
        _POLICY.format(name=name, pool=pool, default=str(name == "to-anthropic").lower())
        for name, (pool, *_) in FAMILIES.items()
    ),
}
TENANTS = """\
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {name: shop}
spec:
  tier: standard
  policies: [to-anthropic, to-openai, to-gemini, to-broken]
  rateLimits: {requestsPerMinute: 6000}
---
apiVersion: skyroute.io/v1alpha1
kind: Tenant
metadata: {name: narrow}
spec:
  tier: standard
  policies: [to-openai]
"""
FILES["tenants.yaml"] = TENANTS
SCENARIO = """\
seed: 5
defaults:
  ttft_ms: {p50: 2, p95: 4}
  tokens_per_s: 20000
  completion_tokens: {p50: 24, p95: 24, min: 24, max: 24}
  error_rate: 0
models:
  err-model: {error_rate: 1, errors: {server_error: 1}}
"""
TOOL = {
    "name": "lookup_order",
    "description": "Look an order up",
    "input_schema": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
}
ROUTED = ["to-anthropic", "to-openai", "to-gemini"]
NO_CACHE = {"Cache-Control": "no-cache"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("messages"), FILES, SCENARIO) as stack:
        yield stack


@pytest.fixture(scope="module")
def keys(stack: Stack) -> dict[str, str]:
    out = {
        t: keys_cli("create", "--tenant", t, "--source", str(stack.source))
        for t in ("shop", "narrow")
    }
    wait_until(lambda: stack.router_status()["door"]["keys"] == 2, what="keys pushed")
    return out


@pytest.fixture(scope="module")
def client(stack: Stack, keys: dict[str, str]) -> anthropic.Anthropic:
    # The SDK sends its key as x-api-key: the door must take it as the caller's identity.
    return anthropic.Anthropic(
        base_url=stack.routers[0][2], api_key=keys["shop"], max_retries=0, timeout=20
    )


def _model(policy: str) -> str:
    return FAMILIES[policy][1]


@pytest.mark.parametrize("policy", ROUTED)
def test_message_answered_by_every_family(
    policy: str, stack: Stack, client: anthropic.Anthropic
) -> None:
    raw = client.messages.with_raw_response.create(
        model=policy,
        max_tokens=256,
        system="You are terse.",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Where is my parcel?"}]}],
        metadata={"user_id": "u-1"},
        stop_sequences=["\n\nHuman:"],
        extra_headers=NO_CACHE,
    )
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.model == _model(policy)
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].type == "text"
    assert msg.content[0].text.startswith(f"[{_model(policy)}]")
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == 24 and msg.usage.input_tokens > 0
    assert raw.headers["x-skyroute-pool"] == FAMILIES[policy][0]
    assert raw.headers["x-skyroute-policy"] == policy


@pytest.mark.parametrize("policy", ROUTED)
def test_stream_matches_the_unary_answer(
    policy: str, stack: Stack, client: anthropic.Anthropic
) -> None:
    body: dict[str, Any] = {
        "model": policy,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Tell me about shipping"}],
        "extra_headers": NO_CACHE,
    }
    whole = client.messages.create(**body)
    with client.messages.stream(**body) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert whole.content[0].type == "text"
    assert text == whole.content[0].text
    assert final.model == _model(policy) and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens == 24
    assert final.usage.input_tokens == whole.usage.input_tokens > 0


def _post(stack: Stack, data: bytes, key: str) -> tuple[int, str, bytes]:
    """A raw POST /v1/messages: status, content type, body."""
    headers = {"anthropic-version": "2023-06-01", "Content-Type": "application/json"}
    req = urllib.request.Request(
        stack.routers[0][2] + "/v1/messages",
        data=data,
        headers={**headers, "x-api-key": key, **NO_CACHE},
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.headers["content-type"], resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["content-type"], e.read()


def _events(stack: Stack, body: dict[str, Any], key: str) -> list[tuple[str, str]]:
    """The raw SSE events of a stream: (event name, data's type)."""
    status, ctype, raw = _post(stack, json.dumps({**body, "stream": True}).encode(), key)
    assert status == 200 and ctype.startswith("text/event-stream")
    out = []
    name = ""
    for line in raw.decode().splitlines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            out.append((name, json.loads(line[6:])["type"]))
    return out


@pytest.mark.parametrize("policy", ["to-anthropic", "to-openai"])
def test_raw_event_sequence(policy: str, stack: Stack, keys: dict[str, str]) -> None:
    text = _events(
        stack,
        {"model": policy, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]},
        keys["shop"],
    )
    assert all(name == kind for name, kind in text)
    kinds = [k for _, k in text]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert set(kinds[3:-3]) == {"content_block_delta"}
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]

    tools = _events(
        stack,
        {
            "model": policy,
            "max_tokens": 64,
            "tools": [TOOL],
            "messages": [{"role": "user", "content": "where is order 7?"}],
        },
        keys["shop"],
    )
    assert [k for _, k in tools] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


@pytest.mark.parametrize("policy", ROUTED)
def test_tool_use_and_tool_result_round_trip(
    policy: str, stack: Stack, client: anthropic.Anthropic
) -> None:
    question = {"role": "user", "content": "Where is order 42?"}
    first = client.messages.create(
        model=policy,
        max_tokens=256,
        tools=[TOOL],  # type: ignore[list-item]
        tool_choice={"type": "any"},
        messages=[question],  # type: ignore[list-item]
        extra_headers=NO_CACHE,
    )
    assert first.stop_reason == "tool_use"
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert use.type == "tool_use" and use.name == "lookup_order"
    assert isinstance(use.input, dict) and isinstance(use.input["order_id"], str)

    with client.messages.stream(
        model=policy,
        max_tokens=256,
        tools=[TOOL],  # type: ignore[list-item]
        messages=[question],  # type: ignore[list-item]
        extra_headers=NO_CACHE,
    ) as stream:
        streamed = stream.get_final_message()
    (s_use,) = [b for b in streamed.content if b.type == "tool_use"]
    assert s_use.type == "tool_use" and s_use.name == "lookup_order"
    assert isinstance(s_use.input, dict) and set(s_use.input) == set(use.input)

    # The result goes back; every family must see it answer the call it made.
    second = client.messages.create(
        model=policy,
        max_tokens=256,
        tools=[TOOL],  # type: ignore[list-item]
        messages=[
            question,  # type: ignore[list-item]
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": use.id,
                        "content": [{"type": "text", "text": "shipped"}],
                    }
                ],
            },
        ],
        extra_headers=NO_CACHE,
    )
    assert second.content[0].type == "text"
    assert second.content[0].text.startswith(f"[{_model(policy)}]")


def test_count_tokens_is_the_routers_estimate(client: anthropic.Anthropic) -> None:
    short = client.messages.count_tokens(
        model="to-openai", messages=[{"role": "user", "content": "hello"}]
    )
    long = client.messages.count_tokens(
        model="to-openai",
        system="You help with orders.",
        tools=[TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "hello " * 200}],
    )
    tool = {"type": "function", "function": {"name": TOOL["name"]}}
    tool["function"]["parameters"] = TOOL["input_schema"]  # type: ignore[index]
    tool["function"]["description"] = TOOL["description"]  # type: ignore[index]
    assert short.input_tokens == tokens.estimate([{"role": "user", "content": "hello"}])
    assert long.input_tokens == tokens.estimate(
        [
            {"role": "system", "content": "You help with orders."},
            {"role": "user", "content": "hello " * 200},
        ],
        [tool],
    )
    assert long.input_tokens > short.input_tokens + 150


def test_x_api_key_is_the_identity(stack: Stack, keys: dict[str, str]) -> None:
    base = stack.routers[0][2]
    hi: list[Any] = [{"role": "user", "content": "hi"}]
    wrong = anthropic.Anthropic(base_url=base, api_key="sk-sr-nope-nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        wrong.messages.create(model="to-openai", max_tokens=16, messages=hi)
    assert e.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert keys["shop"] not in str(e.value.body)
    narrow = anthropic.Anthropic(base_url=base, api_key=keys["narrow"], max_retries=0)
    assert narrow.messages.create(model="to-openai", max_tokens=16, messages=hi).content
    with pytest.raises(anthropic.PermissionDeniedError) as d:
        narrow.messages.create(model="to-anthropic", max_tokens=16, messages=hi)
    assert d.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    # A Bearer token (ANTHROPIC_AUTH_TOKEN) is the same key.
    bearer = anthropic.Anthropic(base_url=base, auth_token=keys["narrow"], max_retries=0)
    assert bearer.messages.create(model="to-openai", max_tokens=16, messages=hi).content


def test_errors_are_anthropic_shaped(
    stack: Stack, client: anthropic.Anthropic, keys: dict[str, str]
) -> None:
    with pytest.raises(anthropic.NotFoundError) as nf:
        client.messages.create(
            model="nope", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert nf.value.body["type"] == "error"  # type: ignore[index]
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert "policy 'nope' not found" in nf.value.body["error"]["message"]  # type: ignore[index]

    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(
            model="to-openai",
            max_tokens=16,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
            messages=[{"role": "user", "content": "hi"}],
        )
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "web_search_20250305" in bad.value.body["error"]["message"]  # type: ignore[index]

    status, _, raw = _post(
        stack,
        json.dumps(
            {"model": "to-openai", "messages": [{"role": "user", "content": "hi"}]}
        ).encode(),
        keys["shop"],
    )
    assert status == 400
    assert json.loads(raw)["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required (a positive integer)",
    }
    status, _, raw = _post(stack, b"{not json", keys["shop"])
    assert status == 400 and json.loads(raw)["type"] == "error"

    with pytest.raises(anthropic.InternalServerError) as up:
        client.messages.create(
            model="to-broken",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers=NO_CACHE,
        )
    assert up.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "all attempts failed" in up.value.body["error"]["message"]  # type: ignore[index]
    assert up.value.response.headers["x-skyroute-attempts"]

    with (
        pytest.raises(anthropic.InternalServerError),
        client.messages.stream(
            model="to-broken",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers=NO_CACHE,
        ) as stream,
    ):
        stream.get_final_message()
    # The router is unharmed.
    ok = client.messages.create(
        model="to-anthropic", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    assert ok.content


@pytest.mark.parametrize("user_id", [42, ["u"], "u" * 257])
def test_metadata_user_id_is_a_short_string(client: anthropic.Anthropic, user_id: object) -> None:
    """As the Messages API: ``metadata.user_id`` is a string of at most 256 characters
    (it was passed through ``str()``, so a number became a user id)."""
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(
            model="to-anthropic",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            metadata={"user_id": user_id},  # type: ignore[typeddict-item]
        )
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert bad.value.body["error"]["message"].startswith("metadata.user_id")  # type: ignore[index]
    ok = client.messages.create(
        model="to-anthropic",
        max_tokens=16,
        messages=[{"role": "user", "content": "hi"}],
        metadata={"user_id": "u-1"},
    )
    assert ok.content


def test_thinking_blocks_come_back_signed_streamed_or_not(client: anthropic.Anthropic) -> None:
    ask: dict[str, Any] = {
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Why was my order late?"}],
        "extra_headers": NO_CACHE,
    }
    whole = client.messages.create(model="to-anthropic", **ask)
    assert [b.type for b in whole.content] == ["thinking", "text"]
    thought = whole.content[0]
    assert thought.type == "thinking" and thought.signature.startswith("Eq")
    with client.messages.stream(model="to-anthropic", **ask) as stream:
        final = stream.get_final_message()
    assert [b.model_dump() for b in final.content] == [b.model_dump() for b in whole.content]
    # The next turn carries the signed block back; the same family takes it as it was.
    follow = client.messages.create(
        model="to-anthropic",
        **{
            **ask,
            "messages": [
                *ask["messages"],
                {"role": "assistant", "content": [b.model_dump() for b in whole.content]},
                {"role": "user", "content": "thanks"},
            ],
        },
    )
    assert follow.content[0].type == "thinking"
    # Another family has no thinking: the answer is text alone, the request still served.
    other = client.messages.create(model="to-openai", **ask)
    assert [b.type for b in other.content] == ["text"]


def test_idempotency_key_replays_the_message_and_its_stream(client: anthropic.Anthropic) -> None:
    ask: dict[str, Any] = {
        "model": "to-anthropic",
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Has order 9 shipped?"}],
    }
    headers = {**NO_CACHE, "Idempotency-Key": "messages-replay-1"}
    first = client.messages.with_raw_response.create(**ask, extra_headers=headers)
    again = client.messages.with_raw_response.create(**ask, extra_headers=headers)
    assert "x-skyroute-idempotent-replay" not in first.headers
    assert again.headers["x-skyroute-idempotent-replay"] == "true"
    whole = first.parse()
    # The same answer (its id is the repeat's own request id, as on the Chat door).
    assert again.parse().model_dump(exclude={"id"}) == whole.model_dump(exclude={"id"})
    with client.messages.stream(**ask, extra_headers=headers) as stream:
        replayed = stream.get_final_message()
    assert [b.model_dump() for b in replayed.content] == [b.model_dump() for b in whole.content]
    assert replayed.content[0].type == "thinking"
