"""A router NACKs a snapshot it cannot serve and keeps its last known good.

The control plane validates everything it compiles, so it never pushes such
a snapshot; to exercise the router's side of the protocol this test plays the
control plane's part of the stream itself (a protocol peer, not a mock of the
router) and pushes a good snapshot, then one naming an unknown provider family.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import openai

from skyroute.v1 import distribution_pb2, distribution_pb2_grpc, snapshot_pb2

from harness import Proc, free_port, http_get, wait_until


def snapshot(version: str, provider: str, sim: str) -> snapshot_pb2.Snapshot:
    endpoint = sim + ("/openai/v1" if provider == "openai" else "/watsonx")
    return snapshot_pb2.Snapshot(
        version=version,
        default_policy="p",
        policies=[snapshot_pb2.Policy(name="p", version="pv-" + version, default_pool="pool")],
        pools=[
            snapshot_pb2.Pool(
                name="pool",
                candidates=[
                    snapshot_pb2.Candidate(model="good-model", provider=provider, endpoint=endpoint)
                ],
            )
        ],
    )


class Peer(distribution_pb2_grpc.PolicyDistributionServicer):
    def __init__(self, sim: str) -> None:
        self.sim = sim
        self.requests: list[distribution_pb2.SnapshotRequest] = []
        self.done = threading.Event()

    def StreamSnapshots(
        self, request_iterator: Iterator[distribution_pb2.SnapshotRequest], context: object
    ) -> Iterator[distribution_pb2.SnapshotResponse]:
        self.requests.append(next(request_iterator))
        for i, (version, provider) in enumerate(
            [("sha256:good", "openai"), ("sha256:bad", "watsonx")]
        ):
            yield distribution_pb2.SnapshotResponse(
                version_info=version, nonce=f"n{i}", snapshot=snapshot(version, provider, self.sim)
            )
            self.requests.append(next(request_iterator))
        self.done.wait(30)

    def ReportOutcomes(
        self, request_iterator: Iterator[distribution_pb2.OutcomeBatch], context: object
    ) -> distribution_pb2.OutcomeSummary:
        n = sum(len(b.outcomes) for b in request_iterator)
        return distribution_pb2.OutcomeSummary(received=n)


def test_router_nacks_and_keeps_last_known_good(procs: list[Proc]) -> None:
    sim_port = free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    procs.append(Proc("providers", ["providers", "--listen", f"127.0.0.1:{sim_port}"]))
    peer = Peer(sim)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    distribution_pb2_grpc.add_PolicyDistributionServicer_to_server(peer, server)
    control = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(control)
    server.start()
    try:
        http = f"127.0.0.1:{free_port()}"
        procs.append(
            Proc(
                "router",
                [
                    "router",
                    "--insecure",
                    "--control",
                    control,
                    "--http",
                    http,
                    "--admin-listen",
                    f"127.0.0.1:{free_port()}",
                    "--grpc",
                    f"127.0.0.1:{free_port()}",
                    "--id",
                    "r1",
                    "--open-without-tenants",  # no Tenant (routers are closed by default)
                ],
            )
        )
        wait_until(lambda: len(peer.requests) >= 3, timeout=15, what="ACK and NACK")
        hello, ack, nack = peer.requests[:3]
        assert hello.node.id == "r1" and hello.version_info == "" and hello.response_nonce == ""
        assert ack.version_info == "sha256:good" and ack.response_nonce == "n0"
        assert not ack.HasField("error_detail")
        assert nack.response_nonce == "n1"
        assert nack.version_info == "sha256:good"  # the version it keeps serving
        assert "watsonx" in nack.error_detail.message
        code, body = http_get(f"http://{http}/readyz")
        assert code == 200 and body.decode().split()[-1] == "sha256:good"
        wait_until(lambda: http_get(sim + "/healthz")[0] == 200, what="simulator")
        c = openai.OpenAI(base_url=f"http://{http}/v1", api_key="x", max_retries=0)
        r = c.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
        assert r.model == "good-model"
    finally:
        peer.done.set()
        server.stop(0)
