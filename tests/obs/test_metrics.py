"""A replay through two real routers: the Prometheus counters equal the replay's own counts.

The replayer (the demo's, unchanged) records what every response said (pool,
model, cache, attempt trail) from the ``x-skyroute-*`` headers; the routers'
``/metrics`` (OpenTelemetry SDK, Prometheus reader) must add up to the same
figures, and the control plane's ``/metrics`` must have received one outcome
per request.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import grpc
import pytest

from skyroute.cli.demo_replay import Arm, Replayer
from skyroute.cli.demo_traffic import TrafficRequest
from skyroute.v1 import distribution_pb2, distribution_pb2_grpc

from harness import Proc, Stack, wait_until
from obskit import scrape, total
from policies import FILES, SCENARIO

FLAKY_PRIMARY = (
    SCENARIO
    + """\
models:
  primary-model:
    error_rate: 0.3
    errors: {server_error: 1}
"""
)


def traffic(n: int) -> list[TrafficRequest]:
    """FAQ repeats (cacheable, hits after the first per router), comparisons, and others."""
    texts = [
        "how do I reset my password?",
        "Please compare plan A and B {i}",
        "where is my order {i}?",
    ]
    return [
        TrafficRequest(
            index=i,
            at_s=i * 0.002,
            intent="",
            tenant="acme",
            locale="en",
            user=f"u{i}",
            user_tier="free",
            messages=[{"role": "user", "content": texts[i % 3].format(i=i)}],
        )
        for i in range(n)
    ]


@pytest.fixture
def stack(procs: list[Proc], tmp_path: Path) -> Stack:
    return Stack(procs, tmp_path, FILES, FLAKY_PRIMARY, routers=2)


def test_scraped_counters_equal_the_replay(stack: Stack) -> None:
    urls = [url for _, _, url in stack.routers]
    results = asyncio.run(Replayer(urls, concurrency=16).run([Arm("routed", "auto")], traffic(90)))
    outs = results["routed"]
    assert len(outs) == 90
    want = Counter((o.pool, o.model) for o in outs)
    hits = sum(o.cache == "hit" for o in outs)
    attempts = sum(o.router_attempts for o in outs)
    fallbacks = sum(o.fallbacks for o in outs)
    assert hits > 0 and fallbacks > 0, "the traffic must exercise the cache and fallback"

    samples = [s for admin in stack.router_admins for s in scrape(admin + "/metrics")]
    got = total(
        samples, "skyroute_router_requests_total", by=("skyroute_pool", "gen_ai_response_model")
    )
    assert {k: int(v) for k, v in got.items()} == dict(want)
    assert total(samples, "skyroute_router_cache_hits_total")[()] == hits
    assert total(samples, "skyroute_router_requests_total", skyroute_cache="hit")[()] == hits
    assert total(samples, "skyroute_router_attempts_total")[()] == attempts
    retried = sum(1 for o in outs if o.router_attempts > 1)
    assert total(samples, "skyroute_router_fallbacks_total")[()] == retried
    cost = total(samples, "skyroute_router_cost_usd_total")[()]
    assert cost == pytest.approx(sum(o.cost_usd for o in outs), rel=1e-3)
    # One GenAI operation per upstream attempt; token usage per successful one.
    ops = total(samples, "gen_ai_client_operation_duration_seconds_count")[()]
    assert ops == attempts
    # Each operation names its upstream (server.address/port) and, on success, the
    # model that answered (gen_ai.response.model); a failed one has error.type instead.
    by_upstream = total(
        samples,
        "gen_ai_client_operation_duration_seconds_count",
        by=("server_address", "server_port", "gen_ai_provider_name"),
    )
    sim_port = stack.sim.rsplit(":", 1)[1]
    assert sum(by_upstream.values()) == attempts
    assert {k[:2] for k in by_upstream} == {("127.0.0.1", sim_port)}
    answered = total(
        samples,
        "gen_ai_client_operation_duration_seconds_count",
        by=("gen_ai_response_model", "error_type"),
    )
    assert all(bool(model) != bool(error) for model, error in answered), answered
    upstream_served = sum(1 for o in outs if o.cache != "hit")
    assert sum(v for (model, _), v in answered.items() if model) == upstream_served
    out_tokens = total(samples, "gen_ai_client_token_usage_sum", gen_ai_token_type="output")
    assert out_tokens[()] == sum(o.completion_tokens for o in outs if o.cache != "hit")

    # The control plane received every outcome, and knows both routers are synced.
    def received() -> float:
        return total(
            scrape(stack.admin + "/metrics"), "skyroute_control_outcomes_received_total"
        ).get((), 0.0)

    wait_until(lambda: received() == 90, timeout=10, what="outcomes at the control plane")
    control = scrape(stack.admin + "/metrics")
    version = stack.status()["version"]
    routers = total(
        control,
        "skyroute_control_routers",
        skyroute_snapshot_version=version,
        skyroute_state="SYNCED",
    )
    assert routers[()] == 2
    assert total(control, "skyroute_control_pushes_total")[()] >= 2
    # What the control plane refuses is a metric by reason, as in skyroute status.
    with grpc.insecure_channel(stack.control_addr) as ch:
        ghost = distribution_pb2.OutcomeBatch(
            node=distribution_pb2.Node(id="never-subscribed"),
            outcomes=[distribution_pb2.Outcome(pool="p", model="m")],
        )
        stub = distribution_pb2_grpc.PolicyDistributionStub(ch)
        assert stub.ReportOutcomes(iter([ghost]), timeout=10).received == 0

    def refused() -> float:
        samples = scrape(stack.admin + "/metrics")
        got = total(samples, "skyroute_control_rejected_total", skyroute_reason="not_subscribed")
        return got.get((), 0.0)

    wait_until(lambda: refused() == 1, timeout=10, what="the refusal as a metric")
    assert int(stack.status()["rejected"]["not_subscribed"]) == 1
    assert (
        total(control, "skyroute_control_push_duration_seconds_count", skyroute_answer="ack")[()]
        >= 2
    )
