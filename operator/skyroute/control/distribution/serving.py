"""The control plane's gRPC server, as ``skyroute control`` and the operator run it.

One server: ``skyroute.v1.PolicyDistribution`` (snapshots out, outcomes in),
the standard ``grpc.health.v1`` service and server reflection, with the
keepalive policy and message limits the routers' channels expect (all in
:mod:`skyroute.link`). ``skyroute.v1.PolicyDistribution`` is SERVING while a
snapshot is compiled (a router connecting then gets one at once), which is
the operator's readiness probe; ``""`` stays SERVING while the process runs.

The kubelet's ``grpc:`` probes speak plaintext only, so a TLS link can add a
second, plaintext port that serves nothing but the same health statuses
(``listen_health``; the operator's ``--health-listen``): no snapshot, report or
token ever goes over it.
"""

from __future__ import annotations

import asyncio

import grpc

from skyroute.control.distribution.service import DistributionService
from skyroute.control.policy.store import SnapshotStore
from skyroute.link import LINK_MAX_BYTES, Health, server_options
from skyroute.v1 import distribution_pb2, distribution_pb2_grpc

DISTRIBUTION = distribution_pb2.DESCRIPTOR.services_by_name["PolicyDistribution"].full_name


class DistributionServer:
    """The gRPC server of one control-plane process; ``port`` once ``listen`` returned."""

    def __init__(self, service: DistributionService, store: SnapshotStore) -> None:
        self.service = service
        self.store = store
        self.server = grpc.aio.server(options=server_options(LINK_MAX_BYTES))
        distribution_pb2_grpc.add_PolicyDistributionServicer_to_server(service, self.server)
        self.health = Health(self.server, [DISTRIBUTION])
        self.port = 0
        self._probe: tuple[grpc.aio.Server, Health] | None = None
        self._unsubscribe = store.subscribe(self._changed)

    def listen(
        self, address: str, credentials: grpc.ServerCredentials | None = None, mtls: bool = True
    ) -> int:
        """Bind ``address`` (port 0 picks one); 0 if it could not (RuntimeError may be raised).

        With ``credentials`` (``tls.ServerTls``) the port is TLS with client certificates
        required and the service checks identities; with ``mtls`` False the port is TLS
        and identities come from bearer tokens (``service.token_auth``, the operator's
        ServiceAccount tokens); without credentials it is plaintext.
        """
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
            self.service.secure = mtls
        return self.port

    def listen_health(self, address: str) -> int:
        """A plaintext port with ``grpc.health.v1`` only (for probes); its port, 0 if not bound."""
        server = grpc.aio.server(options=server_options(LINK_MAX_BYTES))
        self._probe = (server, Health(server, [DISTRIBUTION]))
        return int(server.add_insecure_port(address))

    def _healths(self) -> list[Health]:
        return [self.health] + ([self._probe[1]] if self._probe else [])

    async def start(self) -> None:
        for health in self._healths():
            await health.start(ready=self.store.snapshot is not None)
        await self.server.start()
        if self._probe is not None:
            await self._probe[0].start()

    def _changed(self) -> None:
        for health in self._healths():
            health.set_ready(self.store.snapshot is not None)

    async def stop(self, grace: float | None) -> None:
        """NOT_SERVING, snapshot streams ended cleanly (routers reconnect), then stop."""
        self._unsubscribe()
        for health in self._healths():
            await health.drain()
        self.service.close_streams()
        await asyncio.sleep(0)  # let the stream handlers see it and return
        await self.server.stop(grace)
        if self._probe is not None:
            await self._probe[0].stop(grace)
