"""The gRPC terms every skyroute server and client agree on, declared once.

Both planes import this module (it sits next to the contract in
``skyroute.v1``, not in either plane):

* **Message limits.** A router's two doors accept requests of the same size:
  ``DOOR_MAX_BYTES`` (32 MiB) is the HTTP door's ``client_max_size`` and the
  gRPC door's receive limit. The router <-> control-plane link carries whole
  snapshots, so both of its ends allow ``LINK_MAX_BYTES`` (64 MiB) each way.
* **Keepalive.** Routers ping the control plane every ``KEEPALIVE_TIME_MS``
  (10 s) and give up on a silent connection after ``KEEPALIVE_TIMEOUT_MS``;
  servers accept pings as often as every ``MIN_PING_INTERVAL_MS`` (5 s,
  below the clients' 10 s, so a router is never sent ``too_many_pings``),
  with or without calls in flight.
* **Health and reflection.** Every gRPC server runs the standard
  ``grpc.health.v1.Health`` service (what Kubernetes ``grpc:`` probes,
  grpcurl and meshes ask) and server reflection. ``Health`` answers for the
  whole server (``""``, SERVING while the process runs and is not draining)
  and for each skyroute service, SERVING only while that service can answer
  (a router with a snapshot loaded, a control plane with one compiled).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

MiB = 1024 * 1024
DOOR_MAX_BYTES = 32 * MiB
LINK_MAX_BYTES = 64 * MiB
KEEPALIVE_TIME_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000
MIN_PING_INTERVAL_MS = 5_000

Options = list[tuple[str, Any]]


def server_options(max_receive: int, *, reuse_port: bool = False) -> Options:
    """Channel arguments of a skyroute gRPC server (keepalive policy, limits)."""
    return [
        ("grpc.so_reuseport", int(reuse_port)),
        ("grpc.max_receive_message_length", max_receive),
        ("grpc.max_send_message_length", LINK_MAX_BYTES),
        # Clients ping every 10 s: allow pings down to every 5 s, also between calls.
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def link_channel_options() -> Options:
    """Channel arguments of a router's connection to the control plane."""
    return [
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", LINK_MAX_BYTES),
        ("grpc.max_send_message_length", LINK_MAX_BYTES),
    ]


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    """The ``grpc.health.v1`` service of one server, with its services' statuses."""

    def __init__(self, server: grpc.aio.Server, services: Sequence[str]) -> None:
        self.servicer = health.aio.HealthServicer()
        self.services = tuple(services)
        self.draining = False
        self._pending: set[asyncio.Task[None]] = set()
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        names = (*self.services, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)

    async def start(self, ready: bool) -> None:
        """Before the server starts: ``""`` SERVING, each service as ``ready`` says."""
        await self.servicer.set("", SERVING)
        await self.ready(ready)

    async def ready(self, ready: bool) -> None:
        """Each skyroute service SERVING or NOT_SERVING (always NOT_SERVING once draining)."""
        status = SERVING if ready and not self.draining else NOT_SERVING
        for name in self.services:
            await self.servicer.set(name, status)

    def set_ready(self, ready: bool) -> None:
        """``ready`` from synchronous code on the server's loop (done in a task)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop, so no server running to answer for
            return
        task = loop.create_task(self.ready(ready))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Everything NOT_SERVING from now on (SIGTERM: load balancers move away)."""
        self.draining = True
        await self.servicer.enter_graceful_shutdown()
