"""Several endpoints per model, end to end: real control plane and router, simulators upstream.

Two simulators stand for two regions of one OpenAI model (the harness's
process and one more in a thread, both on loopback); Azure OpenAI
deployments on one simulator stand for endpoints that behave differently
(the simulator's scenario is per deployment). The openai SDK and the gRPC
stub are the router's clients. Checked: traffic spreads by weight, a failing
endpoint is failed over to the same model's other endpoint before another
model (the attempt trail names both), it is ejected and later probed, a model
whose endpoints are all down falls back to the next model, and Explain and
the gRPC attempt trail name the endpoints.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import openai
import pytest

from skyroute.simulator.harness import SimulatorThread
from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import Proc, Stack, wait_until

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: spread}
spec:
  models:
    - name: spread
      provider: openai
      endpoints:
        - {name: east, url: "{SIM}/openai/v1", weight: 3, region: eastus}
        - {name: west, url: "{SIM2}/openai/v1"}
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: failover}
spec:
  models:
    - name: az
      provider: azure-openai
      endpoints:
        - {name: good, url: "{SIM}/azure", deployment: az-good}
        - {name: bad, url: "{SIM}/azure", deployment: az-bad}
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
    - name: az-backup
      provider: anthropic
      endpoint: "{SIM}/anthropic"
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: dead}
spec:
  models:
    - name: dead
      provider: azure-openai
      endpoints:
        - {name: d1, url: "{SIM}/azure", deployment: dead-a}
        - {name: d2, url: "{SIM}/azure", deployment: dead-b}
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
    - name: rescue
      provider: anthropic
      endpoint: "{SIM}/anthropic"
      pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}
"""
POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata: {name: endpoints}
spec:
  default: true
  intents:
    - {name: failover.ask, keywords: [failover]}
    - {name: dead.ask, keywords: [outage]}
  rules:
    - {name: failover, match: {intents: [failover.ask]}, pool: failover}
    - {name: dead, match: {intents: [dead.ask]}, pool: dead}
  defaultPool: spread
  selection: {mode: ordered}
  limits: {maxAttempts: 3, requestTimeoutMs: 8000, firstTokenTimeoutMs: 3000}
  reliability:
    outlierDetection: {consecutiveFailures: 2, baseEjectionMs: 20000, maxEjectionPercent: 50}
"""
SCENARIO = """\
seed: 3
defaults:
  ttft_ms: {p50: 2, p95: 4}
  tokens_per_s: 20000
  completion_tokens: {p50: 8, p95: 12, min: 4, max: 20}
  error_rate: 0
models:
  az-bad: {error_rate: 1, errors: {server_error: 1}}
  dead-a: {error_rate: 1, errors: {server_error: 1}}
  dead-b: {error_rate: 1, errors: {unavailable: 1}}
"""
HEALED = SCENARIO.replace("  az-bad: {error_rate: 1, errors: {server_error: 1}}\n", "")
NO_CACHE = {"Cache-Control": "no-cache"}


@pytest.fixture(scope="module")
def west() -> Iterator[SimulatorThread]:
    with SimulatorThread(
        {"defaults": {"ttft_ms": {"p50": 2, "p95": 4}, "tokens_per_s": 20000, "error_rate": 0}}
    ) as sim:
        yield sim


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, west: SimulatorThread) -> Iterator[Stack]:
    procs: list[Proc] = []
    files = {"pools.yaml": POOLS.replace("{SIM2}", west.url), "policy.yaml": POLICY}
    try:
        yield Stack(procs, tmp_path_factory.mktemp("endpoints"), files, SCENARIO)
    finally:
        for p in reversed(procs):
            p.stop()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0, timeout=20
    ) as c:
        yield c


def _ask(client: openai.OpenAI, prompt: str) -> tuple[str, list[str], str]:
    """(model that answered, the attempt trail's entries, the notes) of one request."""
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": prompt}],
        extra_headers=NO_CACHE,
    )
    raw.parse()
    trail = raw.headers["x-skyroute-attempts"].split(", ")
    return raw.headers["x-skyroute-model"], trail, raw.headers.get("x-skyroute-notes", "")


def _requests(stats: dict[str, Any], model: str) -> int:
    return int(stats["models"].get(model, {}).get("requests", 0))


def _endpoint_state(stack: Stack, key: str) -> dict[str, Any]:
    found = [e for e in stack.router_status()["endpoints"] if e["endpoint"] == key]
    assert len(found) == 1, stack.router_status()["endpoints"]
    return found[0]


def test_traffic_spreads_over_two_healthy_endpoints_by_weight(
    stack: Stack, west: SimulatorThread, client: openai.OpenAI
) -> None:
    east_before = _requests(stack.sim_stats(), "spread")
    west_before = _requests(west.stats(), "spread")
    named = set()
    for i in range(200):
        model, trail, _ = _ask(client, f"hello number {i}")
        assert model == "spread"
        assert len(trail) == 1 and trail[0].split(";")[1] == "ok", trail
        named.add(trail[0].split(";")[0])
    assert named == {"spread@east", "spread@west"}
    east = _requests(stack.sim_stats(), "spread") - east_before
    west_n = _requests(west.stats(), "spread") - west_before
    assert east + west_n == 200
    # Weights 3:1 on an idle router: a quarter to west (binomial, sd 3 %).
    assert 0.12 < west_n / 200 < 0.38, (east, west_n)


