"""Canary rollouts on a cluster: split, stickiness, automatic promotion and rollback.

A real ``skyroute operator`` on the test API server, one router connected to
it and the provider simulator; traffic is real HTTP to the router with the
user in the OpenAI ``user`` field. Three policies, each changed from pool
``steady`` to another pool with ``spec.rollout`` set:

* ``split``: a candidate on 5% (steps that never advance) receives 5% of
  2,000 users within 4.5 standard deviations, every user keeps the same
  version on every request, ``kubectl get`` shows stable, candidate, weight
  and phase, the state survives an operator restart (the stable spec comes
  back from the history ConfigMap), and a manual abort by annotation rolls
  back and removes the annotation.
* ``good``: a candidate on pool ``better`` (as fast, cheaper, no errors) is
  promoted by its analysis after its two steps; every request succeeds.
* ``risky``: a candidate on pool ``shaky`` (the simulator fails half its
  requests) is rolled back after ``failureLimit`` failed intervals; every
  request the stable version decided succeeded, before and after.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import yaml

from harness import free_port, http_get, wait_until
from kcluster import Cluster
from opstack import Stack, up

RP = "routingpolicies"
SPLIT_USERS = 2000
PROMOTE_BOUND_S = 40.0  # two steps of 2 s pause, 2 s intervals, on a loaded 2-core machine
ROLLBACK_BOUND_S = 30.0  # two failed 2 s intervals

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: steady}
spec:
  models:
    - {name: steady-a, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 4.0}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: better}
spec:
  models:
    - {name: better-b, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 0.5, outputPerMTok: 2.0}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: shaky}
spec:
  models:
    - {name: shaky-c, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 4.0}}
"""

SCENARIO = """\
seed: 11
defaults:
  ttft_ms: {p50: 15, p95: 20}
  tokens_per_s: 50000
  completion_tokens: {p50: 8, p95: 12, min: 4, max: 20}
  error_rate: 0
models:
  shaky-c: {error_rate: 0.5, errors: {server_error: 1}}
"""


