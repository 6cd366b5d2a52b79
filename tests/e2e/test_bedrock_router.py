"""Router with Amazon Bedrock pools, end to end: the official openai SDK as the router's client.

Real processes over loopback: the simulator (its Bedrock Converse surface,
which verifies every SigV4 signature with botocore against its key as the
secret access key), the control plane compiling ModelPools with ``provider:
bedrock``, ``auth: aws`` and a ``region`` (and one model with a Bedrock API
key instead), and one router whose AWS credentials come from the standard
chain (here its environment). Answers
come from Bedrock unary and streamed, tool calls included; a throttled
Bedrock model (``ThrottlingException``) falls back to another family; a
``ValidationException`` is the client's 400, not retried elsewhere.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import openai
import pytest

from harness import Proc, Stack, environment

SECRET = "e2e-bedrock-secret"
MODEL_ID = "anthropic.claude-sonnet-4-5-20250929-v1:0"
POOLS = f"""\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: bedrock}}
spec:
  models:
    - name: claude-bedrock
      provider: bedrock
      endpoint: "{{SIM}}/bedrock"
      upstreamModel: "{MODEL_ID}"
      auth: aws
      region: eu-west-1
      supportsTools: true
      pricing: {{inputPerMTok: 3.0, outputPerMTok: 15.0}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: throttled}}
spec:
  models:
    - name: bedrock-throttled
      provider: bedrock
      endpoint: "{{SIM}}/bedrock"
      upstreamModel: throttled-model
      auth: aws
      region: us-east-1
      pricing: {{inputPerMTok: 3.0, outputPerMTok: 15.0}}
    - name: claude-direct
      provider: anthropic
      endpoint: "{{SIM}}/anthropic"
      apiKey: {{env: SKYROUTE_E2E_SIM_KEY}}
      pricing: {{inputPerMTok: 3.0, outputPerMTok: 15.0}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {{name: invalid}}
spec:
  models:
    - name: bedrock-strict
      provider: bedrock
      endpoint: "{{SIM}}/bedrock"
      upstreamModel: strict-model
      apiKey: {{env: SKYROUTE_E2E_SIM_KEY}}  # a Bedrock API key (auth: api-key, the default)
      pricing: {{inputPerMTok: 3.0, outputPerMTok: 15.0}}
    - name: claude-unused
      provider: anthropic
      endpoint: "{{SIM}}/anthropic"
      apiKey: {{env: SKYROUTE_E2E_SIM_KEY}}
      pricing: {{inputPerMTok: 3.0, outputPerMTok: 15.0}}
"""
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: bedrock}
spec:
  default: true
  intents:
    - {name: busy.ask, keywords: [parcel]}
    - {name: strict.ask, keywords: [malformed]}
  rules:
    - {name: busy, match: {intents: [busy.ask]}, pool: throttled}
    - {name: strict, match: {intents: [strict.ask]}, pool: invalid}
  defaultPool: bedrock
  selection: {mode: ordered}
"""
SCENARIO = f"""\
seed: 5
api_key: {SECRET}
defaults:
  ttft_ms: {{p50: 2, p95: 4}}
  tokens_per_s: 20000
  error_rate: 0
models:
  throttled-model: {{error_rate: 1, errors: {{rate_limited: 1}}, retry_after_s: 0.01}}
  strict-model: {{error_rate: 1, errors: {{bad_request: 1}}}}
"""
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDE2EROUTER",
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "SKYROUTE_E2E_SIM_KEY": SECRET,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "update_shipment",
            "parameters": {
                "type": "object",
                "properties": {"shipment_id": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["shipment_id", "days"],
            },
        },
    }
]
NO_CACHE = {"Cache-Control": "no-cache"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    procs: list[Proc] = []
    with environment(AWS_ENV):  # the processes inherit it: the router's AWS chain reads it
        try:
            yield Stack(
                procs,
                tmp_path_factory.mktemp("bedrock"),
                {"pools.yaml": POOLS, "policy.yaml": POLICY},
                SCENARIO,
            )
        finally:
            for p in reversed(procs):
                p.stop()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
    ) as c:
        yield c


def test_bedrock_answers_unary_and_streamed_with_sigv4(stack: Stack, client: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "what is the refund policy?"}]
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=msgs,
        extra_headers=NO_CACHE,  # type: ignore[arg-type]
    )
    r = raw.parse()
    assert raw.headers["x-skyroute-model"] == "claude-bedrock"
    # The simulator names the model id it was asked for (the path carried upstreamModel),
    # and it answered at all only because the signature verified against SECRET.
    assert (r.choices[0].message.content or "").startswith(f"[{MODEL_ID}] ")
    assert r.usage is not None and r.usage.completion_tokens >= 1
    chunks = list(
        client.chat.completions.create(
            model="auto",
            messages=msgs,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=NO_CACHE,
        )
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == r.choices[0].message.content
    assert stack.sim_stats()["models"][MODEL_ID]["streams"] >= 1


def test_bedrock_tool_calls_unary_and_streamed(client: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "delay shipment S1 by 2 days"}]
    r = client.chat.completions.create(
        model="auto",
        messages=msgs,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        extra_headers=NO_CACHE,
    )
    (call,) = r.choices[0].message.tool_calls or []
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "update_shipment"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments)["days"] == 1  # type: ignore[union-attr]
    chunks = list(
        client.chat.completions.create(
            model="auto",
            messages=msgs,  # type: ignore[arg-type]
            tools=TOOLS,  # type: ignore[arg-type]
            stream=True,
            extra_headers=NO_CACHE,
        )
    )
    pieces = [
        tc.function.arguments or ""
        for ch in chunks
        if ch.choices
        for tc in ch.choices[0].delta.tool_calls or ()
        if tc.function is not None
    ]
    assert json.loads("".join(pieces))["days"] == 1
    assert chunks[-1].choices and chunks[-1].choices[0].finish_reason == "tool_calls"
    # The tool result goes back to Bedrock as a toolResult with the same toolUseId.
    follow = client.chat.completions.create(
        model="auto",
        messages=[
            *msgs,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"ok": true}'},
        ],  # type: ignore[list-item]
        tools=TOOLS,  # type: ignore[arg-type]
        extra_headers=NO_CACHE,
    )
    assert (follow.choices[0].message.content or "").startswith(f"[{MODEL_ID}] ")


def test_throttled_bedrock_falls_back_to_another_family(
    stack: Stack, client: openai.OpenAI
) -> None:
    for stream in (False, True):
        time.sleep(0.05)  # past the Retry-After (10 ms) the last 429 set: tried again
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": "where is my parcel?"}],
            stream=stream,
            extra_headers=NO_CACHE,
        )
        assert raw.headers["x-skyroute-model"] == "claude-direct"
        trail = raw.headers["x-skyroute-attempts"]
        assert trail.startswith("bedrock-throttled;rate_limited;429;"), trail
    assert stack.sim_stats()["models"]["throttled-model"]["errors"]["rate_limited"] >= 2


def test_a_validation_exception_is_the_clients_400(stack: Stack, client: openai.OpenAI) -> None:
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": "a malformed request"}],
                stream=stream,
                extra_headers=NO_CACHE,
            )
        trail = err.value.response.headers["x-skyroute-attempts"]
        assert trail.startswith("bedrock-strict;client_error;400;") and "," not in trail
    assert "claude-unused" not in stack.sim_stats()["models"]
