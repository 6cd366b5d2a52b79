"""``skyroute router --workers N``: the worker count from cgroups, and N real processes
sharing one gRPC and one HTTP port over loopback.

The cgroup cases are fixture folders laid out as ``/sys/fs/cgroup`` is (v2
``cpu.max`` along a nested path, v1 ``cpu,cpuacct`` quota and period, with
and without a limit), each with the ``/proc/self/cgroup`` text that goes
with it.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

import grpc
import orjson
import pytest

from skyroute.router.workers import cgroup_cpu_limit, resolve, worker_argv
from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import Proc, Stack, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "obs"))
from obskit import scrape, total

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from policies import FILES, SCENARIO

CGROUPS = Path(__file__).resolve().parent / "cgroups"


@pytest.mark.parametrize(
    ("case", "limit", "workers"),
    [
        ("v2-limited", 1.5, 2),  # 150000/100000: one and a half CPUs round up to two workers
        ("v2-nested", 2.0, 2),  # the pod's 2 CPUs, tighter than its parent's 4
        ("v2-unlimited", None, None),
        ("v1-limited", 3.0, 3),
        ("v1-unlimited", None, None),  # quota -1
    ],
)
def test_cpu_limit_from_cgroup_files(case: str, limit: float | None, workers: int | None) -> None:
    root = CGROUPS / case
    assert cgroup_cpu_limit(root, root / "proc-self-cgroup") == limit
    expect = workers if workers is not None else (os.cpu_count() or 1)
    assert resolve("auto", root, root / "proc-self-cgroup") == expect


def test_explicit_worker_counts_and_bad_ones() -> None:
    assert resolve("3") == 3
    for bad in ("0", "-2", "many"):
        with pytest.raises(SystemExit, match="--workers"):
            resolve(bad)


def test_worker_arguments_share_the_ports_under_distinct_ids() -> None:
    argv = ["--grpc", "h:1", "--workers", "2", "--id=r", "--http", "h:2"]
    assert worker_argv(argv, 1, ["127.0.0.1:5", "127.0.0.1:6"]) == [
        "--grpc",
        "h:1",
        "--http",
        "h:2",
        "--workers",
        "1",
        "--reuse-port",
        "--worker-index",
        "1",
        "--worker-peers",
        "127.0.0.1:5,127.0.0.1:6",
        "--id",
        "r-w1",
    ]


def _listeners(port: int) -> int:
    """LISTEN sockets on ``port`` in this network namespace (/proc/net/tcp, state 0A)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                n += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return n


def _status_over_a_new_connection(url: str) -> tuple[str, str]:
    """(node, snapshot version) of whichever worker the kernel hands this connection to."""
    req = urllib.request.Request(url + "/debug/status", headers={"Connection": "close"})
    with urllib.request.urlopen(req, timeout=5) as r:
        body = orjson.loads(r.read())
        return str(body["node"]), str(body["version"])


def test_two_workers_share_both_ports(procs: list[Proc], tmp_path: Path) -> None:
    stack = Stack(procs, tmp_path, FILES, SCENARIO, router_args=["--workers", "2"])
    parent, grpc_addr, url = stack.routers[0]
    grpc_port, http_port = int(grpc_addr.rsplit(":", 1)[1]), int(url.rsplit(":", 1)[1])
    # One worker is ready (the harness waited for /readyz); the other binds beside it.
    wait_until(
        lambda: _listeners(grpc_port) == 2 and _listeners(http_port) == 2,
        what="both workers listening on both ports",
    )

    # The kernel spreads new connections over both workers: each one answers, and each
    # has its snapshot (the harness saw one worker ready; the other may still be loading).
    seen: set[str] = set()

    def both_serving() -> bool:
        node, version = _status_over_a_new_connection(stack.router_admins[0])
        if version:
            seen.add(node)
        return len(seen) == 2

    wait_until(both_serving, what="both workers serving a snapshot")
    assert seen == {"router-0-w0", "router-0-w1"}
    # Without --redis each worker keeps its own stored responses: said at start, by each.
    assert len(parent.events("responses_per_worker")) == 2, parent.output()[-2000:]

    # Both serve the gRPC door on the shared port, each over its own connection.
    models = set()
    for _ in range(4):
        with grpc.insecure_channel(
            grpc_addr, options=[("grpc.use_local_subchannel_pool", 1)]
        ) as ch:
            resp = router_pb2_grpc.RouterStub(ch).Complete(
                router_pb2.CompletionRequest(
                    messages=[
                        router_pb2.Message(role="user", content="how do I reset my password?")
                    ]
                ),
                timeout=10,
            )
            models.add(resp.model)
    assert models == {"primary-model"}

    # One scrape of the shared port has every worker's series, labelled by worker, and
    # adds up to the requests sent, whichever workers served them.
    for _ in range(3):
        samples = scrape(stack.router_admins[0] + "/metrics")
        workers = {labels.get("skyroute_worker") for _, labels, _ in samples}
        assert workers == {"0", "1"}
        served = total(samples, "skyroute_router_requests_total")[()]
        assert served == 4

    # SIGTERM to the supervisor stops every worker: the ports are free again.
    assert parent.p is not None
    parent.p.terminate()
    assert parent.p.wait(15) == 0
    assert _listeners(grpc_port) == 0 and _listeners(http_port) == 0