def policy(name: str, pool: str, rollout: dict[str, Any] | None, pin: str = "") -> str:
    spec: dict[str, Any] = {"defaultPool": pool, "limits": {"maxAttempts": 1}}
    if rollout is not None:
        spec["rollout"] = rollout
    if pin:
        spec["pinVersion"] = pin
    doc = {
        "apiVersion": "skyroute.io/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }
    return yaml.safe_dump(doc)


SPLIT = {
    "stickiness": "user",
    "steps": [{"weight": 5, "pauseSeconds": 86400}],
    "analysis": {"intervalSeconds": 3600},
}
FAST = {
    "stickiness": "user",
    "steps": [{"weight": 30, "pauseSeconds": 2}, {"weight": 60, "pauseSeconds": 2}],
    "analysis": {
        "intervalSeconds": 2,
        "minRequests": 10,
        "failureLimit": 2,
        "metrics": [
            {"name": "success-rate", "threshold": 0.05},
            {"name": "cost-per-1k", "threshold": 1.5},
            {"name": "p95-latency", "threshold": 4},
        ],
    },
}


@pytest.fixture(scope="module")
def stack(k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(k8s_cluster, tmp_path_factory.mktemp("rollout"), webhook=True, prefix="roll")
    try:
        s.apply(POOLS.replace("{SIM}", s.sim))
        s.apply(policy("base", "steady", None))  # routers need one policy to be ready
        put_scenario(s.sim, SCENARIO)
        s.router = s.start_router("r1")  # type: ignore[attr-defined]
        yield s
    finally:
        s.close()


def put_scenario(sim: str, text: str) -> None:
    req = urllib.request.Request(sim + "/_sim/scenario", data=text.encode(), method="PUT")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200


def rollout(stack: Stack, name: str) -> dict[str, Any]:
    return stack.get(RP, name).get("status", {}).get("rollout", {})  # type: ignore[no-any-return]


def wait_phase(stack: Stack, name: str, phase: str, timeout: float) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def check() -> bool:
        nonlocal found
        found = rollout(stack, name)
        return found.get("phase") == phase

    wait_until(
        check,
        timeout=timeout,
        interval=0.25,
        what=f"{name} phase {phase} (last {found})\n{stack.operator.output()[-3000:]}",
    )
    return found


async def _send(url: str, policy_name: str, users: list[str]) -> list[tuple[str, int, str]]:
    """One request per user (in order, 16 at a time): (user, status, track)."""
    sem = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as session:

        async def one(user: str) -> tuple[str, int, str]:
            body = {
                "model": policy_name,
                "user": user,
                "messages": [{"role": "user", "content": f"hello from {user}"}],
            }
            async with sem, session.post(url + "/v1/chat/completions", json=body) as r:
                await r.read()
                return user, r.status, r.headers.get("x-skyroute-track", "")

        return await asyncio.gather(*(one(u) for u in users))


def send(stack: Stack, policy_name: str, users: list[str]) -> list[tuple[str, int, str]]:
    return asyncio.run(_send(stack.router, policy_name, users))  # type: ignore[attr-defined]


class Traffic:
    """Requests from rotating users in a background thread, recorded with their track."""

    def __init__(self, stack: Stack, policy_name: str) -> None:
        self.stack, self.policy = stack, policy_name
        self.results: list[tuple[str, int, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            batch = [f"user-{(i + k) % 997}" for k in range(32)]
            i += 32
            self.results.extend(send(self.stack, self.policy, batch))

    def close(self) -> list[tuple[str, int, str]]:
        self.stop.set()
        self.thread.join(timeout=30)
        return self.results


def candidate_served(stack: Stack, name: str) -> None:
    """Until the router splits: some request of 200 users is decided by the candidate."""
    wait_until(
        lambda: any(
            t == "candidate" for _, _, t in send(stack, name, [f"probe-{i}" for i in range(200)])
        ),
        timeout=15,
        interval=0.2,
        what=f"router serving the canary of {name}",
    )


def test_five_percent_sticky_split_survives_restart_and_aborts(stack: Stack) -> None:
    stack.apply(policy("split", "steady", SPLIT))
    wait_phase(stack, "split", "Stable", 15)
    stack.apply(policy("split", "better", SPLIT))
    state = wait_phase(stack, "split", "Progressing", 15)
    assert state["weight"] == 5 and state["stableVersion"] != state["candidateVersion"]
    candidate_served(stack, "split")
    # Not Ready while only a share of the traffic gets the spec's version: a
    # `kubectl wait --for=condition=Ready` gate waits for the promotion.
    stack.wait_condition(RP, "split", "Ready", "False", reason="Progressing")
    stack.wait_condition(RP, "split", "Rollout", "True", reason="Progressing")

    users = [f"u{i}" for i in range(SPLIT_USERS)]
    first = send(stack, "split", users)
    assert all(code == 200 for _, code, _ in first)
    on_candidate = sum(track == "candidate" for _, _, track in first)
    sd = (SPLIT_USERS * 0.05 * 0.95) ** 0.5
    assert abs(on_candidate - SPLIT_USERS * 0.05) <= 4.5 * sd, on_candidate
    track_of = {u: t for u, _, t in first}
    again = send(stack, "split", users[:400] * 2)
    assert all(track_of[u] == t for u, _, t in again), "a user changed versions"

    table = stack.cluster.kubectl("get", RP, "split", "-n", stack.ns).stdout
    print(f"\n{table}\ncandidate users: {on_candidate} of {SPLIT_USERS}")  # pytest -s
    header, row = table.splitlines()[:2]
    for column in ("STABLE", "CANDIDATE", "WEIGHT", "PHASE"):
        assert column in header.split()
    assert "Progressing" in row.split() and "5" in row.split()
    assert state["candidateVersion"] in row and state["stableVersion"] in row

    # A restarted operator carries on from status and the history ConfigMap.
    cm = json.loads(
        stack.cluster.kubectl(
            "get", "configmap", "skyroute-history-split", "-n", stack.ns, "-o", "json"
        ).stdout
    )
    assert len(json.loads(cm["data"]["index.json"])) == 2
    stack.restart_operator()
    candidate_served(stack, "split")
    after = send(stack, "split", users[:400])
    assert all(track_of[u] == t for u, _, t in after), "restart moved users between versions"
    assert rollout(stack, "split")["candidateVersion"] == state["candidateVersion"]

    stack.cluster.kubectl(
        "annotate", RP, "split", "-n", stack.ns, "skyroute.io/rollout-action=abort"
    )
    done = wait_phase(stack, "split", "RolledBack", 15)
    assert done["failedVersion"] == state["candidateVersion"]
    annotations = stack.get(RP, "split")["metadata"].get("annotations", {})
    assert "skyroute.io/rollout-action" not in annotations
    wait_until(
        lambda: all(t == "stable" for _, _, t in send(stack, "split", users[:200])),
        timeout=10,
        interval=0.2,
        what="all traffic back on stable",
    )
    reasons = [e["reason"] for e in stack.events("split")]
    assert {"RolloutStarted", "RolledBack"} <= set(reasons), reasons


def test_better_candidate_is_promoted_after_its_steps(stack: Stack) -> None:
    stack.apply(policy("good", "steady", FAST))
    before = wait_phase(stack, "good", "Stable", 15)
    traffic = Traffic(stack, "good")
    try:
        stack.apply(policy("good", "better", FAST))
        started = wait_phase(stack, "good", "Progressing", 15)
        t0 = time.monotonic()
        done = wait_phase(stack, "good", "Promoted", PROMOTE_BOUND_S)
        took = time.monotonic() - t0
    finally:
        results = traffic.close()
    assert done["stableVersion"] == started["candidateVersion"] != before["stableVersion"]
    stack.wait_condition(RP, "good", "Ready", "True")
    assert took >= 4.0, "promoted before its two 2 s pauses were over"
    codes = Counter(code for _, code, _ in results)
    assert codes[200] == len(results) > 100, codes
    tracks = Counter(t for _, _, t in results)
    assert tracks["candidate"] > 20 and tracks["stable"] > 20, tracks
    reasons = [e["reason"] for e in stack.events("good")]
    assert reasons.count("StepAdvanced") == 1 and "Promoted" in reasons, reasons
    history = stack.get(RP, "good")["status"]["history"]
    assert [h["result"] for h in history] == ["superseded", "promoted"]


def test_worse_candidate_is_rolled_back_and_stable_never_stops(stack: Stack) -> None:
    stack.apply(policy("risky", "steady", FAST))
    wait_phase(stack, "risky", "Stable", 15)
    traffic = Traffic(stack, "risky")
    try:
        stack.apply(policy("risky", "shaky", FAST))
        started = wait_phase(stack, "risky", "Progressing", 15)
        done = wait_phase(stack, "risky", "RolledBack", ROLLBACK_BOUND_S)
        wait_until(
            lambda: all(t == "stable" for _, _, t in traffic.results[-64:]),
            timeout=10,
            interval=0.2,
            what="traffic back on stable",
        )
        mark = len(traffic.results)
        time.sleep(1.0)
    finally:
        results = traffic.close()
    assert done["failedVersion"] == started["candidateVersion"]
    assert done["failedChecks"] == 2 and "failure limit 2" in done["message"]
    stable = [code for _, code, t in results if t == "stable"]
    candidate = [code for _, code, t in results if t == "candidate"]
    assert stable and all(code == 200 for code in stable), Counter(stable)
    assert candidate and sum(code != 200 for code in candidate) > 0.2 * len(candidate)
    tail = results[mark:]
    assert tail and all(code == 200 and t == "stable" for _, code, t in tail)
    reasons = [e["reason"] for e in stack.events("risky")]
    assert reasons.count("AnalysisFailed") == 2 and "RolledBack" in reasons, reasons
    # The spec still names the failed version; it is not tried again.
    time.sleep(2.5)
    assert rollout(stack, "risky")["phase"] == "RolledBack"


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(stack.cluster.kubeconfig), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "skyroute.cli.main", "policy", *args, "-n", stack.ns],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_cli_status_promote_and_abort_on_a_cluster(stack: Stack) -> None:
    stack.apply(policy("manual", "steady", SPLIT))
    wait_phase(stack, "manual", "Stable", 15)
    stack.apply(policy("manual", "better", SPLIT))
    started = wait_phase(stack, "manual", "Progressing", 15)
    shown = cli(stack, "status", "manual")
    assert shown.returncode == 0, shown.stderr
    assert "Progressing" in shown.stdout and started["candidateVersion"] in shown.stdout
    promoted = cli(stack, "promote", "manual", "--wait", "20")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "Promoted" in promoted.stdout
    assert rollout(stack, "manual")["stableVersion"] == started["candidateVersion"]
    nothing = cli(stack, "abort", "manual")
    assert nothing.returncode == 1 and "no rollout in progress" in nothing.stdout
    missing = cli(stack, "status", "no-such-policy")
    assert missing.returncode == 2 and "no-such-policy" in missing.stderr


def test_pin_serves_a_recorded_version_and_an_unknown_pin_is_refused(stack: Stack) -> None:
    stack.apply(policy("pinned", "steady", SPLIT))
    first = wait_phase(stack, "pinned", "Stable", 15)["stableVersion"]
    stack.apply(policy("pinned", "better", None))  # no rollout: serves at once
    wait_until(
        lambda: rollout(stack, "pinned").get("stableVersion") != first,
        timeout=15,
        interval=0.25,
        what="second version serving",
    )
    refused = stack.apply(
        policy("pinned", "better", None, pin="sha256:0123456789abcdef"), check=False
    )
    assert refused.returncode != 0
    assert (
        "spec.pinVersion: sha256:0123456789abcdef is not a recorded version" in refused.stderr
        and first in refused.stderr
    ), refused.stderr
    stack.apply(policy("pinned", "better", None, pin=first))
    state = wait_phase(stack, "pinned", "Pinned", 15)
    assert state["stableVersion"] == first
    wait_until(
        lambda: {t for _, _, t in send(stack, "pinned", ["p1", "p2"])} == {"stable"},
        timeout=10,
        interval=0.2,
        what="pinned version serving",
    )
    code, headers = _one(stack, "pinned")
    assert code == 200 and headers["x-skyroute-policy-version"] == first
    assert headers["x-skyroute-pool"] == "steady"


def _one(stack: Stack, name: str) -> tuple[int, dict[str, str]]:
    async def run() -> tuple[int, dict[str, str]]:
        body = {"model": name, "messages": [{"role": "user", "content": "hi"}]}
        async with (
            aiohttp.ClientSession() as session,
            session.post(stack.router + "/v1/chat/completions", json=body) as r,
        ):  # type: ignore[attr-defined]
            await r.read()
            return r.status, dict(r.headers)

    return asyncio.run(run())


def test_a_follower_replica_mirrors_the_leaders_rollout(stack: Stack) -> None:
    """A second operator replica serves the same split, promoted or aborted by the leader."""
    grpc_addr, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    follower = stack._start(
        "operator-op-b", stack.operator_args("op-b", grpc=grpc_addr, admin=admin, webhook=False)
    )
    up(follower, f"http://{admin}/healthz", 30)

    def version(address: str) -> str:
        code, body = http_get(f"http://{address}/debug/status")
        assert code == 200, body
        return str(json.loads(body)["version"])

    def follower_phase() -> str:
        code, body = http_get(f"http://{admin}/debug/rollouts")
        return (
            str(json.loads(body).get(f"{stack.ns}/mirror", {}).get("rollout", {}).get("phase", ""))
            if code == 200
            else ""
        )

    stack.apply(policy("mirror", "steady", SPLIT))
    wait_phase(stack, "mirror", "Stable", 15)
    stack.apply(policy("mirror", "better", SPLIT))
    wait_phase(stack, "mirror", "Progressing", 15)
    wait_until(
        lambda: follower_phase() == "Progressing" and version(admin) == version(stack.admin),
        timeout=15,
        interval=0.2,
        what=f"follower serving the leader's canary\n{follower.output()[-2000:]}",
    )
    stack.cluster.kubectl(
        "annotate", RP, "mirror", "-n", stack.ns, "skyroute.io/rollout-action=abort"
    )
    wait_phase(stack, "mirror", "RolledBack", 15)
    wait_until(
        lambda: follower_phase() == "RolledBack" and version(admin) == version(stack.admin),
        timeout=15,
        interval=0.2,
        what="follower mirrors the rollback",
    )
    assert "event=k8s_event" not in follower.output()  # only the leader writes
    follower.stop()


def test_the_leader_judges_outcomes_of_routers_on_a_follower(stack: Stack) -> None:
    """Every router on the follower: its outcomes reach the leader, which promotes."""
    grpc_addr, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    follower = stack._start(
        "operator-op-c", stack.operator_args("op-c", grpc=grpc_addr, admin=admin, webhook=False)
    )
    up(follower, f"http://{admin}/healthz", 30)
    http_addr = f"127.0.0.1:{free_port()}"
    router = stack._start(
        "router-on-follower",
        [
            "router",
            "--insecure",
            "--control",
            grpc_addr,
            "--grpc",
            f"127.0.0.1:{free_port()}",
            "--http",
            http_addr,
            "--admin-listen",
            f"127.0.0.1:{free_port()}",
            "--id",
            "r-follower",
            "--open-without-tenants",  # no Tenant here (closed by default)
        ],
    )
    up(router, f"http://{http_addr}/readyz", 20, follower)
    on_follower = Stack.__new__(Stack)  # the same stack, seen through the follower's router
    on_follower.__dict__.update(stack.__dict__)
    on_follower.router = f"http://{http_addr}"  # type: ignore[attr-defined]
    stack.apply(policy("fwd", "steady", FAST))
    wait_phase(stack, "fwd", "Stable", 15)
    traffic = Traffic(on_follower, "fwd")
    try:
        stack.apply(policy("fwd", "better", FAST))
        wait_phase(stack, "fwd", "Progressing", 15)
        done = wait_phase(stack, "fwd", "Promoted", PROMOTE_BOUND_S)
    finally:
        results = traffic.close()
        router.stop()
        follower.stop()
    assert done["lastAnalysis"]["candidate"]["requests"] >= 10
    assert Counter(code for _, code, _ in results)[200] == len(results) > 50
    assert "event=forward_failed" not in follower.output()


# Hidden quality of the answers (the simulator answers every model alike): only feedback tells.
HIDDEN_QUALITY = {"steady-a": 0.85, "better-b": 0.5}
QUALITY = {
    "stickiness": "user",
    # One long step: a passing candidate would wait an hour, so only a failing analysis
    # (on quality: the candidate is as fast and cheaper) can end this rollout in the test.
    "steps": [{"weight": 50, "pauseSeconds": 3600}],
    "analysis": {
        "intervalSeconds": 2,
        "minRequests": 5,
        "failureLimit": 2,
        "minFeedback": 30,
        "metrics": [
            {"name": "success-rate", "threshold": 0.05},
            {"name": "cost-per-1k", "threshold": 1.5},
            {"name": "quality"},
        ],
    },
}


@pytest.mark.timeout(300)  # up to 90 s of rated traffic, a follower's start
def test_the_leader_rolls_back_on_ratings_given_at_a_followers_router(stack: Stack) -> None:
    """Canaries judge quality on a cluster: the ratings reach the leader through a follower."""
    import random

    from openai import OpenAI

    grpc_addr, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    follower = stack._start(
        "operator-op-q", stack.operator_args("op-q", grpc=grpc_addr, admin=admin, webhook=False)
    )
    up(follower, f"http://{admin}/healthz", 30)
    http_addr = f"127.0.0.1:{free_port()}"
    router = stack._start(
        "router-on-follower-q",
        [
            "router",
            "--insecure",
            "--control",
            grpc_addr,
            "--grpc",
            f"127.0.0.1:{free_port()}",
            "--http",
            http_addr,
            "--admin-listen",
            f"127.0.0.1:{free_port()}",
            "--id",
            "r-follower-q",
            "--open-without-tenants",
        ],
    )
    up(router, f"http://{http_addr}/readyz", 20, follower)
    url = f"http://{http_addr}"
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    rng = random.Random(29)
    try:
        stack.apply(policy("judged", "steady", QUALITY))
        wait_phase(stack, "judged", "Stable", 15)
        stack.apply(policy("judged", "better", QUALITY))
        wait_phase(stack, "judged", "Progressing", 15)
        deadline, i, seen = time.monotonic() + 90, 0, Counter[str]()
        while time.monotonic() < deadline and rollout(stack, "judged").get("phase") != (
            "RolledBack"
        ):
            for _ in range(10):
                i += 1
                raw = client.chat.completions.with_raw_response.create(
                    model="judged", user=f"q-{i}", messages=[{"role": "user", "content": "hi"}]
                )
                model = raw.headers["x-skyroute-model"]
                seen[model] += 1
                body = json.dumps(
                    {
                        "request_id": raw.headers["x-skyroute-feedback-id"],
                        "value": rng.random() < HIDDEN_QUALITY[model],
                    }
                ).encode()
                req = urllib.request.Request(
                    url + "/v1/feedback", data=body, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(req, timeout=10) as r:
                    assert r.status == 200
        st = rollout(stack, "judged")
        print(f"after {i} rated requests at the follower's router ({dict(seen)}): {st}")
    finally:
        router.stop()
        follower.stop()
    assert st.get("phase") == "RolledBack", (st, follower.output()[-2000:])
    assert "quality" in st["message"], st["message"]
    cand, stable = st["lastAnalysis"]["candidate"], st["lastAnalysis"]["stable"]
    assert cand["costPer1k"] < stable["costPer1k"] and cand["quality"] < stable["quality"]
    assert min(cand["feedback"], stable["feedback"]) >= 30
    assert "event=forward_failed" not in follower.output()
