"""Two operator replicas on one Lease: one writes, both serve, failover is quick.

Both replicas watch and compile, so both serve routers the same snapshot
(versions are content hashes); only the Lease holder patches status and
posts events. A graceful stop releases the Lease and the standby takes over
on its next round; a crash (SIGKILL) is noticed when the Lease's record has
not changed for its duration (3 s here).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml

from harness import Proc, http_get, wait_until
from kcluster import Cluster
from opstack import Stack, lease_stack

RP = "routingpolicies"


@pytest.fixture(scope="module")
def stack(k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from lease_stack(k8s_cluster, tmp_path_factory.mktemp("ha"), "ha")


def holder(stack: Stack) -> str:
    return stack.holder()


def replica(stack: Stack, identity: str) -> tuple[Proc, str]:
    return stack.replica(identity)


def snapshot_version(admin: str) -> str:
    import json

    code, body = http_get(f"http://{admin}/debug/status")
    assert code == 200
    return str(json.loads(body)["version"])


def test_one_leader_two_servers_and_failover(stack: Stack) -> None:
    assert holder(stack) == "op-a"
    b, b_admin = replica(stack, "op-b")
    assert snapshot_version(b_admin) == snapshot_version(stack.admin)
    # A change: both compile it, only the leader writes status and events.
    pool = stack.example("ModelPool", "balanced")
    pool["spec"]["models"][0]["timeoutMs"] = 9000
    stack.apply(yaml.safe_dump(pool))
    wait_until(
        lambda: (
            snapshot_version(b_admin) == snapshot_version(stack.admin)
            and 'event=status object="RoutingPolicy' in stack.operator.output()
            and stack.get(RP, "acmeshop")["status"]["version"]
            == stack.operator_status()["policies"]["acmeshop"]
        ),
        timeout=5,
        what="both replicas on the new snapshot, status by the leader",
    )
    time.sleep(0.5)
    assert "event=status " not in b.output() and "event=k8s_event" not in b.output()
    assert "event=leader" not in b.output()
    # Graceful stop of the leader: the Lease is released and the standby takes it at once.
    t0 = time.monotonic()
    stack.operator.stop()
    wait_until(lambda: holder(stack) == "op-b", timeout=3, what="op-b holds the Lease")
    handover = time.monotonic() - t0
    pool["spec"]["models"][0]["timeoutMs"] = 8000
    stack.apply(yaml.safe_dump(pool))
    wait_until(
        lambda: (
            stack.get(RP, "acmeshop")["status"]["version"] == snapshot_policies(b_admin)["acmeshop"]
        ),
        timeout=5,
        what=f"status written by op-b\n{b.output()[-2000:]}",
    )
    # A crash: op-a comes back as standby, op-b is killed, op-a takes over after the duration.
    a, _ = replica(stack, "op-a")
    time.sleep(0.5)
    assert holder(stack) == "op-b"
    t1 = time.monotonic()
    b.kill()
    wait_until(lambda: holder(stack) == "op-a", timeout=8, what="op-a takes the expired Lease")
    takeover = time.monotonic() - t1
    assert 1.0 < takeover < 8.0  # waited for the 3 s lease to expire (renewed each 1 s)
    assert "event=leader" in a.output()
    print(f"handover after release: {handover:.2f}s, takeover after crash: {takeover:.2f}s")


def snapshot_policies(admin: str) -> dict[str, str]:
    import json

    code, body = http_get(f"http://{admin}/debug/status")
    assert code == 200
    return dict(json.loads(body)["policies"])
