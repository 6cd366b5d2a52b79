"""An authenticated control plane: mutual TLS on the link, a token on admin writes.

Each attack of issue 15, tried from a peer on loopback against a control plane
run with ``--tls-dir`` (certificates from ``skyroute certs create``): an
impostor subscription, a stream claiming another router's node id, forged
outcomes, stats and ``tool_called`` for another node, a forged NACK, reports
from an identity that never subscribed, unauthenticated and unauthorised admin
writes. Certificates rotate without dropping a router's stream.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc
import pytest
from cryptography import x509
from test_control_distribution import Router, edit, eventually

from skyroute.control.distribution import status as status_cli
from skyroute.control.distribution.tls import channel_credentials, create
from skyroute.control.server import ControlPlane
from skyroute.v1 import distribution_pb2, distribution_pb2_grpc

pytestmark = pytest.mark.timeout(120)

SYNCED = distribution_pb2.SYNC_STATE_SYNCED
MODEL = "gemini-3-flash"


class TlsRouter(Router):
    """The protocol peer of test_control_distribution over a mutual-TLS channel."""

    def __init__(self, address: str, node_id: str, credentials: grpc.ChannelCredentials) -> None:
        self.node = distribution_pb2.Node(id=node_id, hostname="test")
        self.channel = grpc.aio.secure_channel(address, credentials)
        self.stub = distribution_pb2_grpc.PolicyDistributionStub(self.channel)
        self._outbox: asyncio.Queue[distribution_pb2.SnapshotRequest | None] = asyncio.Queue()
        self.responses: asyncio.Queue[distribution_pb2.SnapshotResponse] = asyncio.Queue()
        self.error: grpc.aio.AioRpcError | None = None
        self.call = self.stub.StreamSnapshots(self._requests())
        self._reader = asyncio.create_task(self._read())


@pytest.fixture
def tls(tmp_path: Path) -> Path:
    folder = tmp_path / "tls"
    create(
        folder,
        hosts=["localhost", "127.0.0.1"],
        routers=["router-a", "router-b", "router-c"],
        admins=["admin"],
    )
    return folder


def creds(tls: Path, name: str) -> grpc.ChannelCredentials:
    return channel_credentials(tls / "ca.crt", tls / "clients" / name)


def run(test: Callable[[ControlPlane], Awaitable[None]], source: Path, tls: Path) -> None:
    async def main() -> None:
        plane = ControlPlane(
            str(source), "127.0.0.1:0", "127.0.0.1:0", debounce_ms=30, tls_dir=str(tls)
        )
        await plane.start()
        try:
            await test(plane)
        finally:
            await plane.stop(grace=0)

    asyncio.run(main())


async def subscribed(plane: ControlPlane, tls: Path, name: str, node: str = "") -> TlsRouter:
    r = TlsRouter(plane.address, node or name, creds(tls, name))
    r.hello()
    r.ack(await r.recv())
    return r


async def report(r: Router, *batches: distribution_pb2.OutcomeBatch) -> int:
    async def stream() -> AsyncIterator[distribution_pb2.OutcomeBatch]:
        for b in batches:
            yield b

    return int((await r.stub.ReportOutcomes(stream())).received)


def test_an_impostor_without_a_certificate_gets_nothing(acmeshop: Path, tls: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        plain = Router(plane.address, "router-a")  # plaintext, as from any pod
        plain.hello()
        with pytest.raises(TimeoutError):
            await plain.recv(timeout=1.0)
        await plain.close()
        other = tls.parent / "other"
        create(other, hosts=["127.0.0.1"], routers=["router-a"])  # a CA of its own
        stranger = TlsRouter(plane.address, "router-a", creds(other, "router-a"))
        stranger.hello()
        with pytest.raises(TimeoutError):
            await stranger.recv(timeout=1.0)
        await stranger.close()
        assert plane.registry.records() == []

    run(scenario, acmeshop, tls)


def test_a_router_is_bound_to_its_certificate(acmeshop: Path, tls: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        a = await subscribed(plane, tls, "router-a", "router-a-7f3c")
        status = await a.stub.GetStatus(distribution_pb2.StatusRequest())
        assert status.authentication == "mtls"
        [row] = status.routers
        assert row.node.id == "router-a-7f3c" and row.identity == "router-a"
        # router-b's certificate claiming router-a's node id: refused and counted.
        b = TlsRouter(plane.address, "router-a-7f3c", creds(tls, "router-b"))
        b.hello()
        await eventually(lambda: b.error is not None)
        assert b.error is not None and b.error.code() == grpc.StatusCode.PERMISSION_DENIED
        b2 = TlsRouter(plane.address, "router-a", creds(tls, "router-b"))
        b2.hello()
        await eventually(lambda: b2.error is not None)
        assert plane.service.checker.rejected["identity_mismatch"] == 2
        # The real router-a is untouched: still SYNCED (a forged NACK had no stream to ride).
        record = plane.registry.get("router-a-7f3c")
        assert record is not None and record.state == SYNCED and record.nacks == 0
        for r in (a, b, b2):
            await r.close()

    run(scenario, acmeshop, tls)


def test_forged_reports_for_another_node_are_refused(acmeshop: Path, tls: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        a = await subscribed(plane, tls, "router-a")
        b = await subscribed(plane, tls, "router-b")
        forged = distribution_pb2.OutcomeBatch(
            node=a.node,  # router-b's connection, router-a's name
            outcomes=[
                distribution_pb2.Outcome(
                    pool="cost", model=MODEL, has_tools=True, tool_called=True, intent="unknown"
                )
            ],
            stats=[distribution_pb2.ModelStats(model=MODEL, requests=1000, failures=1000)],
        )
        assert await report(b, forged) == 0
        assert plane.outcomes.total == 0 and plane.learner.models == {}
        assert plane.learner.tool_use.rates == {}
        assert plane.service.checker.rejected["identity_mismatch"] == 1
        own = distribution_pb2.OutcomeBatch(
            node=b.node, outcomes=[distribution_pb2.Outcome(pool="cost", model=MODEL)]
        )
        assert await report(b, own) == 1
        # router-c holds a valid certificate but never subscribed.
        c = TlsRouter(plane.address, "router-c", creds(tls, "router-c"))
        ghost = distribution_pb2.OutcomeBatch(
            node=c.node, outcomes=[distribution_pb2.Outcome(pool="cost", model=MODEL)]
        )
        assert await report(c, ghost) == 0
        assert plane.service.checker.rejected["not_subscribed"] == 1
        forwarded = distribution_pb2.OutcomeBatch(
            node=distribution_pb2.Node(id="forwarded/x"),
            outcomes=[distribution_pb2.Outcome(pool="cost", model=MODEL)],
        )
        assert await report(b, forwarded) == 0  # only an operator identity forwards
        assert plane.service.checker.rejected["wrong_role"] == 1
        assert plane.outcomes.total == 1
        for r in (a, b, c):
            await r.close()

    run(scenario, acmeshop, tls)


def test_an_admin_identity_reads_status_but_cannot_subscribe(acmeshop: Path, tls: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        status = await asyncio.to_thread(
            status_cli.fetch_status, plane.address, 3.0, 10, creds(tls, "admin")
        )
        assert status.version == plane.store.version
        admin = TlsRouter(plane.address, "admin", creds(tls, "admin"))
        admin.hello()
        await eventually(lambda: admin.error is not None)
        assert admin.error is not None
        assert admin.error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert plane.service.checker.rejected["wrong_role"] == 1
        await admin.close()

    run(scenario, acmeshop, tls)


def test_admin_writes_need_the_token_over_https(acmeshop: Path, tls: Path) -> None:
    async def scenario(plane: ControlPlane) -> None:
        assert plane.admin is not None
        base = f"https://127.0.0.1:{plane.admin.port}"
        url = base + "/rollouts/default/acmeshop/promote"
        context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        token = (tls / "admin.token").read_text().strip()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            async with http.get(base + "/healthz") as resp:
                assert resp.status == 200  # reads stay open (probes)
            async with http.post(url) as resp:
                assert resp.status == 401
            async with http.post(url, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 403
            async with http.post(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 409  # authorised; nothing in progress to promote
                assert "acted" in await resp.json()
        assert plane.admin.writes_refused == 2

    run(scenario, acmeshop, tls)


def test_the_server_certificate_rotates_without_dropping_a_stream(
    acmeshop: Path, tls: Path
) -> None:
    async def scenario(plane: ControlPlane) -> None:
        a = await subscribed(plane, tls, "router-a")
        before = (tls / "control.crt").read_bytes()
        create(tls, hosts=["localhost", "127.0.0.1"], routers=[])  # a new serving cert
        assert (tls / "control.crt").read_bytes() != before
        edit(acmeshop / "policy.yaml", "maxAttempts: 3", "maxAttempts: 2")
        pushed = await a.recv(timeout=5.0)  # the open stream still gets pushes
        assert pushed.version_info == plane.store.version
        a.ack(pushed)
        b = await subscribed(plane, tls, "router-b")  # a new handshake, new certificate
        served = await asyncio.to_thread(_served_certificate, plane.port, tls)
        assert served == x509.load_pem_x509_certificate((tls / "control.crt").read_bytes())
        # The admin port's HTTPS too (a new handshake after the files changed).
        assert plane.admin is not None
        admin = await asyncio.to_thread(_served_certificate, plane.admin.port, tls, False)
        assert admin == served
        record = plane.registry.get("router-a")
        assert record is not None and record.state == SYNCED and record.stream == 1
        for r in (a, b):
            await r.close()

    run(scenario, acmeshop, tls)


def _served_certificate(port: int, tls: Path, grpc_port: bool = True) -> x509.Certificate:
    """The certificate the gRPC (or admin) port presents to a new TLS handshake now."""
    context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    if grpc_port:
        context.load_cert_chain(tls / "clients" / "router-a.crt", tls / "clients" / "router-a.key")
        context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_the_control_plane_refuses_to_start_without_tls_or_insecure(acmeshop: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "skyroute.cli.main", "control", "--source", str(acmeshop)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--tls-dir" in done.stderr and "--insecure" in done.stderr