def test_a_failing_endpoint_fails_over_within_the_model_then_is_ejected_and_probed(
    stack: Stack, client: openai.OpenAI
) -> None:
    bad_key = f"{stack.sim}/azure#az-bad"
    trails: list[list[str]] = []
    for i in range(12):
        model, trail, _ = _ask(client, f"failover test {i}")
        assert model == "az", trail  # never the next model: the other endpoint answered
        trails.append(trail)
    labels = [[entry.split(";")[0] for entry in t] for t in trails]
    assert all(t[-1] == "az@good" and "az-backup" not in t for t in labels), labels
    assert ["az@bad", "az@good"] in labels, labels  # the bad one first, then the good one
    assert any(t[0].startswith("az@bad;server_error;500;") for t in trails), trails
    wait_until(lambda: _endpoint_state(stack, bad_key)["ejected"], what="az@bad ejected")
    assert not _endpoint_state(stack, f"{stack.sim}/azure#az-good")["ejected"]
    # Ejected: requests go to the good endpoint without paying for the bad one first,
    # except for a half-open probe (one a second, half of them to the bad one first).
    singles = sum(1 for i in range(40) if len(_ask(client, f"failover after {i}")[1]) == 1)
    assert singles >= 30, singles
    probes: list[str] = []

    def probed() -> bool:
        model, _, notes = _ask(client, "failover probe")
        assert model == "az"
        probes.append(notes)
        return "az@bad: half-open probe of an ejected endpoint" in notes

    wait_until(probed, timeout=20, interval=0.01, what="a half-open probe of az@bad")
    # It heals: a probe that reaches it brings it back (long before its 20 s ejection ends).
    returns = stack.router_status()["probe_returns"]
    stack.put_scenario(HEALED)

    def back() -> bool:
        _ask(client, "failover healed")
        return not _endpoint_state(stack, bad_key)["ejected"]

    wait_until(back, timeout=30, interval=0.01, what="az@bad back after a probe")
    assert stack.router_status()["probe_returns"] == returns + 1
    seen = set()
    for i in range(30):
        seen.add(_ask(client, f"failover healed {i}")[1][0].split(";")[0])
    assert seen == {"az@good", "az@bad"}, seen


def test_all_endpoints_of_a_model_down_falls_back_to_the_next_model(
    client: openai.OpenAI,
) -> None:
    model, trail, _ = _ask(client, "an outage question")
    assert model == "rescue"
    labels = [entry.split(";")[:2] for entry in trail]
    assert sorted(x[0] for x in labels[:2]) == ["dead@d1", "dead@d2"], trail
    assert len(labels) == 3 and labels[2] == ["rescue", "ok"], trail
    assert all(x[1] == "server_error" for x in labels[:2]), trail


def test_explain_and_the_grpc_trail_name_the_endpoints(stack: Stack) -> None:
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "failover?"}]})
    req = urllib.request.Request(
        stack.routers[0][2] + "/v1/explain",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        explained = json.loads(r.read())
    assert explained["chain"] == ["az", "az-backup"]
    assert [(e["model"], e["name"], e["url"]) for e in explained["endpoints"]] == [
        ("az", "good", f"{stack.sim}/azure"),
        ("az", "bad", f"{stack.sim}/azure"),
    ]
    assert any(
        r.startswith("az: endpoints good (weight 1), bad (weight 1)") for r in explained["reasons"]
    )
    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        hello = [router_pb2.Message(role="user", content="hello over grpc")]
        d = stub.Explain(router_pb2.CompletionRequest(messages=hello), timeout=10)
        assert [(e.name, e.weight, e.region) for e in d.endpoints] == [
            ("east", 3, "eastus"),
            ("west", 1, ""),
        ]
        done = stub.Complete(
            router_pb2.CompletionRequest(messages=hello, no_cache=True), timeout=10
        )
    (attempt,) = done.attempts
    assert attempt.model == "spread" and attempt.endpoint in ("east", "west")
    assert attempt.endpoint_url.endswith("/openai/v1")


def test_a_stream_fails_over_across_endpoints_before_its_first_token(
    client: openai.OpenAI,
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "a streamed outage question"}],
        stream=True,
        extra_headers=NO_CACHE,
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)
    assert raw.headers["x-skyroute-model"] == "rescue"
    assert text.startswith("[rescue] ")
    labels = [e.split(";")[0] for e in raw.headers["x-skyroute-attempts"].split(", ")]
    # The trail as the stream starts: the dead model's endpoints that failed silently
    # (nothing was streamed yet; one may be ejected by now, moved behind the next model).
    assert labels and set(labels) <= {"dead@d1", "dead@d2"}, labels
