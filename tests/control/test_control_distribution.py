"""The distribution server against a real grpc.aio client on loopback.

The client speaks the stream protocol the way a router does (hello with its
node and version, ACK or NACK by echoing the nonce), so these tests pin the
xDS state-of-the-world behaviour: ACK -> SYNCED, NACK -> STALE with the error
kept, a push within 2 s of a file edit, nothing pushed for an invalid edit,
and nothing at all after a restart that computes the same version.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from skyroute.control.server import ControlPlane
from skyroute.v1 import distribution_pb2, distribution_pb2_grpc

pytestmark = pytest.mark.timeout(60)

SYNCED = distribution_pb2.SYNC_STATE_SYNCED
STALE = distribution_pb2.SYNC_STATE_STALE
NOT_SENT = distribution_pb2.SYNC_STATE_NOT_SENT
DISCONNECTED = distribution_pb2.SYNC_STATE_DISCONNECTED


class Router:
    """A protocol peer: one StreamSnapshots stream, responses collected by a reader task."""

    def __init__(self, address: str, node_id: str) -> None:
        self.node = distribution_pb2.Node(id=node_id, hostname="test")
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = distribution_pb2_grpc.PolicyDistributionStub(self.channel)
        self._outbox: asyncio.Queue[distribution_pb2.SnapshotRequest | None] = asyncio.Queue()
        self.responses: asyncio.Queue[distribution_pb2.SnapshotResponse] = asyncio.Queue()
        self.error: grpc.aio.AioRpcError | None = None
        self.call = self.stub.StreamSnapshots(self._requests())
        self._reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[distribution_pb2.SnapshotRequest]:
        while (request := await self._outbox.get()) is not None:
            yield request

    async def _read(self) -> None:
        try:
            async for response in self.call:
                self.responses.put_nowait(response)
        except grpc.aio.AioRpcError as exc:
            self.error = exc

    def hello(self, version: str = "") -> None:
        self._outbox.put_nowait(
            distribution_pb2.SnapshotRequest(node=self.node, version_info=version)
        )

    def ack(self, response: distribution_pb2.SnapshotResponse) -> None:
        self._outbox.put_nowait(
            distribution_pb2.SnapshotRequest(
                node=self.node, version_info=response.version_info, response_nonce=response.nonce
            )
        )

    def nack(self, response: distribution_pb2.SnapshotResponse, keeps: str, error: str) -> None:
        self._outbox.put_nowait(
            distribution_pb2.SnapshotRequest(
                node=self.node,
                version_info=keeps,
                response_nonce=response.nonce,
                error_detail=distribution_pb2.ErrorDetail(code=3, message=error),
            )
        )

    async def recv(self, timeout: float = 3.0) -> distribution_pb2.SnapshotResponse:
        return await asyncio.wait_for(self.responses.get(), timeout)

    async def nothing_for(self, seconds: float) -> bool:
        await asyncio.sleep(seconds)
        return self.responses.empty()

    async def close(self) -> None:
        self._outbox.put_nowait(None)
        self.call.cancel()
        self._reader.cancel()
        await self.channel.close()


def run(test: Callable[[ControlPlane], Awaitable[None]], source: Path) -> None:
    async def main() -> None:
        plane = ControlPlane(
            str(source), "127.0.0.1:0", "127.0.0.1:0", debounce_ms=30, insecure=True
        )
        await plane.start()
        try:
            await test(plane)
        finally:
            await plane.stop(grace=0)

    asyncio.run(main())


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def router_status(plane: ControlPlane, node_id: str) -> distribution_pb2.RouterStatus:
    return next(r for r in plane.service.status().routers if r.node.id == node_id)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text.replace(old, new))
    tmp.rename(path)


def test_hello_gets_the_snapshot_and_ack_makes_it_synced(acmeshop: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        r = Router(plane.address, "r1")
        r.hello()
        first = await r.recv()
        assert first.version_info == plane.store.version == first.snapshot.version
        assert first.nonce and first.snapshot.default_policy == "acmeshop"
        assert router_status(plane, "r1").state == STALE  # sent, not yet ACKed
        r.ack(first)
        await eventually(lambda: router_status(plane, "r1").state == SYNCED)
        status = router_status(plane, "r1")
        assert status.acked_version == status.sent_version == first.version_info
        assert await r.nothing_for(0.3)
        await r.close()
        await eventually(lambda: router_status(plane, "r1").state == DISCONNECTED)

    run(scenario, acmeshop)


def test_nack_is_stale_with_the_error_kept_and_not_resent(acmeshop: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        r = Router(plane.address, "r1")
        r.hello(version="sha256:0000000000000000")
        first = await r.recv()
        r.nack(first, keeps="sha256:0000000000000000", error="unknown provider bedrock")
        await eventually(lambda: router_status(plane, "r1").last_nack != "")
        status = router_status(plane, "r1")
        assert status.state == STALE
        assert status.acked_version == "sha256:0000000000000000"
        assert status.sent_version == first.version_info
        assert status.last_nack == f"{first.version_info}: unknown provider bedrock"
        assert await r.nothing_for(0.3)  # the same version is not pushed again
        await r.close()

    run(scenario, acmeshop)


def test_a_nacked_version_does_not_block_the_next_valid_one(acmeshop: Path) -> None:
    """The router refuses one version (it keeps serving its own); the next edit is
    still pushed to it, it ACKs that, and it is SYNCED again with the NACK cleared."""

    async def scenario(plane: ControlPlane) -> None:
        r = Router(plane.address, "r1")
        r.hello(version="sha256:0000000000000000")
        refused = await r.recv()
        r.nack(refused, keeps="sha256:0000000000000000", error="unknown provider watsonx")
        await eventually(lambda: router_status(plane, "r1").state == STALE)
        edit(acmeshop / "policy.yaml", "maxEntries: 10000", "maxEntries: 20000")
        nxt = await r.recv(timeout=5.0)
        assert nxt.version_info == plane.store.version != refused.version_info
        r.ack(nxt)
        await eventually(lambda: router_status(plane, "r1").state == SYNCED)
        status = router_status(plane, "r1")
        assert status.acked_version == nxt.version_info and status.sent_version == nxt.version_info
        await r.close()

    run(scenario, acmeshop)


def test_file_change_is_pushed_to_every_router_within_two_seconds(acmeshop: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        routers = [Router(plane.address, f"r{i}") for i in range(2)]
        for r in routers:
            r.hello()
            r.ack(await r.recv())
        await eventually(
            lambda: all(router_status(plane, f"r{i}").state == SYNCED for i in range(2))
        )
        old = plane.store.version
        started = time.monotonic()
        # An edit that keeps the policy's own spec.tests passing (a routing change
        # that breaks them is refused; see test_control_policytests).
        edit(acmeshop / "policy.yaml", "maxEntries: 10000", "maxEntries: 20000")
        pushed = [await r.recv(timeout=2.0) for r in routers]
        assert time.monotonic() - started < 2.0
        assert {p.version_info for p in pushed} == {plane.store.version}
        assert plane.store.version != old
        assert pushed[0].snapshot.policies[0].cache.max_entries == 20000
        for r, p in zip(routers, pushed, strict=True):
            r.ack(p)
        await eventually(
            lambda: all(
                router_status(plane, f"r{i}").acked_version == plane.store.version for i in range(2)
            )
        )
        for r in routers:
            await r.close()

    run(scenario, acmeshop)


def test_invalid_edit_pushes_nothing_and_is_reported(acmeshop: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        r = Router(plane.address, "r1")
        r.hello()
        r.ack(first := await r.recv())
        edit(acmeshop / "policy.yaml", "      pool: cost", "      pool: qualiti")
        await eventually(lambda: plane.store.last_error != "")
        assert 'spec.rules[3].pool: pool "qualiti" not found' in plane.store.last_error
        assert "policy.yaml: RoutingPolicy default/acmeshop" in plane.store.last_error
        assert plane.store.version == first.version_info
        assert await r.nothing_for(0.3)
        edit(acmeshop / "policy.yaml", "      pool: qualiti", "      pool: cost")
        edit(acmeshop / "policy.yaml", "maxEntries: 10000", "maxEntries: 20000")
        fixed = await r.recv(timeout=2.0)
        assert fixed.version_info != first.version_info
        assert plane.store.last_error == ""
        await r.close()

    run(scenario, acmeshop)


def test_a_restarted_control_plane_sends_nothing_for_the_same_version(acmeshop: Path) -> None:
    async def scenario() -> None:
        first = ControlPlane(str(acmeshop), "127.0.0.1:0", insecure=True)
        await first.start()
        r = Router(first.address, "r1")
        r.hello()
        got = await r.recv()
        r.ack(got)
        await eventually(lambda: router_status(first, "r1").state == SYNCED)
        await r.close()
        await first.stop(grace=0)

        second = ControlPlane(str(acmeshop), "127.0.0.1:0", insecure=True)
        await second.start()
        try:
            assert second.store.version == got.version_info
            again = Router(second.address, "r1")
            again.hello(version=got.version_info)
            await eventually(lambda: second.registry.get("r1") is not None)
            assert await again.nothing_for(0.5)
            status = router_status(second, "r1")
            assert status.state == SYNCED
            assert status.acked_version == got.version_info and status.sent_version == ""
            await again.close()
        finally:
            await second.stop(grace=0)

    asyncio.run(scenario())


def test_an_answer_to_a_superseded_nonce_is_ignored(acmeshop: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        r = Router(plane.address, "r1")
        r.hello()
        first = await r.recv()
        edit(acmeshop / "pools.yaml", "timeoutMs: 4000", "timeoutMs: 4500")
        second = await r.recv(timeout=2.0)
        r.ack(first)  # late ACK of the older push
        await asyncio.sleep(0.2)
        assert router_status(plane, "r1").state == STALE
        assert router_status(plane, "r1").acked_version == ""  # ignored, not recorded
        r.ack(second)
        await eventually(lambda: router_status(plane, "r1").state == SYNCED)
        assert router_status(plane, "r1").acked_version == second.version_info
        await r.close()

    run(scenario, acmeshop)


def test_invalid_folder_at_start_sends_nothing_until_fixed(acmeshop: Path) -> None:
    edit(acmeshop / "pools.yaml", "provider: gemini", "provider: gemeni")

    async def scenario(plane: ControlPlane) -> None:
        assert plane.store.version == "" and "gemeni" in plane.store.last_error
        r = Router(plane.address, "r1")
        r.hello(version="sha256:1111111111111111")
        assert await r.nothing_for(0.3)
        status = router_status(plane, "r1")
        assert status.state == NOT_SENT and status.acked_version == "sha256:1111111111111111"
        edit(acmeshop / "pools.yaml", "provider: gemeni", "provider: gemini")
        pushed = await r.recv(timeout=2.0)
        assert pushed.version_info == plane.store.version != ""
        await r.close()

    run(scenario, acmeshop)


def test_first_request_without_node_id_is_refused(acmeshop: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        async with grpc.aio.insecure_channel(plane.address) as channel:
            stub = distribution_pb2_grpc.PolicyDistributionStub(channel)

            async def requests() -> AsyncIterator[distribution_pb2.SnapshotRequest]:
                yield distribution_pb2.SnapshotRequest()
                await asyncio.sleep(5)

            call = stub.StreamSnapshots(requests())
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in call:
                    pass
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "node.id" in (info.value.details() or "")

    run(scenario, acmeshop)


def _outcome(pool: str, model: str, error: str = "") -> distribution_pb2.Outcome:
    return distribution_pb2.Outcome(
        pool=pool, model=model, latency_ms=100.0, cost_usd=0.001, error_class=error
    )


def test_outcomes_are_counted_and_shown(acmeshop: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        r = Router(plane.address, "r1")
        r.hello()
        r.ack(await r.recv())
        node = distribution_pb2.Node(id="r1")

        async def batches() -> AsyncIterator[distribution_pb2.OutcomeBatch]:
            yield distribution_pb2.OutcomeBatch(
                node=node,
                outcomes=[_outcome("cost", "gemini-3-flash"), _outcome("cost", "claude-4.5-haiku")],
            )
            yield distribution_pb2.OutcomeBatch(
                node=node, outcomes=[_outcome("quality", "gpt-5.2-high", error="timeout")]
            )

        summary = await r.stub.ReportOutcomes(batches())
        assert summary.received == 3
        status = await r.stub.GetStatus(distribution_pb2.StatusRequest())
        assert status.outcomes_total == 3
        assert {c.key: c.requests for c in status.outcomes_by_pool} == {"cost": 2, "quality": 1}
        assert router_status(plane, "r1").outcomes == 3
        assert plane.outcomes.by_model() == {
            "claude-4.5-haiku": 1,
            "gemini-3-flash": 1,
            "gpt-5.2-high": 1,
        }
        stats = plane.outcomes.stats()[("quality", "gpt-5.2-high")]
        assert stats.errors == 1 and stats.success_rate == 0.0
        assert status.policies == plane.store.policies() and status.source == str(acmeshop)

        assert plane.admin is not None
        base = f"http://127.0.0.1:{plane.admin.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/healthz") as resp:
                assert resp.status == 200
            async with http.get(base + "/debug/status") as resp:
                data: dict[str, Any] = json.loads(await resp.text())
            async with http.get(base + "/debug/snapshot") as resp:
                snap: dict[str, Any] = await resp.json()
            async with http.get(base + "/debug/outcomes") as resp:
                outcomes: dict[str, Any] = await resp.json()
        assert data["version"] == plane.store.version and data["last_error"] == ""
        assert data["routers"][0]["state"] == "SYNCED"
        assert data["outcomes_total"] == 3 and data["routers"][0]["outcomes"] == 3
        assert data["routers"][0]["acked_version"] == plane.store.version
        assert snap["version"] == plane.store.version
        assert [p["name"] for p in snap["pools"]] == ["balanced", "baseline", "cost", "quality"]
        assert outcomes["by_model"]["gpt-5.2-high"] == 1
        await r.close()

    run(scenario, acmeshop)
