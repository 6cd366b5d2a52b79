"""The Messages door over gRPC (``Router.Messages``) against the HTTP Messages door.

One real router over loopback (the Messages door's policies, pools and keyed
tenants), the official ``anthropic`` SDK on ``/v1/messages`` and the
generated stubs on gRPC. The same conversation (system prompt, tool use and
its result, tools, stop sequences) sent through both doors gets the same
decision, the same answer and the same upstream request, for every family;
thinking blocks come back signed, streamed or not, and go back to an
Anthropic upstream intact; bad input is ``INVALID_ARGUMENT`` naming the
part, and the key is the identity as on HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import grpc
import pytest
from google.protobuf import json_format

# The Messages door's stack (a fixture of this module too, so its own router) and keys.
from test_messages_door import FAMILIES, ROUTED, TOOL, keys, stack  # noqa: F401
from test_parameters import _received

from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import Stack

NO_CACHE = {"Cache-Control": "no-cache"}
TIMEOUT = 20.0


@pytest.fixture(scope="module")
def stub(stack: Stack) -> Iterator[router_pb2_grpc.RouterStub]:  # noqa: F811 (fixtures)
    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        yield router_pb2_grpc.RouterStub(ch)


@pytest.fixture(scope="module")
def client(stack: Stack, keys: dict[str, str]) -> anthropic.Anthropic:  # noqa: F811
    return anthropic.Anthropic(
        base_url=stack.routers[0][2], api_key=keys["shop"], max_retries=0, timeout=TIMEOUT
    )


@pytest.fixture(scope="module")
def auth(keys: dict[str, str]) -> tuple[tuple[str, str], ...]:  # noqa: F811
    return (("authorization", "Bearer " + keys["shop"]),)


def _pb(block: dict[str, Any]) -> router_pb2.ContentBlock:
    """A Messages API content block as the gRPC ContentBlock."""
    kind = block["type"]
    if kind == "tool_use":
        args = json.dumps(block["input"])
        return router_pb2.ContentBlock(type=kind, id=block["id"], name=block["name"], input=args)
    if kind == "tool_result":
        return router_pb2.ContentBlock(
            type=kind, tool_use_id=block["tool_use_id"], text=block["content"]
        )
    if kind == "thinking":
        return router_pb2.ContentBlock(
            type=kind, text=block["thinking"], signature=block["signature"]
        )
    if kind == "redacted_thinking":
        return router_pb2.ContentBlock(type=kind, data=block["data"])
    return router_pb2.ContentBlock(type=kind, text=block["text"])


def _json(block: router_pb2.ContentBlock) -> dict[str, Any]:
    """A gRPC ContentBlock of an answer as the Messages API's block (as the SDK dumps it)."""
    if block.type == "tool_use":
        return {"type": "tool_use", "name": block.name, "input": json.loads(block.input)}
    if block.type == "thinking":
        return {"type": "thinking", "thinking": block.text, "signature": block.signature}
    return {"type": block.type, "text": block.text}


def _dumped(content: list[Any]) -> list[dict[str, Any]]:
    keep = ("type", "text", "name", "input", "thinking", "signature")
    return [{k: v for k, v in b.model_dump().items() if k in keep} for b in content]


# One conversation: a system prompt, a tool call and its result, then a question.
SYSTEM = "You are terse."
TURNS: list[dict[str, Any]] = [
    {"role": "user", "content": [{"type": "text", "text": "Where is order 42?"}]},
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup_order", "input": {"id": "42"}},
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "shipped"},
            {"type": "text", "text": "And when does it arrive?"},
        ],
    },
]


def _request(policy: str, **fields: Any) -> router_pb2.MessagesRequest:
    return router_pb2.MessagesRequest(
        policy=policy,
        system=SYSTEM,
        messages=[
            router_pb2.MessagesTurn(role=t["role"], content=[_pb(b) for b in t["content"]])
            for t in TURNS
        ],
        max_tokens=256,
        temperature=0.5,
        stop_sequences=["\n\nHuman:"],
        tools=[
            router_pb2.MessagesTool(
                name=TOOL["name"],
                description=TOOL["description"],
                input_schema=json.dumps(TOOL["input_schema"]),
            )
        ],
        user_id="u-1",
        no_cache=True,
        **fields,
    )


