"""Canaries judge quality end to end: ``skyroute control`` on a folder, a router, the simulator.

A policy edit moves traffic from a slow, dear model to a quick, cheap one
whose answers are worse (hidden quality 0.5 against 0.85; the simulator
answers both alike, so only feedback can tell). The rollout lists the
``quality`` metric next to success rate, p95 and cost: requests go through
the official openai SDK, each answer is rated through ``POST /v1/feedback``
with a verdict drawn from its model's hidden quality, and the candidate is
rolled back on feedback alone: its p95 and cost per 1k were better than
stable's in the analysis that rolled it back, and the message names quality.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from openai import OpenAI

from harness import Proc, Stack, http_get, wait_until

# Hundreds of requests through real processes on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(300)
HIDDEN = {"careful": 0.85, "quick": 0.5}
BUDGET_S = 90.0  # wall seconds of traffic before the test gives up

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: careful}
spec:
  models:
    - {name: careful, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 10.0, outputPerMTok: 30.0}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: quick}
spec:
  models:
    - {name: quick, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}}
"""
SCENARIO = """\
seed: 4
defaults: {ttft_ms: {p50: 5, p95: 8}, tokens_per_s: 50000,
           completion_tokens: {p50: 5, p95: 8, min: 2, max: 10}}
models:
  careful: {ttft_ms: {p50: 40, p95: 60}}
"""


def policy(pool: str) -> str:
    spec = {
        "default": True,
        "defaultPool": pool,
        "rollout": {
            # One long step: a passing candidate would wait an hour before promotion,
            # so only a failing analysis can end this rollout within the test.
            "steps": [{"weight": 50, "pauseSeconds": 3600}],
            "analysis": {
                "intervalSeconds": 2,
                "minRequests": 5,
                "failureLimit": 2,
                "minFeedback": 30,
                "metrics": [
                    {"name": "success-rate"},
                    {"name": "p95-latency"},
                    {"name": "cost-per-1k"},
                    {"name": "quality"},
                ],
            },
        },
    }
    return yaml.safe_dump(
        {
            "apiVersion": "skyroute.io/v1alpha1",
            "kind": "RoutingPolicy",
            "metadata": {"name": "support"},
            "spec": spec,
        }
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    procs: list[Proc] = []
    try:
        yield Stack(
            procs, tmp_path, {"pools.yaml": POOLS, "policy.yaml": policy("careful")}, SCENARIO
        )
    finally:
        for p in reversed(procs):
            p.stop()


def rollout(stack: Stack) -> dict[str, Any]:
    code, body = http_get(stack.admin + "/debug/rollouts")
    assert code == 200, body
    return json.loads(body)["default/support"]["rollout"]  # type: ignore[no-any-return]


def rate(url: str, fid: str, good: bool) -> None:
    req = urllib.request.Request(
        url + "/v1/feedback",
        data=json.dumps({"request_id": fid, "value": good, "source": "evaluator"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def test_a_faster_cheaper_canary_with_worse_answers_rolls_back_on_feedback(stack: Stack) -> None:
    wait_until(lambda: rollout(stack)["phase"] == "Stable", what="stable")
    stack.write("policy.yaml", policy("quick"))
    wait_until(lambda: rollout(stack)["phase"] == "Progressing", what="candidate")
    url = stack.routers[0][2]
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    rng = random.Random(17)
    seen: dict[str, int] = {}
    wait_until(
        lambda: (
            "quick"
            in {
                client.chat.completions.with_raw_response.create(
                    model="support", user=f"probe-{i}", messages=[{"role": "user", "content": "hi"}]
                ).headers["x-skyroute-model"]
                for i in range(20)
            }
        ),
        timeout=15,
        what="the router splitting",
    )
    deadline = time.monotonic() + BUDGET_S
    i = 0
    while time.monotonic() < deadline and rollout(stack)["phase"] != "RolledBack":
        for _ in range(10):
            i += 1
            raw = client.chat.completions.with_raw_response.create(
                model="support",
                user=f"user-{i}",
                messages=[{"role": "user", "content": f"question {i}"}],
            )
            model = raw.headers["x-skyroute-model"]
            seen[model] = seen.get(model, 0) + 1
            rate(url, raw.headers["x-skyroute-feedback-id"], rng.random() < HIDDEN[model])
    st = rollout(stack)
    print(f"after {i} rated requests ({seen}): {st['phase']}: {st.get('message')}")
    assert st["phase"] == "RolledBack", st
    assert "quality" in st["message"], st["message"]
    last = st["lastAnalysis"]
    # The analysis that rolled it back: faster and cheaper, worse answers.
    cand, stable = last["candidate"], last["stable"]
    assert cand["p95Ms"] < stable["p95Ms"] and cand["costPer1k"] < stable["costPer1k"], last
    assert cand["quality"] < stable["quality"] and min(cand["feedback"], stable["feedback"]) >= 30
    assert "p95-latency" not in st["message"] and "cost-per-1k" not in st["message"]
    # All traffic is back on stable.
    wait_until(
        lambda: (
            {
                client.chat.completions.with_raw_response.create(
                    model="support", user=f"after-{j}", messages=[{"role": "user", "content": "hi"}]
                ).headers["x-skyroute-model"]
                for j in range(20)
            }
            == {"careful"}
        ),
        timeout=10,
        what="traffic back on stable",
    )
