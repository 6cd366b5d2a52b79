"""Every input of the control plane is bounded; a malformed one degrades only itself.

Each test is one attack of issue 15 against a real control plane on loopback
(gRPC for routers, HTTP for the admin port): a sketch with a huge bucket key,
a flood of unique model names, a fleet whose status is larger than gRPC's
default 4 MiB message, a YAML alias bomb in the folder. The control plane
must drop the bad part, count it, and keep serving everything else.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from ddsketch import DDSketch
from ddsketch.pb import ddsketch_pb2
from ddsketch.pb.proto import DDSketchProto
from test_control_distribution import Router, eventually, run

from skyroute.control.distribution import status as status_cli
from skyroute.control.distribution.pages import BadPageToken
from skyroute.control.learning.fleet import BadSketch, read_sketch
from skyroute.control.learning.outcomes import OutcomeAggregator
from skyroute.control.limits import MAX_YAML_NODES, STATUS_PAGE_BYTES, SeriesCap
from skyroute.control.policy.errors import PolicyError
from skyroute.control.policy.loader import load_folder
from skyroute.control.server import ControlPlane
from skyroute.control.supervise import FAILING_AFTER, Supervisor, TaskHealth
from skyroute.v1 import distribution_pb2, distribution_pb2_grpc

pytestmark = pytest.mark.timeout(120)

MODEL = "gemini-3-flash"  # in the AcmeShop example's pools


def _sketch(latencies: list[float]) -> bytes:
    sk = DDSketch(0.01)
    for x in latencies:
        sk.add(x)
    data: bytes = DDSketchProto.to_proto(sk).SerializeToString()
    return data


def _huge_key_sketch() -> bytes:
    pb: Any = ddsketch_pb2.DDSketch()
    pb.ParseFromString(_sketch([100.0]))
    pb.positiveValues.binCounts[10**9] = 1.0  # gamma ** 1e9 overflows a float
    data: bytes = pb.SerializeToString()
    return data


async def _report(router: Router, *batches: distribution_pb2.OutcomeBatch) -> int:
    async def stream() -> AsyncIterator[distribution_pb2.OutcomeBatch]:
        for b in batches:
            yield b

    summary = await router.stub.ReportOutcomes(stream())
    return int(summary.received)


async def _get(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


def test_a_huge_sketch_key_is_dropped_and_counted_and_learning_goes_on(acmeshop: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        r = Router(plane.address, "r1")
        r.hello()
        r.ack(await r.recv())
        bad = distribution_pb2.ModelStats(
            model=MODEL, intent="", requests=1, latency_sketch=_huge_key_sketch()
        )
        good = distribution_pb2.ModelStats(
            model=MODEL, intent="", requests=3, latency_sketch=_sketch([10.0, 20.0, 30.0])
        )
        await _report(r, distribution_pb2.OutcomeBatch(node=r.node, stats=[bad, good]))
        assert plane.service.checker.rejected["bad_sketch"] == 1
        # The good window of the same batch counted; the bad one left nothing behind.
        assert plane.learner.models[MODEL].requests == 3
        assert all(abs(k) < 4096 for k in plane.learner.models[MODEL].bins)
        assert plane.admin is not None
        base = f"http://127.0.0.1:{plane.admin.port}"
        code, learning = await _get(base + "/debug/learning")
        assert code == 200 and learning["models"][MODEL]["requests"] == 3
        status = await r.stub.GetStatus(distribution_pb2.StatusRequest())
        assert status.rejected["bad_sketch"] == 1
        # The learning loop is alive and ticking without failures.
        await eventually(lambda: plane.tasks.health["learning"].rounds >= 2)
        assert plane.learner.failures == 0
        await r.close()

    run(scenario, acmeshop)


def test_read_sketch_refuses_each_malformed_shape() -> None:
    assert read_sketch(_sketch([5.0, 50.0]))[1]
    with pytest.raises(BadSketch, match="bin key"):
        read_sketch(_huge_key_sketch())
    with pytest.raises(BadSketch, match="not a DDSketch"):
        read_sketch(b"\xff\xff\xff")
    with pytest.raises(BadSketch, match="bytes"):
        read_sketch(b"\x00" * (65 * 1024))
    pb: Any = ddsketch_pb2.DDSketch()
    pb.ParseFromString(_sketch([1.0]))
    pb.positiveValues.binCounts[3] = float("nan")
    with pytest.raises(BadSketch, match="not finite"):
        read_sketch(pb.SerializeToString())
    foreign: Any = ddsketch_pb2.DDSketch()
    foreign.mapping.gamma = 1e300  # a foreign mapping whose values overflow
    foreign.positiveValues.binCounts[5] = 1.0
    with pytest.raises(BadSketch):
        read_sketch(foreign.SerializeToString())


def test_a_flood_of_unique_names_is_dropped_and_memory_stays_bounded(acmeshop: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        r = Router(plane.address, "r1")
        r.hello()
        r.ack(await r.recv())
        batches = [
            distribution_pb2.OutcomeBatch(
                node=r.node,
                outcomes=[
                    distribution_pb2.Outcome(pool="cost", model=f"m-{b}-{i}", latency_ms=1.0)
                    for i in range(5000)
                ],
                stats=[distribution_pb2.ModelStats(model=f"s-{b}", requests=1)],
            )
            for b in range(20)
        ]
        batches.append(
            distribution_pb2.OutcomeBatch(
                node=r.node, outcomes=[distribution_pb2.Outcome(pool="cost", model=MODEL)]
            )
        )
        assert await _report(r, *batches) == 1
        assert plane.service.checker.rejected["unknown_model"] == 100_000 + 20
        assert plane.outcomes.by_model() == {MODEL: 1}
        assert list(plane.learner.models) == []
        status = await asyncio.to_thread(status_cli.fetch_status, plane.address)
        assert status.outcomes_total == 1 and status.rejected["unknown_model"] == 100_020
        await r.close()

    run(scenario, acmeshop)


def test_out_of_range_fields_are_dropped_one_outcome_at_a_time(acmeshop: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        r = Router(plane.address, "r1")
        r.hello()
        r.ack(await r.recv())
        ok = {"pool": "cost", "model": MODEL}
        bad = [
            distribution_pb2.Outcome(**ok, latency_ms=float("inf")),
            distribution_pb2.Outcome(**ok, cost_usd=-1.0),
            distribution_pb2.Outcome(**ok, completion_tokens=-5),
            distribution_pb2.Outcome(**ok, fallback_depth=10_000),
            distribution_pb2.Outcome(**ok, intent="no-such-intent"),
            distribution_pb2.Outcome(**ok, policy="no-such-policy"),
            distribution_pb2.Outcome(pool="no-such-pool", model=MODEL),
            distribution_pb2.Outcome(**ok, error_class="x" * 5000),
        ]
        good = distribution_pb2.Outcome(**ok, latency_ms=12.0, cost_usd=0.001)
        assert await _report(r, distribution_pb2.OutcomeBatch(node=r.node, outcomes=[*bad, good]))
        assert plane.outcomes.total == 1
        assert dict(plane.service.checker.rejected) == {
            "latency_out_of_range": 1,
            "cost_out_of_range": 1,
            "tokens_out_of_range": 1,
            "depth_out_of_range": 1,
            "unknown_intent": 1,
            "unknown_policy": 1,
            "unknown_pool": 1,
            "text_too_long": 1,
        }
        await r.close()

    run(scenario, acmeshop)


def test_reports_from_a_node_that_never_subscribed_are_refused(acmeshop: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        r = Router(plane.address, "r1")  # never says hello
        ghost = distribution_pb2.Node(id="ghost")
        outcome = distribution_pb2.Outcome(pool="cost", model=MODEL)
        received = await _report(r, distribution_pb2.OutcomeBatch(node=ghost, outcomes=[outcome]))
        assert received == 0 and plane.outcomes.total == 0
        assert plane.service.checker.rejected["not_subscribed"] == 1
        await r.close()

    run(scenario, acmeshop)


def test_status_of_500_routers_and_10k_series_comes_in_pages_under_the_limit(
    acmeshop: Path,
) -> None:
    """500 routers of 512 endpoints and 10k quality series plus 4096 pools, long names:
    the lists alone, not only the routers, are far over gRPC's 4 MiB. Each page stays
    under the page size, and the CLI (default limits) still gets every item once."""

    async def scenario(plane: ControlPlane) -> None:
        endpoints = [
            distribution_pb2.EndpointHealth(model=MODEL, endpoint=f"http://10.0.0.{i}:443/v1")
            for i in range(512)
        ]
        for i in range(500):
            record = plane.registry.connect(distribution_pb2.Node(id=f"router-{i:03d}"))
            plane.registry.touch(record.id, endpoints)
        long = "x" * 200
        assert plane.learner is not None
        plane.learner.quality.cap = SeriesCap(limit=10_000)  # past the default 4096
        feedback = [
            distribution_pb2.Feedback(
                model=f"m{i // 100:03d}-{long}", intent=f"i{i % 100:02d}-{long}", good=True
            )
            for i in range(10_000)
        ]
        assert plane.learner.quality.record(feedback) == 10_000
        for r in range(4):  # each router may add a quarter of a table
            pools = [distribution_pb2.Outcome(pool=f"p{i:04d}-{long}") for i in range(4096)]
            plane.outcomes.record(f"router-{r:03d}", pools[r * 1024 : (r + 1) * 1024])
        whole = plane.service.status()
        assert len(whole.quality) == 10_000 and len(whole.outcomes_by_pool) == 4096
        del whole.routers[:]
        assert whole.ByteSize() > 4 * 1024 * 1024  # without the routers still too big

        def pages() -> list[distribution_pb2.ControlStatus]:
            out: list[distribution_pb2.ControlStatus] = []
            with grpc.insecure_channel(plane.address) as ch:
                stub = distribution_pb2_grpc.PolicyDistributionStub(ch)
                token = ""
                while not out or token:
                    out.append(
                        stub.GetStatus(distribution_pb2.StatusRequest(page_token=token), timeout=10)
                    )
                    token = out[-1].next_page_token
            return out

        got = await asyncio.to_thread(pages)
        assert len(got) > 4
        assert max(p.ByteSize() for p in got) <= STATUS_PAGE_BYTES
        assert got[0].version == plane.store.version and not got[1].version
        status = await asyncio.to_thread(status_cli.fetch_status, plane.address, 10.0)
        assert [r.node.id for r in status.routers] == [f"router-{i:03d}" for i in range(500)]
        assert all(len(r.endpoints) == 512 for r in status.routers)
        assert [(q.model, q.intent) for q in status.quality] == [
            (q.model, q.intent) for q in plane.service.status().quality
        ]
        assert len({(q.model, q.intent) for q in status.quality}) == 10_000
        assert [p.key for p in status.outcomes_by_pool] == sorted(
            f"p{i:04d}-{long}" for i in range(4096)
        )
        assert dict(status.policies) == plane.store.policies()
        first = plane.service.status(max_routers=7, page_bytes=STATUS_PAGE_BYTES)
        while not first.routers:  # the pages of series come first
            first = plane.service.status(first.next_page_token, 7, STATUS_PAGE_BYTES)
        assert [r.node.id for r in first.routers][-1] == "router-006"
        second = plane.service.status(first.next_page_token, 7, STATUS_PAGE_BYTES)
        assert second.routers[0].node.id == "router-007" and not second.version
        with pytest.raises(BadPageToken):
            plane.service.status("router-006", 7, STATUS_PAGE_BYTES)  # not a token handed out

    run(scenario, acmeshop)


def test_the_status_cli_prints_a_status_of_10k_series(
    acmeshop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario(plane: ControlPlane) -> None:
        assert plane.learner is not None
        plane.learner.quality.cap = SeriesCap(limit=10_000)
        long = "y" * 200
        plane.learner.quality.record(
            distribution_pb2.Feedback(model=f"m{i}-{long}", intent=f"i-{long}", good=i % 2 == 0)
            for i in range(10_000)
        )
        assert await asyncio.to_thread(status_cli.main, plane.address, True) == 0

    run(scenario, acmeshop)
    data = json.loads(capsys.readouterr().out)
    assert len(data["quality"]) == 10_000


def test_tracked_series_are_capped_and_the_drops_counted() -> None:
    outcomes = OutcomeAggregator()
    outcomes.cap = SeriesCap(limit=100)
    batch = [distribution_pb2.Outcome(pool="p", model=f"m{i}") for i in range(10_000)]
    assert outcomes.record("r1", batch) == 10_000
    assert outcomes.total == 10_000
    assert len(outcomes.by_model()) == 100 and len(outcomes.stats()) == 100
    assert outcomes.dropped_series["outcomes.by_model"] == 9_900
    assert outcomes.dropped_series["outcomes.stats"] == 9_900
    outcomes.record("r1", [distribution_pb2.Outcome(pool="p", model="m0")])
    assert outcomes.by_model()["m0"] == 2  # series already tracked keep counting


def test_one_router_cannot_fill_a_table_alone() -> None:
    """Per-router caps: each router adds at most ``per_owner`` keys to a table; the
    global cap still bounds the table; tracked keys count whoever reports them."""
    outcomes = OutcomeAggregator()
    outcomes.cap = SeriesCap(limit=100, per_owner=30)
    flood = [distribution_pb2.Outcome(pool="p", model=f"a{i}") for i in range(100)]
    outcomes.record("r1", flood)
    assert len(outcomes.by_model()) == 30
    assert outcomes.dropped_series["outcomes.by_model.per_router"] == 70
    outcomes.record("r2", [distribution_pb2.Outcome(pool="p", model=f"b{i}") for i in range(50)])
    assert len(outcomes.by_model()) == 60  # r2 has an allowance of its own
    outcomes.record("r2", flood[:1])  # a key r1 added: tracked, so it counts
    assert outcomes.by_model()["a0"] == 2
    for r in ("r3", "r4", "r5"):
        outcomes.record(
            r, [distribution_pb2.Outcome(pool="p", model=f"{r}-{i}") for i in range(30)]
        )
    assert len(outcomes.by_model()) == 100  # the global cap still holds
    assert outcomes.dropped_series["outcomes.by_model"] == 50
    assert outcomes.total == 100 + 50 + 1 + 90


BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_yaml_bomb_is_refused_naming_the_file_and_the_watcher_heals(acmeshop: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        serving = plane.store.version
        assert serving and len(BOMB) < 600
        await asyncio.sleep(0.5)  # the watcher's first watch is set up
        (acmeshop / "bomb.yaml").write_text(BOMB)
        await eventually(lambda: "bomb.yaml" in plane.store.last_error, timeout=10)
        assert f"more than {MAX_YAML_NODES} nodes" in plane.store.last_error
        assert plane.store.version == serving
        assert plane.admin is not None
        base = f"http://127.0.0.1:{plane.admin.port}"
        code, health = await _get(base + "/healthz")
        assert code == 200 and health["source"]["broken_since_unix_ms"] > 0
        assert "bomb.yaml" in health["source"]["last_error"]
        status = await asyncio.to_thread(status_cli.fetch_status, plane.address)
        assert status.source_broken_since_unix_ms > 0 and "bomb.yaml" in status.last_error
        # The watcher is alive: removing the file heals the source.
        (acmeshop / "bomb.yaml").unlink()
        await eventually(lambda: not plane.store.broken_since_unix_ms, timeout=10)
        code, health = await _get(base + "/healthz")
        assert code == 200 and "source" not in health and plane.store.version == serving

    run(scenario, acmeshop)


def test_deep_nesting_self_aliases_fifos_and_huge_files_are_refused(acmeshop: Path) -> None:
    (acmeshop / "deep.yaml").write_text("a: " + "[" * 100 + "]" * 100 + "\n")
    (acmeshop / "self.yaml").write_text("a: &x [1, *x]\n")
    (acmeshop / "huge.yaml").write_bytes(b"# " + b"x" * (5 * 1024 * 1024) + b"\n")
    os.mkfifo(acmeshop / "fifo.yaml")  # never opened: it is not a regular file
    with pytest.raises(PolicyError) as caught:
        load_folder(acmeshop)
    by_file = {Path(p.file).name: p.message for p in caught.value.problems}
    assert set(by_file) == {"deep.yaml", "self.yaml", "huge.yaml"}
    assert "larger than" in by_file["huge.yaml"]


def test_a_task_that_keeps_failing_is_restarted_counted_and_reported() -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        tasks = Supervisor(stop, backoff_s=0.001, max_backoff_s=0.001)
        rounds: list[int] = []

        async def crashing(health: TaskHealth) -> None:
            rounds.append(1)
            raise OverflowError("math range error")

        tasks.spawn("learning", crashing)
        await eventually(lambda: len(rounds) > FAILING_AFTER)
        health = tasks.health["learning"]
        assert health.restarts >= FAILING_AFTER and health.failing
        assert tasks.failing() == ["learning: OverflowError('math range error')"]
        stop.set()
        await tasks.join()

    asyncio.run(scenario())


def test_healthz_answers_503_while_a_task_keeps_failing(acmeshop: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        assert plane.admin is not None
        base = f"http://127.0.0.1:{plane.admin.port}"
        code, health = await _get(base + "/healthz")
        assert code == 200 and set(health["tasks"]) == {"learning", "rollouts", "source"}
        for _ in range(FAILING_AFTER):
            plane.tasks.health["rollouts"](RuntimeError("state file unwritable"))
        code, health = await _get(base + "/healthz")
        assert code == 503 and health["status"] == "failing"
        assert health["tasks"]["rollouts"]["last_error"] == "RuntimeError('state file unwritable')"
        status = await asyncio.to_thread(status_cli.fetch_status, plane.address)
        assert list(status.failing_tasks) == ["rollouts: RuntimeError('state file unwritable')"]

    run(scenario, acmeshop)


def test_the_learner_drops_a_bad_window_itself_and_ticks_on() -> None:
    from skyroute.control.learning.loop import Learner
    from skyroute.control.policy.store import SnapshotStore

    learner = Learner(SnapshotStore())
    bad = distribution_pb2.ModelStats(model=MODEL, requests=1, latency_sketch=_huge_key_sketch())
    learner.record([bad, distribution_pb2.ModelStats(model=MODEL, requests=2)])
    assert learner.rejected == 1 and learner.models[MODEL].requests == 2
    learner.tick()
    assert learner.as_dict()["rejected_windows"] == 1


def test_a_pattern_python_accepts_but_re2_does_not_is_refused_at_compile(
    acmeshop: Path,
) -> None:
    from skyroute.control.policy.validate import validate

    policy = acmeshop / "policy.yaml"
    lines = policy.read_text().splitlines(keepends=True)
    # The acmeshop policy without its tests (a policy with tests is refused by them).
    start = lines.index("  tests:\n")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("---"))
    text = "".join(lines[:start] + lines[end:])
    old = r"patterns: ['\b(medication|"
    assert old in text
    policy.write_text(text.replace(old, r"patterns: ['(?<!no )\b(medication|", 1))
    with pytest.raises(PolicyError) as caught:
        validate(load_folder(acmeshop))
    [problem] = caught.value.problems
    assert "is not valid RE2" in problem.message and "(?<!no )" in problem.message
    assert problem.file.endswith("policy.yaml") and problem.obj == "RoutingPolicy default/acmeshop"
