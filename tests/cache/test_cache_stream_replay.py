"""Cached answers replayed as proper streams, parsed by the official SDKs.

A real router in front of the provider simulator, its cache on. An answer
stored from one request is served from the cache to a streaming one:

- the openai SDK (``stream=True``) assembles the same text and finish reason
  the unary answer had, with no upstream call;
- the anthropic SDK on the Messages door, with extended thinking: the
  replayed stream carries the thinking block, signature and all, and the
  text, so ``get_final_message()`` is the message the unary call got.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from test_cache_routers import SCENARIO, upstream_calls

from harness import Proc, Stack

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata:
  name: claude
spec:
  models:
    - name: claude-sim
      provider: anthropic
      endpoint: {SIM}/anthropic
      pricing: {inputPerMTok: 3.0, outputPerMTok: 12.0}
"""

POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata:
  name: support
spec:
  default: true
  intents:
    - name: faq.account
      keywords: ["password", "account"]
  rules: []
  defaultPool: claude
  cache:
    enabled: true
    intents: ["faq.*"]
    ttlSeconds: 600
"""


@pytest.fixture
def stack(procs: list[Proc], tmp_path: Path) -> Stack:
    return Stack(procs, tmp_path, {"pools.yaml": POOLS, "policy.yaml": POLICY}, SCENARIO)


def test_openai_sdk_assembles_a_cached_stream(stack: Stack) -> None:
    client = openai.OpenAI(base_url=stack.routers[0][2] + "/v1", api_key="unused")
    ask: dict[str, Any] = {
        "model": "support",
        "messages": [{"role": "user", "content": "How do I reset my password?"}],
    }
    whole = client.chat.completions.with_raw_response.create(**ask)
    assert whole.headers["x-skyroute-cache"] == "miss"
    answer = whole.parse().choices[0].message
    calls = upstream_calls(stack)
    raw = client.chat.completions.with_raw_response.create(**ask, stream=True)
    assert raw.headers["x-skyroute-cache"] == "hit"
    assert raw.headers["x-skyroute-cache-entry"]
    text, finish = "", None
    for chunk in raw.parse():
        for choice in chunk.choices:
            text += choice.delta.content or ""
            assert not choice.delta.tool_calls
            finish = choice.finish_reason or finish
    assert text == answer.content and finish == "stop"
    assert upstream_calls(stack) == calls


def test_anthropic_sdk_gets_the_thinking_back_from_the_cache(stack: Stack) -> None:
    client = anthropic.Anthropic(base_url=stack.routers[0][2], api_key="unused")
    ask: dict[str, Any] = {
        "model": "support",
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "How do I delete my account?"}],
    }
    first = client.messages.with_raw_response.create(**ask)
    assert first.headers["x-skyroute-cache"] == "miss"
    whole = first.parse()
    assert [b.type for b in whole.content] == ["thinking", "text"]
    calls = upstream_calls(stack)
    with client.messages.stream(**ask) as stream:
        assert stream.response.headers["x-skyroute-cache"] == "hit"
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds and "text" in kinds
    assert [b.model_dump() for b in final.content] == [b.model_dump() for b in whole.content]
    assert final.content[0].type == "thinking" and final.content[0].signature.startswith("Eq")
    assert final.stop_reason == "end_turn"
    # Unary from the cache: the same blocks too.
    again = client.messages.with_raw_response.create(**ask)
    assert again.headers["x-skyroute-cache"] == "hit"
    assert [b.model_dump() for b in again.parse().content] == [
        b.model_dump() for b in whole.content
    ]
    assert upstream_calls(stack) == calls
    # A different thinking budget is another partition: not served this answer.
    other = client.messages.with_raw_response.create(
        **{**ask, "thinking": {"type": "enabled", "budget_tokens": 2000}}
    )
    assert other.headers["x-skyroute-cache"] == "miss"


def test_a_replayed_answer_folds_back_into_the_same_answer() -> None:
    """Thinking, text and tool calls in a stored answer all come back, in a stream's order."""
    from skyroute.router.cache.backend import Answer
    from skyroute.router.engine.walk import replay
    from skyroute.router.providers.types import TextDelta, ThinkingEvent, ToolCallEvent

    call = {"id": "call_1", "type": "function", "function": {"name": "faq", "arguments": "{}"}}
    block = {"type": "thinking", "thinking": "Thinking about refunds.", "signature": "Eqab"}
    stored = Answer("Here.", "stop", 5, 3, "m", "q?", "v1", (block,), (call,))
    back = Answer.decode(stored.encode("label"), "label")
    assert back == stored
    assert back is not None and Answer.decode(stored.encode("label"), "other") is None
    events = replay(back.result())
    assert [type(e) for e in events] == [ThinkingEvent, TextDelta, ToolCallEvent]
    assert events[0].block == block and events[2].call == call  # type: ignore[union-attr]
    # An entry written before answers kept these is read as having none.
    old = b'{"l":"label","c":"Hi","f":"stop","pt":1,"ct":1,"m":"m","q":"q"}'
    legacy = Answer.decode(old, "label")
    assert legacy is not None and legacy.thinking == () and legacy.tool_calls == ()