def _decision(d: router_pb2.Decision) -> dict[str, Any]:
    out = json_format.MessageToDict(d, preserving_proto_field_name=True)
    return {k: out.get(k) for k in ("policy", "pool", "chain", "rule", "signals", "selection")}


@pytest.mark.parametrize("policy", ROUTED)
def test_the_same_conversation_gets_the_same_decision_answer_and_upstream_request(
    policy: str,
    stack: Stack,  # noqa: F811 (the fixture)
    client: anthropic.Anthropic,
    stub: router_pb2_grpc.RouterStub,
    auth: tuple[tuple[str, str], ...],
) -> None:
    family = FAMILIES[policy][3].split("/")[0]
    raw = client.messages.with_raw_response.create(
        model=policy,
        max_tokens=256,
        system=SYSTEM,
        messages=TURNS,  # type: ignore[arg-type]
        tools=[TOOL],  # type: ignore[list-item]
        stop_sequences=["\n\nHuman:"],
        metadata={"user_id": "u-1"},
        extra_body={"temperature": 0.5},  # sent as the Messages API takes it
        extra_headers=NO_CACHE,
    )
    http = raw.parse()
    over_http = _received(stack, family)

    got, call = stub.Messages.with_call(_request(policy), metadata=auth, timeout=TIMEOUT)
    assert _received(stack, family) == over_http  # the upstream request, byte for byte as JSON
    assert got.model == http.model == FAMILIES[policy][1]
    # The same blocks (a tool call's id is the upstream's own, new for every answer).
    assert [_json(b) for b in got.content] == _dumped(http.content)
    assert all(b.id for b in got.content if b.type == "tool_use")
    assert got.stop_reason == http.stop_reason
    assert (got.usage.prompt_tokens, got.usage.completion_tokens) == (
        http.usage.input_tokens,
        http.usage.output_tokens,
    )
    assert got.id.startswith("msg_") and got.feedback_id
    assert got.decision.pool == raw.headers["x-skyroute-pool"] == FAMILIES[policy][0]
    trailers = dict(call.trailing_metadata() or ())
    assert trailers["x-skyroute-model"] == raw.headers["x-skyroute-model"]

    # Explain on both doors: one decision, and count_tokens is its prompt estimate.
    explained = stub.ExplainMessages(_request(policy), metadata=auth, timeout=TIMEOUT)
    body = {
        "model": policy,
        "max_tokens": 256,
        "temperature": 0.5,
        "system": SYSTEM,
        "messages": TURNS,
        "tools": [TOOL],
        "stop_sequences": ["\n\nHuman:"],
        "metadata": {"user_id": "u-1"},
    }
    over_http_explain = client.post(
        "/v1/explain?door=messages", body=body, cast_to=object, options={"headers": NO_CACHE}
    )
    assert _decision(explained) == {
        k: over_http_explain.get(k)  # type: ignore[attr-defined]
        for k in ("policy", "pool", "chain", "rule", "signals", "selection")
    }
    counted = client.messages.count_tokens(
        model=policy,
        system=SYSTEM,
        messages=TURNS,  # type: ignore[arg-type]
        tools=[TOOL],  # type: ignore[list-item]
    )
    assert explained.signals.prompt_tokens == counted.input_tokens


