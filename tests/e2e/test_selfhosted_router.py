"""A router in front of a self-hosted server that streams no usage: charged by estimate.

Real processes over loopback: the simulator's llama-cpp-python stand-in (no
usage in streams, ``max_tokens`` only), the control plane compiling a pool with
``provider: openai-compatible`` and its ``quirks``, one router, the official
``openai`` SDK as the client. (The real llama-cpp-python server is
tests/providers/test_selfhosted_llama.py.)
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import orjson
import pytest

from harness import Proc, Stack, http_get

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: local}
spec:
  models:
    - name: local-llama
      provider: openai-compatible
      endpoint: "{SIM}/selfhosted/v1"
      quirks: [rejects-null-content, ignores-n]
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
"""
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: local}
spec:
  default: true
  defaultPool: local
  selection: {mode: ordered}
"""
SCENARIO = """\
seed: 3
defaults:
  ttft_ms: {p50: 2, p95: 4}
  tokens_per_s: 20000
  error_rate: 0
"""
NO_CACHE = {"Cache-Control": "no-cache"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    procs: list[Proc] = []
    try:
        yield Stack(
            procs,
            tmp_path_factory.mktemp("selfhosted"),
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


def _last_upstream_body(stack: Stack) -> dict:  # type: ignore[type-arg]
    status, raw = http_get(stack.sim + "/_sim/requests")
    assert status == 200
    last = orjson.loads(raw)["requests"][-1]
    assert last["path"] == "/selfhosted/v1/chat/completions"
    body: dict = last["body"]  # type: ignore[type-arg]
    return body


def test_usage_is_estimated_unary_and_streamed(client: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "what is the refund policy for a damaged parcel?"}]
    answer = client.chat.completions.create(
        model="auto",
        messages=msgs,  # type: ignore[arg-type]
        max_tokens=12,
        extra_headers=NO_CACHE,
    )
    assert answer.model == "local-llama" and answer.choices[0].message.content
    usage = answer.usage
    assert usage is not None and usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= 12
    chunks = list(
        client.chat.completions.create(
            model="auto",
            messages=msgs,  # type: ignore[arg-type]
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=NO_CACHE,
        )
    )
    last = chunks[-1].usage
    assert last is not None and last.prompt_tokens == usage.prompt_tokens
    assert 0 < last.completion_tokens <= 12


def test_quirks_reach_the_wire(stack: Stack, client: openai.OpenAI) -> None:
    turns = [
        {"role": "user", "content": "where is my order?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "shipped"},
    ]
    follow = client.chat.completions.create(
        model="auto",
        messages=turns,  # type: ignore[arg-type]
        max_tokens=5,
        extra_headers=NO_CACHE,
    )
    assert follow.choices[0].message.content
    sent = _last_upstream_body(stack)
    assert sent["messages"][1]["content"] == "" and sent["max_tokens"] == 5
    assert "max_completion_tokens" not in sent
