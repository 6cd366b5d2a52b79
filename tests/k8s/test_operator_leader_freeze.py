"""A frozen leader, resumed, writes nothing: the renew deadline fences its writes.

Two operator replicas on one Lease (3 s, renew deadline 2 s) on the real API
server. The leader is frozen with SIGSTOP: the standby takes the Lease after
the lease duration and writes status for a change made meanwhile. Then the
old leader is resumed with SIGCONT: its watch delivers the change (so it has
a status to write), but its last renew is past the deadline, so it steps
down and writes no status and posts no event.

The fence itself, in process against the same API server: a leader whose
event loop stalls past its renew deadline has its next write refused before
its elector has had a chance to run again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import config

from skyroute.control.kube.api import KubeApi, NotLeader
from skyroute.control.kube.lease import LeaseElector

from harness import http_get, wait_until
from kcluster import Cluster
from opstack import Stack, lease_stack

RP = "routingpolicies"


@pytest.fixture(scope="module")
def stack(k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from lease_stack(k8s_cluster, tmp_path_factory.mktemp("freeze"), "freeze")


def served(admin: str) -> dict[str, str]:
    code, body = http_get(f"http://{admin}/debug/status")
    assert code == 200
    return dict(json.loads(body)["policies"])


def writes(output: str) -> int:
    return output.count("event=status ") + output.count("event=k8s_event")


def test_frozen_leader_is_replaced_and_writes_nothing_when_resumed(stack: Stack) -> None:
    a = stack.operator
    assert stack.holder() == "op-a"
    b, b_admin = stack.replica("op-b")
    assert a.p is not None
    os.kill(a.p.pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        wait_until(lambda: stack.holder() == "op-b", timeout=15, what="op-b takes the Lease")
        took_over = time.monotonic() - frozen_at
        # A change while op-a is frozen: op-b compiles it and writes its status.
        pool = stack.example("ModelPool", "balanced")
        pool["spec"]["models"][0]["timeoutMs"] = 7000
        stack.apply(yaml.safe_dump(pool))
        wait_until(
            lambda: stack.get(RP, "acmeshop")["status"]["version"] == served(b_admin)["acmeshop"],
            timeout=10,
            what=f"status written by op-b\n{b.output()[-2000:]}",
        )
        before = writes(a.output())
    finally:
        os.kill(a.p.pid, signal.SIGCONT)
    # op-a wakes past its renew deadline: it steps down, catches up, and writes nothing.
    wait_until(
        lambda: bool(a.events("standby")),
        timeout=10,
        what=f"op-a steps down\n{a.output()[-2000:]}",
    )
    wait_until(
        lambda: served(stack.admin) == served(b_admin),
        timeout=10,
        what="op-a has seen the change (so it had a status to write)",
    )
    status = stack.get(RP, "acmeshop")["status"]
    time.sleep(1.0)  # several of op-a's status ticks (0.2 s) and Lease rounds (0.4 s)
    assert writes(a.output()) == before, a.output()[-3000:]
    assert stack.holder() == "op-b"
    assert stack.get(RP, "acmeshop")["status"] == status
    assert "event=leader" in b.output()
    print(f"standby took over {took_over:.2f}s after the freeze")


def test_a_stalled_leader_is_fenced_before_its_next_round(stack: Stack) -> None:
    def config_map(name: str) -> dict[str, object]:
        return {"metadata": {"name": name, "namespace": stack.ns}, "data": {"by": "stalled"}}

    def exists(name: str) -> bool:
        got = stack.cluster.kubectl("get", "configmap", name, "-n", stack.ns, check=False)
        return got.returncode == 0

    async def scenario() -> None:
        api = KubeApi(config.new_client_from_config(str(stack.cluster.kubeconfig)))
        elector = LeaseElector(api, stack.ns, "fence-test", "stalled", duration=3.0)
        api.fence = elector.may_write
        assert (elector.renew_deadline, elector.retry_period) == (2.0, 0.4)
        await elector.round()
        assert elector.is_leader and elector.may_write()
        assert await api.create_config_map(stack.ns, config_map("fenced-before"))
        # The whole process stalls (a blocking call, a GC pause, a frozen node).
        time.sleep(elector.renew_deadline + 0.1)
        assert elector.is_leader and not elector.may_write()
        with pytest.raises(NotLeader):
            await api.create_config_map(stack.ns, config_map("fenced-after"))
        assert api.refused == 1
        # Its next round steps down first; nobody else took the Lease, so it takes it again.
        await elector.round()
        assert elector.transitions == 3 and elector.may_write()

    asyncio.run(scenario())
    assert exists("fenced-before") and not exists("fenced-after")


def test_durations_must_nest(stack: Stack) -> None:
    """retry x 1.2 < renew deadline < lease duration, else the operator refuses to start."""
    api = KubeApi(config.new_client_from_config(str(stack.cluster.kubeconfig)))
    for deadline, retry in ((3.0, None), (4.0, None), (1.0, 1.0)):
        with pytest.raises(ValueError, match="renew deadline"):
            LeaseElector(api, stack.ns, "bad", "x", 3.0, None, deadline, retry)
    got = subprocess.run(
        [
            str(Path(sys.executable).parent / "skyroute"),
            "operator",
            "--namespace",
            stack.ns,
            "--lease-duration",
            "3",
            "--lease-renew-deadline",
            "3",
        ],
        env={**os.environ, "KUBECONFIG": str(stack.cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode != 0
    assert "need retry period x 1.2 < renew deadline < duration" in got.stderr, got.stderr
