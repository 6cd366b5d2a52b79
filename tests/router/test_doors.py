"""Both doors are one pipeline: the same request gets the same decision and answer.

For every signal in the registry, one request that exercises it goes through
the HTTP door (the official ``openai`` SDK) and through the gRPC door (the
generated stub), over loopback to one real router, with the provider
simulator upstream. Explain (``POST /v1/explain`` and ``Router.Explain``)
must return the same decision, the answer the same model, text, usage and
``x-skyroute-*`` facts (headers over HTTP, trailing metadata over gRPC).
One tool-using conversation per case gets one decision on every door: Chat,
Messages and Responses over HTTP, ``Explain`` and ``ExplainMessages`` over gRPC.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import openai
import pytest
from google.protobuf import json_format

from skyroute.router.signals import DECLARED, SIGNALS
from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import Stack, running_stack

_POOL = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: {name}}}
spec:
  models:
    - name: {name}-model
      provider: {provider}
      endpoint: "{{SIM}}/{path}"
      pricing: {{inputPerMTok: 1.0, outputPerMTok: 2.0}}
"""
_POOLS = {
    "base": ("openai", "openai/v1"),
    "by-tenant": ("anthropic", "anthropic"),
    "by-tier": ("gemini", "gemini"),
    "by-locale": ("openai", "openai/v1"),
    "by-tools": ("anthropic", "anthropic"),
    "by-size": ("gemini", "gemini"),
    "by-intent": ("openai", "openai/v1"),
}
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: doors}
spec:
  default: true
  trustDeclaredIntent: true
  intents:
    - {name: billing.refund, keywords: [refund], toolUse: 0.7}
    - {name: faq.hours, patterns: ["open.*hours"]}
    - {name: chat.greeting, examples: ["hello there friend, how is your day going"]}
  rules:
    - {name: tenant, match: {tenants: [acme]}, pool: by-tenant}
    - {name: tier, match: {userTiers: [enterprise]}, pool: by-tier}
    - {name: locale, match: {locales: [de-DE]}, pool: by-locale}
    - {name: tools, match: {tools: required}, pool: by-tools}
    - {name: size, match: {minPromptTokens: 300}, pool: by-size}
    - {name: intent, match: {intents: ["billing.*"]}, pool: by-intent}
  defaultPool: base
  selection: {mode: ordered}
"""
FILES = {
    "pools.yaml": "---\n".join(
        _POOL.format(name=n, provider=p, path=u) for n, (p, u) in _POOLS.items()
    ),
    "policy.yaml": POLICY,
}
SCENARIO = """\
seed: 11
defaults:
  ttft_ms: {p50: 2, p95: 4}
  tokens_per_s: 20000
  completion_tokens: {p50: 16, p95: 16, min: 16, max: 16}
  error_rate: 0
