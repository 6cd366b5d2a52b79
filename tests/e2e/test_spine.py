"""The spine end to end: YAML folder -> control plane -> routers -> simulator.

Every process is the real ``skyroute`` console script on loopback; clients
are the official ``openai`` SDK and the generated gRPC stub.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import openai
import pytest

from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import Proc, Stack, wait_until
from policies import FAILING_PRIMARY, FILES, POLICY, SCENARIO


@pytest.fixture
def stack(procs: list[Proc], tmp_path: Path) -> Stack:
    return Stack(procs, tmp_path, FILES, SCENARIO, routers=2)


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=20)


def test_openai_sdk_gets_the_model_the_policy_chose(stack: Stack) -> None:
    c = client(stack.routers[0][2])
    raw = c.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Please compare plan A and B"}]
    )
    done = raw.parse()
    assert done.model == "smart-model"
    assert done.choices[0].message.content.startswith("[smart-model]")
    assert raw.headers["x-skyroute-pool"] == "smart"
    assert raw.headers["x-skyroute-intent"] == "reasoning.compare"
    assert raw.headers["x-skyroute-policy"] == "support"
    assert raw.headers["x-skyroute-snapshot-version"] == stack.status()["version"]
    assert done.usage is not None and done.usage.completion_tokens > 0
    assert float(raw.headers["x-skyroute-cost-usd"]) > 0

    # Streaming, through the other router, to the policy by name.
    c2 = client(stack.routers[1][2])
    chunks = list(
        c2.chat.completions.create(
            model="support",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "how do I reset my password?"}],
        )
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.startswith("[primary-model]")
    assert {ch.model for ch in chunks} == {"primary-model"}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
    assert finish[-1] == "stop"


def test_unknown_policy_and_bad_body_are_clear_errors(stack: Stack) -> None:
    c = client(stack.routers[0][2])
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert "nope" in str(e.value) and "support" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e2:
        c.chat.completions.create(model="auto", messages=[])
    assert "messages" in str(e2.value)


def test_grpc_complete_stream_and_explain(stack: Stack) -> None:
    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        req = router_pb2.CompletionRequest(
            messages=[
                router_pb2.Message(role="user", content="compare the premium and basic tiers")
            ]
        )
        d = stub.Explain(req, timeout=5)
        assert d.pool == "smart" and list(d.chain) == ["smart-model"]
        assert d.signals.intent == "reasoning.compare" and d.rule == "reasoning-smart"
        assert d.reasons
        before = stack.sim_stats()
        r = stub.Complete(req, timeout=10)
        assert r.model == "smart-model" and r.message.content.startswith("[smart-model]")
        assert [a.model for a in r.attempts] == ["smart-model"] and r.attempts[0].error_class == ""
        # Explain called no model; Complete called exactly one.
        after = stack.sim_stats()
        assert _requests(after, "smart-model") - _requests(before, "smart-model") == 1
        chunks = list(stub.StreamComplete(req, timeout=10))
        assert chunks[0].WhichOneof("chunk") == "decision"
        assert chunks[-1].WhichOneof("chunk") == "done"
        text = "".join(c.delta for c in chunks if c.WhichOneof("chunk") == "delta")
        assert text.startswith("[smart-model]")
        assert chunks[-1].done.usage.completion_tokens > 0


def _requests(stats: dict, model: str) -> int:  # type: ignore[type-arg]
    return int(stats.get("models", stats).get(model, {}).get("requests", 0))


def _model_for(stack: Stack, i: int, prompt: str) -> str:
    r = client(stack.routers[i][2]).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}]
    )
    return r.headers["x-skyroute-pool"]


def test_yaml_edit_reroutes_within_two_seconds(stack: Stack) -> None:
    old = stack.status()["version"]
    assert _model_for(stack, 0, "compare A and B") == "smart"
    t0 = time.monotonic()
    stack.write("policy.yaml", POLICY.replace("REASONING_POOL", "fast"))
    wait_until(
        lambda: all(stack.router_version(i) not in ("", old) for i in range(2)),
        timeout=2.0,
        interval=0.02,
        what="routers on the new version",
    )
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0
    new = stack.status()["version"]
    assert new != old
    assert all(stack.router_version(i) == new for i in range(2))
    assert _model_for(stack, 0, "compare A and B") == "fast"
    assert _model_for(stack, 1, "compare A and B") == "fast"
    wait_until(
        lambda: all(
            r["state"] == "SYNCED" and r["acked_version"] == new for r in stack.status()["routers"]
        ),
        timeout=2,
        what="synced",
    )
    assert len(stack.status()["routers"]) == 2


def test_bad_policy_is_rejected_and_previous_keeps_serving(stack: Stack) -> None:
    old = stack.status()["version"]
    stack.write("policy.yaml", POLICY.replace("REASONING_POOL", "qualiti"))
    wait_until(
        lambda: "qualiti" in stack.status().get("last_error", ""), timeout=3, what="rejection"
    )
    err = stack.status()["last_error"]
    assert "policy.yaml" in err and "support" in err and "pool" in err, err
    assert stack.status()["version"] == old
    time.sleep(0.5)
    assert stack.router_version(0) == old and stack.router_version(1) == old
    assert _model_for(stack, 0, "compare A and B") == "smart"
    # The fix is picked up again.
    stack.write("policy.yaml", POLICY.replace("REASONING_POOL", "fast"))
    wait_until(lambda: stack.router_version(0) not in ("", old), timeout=3, what="recovery")


def test_control_plane_loss_does_not_stop_routers(stack: Stack) -> None:
    version = stack.status()["version"]
    acks = stack.router_status(0)["acks"]
    stack.control.kill()
    assert _model_for(stack, 0, "compare A and B") == "smart"
    assert _model_for(stack, 1, "reset my password please") == "fast"
    stack.control = stack.start("control-2", stack.control_args())
    wait_until(
        lambda: len([r for r in stack.status()["routers"] if r["state"] == "SYNCED"]) == 2,
        timeout=10,
        what="routers resynced",
    )
    assert stack.status()["version"] == version
    assert stack.router_version(0) == version
    # Same input, same version: the restarted control plane pushed nothing new.
    assert stack.router_status(0)["acks"] == acks


@pytest.mark.parametrize("kind", ["server_error", "rate_limited", "timeout"])
def test_failing_primary_falls_back(stack: Stack, kind: str) -> None:
    stack.put_scenario(FAILING_PRIMARY.replace("KIND", kind))
    raw = client(stack.routers[0][2]).chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "reset my password"}],
        extra_headers={"cache-control": "no-cache"},
    )
    done = raw.parse()
    assert done.model == "backup-model"
    trail = raw.headers["x-skyroute-attempts"]
    assert trail.startswith("primary-model;") and "backup-model;ok" in trail, trail


def test_client_error_is_not_retried(stack: Stack) -> None:
    stack.put_scenario(FAILING_PRIMARY.replace("KIND", "bad_request"))
    stack.reset_sim()
    with pytest.raises(openai.BadRequestError) as e:
        client(stack.routers[0][2]).chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "reset my password"}],
            extra_headers={"cache-control": "no-cache"},
        )
    assert "client_error" in str(e.value)
    stats = stack.sim_stats()
    assert _requests(stats, "primary-model") == 1
    assert _requests(stats, "backup-model") == 0
