"""Rollouts off-cluster: ``skyroute control`` on a folder, a router, the simulator.

The same controller as on a cluster, with its state in memory: a file edit
that changes a policy with ``spec.rollout`` becomes a candidate on the first
step's weight (responses say ``x-skyroute-track``), ``/debug/rollouts`` and
``skyroute policy status --admin`` show it, ``skyroute policy abort --admin``
rolls it back at once (routers get the stable-only snapshot), a second abort
has nothing to act on (exit 1), and ``/debug/rollouts/.../versions/<v>``
returns the recorded spec of a version. A pinned version then serves alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from openai import OpenAI

from harness import Proc, Stack, http_get, wait_until

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: fast}
spec:
  models:
    - {name: fast-a, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata: {name: other}
spec:
  models:
    - {name: other-b, provider: openai, endpoint: "{SIM}/openai/v1",
       pricing: {inputPerMTok: 1.0, outputPerMTok: 2.0}}
"""
SCENARIO = """\
seed: 3
defaults: {ttft_ms: {p50: 5, p95: 8}, tokens_per_s: 50000,
           completion_tokens: {p50: 5, p95: 8, min: 2, max: 10}}
"""


def policy(pool: str, pin: str = "") -> str:
    spec = {
        "default": True,
        "defaultPool": pool,
        "rollout": {
            "steps": [{"weight": 30, "pauseSeconds": 3600}],
            "analysis": {"intervalSeconds": 3600},
        },
    }
    if pin:
        spec["pinVersion"] = pin
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
        yield Stack(procs, tmp_path, {"pools.yaml": POOLS, "policy.yaml": policy("fast")}, SCENARIO)
    finally:
        for p in reversed(procs):
            p.stop()


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "skyroute.cli.main",
            "policy",
            *args,
            "support",
            "--admin",
            stack.admin.removeprefix("http://"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def rollouts(stack: Stack) -> dict:  # type: ignore[type-arg]
    code, body = http_get(stack.admin + "/debug/rollouts")
    assert code == 200, body
    return json.loads(body)["default/support"]  # type: ignore[no-any-return]


def tracks(stack: Stack, users: int = 200) -> Counter[tuple[str, str]]:
    client = OpenAI(base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0)
    seen: Counter[tuple[str, str]] = Counter()
    for i in range(users):
        r = client.chat.completions.with_raw_response.create(
            model="support", user=f"user-{i}", messages=[{"role": "user", "content": "hi"}]
        )
        seen[(r.headers["x-skyroute-track"], r.headers["x-skyroute-pool"])] += 1
    return seen


def test_folder_rollout_abort_history_and_pin(stack: Stack) -> None:
    wait_until(lambda: rollouts(stack)["rollout"]["phase"] == "Stable", what="stable")
    first = rollouts(stack)["rollout"]["stableVersion"]
    stack.write("policy.yaml", policy("other"))
    wait_until(
        lambda: rollouts(stack)["rollout"]["phase"] == "Progressing",
        what=f"candidate\n{stack.control.output()[-2000:]}",
    )
    wait_until(
        lambda: tracks(stack, 40)[("candidate", "other")] > 0, timeout=10, what="router splitting"
    )
    seen = tracks(stack)
    assert set(seen) == {("stable", "fast"), ("candidate", "other")}, seen
    assert 30 <= seen[("candidate", "other")] <= 90, seen  # 30% of 200, +- 4.6 sd

    # skyroute top marks which version is which while the canary runs.
    candidate = rollouts(stack)["rollout"]["candidateVersion"]

    def top() -> str:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "skyroute.cli.main",
                "top",
                "--admin",
                stack.admin.removeprefix("http://"),
                "--once",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "COLUMNS": "220", "NO_COLOR": "1"},
        ).stdout

    wait_until(lambda: "candidate 30% Progressing" in top(), timeout=10, what="top's track")
    rows = [line for line in top().splitlines() if line.count("│") >= 10]
    assert any(candidate[:19] in r and "other" in r and "candidate 30%" in r for r in rows)
    assert any(first[:19] in r and "fast" in r and "stable" in r for r in rows), rows

    shown = cli(stack, "status")
    assert shown.returncode == 0 and "Progressing" in shown.stdout, shown.stderr
    aborted = cli(stack, "abort")
    assert aborted.returncode == 0 and "manual abort" in aborted.stdout, aborted.stdout
    assert rollouts(stack)["rollout"]["phase"] == "RolledBack"
    wait_until(
        lambda: set(tracks(stack, 40)) == {("stable", "fast")},
        timeout=10,
        what="all traffic back on stable",
    )
    again = cli(stack, "abort")
    assert again.returncode == 1 and "no rollout in progress" in again.stdout

    code, body = http_get(f"{stack.admin}/debug/rollouts/default/support/versions/{first}")
    assert code == 200 and json.loads(body)["spec"]["defaultPool"] == "fast"
    missing, _ = http_get(f"{stack.admin}/debug/rollouts/default/support/versions/sha256:0")
    assert missing == 404

    # Pin the first version explicitly; then drop the rollout and the pin: the spec serves.
    stack.write("policy.yaml", policy("other", pin=first))
    wait_until(lambda: rollouts(stack)["rollout"]["phase"] == "Pinned", what="pinned")
    assert set(tracks(stack, 40)) == {("stable", "fast")}
    history = rollouts(stack)["history"]
    assert [h["result"] for h in history] == ["serving", "rolledBack"]


class StateStack(Stack):
    """The same stack, with the control plane keeping rollout state in a file."""

    def control_args(self) -> list[str]:
        return [*super().control_args(), "--state", str(self.source.parent / "state.json")]


def test_state_file_keeps_a_rollout_across_a_restart(tmp_path: Path) -> None:
    procs: list[Proc] = []
    try:
        stack = StateStack(
            procs, tmp_path, {"pools.yaml": POOLS, "policy.yaml": policy("fast")}, SCENARIO
        )
        wait_until(lambda: rollouts(stack)["rollout"]["phase"] == "Stable", what="stable")
        stable = rollouts(stack)["rollout"]["stableVersion"]
        stack.write("policy.yaml", policy("other"))
        wait_until(lambda: rollouts(stack)["rollout"]["phase"] == "Progressing", what="candidate")
        before = rollouts(stack)["rollout"]
        served = stack.status()["version"]
        stack.control.stop()
        stack.control = stack.start("control-2", stack.control_args())
        wait_until(lambda: http_get(stack.admin + "/healthz")[0] == 200, what="restarted")
        after = rollouts(stack)["rollout"]
        # Without the file the restart would have made the folder's version stable.
        assert after["phase"] == "Progressing" and after["stableVersion"] == stable
        assert after["candidateVersion"] == before["candidateVersion"]
        assert stack.status()["version"] == served
        seen = tracks(stack, 60)
        assert ("stable", "fast") in seen and set(seen) <= {
            ("stable", "fast"),
            ("candidate", "other"),
        }
        saved = json.loads((tmp_path / "state.json").read_text())
        assert saved["policies"]["default/support"]["rollout"]["phase"] == "Progressing"
    finally:
        for p in reversed(procs):
            p.stop()