def test_thinking_comes_back_signed_and_goes_back_intact(
    stack: Stack,  # noqa: F811 (the fixture)
    stub: router_pb2_grpc.RouterStub,
    auth: tuple[tuple[str, str], ...],
) -> None:
    ask = router_pb2.MessagesRequest(
        policy="to-anthropic",
        max_tokens=2048,
        thinking_budget_tokens=1024,
        messages=[
            router_pb2.MessagesTurn(
                role="user", content=[router_pb2.ContentBlock(type="text", text="Why late?")]
            )
        ],
        no_cache=True,
    )
    whole = stub.Messages(ask, metadata=auth, timeout=TIMEOUT)
    assert [b.type for b in whole.content] == ["thinking", "text"]
    thought = whole.content[0]
    assert thought.signature.startswith("Eq") and thought.text
    assert _received(stack, "anthropic")["thinking"] == {"type": "enabled", "budget_tokens": 1024}

    chunks = list(stub.StreamMessages(ask, metadata=auth, timeout=TIMEOUT))
    kinds = [c.WhichOneof("chunk") for c in chunks]
    assert kinds[0] == "decision" and kinds[1] == "block" and kinds[-1] == "done"
    assert set(kinds[2:-1]) == {"text_delta"}
    assert chunks[1].block == thought
    assert "".join(c.text_delta for c in chunks[2:-1]) == whole.content[1].text
    done = chunks[-1].done
    assert done.stop_reason == "end_turn" and not done.content
    assert done.usage.completion_tokens == whole.usage.completion_tokens

    follow = router_pb2.MessagesRequest()
    follow.CopyFrom(ask)
    follow.messages.extend(
        [
            router_pb2.MessagesTurn(role="assistant", content=list(whole.content)),
            router_pb2.MessagesTurn(
                role="user", content=[router_pb2.ContentBlock(type="text", text="thanks")]
            ),
        ]
    )
    again = stub.Messages(follow, metadata=auth, timeout=TIMEOUT)
    assert again.content[0].type == "thinking"
    sent = _received(stack, "anthropic")["messages"][1]["content"][0]
    assert sent == {"type": "thinking", "thinking": thought.text, "signature": thought.signature}
    # Another family has no thinking: text alone, the request still served.
    other = router_pb2.MessagesRequest()
    other.CopyFrom(follow)
    other.policy = "to-openai"
    assert [b.type for b in stub.Messages(other, metadata=auth, timeout=TIMEOUT).content] == [
        "text"
    ]


def test_a_streamed_tool_use_is_one_block(
    stub: router_pb2_grpc.RouterStub, auth: tuple[tuple[str, str], ...]
) -> None:
    req = _request("to-gemini", tool_choice="any")
    del req.messages[1:]
    chunks = list(stub.StreamMessages(req, metadata=auth, timeout=TIMEOUT))
    blocks = [c.block for c in chunks if c.WhichOneof("chunk") == "block"]
    assert [b.type for b in blocks] == ["tool_use"] and blocks[0].name == "lookup_order"
    assert isinstance(json.loads(blocks[0].input)["order_id"], str)
    assert chunks[-1].done.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"block": router_pb2.ContentBlock(type="document")}, "messages.0.content.1"),
        ({"block": router_pb2.ContentBlock(type="tool_use", input="[1")}, "input"),
        ({"role": "robot"}, "messages.0.role"),
    ],
    ids=["max_tokens", "temperature", "top_k", "tool_choice", "document", "input", "role"],
)
def test_bad_input_is_invalid_argument_naming_the_part(
    stub: router_pb2_grpc.RouterStub,
    auth: tuple[tuple[str, str], ...],
    change: dict[str, Any],
    named: str,
) -> None:
    req = _request("to-openai")
    block, role = change.pop("block", None), change.pop("role", None)
    for name, value in change.items():
        setattr(req, name, value)
    if block is not None:
        req.messages[0].content.append(block)
    if role is not None:
        req.messages[0].role = role
    with pytest.raises(grpc.RpcError) as bad:
        stub.Messages(req, metadata=auth, timeout=TIMEOUT)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad.value.details()
    assert named in (bad.value.details() or ""), bad.value.details()


def test_the_key_is_the_identity(
    stub: router_pb2_grpc.RouterStub,
    keys: dict[str, str],  # noqa: F811
) -> None:
    req = _request("to-anthropic")
    with pytest.raises(grpc.RpcError) as none:
        stub.Messages(req, timeout=TIMEOUT)
    assert none.value.code() == grpc.StatusCode.UNAUTHENTICATED
    narrow = (("x-api-key", keys["narrow"]),)
    with pytest.raises(grpc.RpcError) as denied:
        stub.Messages(req, metadata=narrow, timeout=TIMEOUT)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    req.policy = "to-openai"
    assert stub.Messages(req, metadata=narrow, timeout=TIMEOUT).model == "gpt-model"