"""
TOOL = {
    "name": "lookup_order",
    "description": "Look an order up",
    "parameters": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
}


@dataclass(frozen=True)
class Case:
    """A request that exercises one signal, and what Explain must then show."""

    prompt: str
    declared: dict[str, str] = field(default_factory=dict)  # registry name -> value
    tools: bool = False
    expect: dict[str, Any] = field(default_factory=dict)  # Explain signal -> value
    pool: str = "base"


CASES: dict[str, Case] = {
    "intent": Case("I want a refund", expect={"intent": "billing.refund"}, pool="by-intent"),
    "intent_confidence": Case(
        "hello there friend, how is your day going",
        expect={"intent": "chat.greeting", "intent_source": "embedding"},
    ),
    "intent_source": Case(
        "are you open during holiday hours?",
        expect={"intent": "faq.hours", "intent_source": "pattern"},
    ),
    "declared_intent": Case(
        "something else entirely",
        declared={"declared_intent": "billing.refund"},
        expect={"declared_intent": "billing.refund", "intent_source": "declared"},
        pool="by-intent",
    ),
    "prompt_tokens": Case("tell me a story " * 100, pool="by-size"),
    "has_tools": Case(
        "where is my parcel", tools=True, expect={"has_tools": True}, pool="by-tools"
    ),
    "predicted_tool_use": Case(
        "refund for my order", expect={"predicted_tool_use": 0.7}, pool="by-intent"
    ),
    "locale": Case(
        "hallo", declared={"locale": "de-DE"}, expect={"locale": "de-DE"}, pool="by-locale"
    ),
    "user_tier": Case(
        "hi",
        declared={"user_tier": "enterprise"},
        expect={"user_tier": "enterprise"},
        pool="by-tier",
    ),
    "tenant": Case("hi", declared={"tenant": "acme"}, expect={"tenant": "acme"}, pool="by-tenant"),
    "safety_class": Case(
        "hi", declared={"safety_class": "minor"}, expect={"safety_class": "minor"}
    ),
    # No spec.learnedSignal here: both doors show the neutral 0.5 (a fitted signal's
    # doors are in tests/e2e/test_learned_signal.py).
    "win_probability": Case("which plan suits me", expect={"win_probability": 0.5}),
}
_BY_NAME = {s.name: s for s in DECLARED}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("doors"), FILES, SCENARIO) as stack:
        yield stack


@pytest.fixture(scope="module")
def http(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
    )


@pytest.fixture(scope="module")
def stub(stack: Stack) -> Iterator[router_pb2_grpc.RouterStub]:
    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        yield router_pb2_grpc.RouterStub(ch)


def _headers(case: Case) -> dict[str, str]:
    return {_BY_NAME[n].header: v for n, v in case.declared.items()} | {"Cache-Control": "no-cache"}


def _body(case: Case) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "doors",
        "messages": [{"role": "user", "content": case.prompt}],
    }
    if case.tools:
        body["tools"] = [{"type": "function", "function": TOOL}]
    return body


def _grpc_request(case: Case) -> router_pb2.CompletionRequest:
    req = router_pb2.CompletionRequest(
        policy="doors",
        messages=[router_pb2.Message(role="user", content=case.prompt)],
        no_cache=True,
        **{_BY_NAME[n].field: v for n, v in case.declared.items()},
    )
    if case.tools:
        req.tools.append(
            router_pb2.Tool(
                name=TOOL["name"],
                description=TOOL["description"],
                parameters=json.dumps(TOOL["parameters"]),
            )
        )
    return req


def _facts(pairs: Any) -> dict[str, str]:
    # Attempt durations and the feedback id (it names one answer) differ between any
    # two requests; everything else must not.
    per_request = ("x-skyroute-attempts", "x-skyroute-feedback-id")
    return {
        k: v for k, v in dict(pairs).items() if k.startswith("x-skyroute-") and k not in per_request
    }


def test_every_registry_signal_has_a_case() -> None:
    assert set(CASES) == {s.name for s in SIGNALS}


@pytest.mark.parametrize("name", list(CASES))
def test_same_decision_and_answer_through_both_doors(
    name: str, stack: Stack, http: openai.OpenAI, stub: router_pb2_grpc.RouterStub
) -> None:
    case = CASES[name]
    raw = http.post(
        "/explain", body=_body(case), cast_to=object, options={"headers": _headers(case)}
    )
    over_http = json_format.ParseDict(raw, router_pb2.Decision())
    over_grpc = stub.Explain(_grpc_request(case), timeout=20)
    assert over_http == over_grpc
    signals = json_format.MessageToDict(over_grpc.signals, preserving_proto_field_name=True)
    for key, value in case.expect.items():
        assert getattr(over_grpc.signals, key) == pytest.approx(value), (key, signals)
    assert over_grpc.pool == case.pool, over_grpc.reasons

    stack.reset_sim()  # the same random sequence for both answers
    resp = http.chat.completions.with_raw_response.create(
        **_body(case), extra_headers=_headers(case)
    )
    answer = resp.parse()
    stack.reset_sim()
    got, call = stub.Complete.with_call(_grpc_request(case), timeout=20)

    assert answer.model == got.model == f"{case.pool}-model"
    choice = answer.choices[0]
    assert (choice.message.content or "") == got.message.content
    assert choice.finish_reason == got.finish_reason
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        got.usage.prompt_tokens,
        got.usage.completion_tokens,
    )
    calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    assert calls == [(c.name, c.arguments) for c in got.message.tool_calls]
    assert _facts(resp.headers.items()) == _facts(call.trailing_metadata())
    assert dict(call.trailing_metadata())["x-skyroute-feedback-id"] == got.feedback_id
    assert resp.headers["x-skyroute-feedback-id"].startswith("fb1.")
    assert resp.headers["x-skyroute-pool"] == got.decision.pool == case.pool
    assert got.decision == over_grpc


def test_same_stream_through_both_doors(
    stack: Stack, http: openai.OpenAI, stub: router_pb2_grpc.RouterStub
) -> None:
    case = CASES["tenant"]
    stack.reset_sim()
    text, models = [], set()
    for chunk in http.chat.completions.create(
        **_body(case), stream=True, extra_headers=_headers(case)
    ):
        models.add(chunk.model)
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
    stack.reset_sim()
    chunks = list(stub.StreamComplete(_grpc_request(case), timeout=20))
    assert chunks[0].WhichOneof("chunk") == "decision" and chunks[-1].WhichOneof("chunk") == "done"
    grpc_text = "".join(c.delta for c in chunks if c.WhichOneof("chunk") == "delta")
    assert "".join(text) == grpc_text and grpc_text
    assert models == {chunks[-1].done.model} == {"by-tenant-model"}


def test_bad_declared_signal_is_a_clear_error_on_both_doors(
    http: openai.OpenAI, stub: router_pb2_grpc.RouterStub
) -> None:
    case = Case("hi", declared={"tenant": "t" * 129})
    with pytest.raises(openai.BadRequestError) as e:
        http.chat.completions.create(**_body(case), extra_headers=_headers(case))
    assert e.value.body["param"] == "x-skyroute-tenant"  # type: ignore[index]
    assert "at most 128" in e.value.body["message"]  # type: ignore[index]
    with pytest.raises(grpc.RpcError) as g:
        stub.Complete(_grpc_request(case), timeout=20)
    assert g.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tenant" in (g.value.details() or "") and "at most 128" in (g.value.details() or "")


def test_unknown_policy_is_not_found_on_both_doors(
    http: openai.OpenAI, stub: router_pb2_grpc.RouterStub
) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        http.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(grpc.RpcError) as g:
        stub.Complete(
            router_pb2.CompletionRequest(
                policy="nope", messages=[router_pb2.Message(role="user", content="hi")]
            ),
            timeout=20,
        )
    assert g.value.code() == grpc.StatusCode.NOT_FOUND
    assert "policy 'nope' not found" in (g.value.details() or "")
    assert e.value.message.endswith(g.value.details() or "")


# The same conversation as each HTTP API carries it: a system prompt, a tool call and its
# result, then the case's question (a Chat Completions body, a Messages one, a Responses one).
_HISTORY_CALL = {"id": "call_1", "name": TOOL["name"], "arguments": '{"order_id":"7"}'}


def _chat_conversation(case: Case) -> dict[str, Any]:
    call = _HISTORY_CALL
    fn = {"name": call["name"], "arguments": call["arguments"]}
    body = {
        "model": "doors",
        "messages": [
            {"role": "system", "content": "You help with orders."},
            {"role": "user", "content": "check order 7"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": call["id"], "type": "function", "function": fn}],
            },
            {"role": "tool", "tool_call_id": call["id"], "content": "delivered"},
            {"role": "user", "content": case.prompt},
        ],
    }
    if case.tools:
        body["tools"] = [{"type": "function", "function": TOOL}]
    return body


def _messages_conversation(case: Case) -> dict[str, Any]:
    call = _HISTORY_CALL
    use = {
        "type": "tool_use",
        "id": call["id"],
        "name": call["name"],
        "input": json.loads(call["arguments"]),
    }
    body: dict[str, Any] = {
        "model": "doors",
        "max_tokens": 256,
        "system": "You help with orders.",
        "messages": [
            {"role": "user", "content": "check order 7"},
            {"role": "assistant", "content": [use]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call["id"], "content": "delivered"}
                ],
            },
            {"role": "user", "content": case.prompt},
        ],
    }
    if case.tools:
        body["tools"] = [
            {
                "name": TOOL["name"],
                "description": TOOL["description"],
                "input_schema": TOOL["parameters"],
            }
        ]
    return body


def _responses_conversation(case: Case) -> dict[str, Any]:
    call = _HISTORY_CALL
    body: dict[str, Any] = {
        "model": "doors",
        "instructions": "You help with orders.",
        "input": [
            {"role": "user", "content": "check order 7"},
            {
                "type": "function_call",
                "call_id": call["id"],
                "name": call["name"],
                "arguments": call["arguments"],
            },
            {"type": "function_call_output", "call_id": call["id"], "output": "delivered"},
            {"role": "user", "content": [{"type": "input_text", "text": case.prompt}]},
        ],
    }
    if case.tools:
        body["tools"] = [{"type": "function", **TOOL}]
    return body


def _grpc_messages(case: Case) -> router_pb2.MessagesRequest:
    """The Messages conversation as gRPC's MessagesRequest, with the case's declared signals."""
    body = _messages_conversation(case)
    turns = []
    for m in body["messages"]:
        blocks = m["content"]
        if isinstance(blocks, str):
            blocks = [{"type": "text", "text": blocks}]
        turns.append(
            router_pb2.MessagesTurn(
                role=m["role"],
                content=[
                    router_pb2.ContentBlock(
                        type=b["type"],
                        text=b.get("text", b.get("content", "")),
                        id=b.get("id", ""),
                        name=b.get("name", ""),
                        input=json.dumps(b["input"]) if "input" in b else "",
                        tool_use_id=b.get("tool_use_id", ""),
                    )
                    for b in blocks
                ],
            )
        )
    tools = [
        router_pb2.MessagesTool(
            name=t["name"], description=t["description"], input_schema=json.dumps(t["input_schema"])
        )
        for t in body.get("tools", ())
    ]
    return router_pb2.MessagesRequest(
        policy="doors",
        system=body["system"],
        messages=turns,
        max_tokens=body["max_tokens"],
        tools=tools,
        no_cache=True,
        **{_BY_NAME[n].field: v for n, v in case.declared.items()},
    )


@pytest.mark.parametrize("name", list(CASES))
def test_one_conversation_gets_one_decision_on_every_door(
    name: str, http: openai.OpenAI, stub: router_pb2_grpc.RouterStub
) -> None:
    """Signals are extracted once, whichever API a conversation arrives on."""
    case = CASES[name]
    opts = {"headers": _headers(case)}
    decisions = {
        door: json_format.ParseDict(
            http.post(f"/explain?door={door}", body=body, cast_to=object, options=opts),
            router_pb2.Decision(),
        )
        for door, body in (
            ("chat", _chat_conversation(case)),
            ("messages", _messages_conversation(case)),
            ("responses", _responses_conversation(case)),
        )
    }
    req = _grpc_request(case)
    del req.messages[:]
    for m in _chat_conversation(case)["messages"]:
        msg = router_pb2.Message(
            role=m["role"], content=m["content"] or "", tool_call_id=m.get("tool_call_id", "")
        )
        for c in m.get("tool_calls", ()):
            msg.tool_calls.append(
                router_pb2.ToolCall(
                    id=c["id"], name=c["function"]["name"], arguments=c["function"]["arguments"]
                )
            )
        req.messages.append(msg)
    decisions["grpc"] = stub.Explain(req, timeout=20)
    decisions["grpc-messages"] = stub.ExplainMessages(_grpc_messages(case), timeout=20)
    chat = decisions["chat"]
    assert chat.pool == case.pool, chat.reasons
    for door, d in decisions.items():
        assert d == chat, (
            door,
            json_format.MessageToDict(d.signals),
            json_format.MessageToDict(chat.signals),
        )


def test_explain_names_an_unknown_door(http: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        http.post("/explain?door=fax", body={}, cast_to=object)
    assert e.value.body["param"] == "door"  # type: ignore[index]
