"""The decision engine through real processes: quality evals and constraints hold.

A cheap, fast model with poor quality evals for complex intents never gets
them, even though it is the fastest and cheapest; it still gets the simple
asks it is good at. Explain over gRPC shows every candidate's score parts.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import openai

from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import Proc, Stack

FILES = {
    "decision.yaml": """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: mixed}
spec:
  models:
    - name: flash-like
      provider: gemini
      endpoint: "{SIM}/gemini"
      pricing: {inputPerMTok: 0.5, outputPerMTok: 3.0}
      quality: {"reasoning.*": 0.3, "*": 0.85}
    - name: sonnet-like
      provider: anthropic
      endpoint: "{SIM}/anthropic"
      pricing: {inputPerMTok: 3.0, outputPerMTok: 15.0}
      quality: {"reasoning.*": 0.9, "*": 0.85}
---
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: evals}
spec:
  default: true
  intents:
    - {name: reasoning.compare, keywords: [compare]}
    - {name: faq.pricing, keywords: [price]}
  defaultPool: mixed
  selection:
    mode: scored
    constraints: {minQuality: 0.6}
"""
}

SCENARIO = """\
seed: 3
defaults: {ttft_ms: {p50: 10, p95: 20}, tokens_per_s: 3000, error_rate: 0}
models:
  flash-like: {ttft_ms: {p50: 5, p95: 8}}
  sonnet-like: {ttft_ms: {p50: 60, p95: 90}}
"""


def test_poor_quality_model_never_gets_complex_intents(procs: list[Proc], tmp_path: Path) -> None:
    stack = Stack(procs, tmp_path, FILES, SCENARIO)
    c = openai.OpenAI(base_url=stack.routers[0][2] + "/v1", api_key="x", max_retries=0)
    hard = [
        c.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": f"compare plan {i} with plan {i + 1}"}],
        ).model
        for i in range(20)
    ]
    easy = [
        c.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": f"what is the price of item {i}"}]
        ).model
        for i in range(20)
    ]
    assert set(hard) == {"sonnet-like"}
    assert set(easy) == {"flash-like"}  # cheapest and fastest, and good enough here

    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        d = router_pb2_grpc.RouterStub(ch).Explain(
            router_pb2.CompletionRequest(
                messages=[router_pb2.Message(role="user", content="compare the two plans")]
            ),
            timeout=5,
        )
    scores = {s.model: s for s in d.scores}
    assert set(scores) == {"flash-like", "sonnet-like"}
    assert "minQuality" in scores["flash-like"].excluded and not scores["sonnet-like"].excluded
    assert scores["flash-like"].quality == 0.3 and scores["sonnet-like"].quality == 0.9
    assert scores["flash-like"].expected_cost_usd < scores["sonnet-like"].expected_cost_usd
    assert list(d.chain) == ["sonnet-like"]
    assert any("flash-like: score" in r for r in d.reasons)
